"""``depthkd explain``: what a DPM student believes about depth, pixel by pixel, as one PNG figure.

A student with a depth probability map (``head="dpm"``, TIE-KD) predicts a distribution over depth
bins per pixel, not just a number. The figure shows:

- the image, with the chosen pixels marked A, B, C, ...;
- the teacher's depth (when a teacher is given) and the student's depth, on one colour scale;
- the student's uncertainty: the entropy of its DPM per pixel, normalised by ln K by default (0 = all
  mass in one bin, 1 = uniform over the K bins; ``entropy="nats"`` shows raw nats instead);
- for each chosen pixel, the student's distribution over depth (bars) beside the teacher's DPM (the
  target TIE-KD trains it to match), with the teacher's depth and the student's expected depth marked.

Default pixels: the most uncertain and the most certain student pixel, and the image centre. Wide
spreads and two peaks (depth edges, where a student pixel covers two surfaces) are what to look for.

:func:`compute_explanation` returns the numbers (:class:`Explanation`), :func:`draw_explanation`
draws them, and :func:`explain` does both.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from depthkd.distill.tiekd import default_sigma, dpm_at_resolution, edges_from_centers
from depthkd.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

EntropyUnits = Literal["normalized", "nats"]
DEPTH_CMAP = "turbo_r"
ENTROPY_CMAP = "magma"
LABELS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
MASS_SHOWN = 0.995
"""The distribution plots zoom on the depth range holding this much of both distributions' mass."""


@dataclass
class PixelExplanation:
    """One chosen pixel: its place, why it was chosen, and both distributions there.

    Attributes:
        row, col: input-image coordinates.
        label: the letter marking it in the figure.
        reason: ``most uncertain``, ``most certain``, ``centre`` or ``chosen``.
        student_probs: ``(K,)`` the student's DPM at the pixel (its decoder-resolution cell).
        student_depth: the DPM's expected depth (metres).
        entropy: the DPM's entropy, in the explanation's units.
        teacher_probs: ``(K,)`` the teacher's DPM over the same cell (TIE-KD's target), or ``None``.
        teacher_depth: the teacher's depth at the pixel (metres), or ``None``.
    """

    row: int
    col: int
    label: str
    reason: str
    student_probs: np.ndarray
    student_depth: float
    entropy: float
    teacher_probs: np.ndarray | None = None
    teacher_depth: float | None = None


@dataclass
class Explanation:
    """Everything the figure shows, as arrays.

    Attributes:
        image: ``(H,W,3)`` float RGB in [0, 1].
        depth: ``(H,W)`` the student's depth (metres).
        entropy: ``(h,w)`` the student's DPM entropy at the decoder resolution.
        entropy_units: ``normalized`` (divided by ln K) or ``nats``.
        centers, edges: ``(K,)`` and ``(K+1,)`` the student's bins (metres).
        pixels: the chosen pixels.
        teacher_depth: ``(H,W)`` teacher depth in metres, or ``None``.
        teacher_label: how the teacher's depth was obtained (kind, alignment), or ``None``.
        sigma, target: the teacher DPM's width and form.
        title: shown above the figure.
    """

    image: np.ndarray
    depth: np.ndarray
    entropy: np.ndarray
    entropy_units: EntropyUnits
    centers: np.ndarray
    edges: np.ndarray
    pixels: list[PixelExplanation] = field(default_factory=list)
    teacher_depth: np.ndarray | None = None
    teacher_label: str | None = None
    sigma: float | None = None
    target: str = "integrated"
    title: str = ""


# --------------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------------


def dpm_entropy(probs: Tensor, units: EntropyUnits = "normalized") -> Tensor:
    """Per-pixel entropy ``-sum_k p_k ln p_k`` of ``(B,K,h,w)`` probabilities, as ``(B,1,h,w)``.

    ``normalized`` divides by ln K, so 0 is certain (one bin) and 1 is uniform whatever K is;
    ``nats`` keeps the raw value (at most ln K).
    """
    if units not in ("normalized", "nats"):
        raise ConfigError(f"entropy units {units!r}: expected 'normalized' or 'nats'")
    probs = probs.float()
    plogp = torch.special.xlogy(probs, probs).sum(dim=1, keepdim=True)
    entropy = (-plogp).clamp_min(0.0)  # rounding can leave a one-hot map at -1e-7
    if units == "normalized":
        entropy = entropy / math.log(probs.shape[1])
    return entropy


def default_pixels(entropy: Tensor, image_size: tuple[int, int]) -> list[tuple[int, int, str]]:
    """The most uncertain and most certain cells (mapped to input pixels) and the image centre.

    ``entropy`` is ``(h,w)`` at the decoder resolution; a cell maps to the input pixel at its centre.
    """
    height, width = image_size
    cells_h, cells_w = entropy.shape[-2:]

    def to_input(flat_index: int) -> tuple[int, int]:
        cell_row, cell_col = divmod(flat_index, cells_w)
        return int((cell_row + 0.5) * height / cells_h), int((cell_col + 0.5) * width / cells_w)

    flat = entropy.flatten()
    chosen = [
        (*to_input(int(torch.argmax(flat))), "most uncertain"),
        (*to_input(int(torch.argmin(flat))), "most certain"),
        (height // 2, width // 2, "centre"),
    ]
    unique: list[tuple[int, int, str]] = []
    for row, col, reason in chosen:
        if all((row, col) != (r, c) for r, c, _ in unique):
            unique.append((row, col, reason))
    return unique


def _load_image(image: str | Path | Tensor, size: tuple[int, int] | None) -> tuple[Tensor, str]:
    """``(1,3,H,W)`` float image in [0,1] and a name for it (a ``preds:`` teacher looks it up)."""
    if isinstance(image, (str, Path)):
        from depthkd.io import read_rgb

        tensor, name = read_rgb(image), Path(image).stem
    else:
        tensor, name = image, "image"
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 4 or tensor.shape[:2] != (1, 3) or not tensor.is_floating_point():
        raise DataError(
            f"explain expects one float RGB image (3,H,W) in [0,1], got {tuple(tensor.shape)} {tensor.dtype}"
        )
    if size is not None:
        tensor = F.interpolate(tensor, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
    return tensor.clamp(0.0, 1.0), name


def _load_student(model: nn.Module | str | Path, device: torch.device) -> tuple[nn.Module, str]:
    """The student on ``device`` and a name for the figure's title."""
    if isinstance(model, (str, Path)):
        from depthkd.models import load_student

        return load_student(model, map_location=device), Path(model).name
    config = getattr(model, "config", None)
    return model.to(device), f"{getattr(config, 'backbone', type(model).__name__)} student"


def _predict(student: nn.Module, images: Tensor) -> Any:
    """The student's output in eval mode (BatchNorm statistics), its own mode restored afterwards."""
    was_training = student.training
    student.eval()
    try:
        return student(images)
    finally:
        student.train(was_training)


def _load_teacher(teacher: nn.Module | str | None, device: torch.device) -> nn.Module | None:
    if teacher is None or isinstance(teacher, nn.Module):
        return teacher
    from depthkd.models.teachers import load_teacher

    return load_teacher(teacher, device=device)


def _metric_teacher_depth(
    teacher: nn.Module, images: Tensor, name: str, student_depth: Tensor, d_max: float
) -> tuple[Tensor, str]:
    """Teacher depth in metres and a label; relative teachers are aligned to the student's depth.

    There is no ground truth here, so the student's own depth is the only metric reference: the
    aligned teacher shows the teacher's *shape* of the scene at the student's scale.
    """
    from depthkd.models.teachers import align_to_ground_truth, alignment_for_kind

    out = teacher(images, names=[name])
    spec = getattr(teacher, "spec", type(teacher).__name__)
    if out.kind == "metric_depth":
        return out.depth.detach(), f"teacher {spec}"
    method = alignment_for_kind(out.kind)
    aligned = align_to_ground_truth(out, student_depth.to(out.depth.device), method=method, max_depth=d_max)
    return aligned.depth.detach(), f"teacher {spec} ({out.kind.replace('_', ' ')}, aligned to the student by {method})"


def _explain_pixels(
    chosen: Sequence[tuple[int, int, str]],
    probs: Tensor,
    cell_depth: Tensor,
    entropy: Tensor,
    teacher_probs: Tensor | None,
    teacher_depth: Tensor | None,
    image_size: tuple[int, int],
) -> list[PixelExplanation]:
    """Both distributions at each chosen input pixel (``probs`` ``(K,h,w)``: the student's cells)."""
    height, width = image_size
    cells_h, cells_w = probs.shape[-2:]
    if len(chosen) > len(LABELS):
        raise ConfigError(f"explain shows at most {len(LABELS)} pixels, got {len(chosen)}")
    explained = []
    for label, (row, col, reason) in zip(LABELS, chosen):
        if not (0 <= row < height and 0 <= col < width):
            raise DataError(f"pixel (row {row}, col {col}) is outside the {height}x{width} image")
        cell = (row * cells_h // height, col * cells_w // width)
        explained.append(
            PixelExplanation(
                row=row,
                col=col,
                label=label,
                reason=reason,
                student_probs=probs[:, cell[0], cell[1]].cpu().numpy(),
                student_depth=float(cell_depth[cell]),
                entropy=float(entropy[cell]),
                teacher_probs=None if teacher_probs is None else teacher_probs[0, :, cell[0], cell[1]].cpu().numpy(),
                teacher_depth=None if teacher_depth is None else float(teacher_depth[0, 0, row, col]),
            )
        )
    return explained


@torch.no_grad()
def compute_explanation(
    model: nn.Module | str | Path,
    image: str | Path | Tensor,
    teacher: nn.Module | str | None = None,
    pixels: Sequence[tuple[int, int]] | None = None,
    *,
    sigma: float | None = None,
    target: Literal["integrated", "softmax_pdf"] = "integrated",
    entropy: EntropyUnits = "normalized",
    size: tuple[int, int] | None = None,
    device: str | torch.device = "cpu",
) -> Explanation:
    """The numbers behind the figure (see :func:`explain` for the arguments)."""
    device = torch.device(device)
    student, model_name = _load_student(model, device)
    images, name = _load_image(image, size)
    images = images.to(device)
    height, width = images.shape[-2:]
    out = _predict(student, images)
    if out.probs is None or out.bin_centers is None:
        head = getattr(getattr(student, "config", None), "head", "unknown")
        raise ConfigError(
            f"explain needs a student with a depth probability map (head='dpm'); {model_name} has head {head!r}"
        )
    edges = edges_from_centers(out.bin_centers).to(device)
    centers = out.bin_centers[0].float()
    d_max = float(edges[-1])
    sigma = sigma if sigma is not None else default_sigma(d_max)
    probs = out.probs.float()
    entropy_map = dpm_entropy(probs, entropy)[0, 0]
    cells_h, cells_w = probs.shape[-2:]
    cell_depth = (probs * centers.view(1, -1, 1, 1)).sum(dim=1)[0]

    teacher_module = _load_teacher(teacher, device)
    teacher_depth = teacher_probs = None
    teacher_label = None
    if teacher_module is not None:
        teacher_depth, teacher_label = _metric_teacher_depth(teacher_module, images, name, out.depth, d_max)
        valid = torch.isfinite(teacher_depth) & (teacher_depth > 0)
        teacher_probs, _ = dpm_at_resolution(teacher_depth, valid, edges, sigma, (cells_h, cells_w), target=target)

    if pixels is None:
        chosen = default_pixels(entropy_map, (height, width))
    else:
        chosen = [(int(r), int(c), "chosen") for r, c in pixels]
    explained = _explain_pixels(
        chosen, probs[0], cell_depth, entropy_map, teacher_probs, teacher_depth, (height, width)
    )
    units = "normalised by ln K" if entropy == "normalized" else "nats"
    title = (
        f"{model_name}: depth probability map of {centers.numel()} bins on "
        f"[{float(edges[0]):g}, {d_max:g}] m; uncertainty = entropy ({units})"
    )
    return Explanation(
        image=images[0].permute(1, 2, 0).cpu().numpy(),
        depth=out.depth[0, 0].float().cpu().numpy(),
        entropy=entropy_map.cpu().numpy(),
        entropy_units=entropy,
        centers=centers.cpu().numpy(),
        edges=edges.cpu().numpy(),
        pixels=explained,
        teacher_depth=None if teacher_depth is None else teacher_depth[0, 0].float().cpu().numpy(),
        teacher_label=teacher_label,
        sigma=sigma if teacher_module is not None else None,
        target=target,
        title=title,
    )


# --------------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------------


def _depth_range(*maps: np.ndarray | None) -> tuple[float, float]:
    """One colour scale for several depth maps: 2nd-98th percentile of their valid pixels."""
    values = np.concatenate([m[np.isfinite(m) & (m > 0)] for m in maps if m is not None])
    if values.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(values, [2, 98])
    return float(low), float(max(high, low + 1e-3))


def _zoom(pixel: PixelExplanation, centers: np.ndarray, width: float) -> tuple[float, float]:
    """The depth interval holding :data:`MASS_SHOWN` of both distributions, and both markers."""
    tail = (1.0 - MASS_SHOWN) / 2
    lows, highs = [pixel.student_depth], [pixel.student_depth]
    for probs in (pixel.student_probs, pixel.teacher_probs):
        if probs is None:
            continue
        cumulative = np.cumsum(probs) / max(float(probs.sum()), 1e-12)
        lows.append(float(centers[np.searchsorted(cumulative, tail)]))
        highs.append(float(centers[min(np.searchsorted(cumulative, 1 - tail), len(centers) - 1)]))
    if pixel.teacher_depth is not None:
        lows.append(pixel.teacher_depth)
        highs.append(pixel.teacher_depth)
    low = max(min(lows) - 3 * width, float(centers[0]) - width / 2)
    high = min(max(highs) + 3 * width, float(centers[-1]) + width / 2)
    return low, high


def _mark(axis: Any, pixels: Sequence[PixelExplanation]) -> None:
    for pixel in pixels:
        axis.plot(
            pixel.col, pixel.row, marker="o", markersize=9, markerfacecolor="none", markeredgecolor="white",
            markeredgewidth=2,
        )
        axis.plot(pixel.col, pixel.row, marker="o", markersize=3, color="black")
        axis.annotate(
            pixel.label,
            (pixel.col, pixel.row),
            xytext=(6, -6),
            textcoords="offset points",
            color="white",
            fontsize=11,
            fontweight="bold",
            bbox={"boxstyle": "round,pad=0.15", "facecolor": "black", "alpha": 0.6, "edgecolor": "none"},
        )


def _draw_maps(subfigure: Any, explanation: Explanation) -> None:
    """Image, teacher depth, student depth and uncertainty, with colour bars."""
    from matplotlib import cm
    from matplotlib.colors import Normalize

    from depthkd.io import colorize_depth

    height, width = explanation.depth.shape
    vmin, vmax = _depth_range(explanation.depth, explanation.teacher_depth)
    depth_scale = cm.ScalarMappable(norm=Normalize(vmin, vmax), cmap=DEPTH_CMAP)
    panels = ["image", "teacher", "student", "entropy"]
    if explanation.teacher_depth is None:
        panels.remove("teacher")
    columns = 2 if width > 2 * height else len(panels)
    rows = math.ceil(len(panels) / columns)
    axes = subfigure.subplots(rows, columns, squeeze=False).flatten()
    for axis in axes[len(panels):]:
        axis.set_visible(False)
    # The entropy's own range, not [0, 1]: a half-trained student varies within a narrow band.
    entropy_min, entropy_max = float(explanation.entropy.min()), float(explanation.entropy.max())
    entropy_max = max(entropy_max, entropy_min + 1e-3)
    entropy_full = np.repeat(
        np.repeat(explanation.entropy, math.ceil(height / explanation.entropy.shape[0]), axis=0),
        math.ceil(width / explanation.entropy.shape[1]),
        axis=1,
    )[:height, :width]
    for axis, kind in zip(axes, panels):
        axis.set_xticks([])
        axis.set_yticks([])
        if kind == "image":
            axis.imshow(explanation.image)
            axis.set_title("image and chosen pixels")
            _mark(axis, explanation.pixels)
        elif kind == "teacher":
            axis.imshow(colorize_depth(explanation.teacher_depth, vmin, vmax, DEPTH_CMAP))
            axis.set_title(explanation.teacher_label or "teacher", fontsize=9)
            subfigure.colorbar(depth_scale, ax=axis, label="depth (m)", shrink=0.85)
        elif kind == "student":
            axis.imshow(colorize_depth(explanation.depth, vmin, vmax, DEPTH_CMAP))
            axis.set_title("student depth (expected value of its DPM)")
            subfigure.colorbar(depth_scale, ax=axis, label="depth (m)", shrink=0.85)
            _mark(axis, explanation.pixels)
        else:
            shown = axis.imshow(
                entropy_full, cmap=ENTROPY_CMAP, vmin=entropy_min, vmax=entropy_max, interpolation="nearest"
            )
            normalized = explanation.entropy_units == "normalized"
            units = "entropy / ln K  (0 certain, 1 uniform)" if normalized else "entropy (nats)"
            axis.set_title("student uncertainty: DPM entropy")
            subfigure.colorbar(shown, ax=axis, label=units, shrink=0.85)
            _mark(axis, explanation.pixels)


def _draw_distributions(subfigure: Any, explanation: Explanation) -> None:
    """One plot per chosen pixel: student bars, teacher DPM, depth markers."""
    centers = explanation.centers
    bin_width = float(explanation.edges[1] - explanation.edges[0])
    axes = subfigure.subplots(1, max(1, len(explanation.pixels)), squeeze=False)[0]
    units = "" if explanation.entropy_units == "normalized" else " nats"
    for axis, pixel in zip(axes, explanation.pixels):
        axis.bar(centers, pixel.student_probs, width=bin_width * 0.9, color="tab:blue", alpha=0.55, label="student DPM")
        if pixel.teacher_probs is not None:
            axis.step(centers, pixel.teacher_probs, where="mid", color="tab:orange", linewidth=1.8,
                      label=f"teacher DPM ({explanation.target}, σ={explanation.sigma:g} m)")
        if pixel.teacher_depth is not None:
            axis.axvline(pixel.teacher_depth, color="tab:orange", linestyle="--", linewidth=1.5,
                         label=f"teacher depth {pixel.teacher_depth:.2f} m")
        axis.axvline(pixel.student_depth, color="tab:blue", linewidth=1.5,
                     label=f"student expected {pixel.student_depth:.2f} m")
        axis.set_xlim(*_zoom(pixel, centers, bin_width))
        axis.set_ylim(bottom=0)
        axis.set_xlabel("depth (m)")
        axis.set_ylabel("probability")
        axis.set_title(
            f"{pixel.label}: row {pixel.row}, col {pixel.col} ({pixel.reason})\nentropy {pixel.entropy:.2f}{units}",
            fontsize=10,
        )
        axis.legend(fontsize=7, loc="upper right")
        axis.grid(alpha=0.3)


def draw_explanation(explanation: Explanation, output: str | Path, dpi: int = 110) -> Path:
    """Draw ``explanation`` into a PNG at ``output`` (folders created); returns the path.

    Uses matplotlib's object API (no pyplot), so it works in any backend and thread.
    """
    from matplotlib.figure import Figure

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    height, width = explanation.depth.shape
    map_panels = 4 if explanation.teacher_depth is not None else 3
    wide = width > 2 * height
    columns = 2 if wide else map_panels
    map_rows = math.ceil(map_panels / columns)
    panel_width = 4.2 if not wide else 6.5
    fig_width = max(panel_width * columns, 4.2 * max(1, len(explanation.pixels)))
    map_height = map_rows * panel_width * height / width + 0.8 * map_rows
    figure = Figure(figsize=(fig_width, map_height + 3.6), layout="constrained")
    top, bottom = figure.subfigures(2, 1, height_ratios=[map_height, 3.6])
    _draw_maps(top, explanation)
    _draw_distributions(bottom, explanation)
    figure.suptitle(explanation.title, fontsize=11)
    figure.savefig(output, dpi=dpi)
    logger.info("explanation written to %s", output)
    return output


def explain(
    model: nn.Module | str | Path,
    image: str | Path | Tensor,
    teacher: nn.Module | str | None = None,
    pixels: Sequence[tuple[int, int]] | None = None,
    output: str | Path = "explain.png",
    *,
    sigma: float | None = None,
    target: Literal["integrated", "softmax_pdf"] = "integrated",
    entropy: EntropyUnits = "normalized",
    size: tuple[int, int] | None = None,
    device: str | torch.device = "cpu",
    dpi: int = 110,
) -> Path:
    """Write a PNG explaining a DPM student's prediction on one image; returns its path.

    Args:
        model: a student (``head="dpm"``) or the path of its ``.safetensors`` checkpoint.
        image: an image file, or a ``(3,H,W)`` float tensor in [0, 1].
        teacher: a teacher spec (``hf:``, ``onnx:``, ``torch:``, ``preds:``, built-in name) or a loaded
            teacher; adds its depth and DPM. ``preds:`` teachers look the image up by its file stem.
            A relative teacher is aligned to the student's depth (no ground truth here), and says so.
        pixels: ``(row, col)`` input pixels to explain; default: most uncertain, most certain, centre.
        output: the PNG to write.
        sigma: the teacher DPM's width; ``None`` = the TIE-KD default for the student's range.
        target: the teacher DPM's form, ``integrated`` or ``softmax_pdf`` (as in training).
        entropy: ``normalized`` (our default: divided by ln K, comparable across bin counts) or ``nats``.
        size: resize the image to ``(H, W)`` first (e.g. the training resolution); ``None`` keeps it.
        device: where the student (and teacher) run.
        dpi: resolution of the PNG.
    """
    explanation = compute_explanation(
        model, image, teacher, pixels, sigma=sigma, target=target, entropy=entropy, size=size, device=device
    )
    return draw_explanation(explanation, output, dpi=dpi)


__all__ = [
    "Explanation",
    "PixelExplanation",
    "compute_explanation",
    "default_pixels",
    "dpm_entropy",
    "draw_explanation",
    "explain",
]
