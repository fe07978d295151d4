"""The training progress bar, counted in the stage's optimiser steps."""

from __future__ import annotations

from lightning.pytorch.callbacks import RichProgressBar


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


__all__ = ["StepProgressBar"]
