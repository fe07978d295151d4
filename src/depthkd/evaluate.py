"""Score a model (student, teacher, or saved predictions) on a dataset under a named protocol.

Every number leaves this module with the protocol and alignment names beside it, because crops, caps and
alignment are what make depth numbers comparable or not (docs/PROTOCOLS.md).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from depthkd.errors import ConfigError
from depthkd.inference import DepthPredictor, load_predictor
from depthkd.metrics import MetricAccumulator, metrics_table, protocol_label
from depthkd.progress import track

log = logging.getLogger(__name__)

#: Which alignments make sense for each output kind: relative outputs are never scored as metres.
ALLOWED_ALIGNMENTS: dict[str, tuple[str, ...]] = {
    "metric_depth": ("none", "median", "lstsq", "lstsq_disparity"),
    "relative_depth": ("median", "lstsq"),
    "relative_disparity": ("lstsq_disparity",),
}


@dataclass
class EvaluationResult:
    """Metrics of one model on one dataset, with everything needed to compare them honestly."""

    model: str
    data: str
    protocol: str
    align: str
    label: str
    flip_tta: bool
    count: int
    skipped: list[str]
    metrics: dict[str, float]
    scale_mean: float | None = None
    scale_std: float | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    def table(self) -> str:
        """A Markdown table of the nine metrics, titled with the protocol label."""
        lines = [f"{self.model} on {self.data}", f"protocol: {self.label}; images: {self.count}"]
        if self.skipped:
            lines.append(f"left out (no valid pixel): {len(self.skipped)}")
        if self.scale_mean is not None:
            lines.append(f"alignment scale: {self.scale_mean:.4g} ± {self.scale_std:.2g}")
        return "\n".join(lines + ["", *metrics_table([(None, self.metrics)])])


def check_alignment(kind: str, align: str, spec: str) -> None:
    """Refuse to score relative outputs as metres (the field's most common mistake)."""
    allowed = ALLOWED_ALIGNMENTS.get(kind)
    if allowed is None:
        raise ConfigError(f"{spec}: unknown output kind {kind!r}")
    if align not in allowed:
        raise ConfigError(
            f"{spec} outputs {kind}; alignment {align!r} does not apply to it. "
            f"Choose --align {' or '.join(allowed)}."
        )


def _gt_crop_label(dataset: Any) -> str | None:
    kb_crop = getattr(dataset, "kb_crop", None)
    if kb_crop is None:
        return None
    return "KB-cropped" if kb_crop else "full-res"


def evaluate_dataset(
    predictor: DepthPredictor,
    dataset: Any,
    protocol: str = "nyu",
    align: str = "none",
    flip_tta: bool = False,
    batch_size: int = 1,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    min_depth: float | None = None,
    max_depth: float | None = None,
    data_name: str = "",
    description: str = "evaluate",
    align_corners: bool = False,
) -> EvaluationResult:
    """Run ``predictor`` over ``dataset`` (items with ``image`` and ``depth``) and score it per image."""
    return evaluate_protocols(
        predictor, dataset, (protocol,), align=align, flip_tta=flip_tta, batch_size=batch_size,
        num_workers=num_workers, device=device, min_depth=min_depth, max_depth=max_depth, data_name=data_name,
        description=description, align_corners=align_corners,
    )[protocol]


def evaluate_protocols(
    predictor: DepthPredictor,
    dataset: Any,
    protocols: Sequence[str],
    align: str = "none",
    flip_tta: bool = False,
    batch_size: int = 1,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    min_depth: float | None = None,
    max_depth: float | None = None,
    data_name: str = "",
    description: str = "evaluate",
    align_corners: bool = False,
) -> dict[str, EvaluationResult]:
    """:func:`evaluate_dataset` under several protocols at once: one pass over the data and the model,
    one result per protocol (``seconds`` is the pass's). ``align_corners`` is the convention of the resize
    of a prediction of another size than its ground truth (:func:`depthkd.metrics.resize_to`)."""
    check_alignment(predictor.kind, align, predictor.spec)
    accumulators = {
        protocol: MetricAccumulator(protocol=protocol, align=align, min_depth=min_depth, max_depth=max_depth,
                                    align_corners=align_corners)
        for protocol in dict.fromkeys(protocols)
    }
    from depthkd.data import collate

    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate)
    start = time.perf_counter()
    for batch in track(loader, description):
        if "depth" not in batch:
            raise ConfigError(f"{data_name or 'the dataset'} has no ground-truth depth to evaluate against")
        images = batch["image"].to(device)
        pred = predictor(images, names=batch.get("name"), flip=flip_tta).float().cpu()
        for i, name in enumerate(batch["name"]):
            for accumulator in accumulators.values():
                accumulator.update(pred[i], batch["depth"][i], name=name)
    seconds = time.perf_counter() - start
    results = {}
    for protocol, accumulator in accumulators.items():
        summary = accumulator.summary()
        results[protocol] = EvaluationResult(
            model=predictor.spec,
            data=data_name,
            protocol=protocol,
            align=align,
            label=protocol_label(protocol, align, gt_crop=_gt_crop_label(dataset), align_corners=align_corners),
            flip_tta=flip_tta,
            count=summary["count"],
            skipped=list(summary["skipped"]),
            metrics=dict(summary["metrics"]),
            scale_mean=summary.get("scale_mean"),
            scale_std=summary.get("scale_std"),
            seconds=seconds,
        )
    return results


def evaluate(
    model: str,
    data: str,
    protocol: str = "nyu",
    align: str = "none",
    flip_tta: bool = False,
    batch_size: int = 1,
    num_workers: int = 0,
    device: str = "cpu",
    min_depth: float | None = None,
    max_depth: float | None = None,
    output: str | Path | None = None,
    align_corners: bool = False,
) -> EvaluationResult:
    """Evaluate a student checkpoint, a teacher spec or ``preds:DIR`` on a data spec.

    Args:
        model: ``student.safetensors``, ``hf:DIR``, ``onnx:FILE``, ``torch:FILE``, ``preds:DIR`` or a
            built-in teacher name.
        data: a data spec (see :func:`depthkd.data.dataset_from_spec`).
        output: where to write the JSON result (protocol and alignment names included).
        align_corners: resize predictions of another size than the ground truth with
            ``align_corners=True`` (ZoeDepth's and AdaBins' evaluation) instead of ``False``.
    """
    from depthkd.data import dataset_from_spec

    dataset = dataset_from_spec(data)
    predictor = load_predictor(model, device=device, align_corners=align_corners)
    result = evaluate_dataset(
        predictor,
        dataset,
        protocol=protocol,
        align=align,
        flip_tta=flip_tta,
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
        min_depth=min_depth,
        max_depth=max_depth,
        data_name=data,
        align_corners=align_corners,
    )
    if output is not None:
        result.save_json(output)
    return result
