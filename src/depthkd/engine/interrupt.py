"""Ctrl+C during training: finish the current step, save ``last.ckpt``, stop; a second Ctrl+C stops at once.

Lightning's own handling of ``KeyboardInterrupt`` tears the run down wherever it is (perhaps inside an
optimiser step) and exits with status 1 without saving. Here the first SIGINT only raises a flag; the
step in flight completes, the engine saves the checkpoint a later run resumes from (``run.resume=auto``)
and raises :class:`TrainingInterrupted`, which the CLI reports in one line with exit status 130.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from lightning.pytorch.callbacks import Callback


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped at a step boundary on Ctrl+C; the message names the checkpoint saved."""


class StopOnInterrupt(Callback):
    """Turns the first SIGINT into a stop after the current optimiser step (all ranks agree when)."""

    def __init__(self) -> None:
        self.requested = False
        self.stopped = False
        self._previous: Any = None

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self._previous)  # a second Ctrl+C interrupts at once

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        requested = self.requested
        if trainer.world_size > 1:  # every rank stops after the same step, or the next collective hangs
            requested = trainer.strategy.reduce_boolean_decision(requested, all=False)
        if requested:
            self.stopped = True
            trainer.should_stop = True

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self._previous is not None and signal.getsignal(signal.SIGINT) == self._on_sigint:
            signal.signal(signal.SIGINT, self._previous)
        self._previous = None


__all__ = ["StopOnInterrupt", "TrainingInterrupted"]
