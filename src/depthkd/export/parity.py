"""Does the ONNX graph compute what the PyTorch model computes? Checked three ways, loudly.

1. ``onnx.checker.check_model`` with full shape inference: the file is a valid graph.
2. Maximum absolute depth difference between onnxruntime and PyTorch on random images and on
   simulated scenes (and, for dynamic graphs, at a second size with a batch of two):
   ``max|d_onnx - d_torch| <= atol + rtol * max|d_torch|``.
3. Metric parity: AbsRel and d1 of both predictions against the simulator's ground truth differ by
   at most ``metric_atol`` (catches errors small per pixel but systematic, e.g. a shifted resize).

Any failure raises :class:`~depthkd.errors.ModelError` naming the check, the measured value and the
tolerance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from depthkd.errors import ModelError
from depthkd.export.graph import GraphInput
from depthkd.export.runtime import run_depth
from depthkd.metrics import MetricAccumulator

TorchDepthFn = Callable[[torch.Tensor], torch.Tensor]
PARITY_METRICS = ("abs_rel", "d1")


@dataclass(frozen=True)
class Tolerance:
    """How far the ONNX graph may stray from PyTorch.

    Attributes:
        atol: absolute depth difference allowed (in the model's output unit, metres for students).
        rtol: allowed difference relative to the largest reference depth.
        metric_atol: allowed difference of AbsRel and of d1 (a fraction) on simulated scenes.
    """

    atol: float
    rtol: float
    metric_atol: float

    def allowed(self, reference: np.ndarray) -> float:
        """The largest absolute difference accepted against ``reference``."""
        return self.atol + self.rtol * float(np.abs(reference).max(initial=0.0))


# Our defaults: float32 graphs agree to ~1e-5 m in practice, so 1e-4 leaves room for kernel
# differences while catching real errors; float16 keeps ~3 significant digits.
DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(atol=1e-4, rtol=1e-4, metric_atol=1e-3),
    "fp16": Tolerance(atol=1e-2, rtol=1e-2, metric_atol=1e-2),
}


@dataclass
class ParityResult:
    """What the parity checks measured.

    Attributes:
        max_abs_diff: per image set (``random``, ``simulated``, ``dynamic ...``) the largest
            ``|d_onnx - d_torch|``.
        allowed_diff: per image set, the tolerance it was held to.
        metrics_torch, metrics_onnx: AbsRel and d1 of each prediction on the simulated scenes.
        metric_label: the protocol label those metrics were computed under.
        passed: every check held.
    """

    max_abs_diff: dict[str, float] = field(default_factory=dict)
    allowed_diff: dict[str, float] = field(default_factory=dict)
    metrics_torch: dict[str, float] = field(default_factory=dict)
    metrics_onnx: dict[str, float] = field(default_factory=dict)
    metric_label: str = ""
    passed: bool = False


def check_graph(path: str | Path) -> None:
    """Validate the ONNX file (structure, types, shape inference); :class:`ModelError` if invalid."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise ModelError(f"ONNX checker rejected {path}: {err}") from err


def _torch_depth(model_fn: TorchDepthFn, images: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return model_fn(images).float().cpu().numpy()


def compare_outputs(
    model_fn: TorchDepthFn,
    session: Any,
    graph_input: GraphInput,
    images: torch.Tensor,
    tolerance: Tolerance,
    name: str,
    result: ParityResult,
) -> tuple[np.ndarray, np.ndarray]:
    """Run both on ``images``, record the difference in ``result``; raise if beyond tolerance."""
    reference = _torch_depth(model_fn, graph_input.reference_images(images))
    produced = run_depth(session, graph_input.to_graph(images))
    if produced.shape != reference.shape:
        raise ModelError(
            f"ONNX output shape {produced.shape} differs from PyTorch's {reference.shape} on the {name} images"
        )
    if not np.isfinite(produced).all():
        raise ModelError(f"ONNX output holds NaN or inf on the {name} images")
    diff = float(np.abs(produced - reference).max())
    allowed = tolerance.allowed(reference)
    result.max_abs_diff[name] = diff
    result.allowed_diff[name] = allowed
    if not diff <= allowed:
        raise ModelError(
            f"ONNX/PyTorch mismatch on the {name} images: max |difference| = {diff:.3g} exceeds the tolerance "
            f"{allowed:.3g} (atol {tolerance.atol:g} + rtol {tolerance.rtol:g} x max depth); the exported graph "
            "does not compute what the model does"
        )
    return reference, produced


def score(
    depth: np.ndarray, gt: torch.Tensor, protocol: str, align: str
) -> tuple[dict[str, float], str]:
    """AbsRel and d1 of a batch of predictions against ground truth, and the protocol label."""
    accumulator = MetricAccumulator(protocol=protocol, align=align)
    accumulator.update(torch.from_numpy(depth), gt)
    metrics = accumulator.compute()
    return {key: float(metrics[key]) for key in PARITY_METRICS}, accumulator.label()


def compare_metrics(
    reference: np.ndarray,
    produced: np.ndarray,
    gt: torch.Tensor,
    protocol: str,
    align: str,
    tolerance: Tolerance,
    result: ParityResult,
) -> None:
    """Metric parity on simulated scenes (see module docs); raise if AbsRel or d1 drift."""
    result.metrics_torch, result.metric_label = score(reference, gt, protocol, align)
    result.metrics_onnx, _ = score(produced, gt, protocol, align)
    for key in PARITY_METRICS:
        drift = abs(result.metrics_onnx[key] - result.metrics_torch[key])
        if not drift <= tolerance.metric_atol:
            raise ModelError(
                f"ONNX/PyTorch metric mismatch under {result.metric_label}: {key} {result.metrics_onnx[key]:.5f} "
                f"(ONNX) vs {result.metrics_torch[key]:.5f} (PyTorch), difference {drift:.3g} > {tolerance.metric_atol:g}"
            )
