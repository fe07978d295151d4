"""Final scores: the exported student and the teacher over the whole validation set, outside Lightning."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import Dataset

from depthkd.config import RecipeConfig
from depthkd.engine import data as engine_data
from depthkd.engine.module import teacher_alignment
from depthkd.errors import DataError
from depthkd.metrics import MetricAccumulator
from depthkd.progress import track


def score_on_validation(
    predict: Callable[[dict[str, Any]], torch.Tensor],
    val_set: Dataset,
    config: RecipeConfig,
    align: str,
    description: str,
) -> tuple[dict[str, float], str]:
    """Metrics of ``predict(batch) -> depth`` over the whole validation set (this process, no Lightning)."""
    accumulator = MetricAccumulator(config.eval.protocol, align)
    loader = engine_data.val_loader(val_set, config.data, 0, 1)
    with torch.no_grad():
        for batch in track(loader, description):
            if "depth" not in batch:
                raise DataError("validation data has no ground-truth depth; set data.val to a dataset with depth")
            accumulator.update(predict(batch).float().cpu(), batch["depth"].float(), batch.get("name"))
    return accumulator.compute(), accumulator.label()


def final_metrics(
    student: torch.nn.Module, val_set: Dataset | None, config: RecipeConfig, device: torch.device
) -> tuple[dict[str, float] | None, str | None]:
    """Score the exported weights on the whole validation set."""
    if val_set is None:
        return None, None
    student = student.to(device).eval()
    return score_on_validation(
        lambda batch: student(batch["image"].to(device)).depth, val_set, config, config.eval.align,
        "scoring the exported student",
    )


def teacher_final_metrics(
    teacher: Any, val_set: Dataset | None, config: RecipeConfig, device: torch.device
) -> dict[str, float] | None:
    """The teacher's score on the same validation data (for runs too short to have validated)."""
    if teacher is None or val_set is None:
        return None
    align = teacher_alignment(teacher.kind, config.eval.teacher_align, config.eval.align)
    metrics, _ = score_on_validation(
        lambda batch: teacher(batch["image"].to(device), names=batch.get("name")).depth, val_set, config, align,
        "scoring the teacher",
    )
    return metrics


__all__ = ["final_metrics", "score_on_validation", "teacher_final_metrics"]
