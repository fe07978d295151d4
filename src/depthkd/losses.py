"""Depth losses shared by supervised training and distillation, all masked.

Every loss takes ``pred`` and ``target`` of shape ``(B,1,H,W)`` and an optional boolean ``mask`` of the
same shape. Without a mask, a pixel is valid where the target is finite and strictly positive (``0``
marks "no ground truth"). An explicit mask replaces the positivity test (the target must still be
finite), so targets where ``0`` or negatives are legal (relative disparity) can be used; build it with
:func:`valid_mask` to keep the positivity test. SILog always requires positive targets (it takes
logs). Losses are computed in float32 with autocast disabled: log, square-root and variance terms
lose too much precision in bf16/fp16. A batch without any valid pixel gives a zero loss that still
belongs to the autograd graph, so a training step never sees NaN from an empty mask.

Formulas follow docs/METHODS.md ("Shared building blocks"); hand-computed values are in ``tests/test_losses.py``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import torch
import torch.nn.functional as F

P = ParamSpec("P")
R = TypeVar("R")

SILOG_ALPHA = 10.0
SILOG_LAMBDA = 0.85
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


def _float32(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` with autocast off and every floating tensor argument cast to float32."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        def cast(value: object) -> object:
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                return value.float()
            return value

        device_type = next(
            (a.device.type for a in args if isinstance(a, torch.Tensor)), "cpu"
        )
        with torch.autocast(device_type=device_type, enabled=False):
            return fn(*[cast(a) for a in args], **{k: cast(v) for k, v in kwargs.items()})

    return wrapper


def valid_mask(target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Depth pixels that count: finite, strictly positive target, intersected with ``mask`` if given."""
    valid = torch.isfinite(target) & (target > 0)
    return valid if mask is None else valid & mask.bool()


def _resolve_mask(target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The module's rule: no mask -> :func:`valid_mask`; an explicit mask -> mask & finite target."""
    if mask is None:
        return valid_mask(target)
    return mask.bool() & torch.isfinite(target)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over ``mask``; a graph-connected zero when the mask is empty."""
    count = mask.sum()
    total = torch.where(mask, values, torch.zeros_like(values)).sum()
    return total / count.clamp_min(1)


def _empty(pred: torch.Tensor) -> torch.Tensor:
    return pred.sum() * 0.0


@_float32
def silog_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    alpha: float = SILOG_ALPHA,
    lam: float = SILOG_LAMBDA,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Scale-invariant log loss ``alpha * sqrt(mean(g^2) - lam * mean(g)^2)``, ``g = ln p - ln t``.

    Pooled over all valid pixels of the batch (the AdaBins/BTS convention). ``eps`` clamps the
    prediction away from zero before the log; the variance is clamped at 0 before the square root.
    """
    valid = valid_mask(target, mask)
    if not valid.any():
        return _empty(pred)
    g = torch.log(pred[valid].clamp_min(eps)) - torch.log(target[valid])
    # mean(g^2) - lam*mean(g)^2 written as Var(g) + (1-lam)*mean(g)^2: no float32 cancellation.
    mean = g.mean()
    variance = ((g - mean).square().mean() + (1.0 - lam) * mean.square()).clamp_min(1e-12)
    return alpha * torch.sqrt(variance)


@_float32
def l1_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error over valid pixels."""
    return masked_mean((pred - target).abs(), _resolve_mask(target, mask))


@_float32
def mse_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error over valid pixels."""
    return masked_mean((pred - target).square(), _resolve_mask(target, mask))


@_float32
def berhu_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    threshold: float = 0.2,
) -> torch.Tensor:
    """Reverse Huber: ``|x|`` below ``c``, ``(x^2 + c^2) / 2c`` above, ``c = threshold * max|x|``.

    ``c`` is taken over the valid pixels of the whole batch and not differentiated through
    (Laina et al. 2016).
    """
    valid = _resolve_mask(target, mask)
    if not valid.any():
        return _empty(pred)
    diff = (pred - target).abs()
    c = (threshold * diff[valid].max()).detach()
    if c <= 0:
        return masked_mean(diff, valid)
    quadratic = (diff.square() + c * c) / (2 * c)
    return masked_mean(torch.where(diff <= c, diff, quadratic), valid)


def gaussian_kernel(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Normalised 1-D Gaussian ``(size,)``; the 2-D window is its outer product."""
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2.0
    g = torch.exp(-coords.square() / (2 * sigma * sigma))
    return g / g.sum()


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Normalised 2-D Gaussian window ``(1,1,size,size)``."""
    g = gaussian_kernel(size, sigma)
    return (g[:, None] * g[None, :]).view(1, 1, size, size)


@_float32
def ssim_map(
    pred: torch.Tensor,
    target: torch.Tensor,
    window_size: int = SSIM_WINDOW,
    sigma: float = SSIM_SIGMA,
    c1: float = SSIM_C1,
    c2: float = SSIM_C2,
) -> torch.Tensor:
    """Per-pixel SSIM ``(B,C,H,W)`` with Gaussian-weighted local statistics.

    Borders are replicate-padded so the map has the input's size and lines up with the mask, for any
    map size (our default; the original SSIM uses only fully inside windows). Constants are absolute (``0.01^2``,
    ``0.03^2``), as the depth KD papers use them on depth maps.

    Local statistics are computed in float64: variances ``E[x^2] - E[x]^2`` of near-constant depth
    patches cancel to ~1e-7 in float32, which next to ``C2 = 9e-4`` shifts SSIM by ~3e-4 (more at KITTI
    depths). Depth maps have one channel, so the cost is small.
    """
    out_dtype = pred.dtype
    pred, target = pred.double(), target.double()
    channels = pred.shape[1]
    kernel = gaussian_kernel(window_size, sigma).to(pred.device, torch.float64)
    kernel = kernel / kernel.sum()  # renormalised in float64: a float32 sum of 1 +- 1e-7 leaks into variances
    rows = kernel.view(1, 1, -1, 1).expand(channels, 1, -1, -1)
    cols = kernel.view(1, 1, 1, -1).expand(channels, 1, -1, -1)
    pad = window_size // 2

    def blur(x: torch.Tensor) -> torch.Tensor:
        # The Gaussian is separable: a column pass then a row pass (2k instead of k^2 products).
        x = F.pad(x, (pad, pad, pad, pad), mode="replicate")
        return F.conv2d(F.conv2d(x, rows, groups=channels), cols, groups=channels)

    mu_p, mu_t = blur(pred), blur(target)
    var_p = blur(pred * pred) - mu_p.square()
    var_t = blur(target * target) - mu_t.square()
    cov = blur(pred * target) - mu_p * mu_t
    numerator = (2 * mu_p * mu_t + c1) * (2 * cov + c2)
    denominator = (mu_p.square() + mu_t.square() + c1) * (var_p + var_t + c2)
    return (numerator / denominator).to(out_dtype)


@_float32
def ssim_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    window_size: int = SSIM_WINDOW,
    sigma: float = SSIM_SIGMA,
) -> torch.Tensor:
    """``1 - mean SSIM`` over valid pixels (local statistics use every pixel of the window)."""
    ssim = ssim_map(pred, target, window_size=window_size, sigma=sigma)
    return 1.0 - masked_mean(ssim, _resolve_mask(target, mask))


def _masked_median(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image median ``(B,1,1,1)`` over ``mask`` (the lower middle value for even counts)."""
    flat = torch.where(mask, x, torch.full_like(x, float("nan"))).flatten(1)
    median = torch.nanmedian(flat, dim=1).values
    return torch.nan_to_num(median, nan=0.0).view(-1, 1, 1, 1)


def normalize_median_mad(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per image ``(x - median) / mean|x - median|`` over ``mask`` (MiDaS scale-shift normalisation)."""
    median = _masked_median(x, mask)
    centred = x - median
    counts = mask.flatten(1).sum(1).clamp_min(1).view(-1, 1, 1, 1)
    abs_dev = torch.where(mask, centred.abs(), torch.zeros_like(x)).flatten(1).sum(1).view(-1, 1, 1, 1)
    return centred / (abs_dev / counts).clamp_min(eps)


def _per_image_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over each image's mask, then over the images that have any valid pixel."""
    counts = mask.flatten(1).sum(1)
    sums = torch.where(mask, values, torch.zeros_like(values)).flatten(1).sum(1)
    has_pixels = counts > 0
    if not has_pixels.any():
        return _empty(values)
    return (sums[has_pixels] / counts[has_pixels]).mean()


@_float32
def ssi_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Scale-and-shift-invariant L1: both maps median/MAD-normalised per image, then mean ``|p - t|``.

    Per-image mean over valid pixels, then the mean over images. MiDaS writes a factor 1/2 in front;
    it is left out here (a constant weight).
    """
    valid = _resolve_mask(target, mask)
    diff = (normalize_median_mad(pred, valid) - normalize_median_mad(target, valid)).abs()
    return _per_image_mean(diff, valid)


def _gradient_matching(residual: torch.Tensor, valid: torch.Tensor, scales: int) -> torch.Tensor:
    """Sum over scales of masked ``|dR/dx| + |dR/dy|`` divided by the valid pixel count per scale."""
    residual = torch.where(valid, residual, torch.zeros_like(residual))
    total = _empty(residual)
    for k in range(scales):
        step = 2**k
        r = residual[..., ::step, ::step]
        m = valid[..., ::step, ::step]
        count = m.sum()
        if count == 0 or (r.shape[-1] < 2 and r.shape[-2] < 2):
            continue
        mx = m[..., :, 1:] & m[..., :, :-1]
        my = m[..., 1:, :] & m[..., :-1, :]
        gx = torch.where(mx, (r[..., :, 1:] - r[..., :, :-1]).abs(), torch.zeros_like(r[..., :, 1:]))
        gy = torch.where(my, (r[..., 1:, :] - r[..., :-1, :]).abs(), torch.zeros_like(r[..., 1:, :]))
        total = total + (gx.sum() + gy.sum()) / count
    return total


@_float32
def gradient_matching_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    scales: int = 4,
) -> torch.Tensor:
    """Multi-scale gradient matching of the residual ``R = pred - target`` (MiDaS).

    At scale ``k`` the maps are subsampled with stride ``2^k``; the term is the sum of ``|dR/dx|`` and
    ``|dR/dy|`` over neighbouring pixel pairs that are both valid, divided by the number of valid
    pixels at that scale; the scales are summed. Used as is on metric maps; :func:`ssi_gradient_loss`
    applies it to median/MAD-normalised maps.
    """
    return _gradient_matching(pred - target, _resolve_mask(target, mask), scales)


@_float32
def ssi_gradient_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    grad_weight: float = 0.5,
    scales: int = 4,
) -> torch.Tensor:
    """MiDaS loss: SSI L1 plus ``grad_weight`` times gradient matching of the normalised maps.

    ``grad_weight = 0.5`` and 4 scales are the MiDaS values.
    """
    valid = _resolve_mask(target, mask)
    residual = normalize_median_mad(pred, valid) - normalize_median_mad(target, valid)
    ssi = _per_image_mean(residual.abs(), valid)
    if grad_weight == 0:
        return ssi
    return ssi + grad_weight * _gradient_matching(residual, valid, scales)


__all__ = [
    "SILOG_ALPHA",
    "SILOG_LAMBDA",
    "SSIM_C1",
    "SSIM_C2",
    "berhu_loss",
    "gaussian_kernel",
    "gaussian_window",
    "gradient_matching_loss",
    "l1_loss",
    "masked_mean",
    "mse_loss",
    "normalize_median_mad",
    "silog_loss",
    "ssi_gradient_loss",
    "ssi_loss",
    "ssim_loss",
    "ssim_map",
    "valid_mask",
]
