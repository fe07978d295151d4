"""Depth metrics under named evaluation protocols (crops, depth caps) and alignments.

Published numbers differ silently between codebases through the crop, the depth caps, the alignment
and the SILog convention; each is therefore named here, and :func:`protocol_label` prints the name
beside every number. The order of operations for one image (docs/PROTOCOLS.md) is:

1. resize the prediction to the ground-truth size (bilinear, ``align_corners=False`` as Hugging Face and
   monodepth2 do; ``align_corners=True``, as ZoeDepth and AdaBins evaluate, is an option named in the label);
2. valid mask: ``min < gt < max`` (strict) intersected with the protocol's crop;
3. alignment fitted over the valid pixels (``none``, ``median``, ``lstsq``, ``lstsq_disparity``);
4. clamp the prediction to ``[min, max]`` (``inf`` -> max, ``NaN`` -> min);
5. the nine metrics over the valid pixels, in float64.

A set's score is the unweighted mean of per-image metrics (:class:`MetricAccumulator`), never a
pixel-pooled mean; images without a valid pixel are reported and left out.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from depthkd.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

METRIC_KEYS: tuple[str, ...] = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "d1", "d2", "d3")


def metrics_table(rows: Sequence[tuple[str | None, Mapping[str, float]]], name_column: str | None = None) -> list[str]:
    """Markdown lines of the nine metrics, one row per ``(name, metrics)``; a first column of names
    headed ``name_column`` when it is given."""
    lead = [name_column] if name_column else []
    lines = ["| " + " | ".join([*lead, *METRIC_KEYS]) + " |", "|" + "---|" * (len(lead) + len(METRIC_KEYS))]
    for name, metrics in rows:
        values = [f"{metrics[key]:.4f}" for key in METRIC_KEYS]
        lines.append("| " + " | ".join([str(name)] * bool(lead) + values) + " |")
    return lines
ALIGNMENTS: tuple[str, ...] = ("none", "median", "lstsq", "lstsq_disparity")
CROPS: tuple[str, ...] = ("eigen_nyu", "garg", "eigen_kitti")

ArrayLike = torch.Tensor | np.ndarray

# Eigen crop of NYU Depth V2, defined only for the 480x640 ground truth.
NYU_SHAPE = (480, 640)
NYU_EIGEN_ROWS = (45, 471)
NYU_EIGEN_COLS = (41, 601)
# KITTI crops as fractions of the ground-truth height and width (start, end; end exclusive after floor).
GARG_ROWS = (0.40810811, 0.99189189)
EIGEN_KITTI_ROWS = (0.3324324, 0.91351351)
KITTI_COLS = (0.03594771, 0.96405229)

_CROP_TEXT = {None: "no crop", "eigen_nyu": "Eigen crop", "garg": "Garg crop", "eigen_kitti": "Eigen crop"}

# Degenerate-fit threshold for the least-squares alignments: the predictions count as constant when
# their variance is below (64 * eps * rms)^2, i.e. their spread is within rounding noise. (our default)
_CONSTANT_TOLERANCE_ULPS = 64.0


class NoValidPixelsError(DataError):
    """An image has no ground-truth pixel inside the protocol's crop and depth caps."""


@dataclass(frozen=True)
class Protocol:
    """A named evaluation protocol: depth caps in metres and a crop of the ground truth.

    ``min_depth``/``max_depth`` are ``None`` for protocols (``none``) whose caps must be given per call.
    ``crop`` is ``None`` or one of :data:`CROPS`.
    """

    name: str
    min_depth: float | None
    max_depth: float | None
    crop: str | None = None
    description: str = ""


PROTOCOLS: dict[str, Protocol] = {}


def _check_alignment(align: str) -> str:
    if align not in ALIGNMENTS:
        raise ConfigError(f"unknown alignment {align!r}; expected one of {list(ALIGNMENTS)}")
    return align


def _check_caps(min_depth: float, max_depth: float, where: str) -> None:
    if not (math.isfinite(min_depth) and math.isfinite(max_depth) and 0.0 <= min_depth < max_depth):
        raise ConfigError(
            f"{where}: depth caps must satisfy 0 <= min_depth < max_depth (finite), "
            f"got {min_depth}..{max_depth}"
        )


def register_protocol(
    name: str,
    min_depth: float | None,
    max_depth: float | None,
    crop: str | None = None,
    description: str = "",
    replace: bool = False,
) -> Protocol:
    """Add a protocol to :data:`PROTOCOLS` so every tool can refer to it by name.

    Re-registering a name with different settings raises :class:`ConfigError` unless ``replace`` is
    true, so two datasets cannot silently share a name with different conventions.
    """
    if crop not in _CROP_TEXT:
        raise ConfigError(f"protocol {name!r}: unknown crop {crop!r}; expected None or one of {list(CROPS)}")
    if (min_depth is None) != (max_depth is None):
        raise ConfigError(f"protocol {name!r}: give both min_depth and max_depth, or neither")
    if min_depth is not None:
        _check_caps(float(min_depth), float(max_depth), f"protocol {name!r}")  # type: ignore[arg-type]
        min_depth, max_depth = float(min_depth), float(max_depth)  # type: ignore[arg-type]
    protocol = Protocol(name, min_depth, max_depth, crop, description)
    existing = PROTOCOLS.get(name)
    if existing is not None and existing != protocol and not replace:
        raise ConfigError(
            f"protocol {name!r} is already registered as {existing}; pass replace=True to change it"
        )
    PROTOCOLS[name] = protocol
    return protocol


register_protocol("nyu", 1e-3, 10.0, "eigen_nyu", "NYU Depth V2, Eigen crop of the 480x640 ground truth")
register_protocol("kitti_garg", 1e-3, 80.0, "garg", "KITTI Eigen split, Garg crop")
register_protocol("kitti_eigen", 1e-3, 80.0, "eigen_kitti", "KITTI Eigen split, Eigen crop")
register_protocol("none", None, None, None, "no crop; depth caps given per call")
register_protocol("sim_indoor", 1e-3, 10.0, None, "simulator, indoor domains")
register_protocol("sim_outdoor", 1e-3, 80.0, None, "simulator, outdoor domains")
register_protocol("sim_outdoor_garg", 1e-3, 80.0, "garg", "simulator, outdoor domains, Garg crop (KITTI's ratios)")


def get_protocol(protocol: str | Protocol) -> Protocol:
    """The registered protocol of that name (a :class:`Protocol` passes through)."""
    if isinstance(protocol, Protocol):
        return protocol
    try:
        return PROTOCOLS[protocol]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown protocol {protocol!r}; expected one of {sorted(PROTOCOLS)}") from None


def resolve_caps(
    protocol: str | Protocol, min_depth: float | None = None, max_depth: float | None = None
) -> tuple[float, float]:
    """The (min, max) depth caps in use: the arguments where given, else the protocol's."""
    proto = get_protocol(protocol)
    low = proto.min_depth if min_depth is None else float(min_depth)
    high = proto.max_depth if max_depth is None else float(max_depth)
    if low is None or high is None:
        raise ConfigError(f"protocol {proto.name!r} has no depth caps: pass min_depth and max_depth")
    _check_caps(low, high, f"protocol {proto.name!r}")
    return low, high


# --------------------------------------------------------------------------------------------- crops


def crop_mask(shape: tuple[int, int], crop: str | None, device: torch.device | None = None) -> torch.Tensor:
    """Boolean ``(H,W)`` mask of the evaluated region of a ground truth of that size."""
    height, width = int(shape[0]), int(shape[1])
    mask = torch.zeros((height, width), dtype=torch.bool, device=device)
    if crop is None:
        mask[:] = True
    elif crop == "eigen_nyu":
        if (height, width) != NYU_SHAPE:
            raise DataError(
                f"the NYU Eigen crop is defined only for 480x640 ground truth, got {height}x{width}; "
                "use protocol 'none' (with min_depth/max_depth) or a sim protocol for other sizes"
            )
        mask[slice(*NYU_EIGEN_ROWS), slice(*NYU_EIGEN_COLS)] = True
    elif crop in ("garg", "eigen_kitti"):
        rows = GARG_ROWS if crop == "garg" else EIGEN_KITTI_ROWS
        top, bottom = math.floor(rows[0] * height), math.floor(rows[1] * height)
        left, right = math.floor(KITTI_COLS[0] * width), math.floor(KITTI_COLS[1] * width)
        mask[top:bottom, left:right] = True
    else:
        raise ConfigError(f"unknown crop {crop!r}; expected None or one of {list(CROPS)}")
    return mask


def valid_mask(
    gt: ArrayLike,
    protocol: str | Protocol,
    min_depth: float | None = None,
    max_depth: float | None = None,
) -> torch.Tensor:
    """Pixels that count: ``min < gt < max`` (strict) inside the protocol's crop, shaped like ``gt``.

    ``gt`` is ``(..., H, W)``; the crop is taken on the last two axes. NaN ground truth is never valid.
    """
    proto = get_protocol(protocol)
    low, high = resolve_caps(proto, min_depth, max_depth)
    gt_t = torch.as_tensor(gt)
    if gt_t.ndim < 2:
        raise DataError(f"ground truth must be (..., H, W), got shape {tuple(gt_t.shape)}")
    region = crop_mask(gt_t.shape[-2:], proto.crop, device=gt_t.device)
    return (gt_t > low) & (gt_t < high) & region


# ------------------------------------------------------------------------------------------ resizing


def resize_to(pred: ArrayLike, size: Sequence[int], align_corners: bool = False) -> torch.Tensor:
    """Bilinear resize (no antialiasing) of ``(H,W)``, ``(C,H,W)`` or ``(B,C,H,W)``; ``align_corners=True``
    maps corner pixel centres onto corner pixel centres (ZoeDepth's and AdaBins' evaluation), ``False``
    (the default) maps pixel edges onto edges (Hugging Face's, monodepth2's).

    Returns a tensor of the same rank; the input is returned unchanged when it already has that size.
    """
    pred_t = torch.as_tensor(pred)
    target = (int(size[0]), int(size[1]))
    if pred_t.ndim not in (2, 3, 4):
        raise DataError(
            f"cannot resize a prediction of shape {tuple(pred_t.shape)}; expected (H,W), (C,H,W) or (B,C,H,W)"
        )
    if tuple(pred_t.shape[-2:]) == target:
        return pred_t
    if not pred_t.is_floating_point():
        pred_t = pred_t.float()
    batch = pred_t.reshape(-1, 1, *pred_t.shape[-2:])
    resized = F.interpolate(batch, size=target, mode="bilinear", align_corners=align_corners)
    return resized.reshape(*pred_t.shape[:-2], *target)


def flip_tta(predict_fn: Callable[[torch.Tensor], Any], images: torch.Tensor) -> torch.Tensor:
    """Flip test-time augmentation: ``0.5 * (f(x) + flip_w(f(flip_w(x))))`` for ``(B,C,H,W)`` images.

    ``predict_fn`` returns a tensor, or an output object with a ``depth`` tensor (student/teacher outputs).
    """

    def predict(x: torch.Tensor) -> torch.Tensor:
        out = predict_fn(x)
        return out.depth if hasattr(out, "depth") else out

    if images.ndim != 4:
        raise DataError(f"flip_tta expects images (B,C,H,W), got shape {tuple(images.shape)}")
    straight = predict(images)
    mirrored = predict(torch.flip(images, dims=[-1]))
    return 0.5 * (straight + torch.flip(mirrored, dims=[-1]))


# ----------------------------------------------------------------------------------------- alignment


def _as_batch(x: ArrayLike, what: str) -> torch.Tensor:
    """View ``(H,W)``, ``(B,H,W)`` or ``(B,1,H,W)`` as ``(B, H*W)``."""
    t = torch.as_tensor(x)
    if t.ndim == 2:
        t = t.unsqueeze(0)
    elif t.ndim == 4:
        if t.shape[1] != 1:
            raise DataError(f"{what} must have one channel, got shape {tuple(t.shape)}")
        t = t.squeeze(1)
    elif t.ndim != 3:
        raise DataError(f"{what} must be (H,W), (1,H,W) or (B,1,H,W), got shape {tuple(t.shape)}")
    return t.reshape(t.shape[0], -1)


def masked_median(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-row median of ``values[mask]`` for ``(B, N)`` inputs, numpy's convention (mean of the two
    middle values for an even count); NaN for a row without a masked value."""
    medians = torch.full((values.shape[0],), float("nan"), dtype=values.dtype, device=values.device)
    for row in range(values.shape[0]):
        picked = torch.sort(values[row][mask[row]]).values
        count = picked.numel()
        if count:
            middle = count // 2
            medians[row] = picked[middle] if count % 2 else 0.5 * (picked[middle - 1] + picked[middle])
    return medians


def _fit_scale_shift(
    x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row closed-form least squares ``s*x + t ~ y`` over ``mask`` for ``(B, N)`` inputs.

    Falls back to ``s=1, t=0`` for rows with fewer than two pixels or (numerically) constant ``x``.
    """
    weight = mask.to(x.dtype)
    count = weight.sum(dim=1)
    safe_count = count.clamp(min=1.0)
    x0 = torch.where(mask, x, torch.zeros_like(x))
    y0 = torch.where(mask, y, torch.zeros_like(y))
    mean_x = x0.sum(dim=1) / safe_count
    mean_y = y0.sum(dim=1) / safe_count
    dx = (x0 - mean_x[:, None]) * weight
    dy = (y0 - mean_y[:, None]) * weight
    var_x = (dx * dx).sum(dim=1) / safe_count
    cov_xy = (dx * dy).sum(dim=1) / safe_count
    mean_sq = (x0 * x0).sum(dim=1) / safe_count
    tolerance = (_CONSTANT_TOLERANCE_ULPS * torch.finfo(x.dtype).eps) ** 2 * mean_sq
    scale = cov_xy / torch.where(var_x > 0, var_x, torch.ones_like(var_x))
    shift = mean_y - scale * mean_x
    ok = (count >= 2) & (var_x > tolerance) & torch.isfinite(scale) & torch.isfinite(shift)
    scale = torch.where(ok, scale, torch.ones_like(scale))
    shift = torch.where(ok, shift, torch.zeros_like(shift))
    return scale, shift


def align_depth(
    pred: ArrayLike,
    gt: ArrayLike,
    mask: ArrayLike,
    method: str,
    max_depth: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Align a relative prediction to the ground truth, per image, over the masked pixels.

    ``pred``, ``gt``, ``mask`` are ``(B,1,H,W)`` (or ``(H,W)``, ``(1,H,W)``, ``(B,H,W)``) of one shape.
    Returns ``(aligned, scale, shift)``: ``aligned`` shaped and typed like ``pred``; ``scale`` and
    ``shift`` of shape ``(B,)``.

    - ``none``: ``pred`` unchanged, scale 1, shift 0.
    - ``median``: ``pred * median(gt)/median(pred)``; scale 1 when undefined (no pixel, median <= 0).
    - ``lstsq``: ``s*pred + t`` minimising the squared error to ``gt``; ``s=1, t=0`` if degenerate.
    - ``lstsq_disparity``: ``pred`` is relative inverse depth ``q``; fits ``s*q + t ~ 1/gt``, clamps the
      disparity to ``>= 1/max_depth`` (to the smallest positive value when ``max_depth`` is None, our
      default, so depth stays positive) and returns depth ``1/(s*q + t)``.

    Fits use only masked pixels where the prediction is finite. Statistics are computed in the input
    dtype (half precision is promoted to float32); the result is not meant to be differentiated.
    """
    _check_alignment(method)
    pred_t = torch.as_tensor(pred)
    if not pred_t.is_floating_point():
        pred_t = pred_t.float()
    gt_t, mask_t = torch.as_tensor(gt), torch.as_tensor(mask)
    if pred_t.shape != gt_t.shape or pred_t.shape != mask_t.shape:
        raise DataError(
            f"align_depth needs pred, gt and mask of one shape, got {tuple(pred_t.shape)}, "
            f"{tuple(gt_t.shape)}, {tuple(mask_t.shape)}"
        )
    work = torch.promote_types(pred_t.dtype, torch.float32)
    p = _as_batch(pred_t, "pred").to(work)
    g = _as_batch(gt_t, "gt").to(device=p.device, dtype=work)
    m = _as_batch(mask_t, "mask").to(device=p.device, dtype=torch.bool)
    ones = torch.ones(p.shape[0], dtype=pred_t.dtype, device=p.device)
    if method == "none":
        return pred_t, ones, torch.zeros_like(ones)

    fit = m & torch.isfinite(p) & torch.isfinite(g)
    if method == "median":
        scale = masked_median(g, fit) / masked_median(p, fit)
        scale = torch.where(torch.isfinite(scale) & (scale > 0), scale, torch.ones_like(scale))
        shift = torch.zeros_like(scale)
        aligned = p * scale[:, None]
    elif method == "lstsq":
        scale, shift = _fit_scale_shift(p, g, fit)
        aligned = scale[:, None] * p + shift[:, None]
    else:  # lstsq_disparity
        inverse_gt = torch.where(fit, 1.0 / g, torch.zeros_like(g))
        fit = fit & torch.isfinite(inverse_gt)
        scale, shift = _fit_scale_shift(p, inverse_gt, fit)
        floor = 1.0 / max_depth if max_depth is not None else torch.finfo(work).tiny
        disparity = (scale[:, None] * p + shift[:, None]).clamp(min=floor)
        aligned = 1.0 / disparity
    return aligned.reshape(pred_t.shape).to(pred_t.dtype), scale.to(pred_t.dtype), shift.to(pred_t.dtype)


# ------------------------------------------------------------------------------------------- metrics


def _as_image(x: ArrayLike, what: str, dtype: torch.dtype | None = torch.float64) -> torch.Tensor:
    """One image as a detached ``(H,W)`` tensor (from ``(H,W)``, ``(1,H,W)`` or ``(1,1,H,W)``), in float64
    or, with ``dtype=None``, in its own dtype."""
    t = torch.as_tensor(x).detach()
    while t.ndim > 2 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 2:
        shape = tuple(torch.as_tensor(x).shape)
        raise DataError(f"{what} must be one image (H,W) or (1,H,W), got shape {shape}")
    if dtype is None:
        return t
    if t.device.type == "mps":  # no float64 there
        t = t.cpu()
    return t.to(dtype)


def _depth_metrics(pred: torch.Tensor, gt: torch.Tensor) -> dict[str, float]:
    """The nine metrics of docs/PROTOCOLS.md on matching 1-D float64 vectors of valid pixels."""
    diff = gt - pred
    log_err = torch.log(pred) - torch.log(gt)
    mean_log, mean_sq_log = log_err.mean(), (log_err * log_err).mean()
    ratio = torch.maximum(pred / gt, gt / pred)
    values = {
        "abs_rel": (diff.abs() / gt).mean(),
        "sq_rel": (diff * diff / gt).mean(),
        "rmse": (diff * diff).mean().sqrt(),
        "rmse_log": mean_sq_log.sqrt(),
        "log10": (torch.log10(pred) - torch.log10(gt)).abs().mean(),
        "silog": 100.0 * (mean_sq_log - mean_log * mean_log).clamp(min=0.0).sqrt(),
        "d1": (ratio < 1.25).double().mean(),
        "d2": (ratio < 1.25**2).double().mean(),
        "d3": (ratio < 1.25**3).double().mean(),
    }
    return {key: float(values[key]) for key in METRIC_KEYS}


def evaluate_image(
    pred: ArrayLike,
    gt: ArrayLike,
    protocol: str | Protocol = "nyu",
    align: str = "none",
    min_depth: float | None = None,
    max_depth: float | None = None,
    align_corners: bool = False,
) -> tuple[dict[str, float], float, float]:
    """Like :func:`compute_metrics`, also returning the alignment's ``(scale, shift)``."""
    proto = get_protocol(protocol)
    _check_alignment(align)
    low, high = resolve_caps(proto, min_depth, max_depth)
    # The caps are tested in the ground truth's own precision, as every reference does: a float32 pixel
    # equal to float32(1e-3) is not above a 1e-3 cap, though its float64 value is.
    gt_own = _as_image(gt, "ground truth", dtype=None)
    mask = valid_mask(gt_own, proto, low, high)
    gt_t = _as_image(gt_own, "ground truth")
    mask = mask.to(gt_t.device)
    pred_t = _as_image(pred, "prediction").to(gt_t.device)
    pred_t = resize_to(pred_t, gt_t.shape, align_corners)
    if not bool(mask.any()):
        raise NoValidPixelsError(
            f"no valid ground-truth pixel under protocol {proto.name!r} ({low:g} < depth < {high:g} m, "
            f"{_CROP_TEXT[proto.crop]}) in an image of shape {tuple(gt_t.shape)}"
        )
    aligned, scale, shift = align_depth(pred_t, gt_t, mask, align, max_depth=high)
    clamped = torch.nan_to_num(aligned, nan=low, posinf=high, neginf=low).clamp(low, high)
    return _depth_metrics(clamped[mask], gt_t[mask]), float(scale[0]), float(shift[0])


def compute_metrics(
    pred: ArrayLike,
    gt: ArrayLike,
    protocol: str | Protocol = "nyu",
    align: str = "none",
    min_depth: float | None = None,
    max_depth: float | None = None,
    align_corners: bool = False,
) -> dict[str, float]:
    """The nine :data:`METRIC_KEYS` of ONE image under a protocol and an alignment (see module docs).

    ``pred`` and ``gt`` are ``(H,W)`` or ``(1,H,W)`` numpy arrays or tensors; ``min_depth``/``max_depth``
    override the protocol's caps (protocol ``none`` requires both). Raises :class:`NoValidPixelsError`
    when no pixel is valid. ``d1..d3`` are fractions in ``[0, 1]``; ``silog`` is the metric
    ``100 * std(ln p - ln g)`` (population), not the training loss. ``align_corners`` is the convention of
    the resize of a prediction of another size than ``gt`` (:func:`resize_to`).
    """
    return evaluate_image(pred, gt, protocol, align, min_depth, max_depth, align_corners)[0]


def _format_metres(value: float) -> str:
    """Short cap text: ``1e-3``, ``10``, ``80``, ``0.5``."""
    if value != 0 and abs(value) < 1e-2:
        mantissa, exponent = f"{value:.6e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return f"{value:g}"


def protocol_label(
    protocol: str | Protocol,
    align: str = "none",
    gt_crop: str | None = None,
    min_depth: float | None = None,
    max_depth: float | None = None,
    align_corners: bool = False,
) -> str:
    """The name printed beside every number, e.g. ``"nyu (Eigen crop, 1e-3..10 m), align=median"``.

    ``gt_crop`` says which ground truth the crop ratios were applied to (e.g. ``"KB-cropped"`` or
    ``"full-res"`` for KITTI), since the evaluated regions differ; ``align_corners=True`` adds
    ``resize=align_corners`` (today's default resize, ``align_corners=False``, is not named).
    """
    proto = get_protocol(protocol)
    _check_alignment(align)
    parts = [_CROP_TEXT[proto.crop]]
    if gt_crop:
        parts.append(f"gt={gt_crop}")
    low = proto.min_depth if min_depth is None else min_depth
    high = proto.max_depth if max_depth is None else max_depth
    if low is not None and high is not None:
        parts.append(f"{_format_metres(low)}..{_format_metres(high)} m")
    if align_corners:
        parts.append("resize=align_corners")
    return f"{proto.name} ({', '.join(parts)}), align={align}"


# --------------------------------------------------------------------------------------- accumulator


class MetricAccumulator:
    """Per-image metrics over a set, averaged without pixel weighting (the field's convention).

    Images with no valid pixel are left out of the mean and listed in :attr:`skipped`.
    :attr:`scales` holds each image's alignment scale (empty for ``align="none"``).
    """

    def __init__(
        self,
        protocol: str | Protocol = "nyu",
        align: str = "none",
        min_depth: float | None = None,
        max_depth: float | None = None,
        gt_crop: str | None = None,
        align_corners: bool = False,
    ) -> None:
        self.protocol = get_protocol(protocol)
        self.align_corners = align_corners
        self.align = _check_alignment(align)
        resolve_caps(self.protocol, min_depth, max_depth)  # fail now, not on the first image
        self.min_depth, self.max_depth, self.gt_crop = min_depth, max_depth, gt_crop
        self.count = 0
        self.skipped: list[str] = []
        self.scales: list[float] = []
        self._sums = dict.fromkeys(METRIC_KEYS, 0.0)
        self._seen = 0

    def update(self, pred: ArrayLike, gt: ArrayLike, name: str | Sequence[str] | None = None) -> None:
        """Add one image (``(H,W)``/``(1,H,W)``) or a batch (``(B,1,H,W)``), each scored on its own.

        ``name`` names the image (or a list names each image of the batch) in :attr:`skipped`;
        unnamed images are listed as ``"#<index>"`` in the order they were added.
        """
        pred_t, gt_t = torch.as_tensor(pred), torch.as_tensor(gt)
        if gt_t.ndim == 4:
            if pred_t.ndim != 4 or pred_t.shape[0] != gt_t.shape[0]:
                raise DataError(f"batch shapes differ: pred {tuple(pred_t.shape)}, gt {tuple(gt_t.shape)}")
            names = self._batch_names(name, gt_t.shape[0])
            for i in range(gt_t.shape[0]):
                self._add(pred_t[i], gt_t[i], names[i])
        else:
            self._add(pred_t, gt_t, name if isinstance(name, str) else None)

    @staticmethod
    def _batch_names(name: str | Sequence[str] | None, size: int) -> list[str | None]:
        if name is None:
            return [None] * size
        if isinstance(name, str):
            return [f"{name}[{i}]" for i in range(size)]
        if len(name) != size:
            raise DataError(f"{len(name)} names for a batch of {size} images")
        return list(name)

    def _add(self, pred: torch.Tensor, gt: torch.Tensor, name: str | None) -> None:
        label = name if name is not None else f"#{self._seen}"
        self._seen += 1
        try:
            metrics, scale, _ = evaluate_image(
                pred, gt, self.protocol, self.align, self.min_depth, self.max_depth, self.align_corners
            )
        except NoValidPixelsError as exc:
            logger.warning("skipping %s: %s", label, exc)
            self.skipped.append(label)
            return
        for key in METRIC_KEYS:
            self._sums[key] += metrics[key]
        if self.align != "none":
            self.scales.append(scale)
        self.count += 1

    def compute(self) -> dict[str, float]:
        """Unweighted mean over the scored images of each of the nine metrics."""
        if self.count == 0:
            raise DataError(
                f"no image could be scored under protocol {self.protocol.name!r} "
                f"({len(self.skipped)} skipped for having no valid pixel)"
            )
        return {key: self._sums[key] / self.count for key in METRIC_KEYS}

    def label(self) -> str:
        """The protocol label these numbers are printed with."""
        return protocol_label(self.protocol, self.align, self.gt_crop, self.min_depth, self.max_depth,
                              self.align_corners)

    def summary(self) -> dict[str, Any]:
        """Everything a report needs: protocol, alignment, label, counts, metrics, scale spread."""
        scales = np.asarray(self.scales, dtype=np.float64)
        return {
            "protocol": self.protocol.name,
            "align": self.align,
            "label": self.label(),
            "count": self.count,
            "skipped": list(self.skipped),
            "metrics": self.compute(),
            "scale_mean": float(scales.mean()) if scales.size else None,
            "scale_std": float(scales.std()) if scales.size else None,
        }
