"""What Lightning prints and records during a run: its log lines, its warnings and its CSV metrics.

Log lines go through the application's handlers once (:func:`route_lightning_logs`), Lightning advice that
does not apply to this engine is silenced (:func:`quiet_lightning_warnings`), and a resumed stage's
``metrics.csv`` keeps the rows logged up to its checkpoint (:class:`ResumingCSVLogger`).
"""

from __future__ import annotations

import csv
import logging
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


# Lightning advice that does not apply to this engine's design.
_QUIET = (
    r".*module\(s\) in eval mode at the start of training.*",  # frozen parts (ghost decoder, FAM) on purpose
    r".*does not have many workers.*",
    r".*sync_dist=True.*",
    r".*ended before the epoch ended.*",
    r".*`training_step` returned `None`.*",
    r".*Checkpoint directory .* exists and is not empty.*",
    r".*Experiment logs directory .* exists and is not empty.*",
    r".*that has `shuffle=True`.*",
    r".*The number of training batches .* is smaller than the logging interval.*",
    r".*isinstance\(treespec, LeafSpec\).*",
    r".*no pre-optimization state was saved.*",
    r".*Detected call of `lr_scheduler.step\(\)` before `optimizer.step\(\)`.*",  # a skipped first step
    # a resume with another trainer.checkpoint_every_n_steps: the last.ckpt writer has no state worth restoring
    r".*callbacks used to create the checkpoint need to be provided.*",
)


class _DropAdverts(logging.Filter):
    """Drop Lightning's product tips (they are not about the run)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in str(record.msg)


def route_lightning_logs() -> None:
    """Send Lightning's log lines through the application's handlers only.

    ``import lightning`` attaches its own stderr handler, so under the CLI's rich logging every line of
    Lightning's appeared twice; where the root logger is configured, that handler is removed.
    """
    if logging.getLogger().handlers:
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            named = logging.getLogger(name)
            for handler in list(named.handlers):
                if type(handler) is logging.StreamHandler:
                    named.removeHandler(handler)
            named.propagate = True
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        named = logging.getLogger(name)
        if not any(isinstance(f, _DropAdverts) for f in named.filters):
            named.addFilter(_DropAdverts())


@contextmanager
def quiet_lightning_warnings() -> Iterator[None]:
    """Ignore the Lightning warnings of :data:`_QUIET` inside the block (their advice does not apply here)."""
    with warnings.catch_warnings():
        for pattern in _QUIET:
            warnings.filterwarnings("ignore", message=pattern)
        yield


def _rows_through(path: Path, step: int) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of CSV metrics file ``path`` logged at steps ``<= step`` (none if it is absent)."""
    if not path.is_file():
        return [], []
    with path.open(newline="") as file:
        reader = csv.DictReader(file)
        rows = list(reader)
        fields = list(reader.fieldnames or [])

    def logged_at(row: dict[str, str]) -> float:
        try:
            return float(row.get("step") or "nan")
        except ValueError:  # a row cut short by a kill mid-write
            return math.nan

    return fields, [row for row in rows if logged_at(row) <= step]


class _KeepingWriter(ExperimentWriter):
    """Lightning's CSV writer, which clears ``metrics.csv``, with the rows up to ``keep_through`` put back."""

    def __init__(self, log_dir: str, keep_through: int | None) -> None:
        metrics_file = Path(log_dir) / self.NAME_METRICS_FILE
        fields, rows = _rows_through(metrics_file, keep_through) if keep_through is not None else ([], [])
        super().__init__(log_dir)
        if rows:
            self.metrics_keys = sorted(fields)
            with metrics_file.open("w", newline="") as file:
                writer = csv.DictWriter(file, fieldnames=self.metrics_keys)
                writer.writeheader()
                writer.writerows(rows)


class ResumingCSVLogger(CSVLogger):
    """``CSVLogger`` whose ``metrics.csv`` keeps the rows logged at steps ``<= keep_through``.

    A resumed stage passes its checkpoint's step, so the rows from before the resume point survive and
    those a killed attempt logged after it are replaced by the new run's. Rows are flushed as they are
    logged (``flush_logs_every_n_steps=1``), so a SIGKILL loses none of those up to the checkpoint.
    """

    def __init__(self, *args: Any, keep_through: int | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("flush_logs_every_n_steps", 1)
        super().__init__(*args, **kwargs)
        self._keep_through = keep_through

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(self.log_dir, self._keep_through)
        return self._experiment


__all__ = ["ResumingCSVLogger", "quiet_lightning_warnings", "route_lightning_logs"]
