"""``tie-kd``: distillation through depth probability maps (TIE-KD, Choi, Kim, Choi 2024).

Only the teacher's final depth map is used, so any teacher works: Hugging Face, ``onnx:`` and
``preds:`` teachers, or maps read from the teacher cache (batch key ``teacher``). Each teacher pixel
becomes a *depth probability map* (DPM), a distribution over K uniform depth bins (a Gaussian of
width ``sigma`` around the teacher depth, see :func:`teacher_dpm`); the student, built with
``head="dpm"``, predicts its own DPM, and the loss is (docs/METHODS.md, ``tie-kd``)::

    L = w_dpm * mean_pixels KL(q || p) + w_depth * (1 - SSIM(D_S, D_T))

Where the student's DPM lives: its ``logits`` are at the decoder resolution (half the input by
default) while the teacher map is at the input size. ``dpm_resolution`` chooses how they meet:

- ``mixture`` (our default): the teacher DPM is computed per input pixel and averaged over the input
  pixels each student pixel covers. The KL against this mixture has the same gradient as the mean
  per-pixel KL of the full-resolution DPMs against the student's DPM repeated over its footprint
  (nearest upsampling); the two differ by a constant. At a depth edge the target is bimodal (the
  student pixel really covers both surfaces) instead of a Gaussian at an in-between depth no surface has.
- ``depth``: the teacher depth is area-averaged to the student's resolution first, then one DPM per
  student pixel (cheaper; blurs depth edges into intermediate depths).

Relative teachers are aligned per image to the ground truth (``align_method``); without ground
truth they cannot give metres, which is a :class:`ConfigError`. Teacher pixels that are not
positive and finite (holes, the zero fill of rotation augmentation) and the ``ignore_top_rows``
first rows (KITTI: sky without LiDAR) are left out of both terms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from depthkd.distill.base import LossOutput, Method, SetupContext, Stage
from depthkd.distill.registry import register_method
from depthkd.errors import ConfigError, ModelError
from depthkd.losses import masked_mean, ssim_loss, valid_mask
from depthkd.models.outputs import StudentOutput, TeacherOutput

DPM_TARGETS = ("integrated", "softmax_pdf")
DPM_RESOLUTIONS = ("mixture", "depth")

SOFTMAX_PDF_FLOOR = 1e-16
"""``softmax_pdf``: pdf values below this are replaced by :data:`SOFTMAX_PDF_FILL` (released code)."""
SOFTMAX_PDF_FILL = -1000.0

INDOOR_SIGMA = 0.15
OUTDOOR_SIGMA = 0.5
INDOOR_MAX_DEPTH = 10.0


def default_sigma(d_max: float) -> float:
    """The DPM width for a bin range ending at ``d_max`` (docs/METHODS.md, our default).

    0.5 m for KITTI-range recipes, 0.15 m for indoor ranges (``d_max <= 10`` m, NYU), the same
    indoor/outdoor split the ``dpm`` head uses for its default bin count (49 / 257).
    """
    return INDOOR_SIGMA if d_max <= INDOOR_MAX_DEPTH else OUTDOOR_SIGMA


def _check_edges(edges: Tensor) -> None:
    if edges.ndim != 1 or edges.numel() < 2:
        raise ModelError(f"bin edges must be a 1-D tensor of K+1 >= 2 values, got shape {tuple(edges.shape)}")


def _integrated(depth: Tensor, edges: Tensor, sigma: float) -> Tensor:
    """Gaussian mass of each bin, ``Phi((e_k - D)/s) - Phi((e_{k-1} - D)/s)``, renormalised.

    Bins above the depth subtract upper tails instead of lower ones: both tails are then small
    numbers, so far bins keep their tiny mass instead of cancelling to zero in float32. One ``ndtr``
    per edge gives both: the smaller tail ``Phi(-|z|)`` is the lower tail below the depth and the upper
    one above it.
    """
    z = (edges.view(1, -1, 1, 1) - depth) / sigma  # (B,K+1,H,W)
    tail = torch.special.ndtr(-z.abs())
    below = torch.where(z < 0, tail, 1.0 - tail)  # Phi(z)
    above = torch.where(z < 0, 1.0 - tail, tail)  # 1 - Phi(z)
    from_below = below[:, 1:] - below[:, :-1]
    from_above = above[:, :-1] - above[:, 1:]
    mass = torch.where(z[:, :-1] >= 0, from_above, from_below).clamp_min(0.0)
    return mass / mass.sum(dim=1, keepdim=True).clamp_min(torch.finfo(mass.dtype).tiny)


def _is_uniform(edges: Tensor) -> bool:
    steps = edges[1:] - edges[:-1]
    return bool((steps - steps.mean()).abs().max() <= 1e-4 * steps.mean().abs())


def _integrated_band(depth: Tensor, edges: Tensor, sigma: float, band: float) -> Tensor:
    """:func:`_integrated` over the bins within ``band`` sigmas of each depth only (uniform edges); every
    other bin gets zero mass instead of less than ``Phi(-band)`` (6e-16 at 8 sigmas). With 257 bins of
    0.31 m and sigma 0.5 m that is 28 bins of 257 per pixel: about 9x less work, the same map to float32
    rounding in the band."""
    num_bins = edges.numel() - 1
    width = float(edges[-1] - edges[0]) / num_bins
    count = min(num_bins, math.ceil(2.0 * band * sigma / width) + 2)
    first = torch.floor((depth - band * sigma - edges[0]) / width).clamp(0, num_bins - count).long()
    index = first + torch.arange(count, device=depth.device).view(1, -1, 1, 1)  # (B,n,H,W), distinct per pixel
    z_low = (edges[index] - depth) / sigma
    z_high = (edges[index + 1] - depth) / sigma
    t_low, t_high = torch.special.ndtr(-z_low.abs()), torch.special.ndtr(-z_high.abs())
    mass = torch.where(z_low >= 0, t_low - t_high, torch.where(z_high <= 0, t_high - t_low, 1.0 - t_low - t_high))
    mass = mass.clamp_min(0.0)
    mass = mass / mass.sum(dim=1, keepdim=True).clamp_min(torch.finfo(mass.dtype).tiny)
    probs = torch.zeros(depth.shape[0], num_bins, *depth.shape[2:], device=depth.device, dtype=mass.dtype)
    return probs.scatter_(1, index, mass)


def _softmax_pdf(depth: Tensor, centers: Tensor, sigma: float) -> Tensor:
    """The released code's target: softmax over bins of the Gaussian pdf at the bin centres."""
    z = (centers.view(1, -1, 1, 1) - depth) / sigma
    pdf = torch.exp(-0.5 * z.square()) / (sigma * math.sqrt(2.0 * math.pi))
    scores = torch.where(pdf < SOFTMAX_PDF_FLOOR, torch.full_like(pdf, SOFTMAX_PDF_FILL), pdf)
    return torch.softmax(scores, dim=1)


def teacher_dpm(
    depth: Tensor,
    edges: Tensor,
    sigma: float,
    target: Literal["integrated", "softmax_pdf"] = "integrated",
    band: float | None = None,
) -> Tensor:
    """The teacher's depth probability map: per pixel, a distribution over K uniform bins.

    Args:
        depth: ``(B,1,H,W)`` teacher depth in metres. Values outside ``[edges[0], edges[-1]]`` are
            clamped to the range first (our default: the student cannot express them either, and
            an unclamped far depth would give an all-zero ``integrated`` map or a uniform
            ``softmax_pdf`` one). Callers mask pixels without a valid depth themselves.
        edges: ``(K+1,)`` increasing bin edges (``depthkd.models.bins.uniform_bins``); centres are
            the bin middles.
        sigma: Gaussian standard deviation in metres.
        target: ``integrated`` (the paper's description, our default): the Gaussian's mass in each
            bin, renormalised; ``softmax_pdf`` (the authors' released code): the Gaussian *pdf*
            at each bin centre, set to -1000 where below 1e-16, then a softmax over bins: a much
            flatter target (at sigma 0.5 m, K = 257 on [1e-3, 80] m, depth 20 m: 27 bins of
            support, peak 0.070). Those released numbers need the bin-middle centres used here;
            centres at ``linspace(d_min, d_max, K)`` give the same support but peak 0.071.
        band: ``integrated`` only: compute the bins within ``band`` sigmas of the depth and give the
            others zero mass (:func:`_integrated_band`); ``None`` computes every bin. Ignored for
            non-uniform edges.

    Returns:
        ``(B,K,H,W)`` float32 probabilities summing to 1 over K.
    """
    _check_edges(edges)
    if sigma <= 0:
        raise ConfigError(f"DPM sigma={sigma} must be > 0 (metres)")
    if target not in DPM_TARGETS:
        raise ConfigError(f"unknown DPM target {target!r}; expected one of {', '.join(DPM_TARGETS)}")
    if depth.ndim != 4 or depth.shape[1] != 1:
        raise ModelError(f"teacher depth must be (B,1,H,W), got {tuple(depth.shape)}")
    with torch.autocast(device_type=depth.device.type, enabled=False):
        edges = edges.to(device=depth.device, dtype=torch.float32)
        depth = depth.float().clamp(edges[0], edges[-1])
        if target == "integrated":
            if band is not None and _is_uniform(edges):
                return _integrated_band(depth, edges, sigma, band)
            return _integrated(depth, edges, sigma)
        return _softmax_pdf(depth, 0.5 * (edges[:-1] + edges[1:]), sigma)


def edges_from_centers(centers: Tensor, rtol: float = 1e-3) -> Tensor:
    """The ``(K+1,)`` edges of uniform bins with the given middles, or a ModelError if not uniform.

    The student reports its bin centres, not edges; for uniform bins the edges follow exactly.
    AdaBins-style adaptive bins (``head="bins"``) are refused: TIE-KD's DPM needs fixed bins.
    """
    flat = centers.detach().reshape(-1, centers.shape[-1])[0].double()
    count = flat.numel()
    if count < 2:
        raise ModelError(f"tie-kd needs at least 2 bins, the student has {count}")
    width = (flat[-1] - flat[0]) / (count - 1)
    steps = flat[1:] - flat[:-1]
    if width <= 0 or not torch.allclose(steps, width.expand_as(steps), rtol=rtol, atol=0.0):
        raise ModelError(
            "tie-kd needs uniform bins (student head='dpm'); the student's bin centres are not evenly spaced"
        )
    edges = flat[0] - width / 2 + width * torch.arange(count + 1, dtype=torch.float64, device=flat.device)
    return edges.float()


def _area_pool(values: Tensor, weights: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Weighted area average of ``values`` to ``size``, and the pooled weight (0 where no weight)."""
    pooled_weight = F.adaptive_avg_pool2d(weights, size)
    pooled = F.adaptive_avg_pool2d(values * weights, size) / pooled_weight.clamp_min(1e-12)
    return pooled, pooled_weight


def dpm_at_resolution(
    depth: Tensor,
    valid: Tensor,
    edges: Tensor,
    sigma: float,
    size: tuple[int, int],
    target: Literal["integrated", "softmax_pdf"] = "integrated",
    mode: Literal["mixture", "depth"] = "mixture",
    band: float | None = None,
) -> tuple[Tensor, Tensor]:
    """The teacher DPM at the student's resolution ``size`` (see the module docstring).

    Args:
        depth: ``(B,1,H,W)`` metric teacher depth; ``valid`` the pixels that count (same shape).
        mode: ``mixture`` (mean of the covered pixels' DPMs) or ``depth`` (DPM of their mean depth).
        band: see :func:`teacher_dpm`.

    Returns:
        ``(B,K,h,w)`` probabilities and a ``(B,1,h,w)`` mask of student pixels covering at least one
        valid teacher pixel.
    """
    if mode not in DPM_RESOLUTIONS:
        raise ConfigError(f"unknown dpm_resolution {mode!r}; expected one of {', '.join(DPM_RESOLUTIONS)}")
    weights = valid.float()
    safe_depth = torch.where(valid, depth.float(), edges[0].to(depth.device, torch.float32))
    height, width = depth.shape[-2:]
    if (height, width) == tuple(size):
        return teacher_dpm(safe_depth, edges, sigma, target, band) * weights, valid
    if mode == "depth":
        pooled_depth, pooled_weight = _area_pool(safe_depth, weights, size)
        inside = pooled_weight > 0
        return teacher_dpm(pooled_depth, edges, sigma, target, band) * inside, inside
    step_h, step_w = height // size[0], width // size[1]
    if step_h * size[0] != height or step_w * size[1] != width:
        # Not an integer factor: pool the full-resolution maps (more memory, same definition).
        probs, pooled_weight = _area_pool(teacher_dpm(safe_depth, edges, sigma, target, band), weights, size)
        return probs, pooled_weight > 0
    # Integer factor: accumulate one strided sub-grid at a time, never holding (B,K,H,W).
    total: Tensor | None = None
    count = torch.zeros_like(weights[..., ::step_h, ::step_w])
    for row in range(step_h):
        for col in range(step_w):
            sub_weight = weights[..., row::step_h, col::step_w]
            part = teacher_dpm(safe_depth[..., row::step_h, col::step_w], edges, sigma, target, band) * sub_weight
            total = part if total is None else total + part
            count = count + sub_weight
    assert total is not None
    return total / count.clamp_min(1.0), count > 0


def dpm_kl(student_logits: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean over ``mask`` of ``KL(target || softmax(logits))``, from log-softmax (stable), float32."""
    with torch.autocast(device_type=student_logits.device.type, enabled=False):
        log_p = F.log_softmax(student_logits.float(), dim=1)
        per_pixel = F.kl_div(log_p, target.float(), reduction="none").sum(dim=1, keepdim=True)
        return masked_mean(per_pixel, mask)


@register_method("tie-kd")
class TIEKD(Method):
    """TIE-KD: the student's DPM matches the teacher's, and its depth matches the teacher's by SSIM."""

    @dataclass
    class Config:
        """Options of ``tie-kd`` (docs/METHODS.md, ``tie-kd``).

        Attributes:
            target: teacher DPM form, ``integrated`` (our default; the paper's description) or
                ``softmax_pdf`` (the authors' released code); see :func:`teacher_dpm`.
            sigma: Gaussian width in metres; ``None`` = 0.15 m for bin ranges up to 10 m, else 0.5 m
                (our default, see :func:`default_sigma`).
            w_dpm: weight of the KL term (reference 1).
            w_depth: weight of the ``1 - SSIM`` term on metric depth (reference 9).
            terms: ``both`` (TIE-KD), ``dpm`` (KL only) or ``depth`` (SSIM only): the paper's ablation.
            ignore_top_rows: input rows at the top left out of both terms (reference KITTI: 110 of
                a 352-row crop; 0 = none).
            dpm_resolution: how the full-size teacher DPM meets the student's DPM resolution:
                ``mixture`` (our default) or ``depth``; see the module docstring.
            align_method: for relative teachers, the per-image fit to ground truth: ``auto``
                (``lstsq_disparity`` for disparity, ``lstsq`` for depth), ``lstsq``,
                ``lstsq_disparity`` or ``median``.
            dpm_band: ``integrated`` target only: bins farther than ``dpm_band`` sigmas from the teacher's
                depth get zero mass instead of less than 6e-16 (8, our default: a ninth of the work with
                257 bins, the same loss to float32 rounding); ``null`` computes every bin.
        """

        target: Literal["integrated", "softmax_pdf"] = "integrated"
        sigma: float | None = None
        w_dpm: float = 1.0
        w_depth: float = 9.0
        terms: Literal["both", "dpm", "depth"] = "both"
        ignore_top_rows: int = 0
        dpm_resolution: Literal["mixture", "depth"] = "mixture"
        align_method: Literal["auto", "lstsq", "lstsq_disparity", "median"] = "auto"
        dpm_band: float | None = 8.0

        def __post_init__(self) -> None:
            if self.sigma is not None and self.sigma <= 0:
                raise ConfigError(f"tie-kd sigma={self.sigma} must be > 0 metres (or null for the default)")
            if self.w_dpm < 0 or self.w_depth < 0:
                raise ConfigError(f"tie-kd weights must be >= 0, got w_dpm={self.w_dpm}, w_depth={self.w_depth}")
            if self.ignore_top_rows < 0:
                raise ConfigError(f"tie-kd ignore_top_rows={self.ignore_top_rows} must be >= 0")
            if self.dpm_band is not None and not self.dpm_band >= 4:
                raise ConfigError(f"tie-kd dpm_band={self.dpm_band} must be at least 4 sigmas (or null for every bin)")
            active = {"both": self.w_dpm + self.w_depth, "dpm": self.w_dpm, "depth": self.w_depth}[self.terms]
            if active == 0:
                raise ConfigError(f"tie-kd terms={self.terms!r} with zero weights trains nothing")

    needs_teacher = True
    needs_ground_truth = False  # only relative teachers need it; checked in setup() and loss()

    # --- checks ------------------------------------------------------------------------------------
    def setup(self, ctx: SetupContext) -> None:
        """Fail early on a student without a DPM head or a relative teacher without ground truth."""
        head = getattr(getattr(ctx.student, "config", None), "head", None)
        if head != "dpm":
            raise ConfigError(
                f"tie-kd trains a student with a depth probability map: set student.head=dpm "
                f"(the recipe's student has head={head!r})"
            )
        kind = getattr(ctx.teacher, "kind", None)
        if kind is None:
            kind = (ctx.sample_batch.get("teacher_kind") or ["metric_depth"])[0]
        if kind != "metric_depth" and "depth" not in ctx.sample_batch:
            raise self._relative_error(kind)

    def _relative_error(self, kind: str) -> ConfigError:
        return ConfigError(
            f"tie-kd needs metric teacher depth, but the teacher outputs {kind} and the training data "
            "has no ground truth to align it with; use a metric teacher (teacher.options.kind, a metric "
            "model) or training data with depth"
        )

    # --- targets ------------------------------------------------------------------------------------
    def metric_teacher_depth(
        self, teacher: TeacherOutput, batch: dict[str, Any], d_max: float
    ) -> tuple[Tensor, Tensor]:
        """Teacher depth in metres (detached) and the images it is usable on ``(B,1,1,1)``.

        Relative teachers are aligned per image to the ground truth; images without any ground-truth
        pixel cannot be aligned and are left out.
        """
        depth = teacher.depth.detach()
        usable = torch.ones(depth.shape[0], 1, 1, 1, dtype=torch.bool, device=depth.device)
        if teacher.kind == "metric_depth":
            return depth, usable
        gt = batch.get("depth")
        if gt is None:
            raise self._relative_error(teacher.kind)
        from depthkd.models.teachers import align_to_ground_truth, alignment_for_kind

        method = self.config.align_method
        if method == "auto":
            method = alignment_for_kind(teacher.kind)
        gt = gt.to(depth.device)
        aligned = align_to_ground_truth(teacher, gt, method=method, max_depth=d_max).depth.detach()
        usable = (gt > 0).flatten(1).any(dim=1).view(-1, 1, 1, 1)
        return aligned, usable

    def pixel_mask(self, depth: Tensor, usable: Tensor) -> Tensor:
        """Teacher pixels that count: valid depth, usable image, below the ignored top rows."""
        mask = valid_mask(depth) & usable
        rows = self.config.ignore_top_rows
        if rows >= depth.shape[-2]:
            raise ConfigError(
                f"tie-kd ignore_top_rows={rows} leaves no row of a {depth.shape[-2]}-row training image"
            )
        if rows:
            keep = torch.arange(depth.shape[-2], device=depth.device) >= rows
            mask = mask & keep.view(1, 1, -1, 1)
        return mask

    # --- the loss -------------------------------------------------------------------------------------
    def loss(
        self,
        batch: dict[str, Any],
        student_out: StudentOutput,
        teacher_out: TeacherOutput | None,
        stage: Stage,
    ) -> LossOutput:
        cfg = self.config
        teacher = self.require_teacher(teacher_out)
        if student_out.logits is None or student_out.bin_centers is None:
            raise ModelError("tie-kd needs the student's DPM logits and bin centres: build it with head='dpm'")
        if teacher.depth.shape != student_out.depth.shape:
            raise ModelError(
                f"tie-kd: teacher map {tuple(teacher.depth.shape)} and student depth "
                f"{tuple(student_out.depth.shape)} differ in shape"
            )
        edges = edges_from_centers(student_out.bin_centers).to(student_out.logits.device)
        d_max = float(edges[-1])
        sigma = cfg.sigma if cfg.sigma is not None else default_sigma(d_max)
        depth, usable = self.metric_teacher_depth(teacher, batch, d_max)
        mask = self.pixel_mask(depth, usable)

        terms: dict[str, Tensor] = {}
        if cfg.terms in ("both", "dpm"):
            size = tuple(student_out.logits.shape[-2:])
            target, small_mask = dpm_at_resolution(
                depth, mask, edges, sigma, size, target=cfg.target, mode=cfg.dpm_resolution,  # type: ignore[arg-type]
                band=cfg.dpm_band,
            )
            terms["kl"] = cfg.w_dpm * dpm_kl(student_out.logits, target, small_mask)
        if cfg.terms in ("both", "depth"):
            terms["ssim"] = cfg.w_depth * self.ssim_term(student_out.depth, depth, mask)
        return LossOutput.from_terms(terms)

    def ssim_term(self, student_depth: Tensor, teacher_depth: Tensor, mask: Tensor) -> Tensor:
        """``1 - SSIM`` over ``mask``, on maps cropped below the ignored rows.

        Cropping (rather than masking) keeps the ignored rows out of the SSIM windows of the rows
        below them too; invalid teacher pixels enter the windows as 0, as ground-truth holes do.
        """
        rows = self.config.ignore_top_rows
        target = torch.where(mask, teacher_depth, torch.zeros_like(teacher_depth))
        return ssim_loss(student_depth[..., rows:, :], target[..., rows:, :], mask[..., rows:, :])


__all__ = [
    "DPM_RESOLUTIONS",
    "DPM_TARGETS",
    "TIEKD",
    "default_sigma",
    "dpm_at_resolution",
    "dpm_kl",
    "edges_from_centers",
    "teacher_dpm",
]
