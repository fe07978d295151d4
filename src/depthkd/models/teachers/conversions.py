"""Explicit conversions between teacher output kinds: depth <-> disparity, and alignment to ground truth.

Nothing here guesses: a relative-disparity map is never treated as depth unless one of these functions
is called on it, and the result carries its new kind.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from depthkd.errors import ModelError
from depthkd.models.outputs import TeacherOutput

DEFAULT_EPS = 1e-6
ALIGN_METHODS = ("lstsq", "lstsq_disparity", "median")


def invert(values: torch.Tensor, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """``1 / max(values, eps)``: depth <-> disparity without dividing by zero (sky, holes)."""
    return 1.0 / values.clamp(min=eps)


def to_depth(output: TeacherOutput, eps: float = DEFAULT_EPS) -> TeacherOutput:
    """Depth from any kind: ``relative_disparity`` becomes ``relative_depth`` = 1 / max(disparity, eps).

    Depth kinds are returned unchanged. Inverting relative disparity gives depth only up to an
    unknown scale (and is distorted by the disparity's unknown shift): align to metres afterwards.
    """
    if output.kind != "relative_disparity":
        return output
    return replace(output, depth=invert(output.depth, eps), kind="relative_depth")


def to_disparity(output: TeacherOutput, eps: float = DEFAULT_EPS) -> TeacherOutput:
    """Disparity (inverse depth) from any kind, as ``relative_disparity`` = 1 / max(depth, eps).

    The kinds have no metric disparity, so the inverse of metric depth is labelled relative (its scale
    is in fact known: 1/metres). ``relative_disparity`` is returned unchanged.
    """
    if output.kind == "relative_disparity":
        return output
    return replace(output, depth=invert(output.depth, eps), kind="relative_disparity")


def alignment_for_kind(kind: str, metric: str = "none") -> str:
    """The alignment that turns an output of ``kind`` into metres.

    A scale-and-shift fit in disparity for ``relative_disparity``, in depth for ``relative_depth``;
    ``metric`` (default ``none``) for ``metric_depth``, which needs none.
    """
    return {"relative_disparity": "lstsq_disparity", "relative_depth": "lstsq"}.get(kind, metric)


def align_to_ground_truth(
    output: TeacherOutput,
    gt: torch.Tensor,
    method: str = "lstsq",
    max_depth: float | None = None,
    eps: float = DEFAULT_EPS,
) -> TeacherOutput:
    """Metric depth from a teacher output by a per-image fit to ground truth over ``gt > 0``.

    Args:
        output: a teacher output ``(B,1,H,W)`` of any kind.
        gt: ground-truth depth ``(B,1,H,W)`` in metres, ``0`` where unknown.
        method: ``lstsq`` (scale and shift on depth), ``median`` (scale on depth) or
            ``lstsq_disparity`` (scale and shift on disparity, then inverted), as in docs/PROTOCOLS.md.
            Depth methods refuse ``relative_disparity`` input (call :func:`to_depth` first if that is
            really meant); ``lstsq_disparity`` inverts depth kinds with :func:`to_disparity`.
        max_depth: with ``lstsq_disparity``, aligned disparity is clamped to ``>= 1/max_depth``.

    Returns:
        A ``metric_depth`` output with the same features. Alignment is what makes relative numbers
        comparable; label results with the method used.
    """
    from depthkd.metrics import align_depth

    if method not in ALIGN_METHODS:
        raise ModelError(f"alignment {method!r} is not one of {', '.join(ALIGN_METHODS)}")
    if gt.shape != output.depth.shape:
        raise ModelError(
            f"ground truth {tuple(gt.shape)} and teacher output {tuple(output.depth.shape)} differ in shape"
        )
    if method == "lstsq_disparity":
        source = to_disparity(output, eps)
    elif output.kind == "relative_disparity":
        raise ModelError(
            f"alignment {method!r} works on depth but the teacher outputs relative_disparity; use "
            "method='lstsq_disparity' or convert explicitly with to_depth() first"
        )
    else:
        source = output
    gt = gt.to(device=source.depth.device, dtype=source.depth.dtype)
    aligned, _, _ = align_depth(source.depth, gt, gt > 0, method, max_depth=max_depth)
    return TeacherOutput(depth=aligned, kind="metric_depth", features=output.features)
