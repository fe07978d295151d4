"""The training progress bar, counted in the stage's optimiser steps."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import RichProgressBar

#: What the bar shows beside the step count: logged metric -> its label on the bar.
SHOWN_METRICS = {"train/loss": "loss", "val/abs_rel": "val AbsRel"}


class StepProgressBar(RichProgressBar):
    """Rich progress bar whose total is the stage's step budget (the training stream is endless)."""

    @property
    def total_train_batches(self) -> int | float:
        trainer = self.trainer
        module = trainer.lightning_module
        per_step = 1 if module.stage.manual else trainer.accumulate_grad_batches
        return module.stage_steps * per_step

    def _get_train_description(self, current_epoch: int) -> str:
        return f"training ({self.trainer.lightning_module.stage.name})"

    def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, int | str | float | dict[str, float]]:
        """The training loss and the last validation AbsRel (Lightning's default shows ``v_num``, the
        logger's version, which says nothing about training)."""
        logged = trainer.callback_metrics
        return {label: f"{float(logged[key]):.4g}" for key, label in SHOWN_METRICS.items() if key in logged}


__all__ = ["StepProgressBar"]
