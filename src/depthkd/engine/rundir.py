"""The run directory: its file names, its checkpoints, the recipe it belongs to and the lock on it.

A directory that holds trained state belongs to the recipe in its ``config.yaml``: a run in it with another
recipe (beyond :data:`RESUME_FREE_KEYS`) is refused before anything is rewritten, and while a run uses the
directory it holds :data:`RUN_LOCK`, so a second run on it stops at once.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import yaml
from filelock import FileLock, Timeout
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_only

from depthkd.config import RecipeConfig, key_within, recipe_from_dict, to_dict, write_run_metadata
from depthkd.distill.base import Stage
from depthkd.engine.module import CHECKPOINT_KEY
from depthkd.errors import ConfigError, DataError

CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
STUDENT_FILE = "student.safetensors"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.yaml"
RUN_LOCK = ".run.lock"

RESUME_FREE_KEYS = (
    "run.resume",
    "run.dir",
    "run.root",
    "run.name",
    "run.export",
    "trainer.accelerator",
    "trainer.strategy",
    "trainer.log_every_n_steps",
    "trainer.loggers",
    "trainer.checkpoint_every_n_steps",
    "data.num_workers",
    "data.val_batch_size",
    "cache.dir",
    "cache.batch_size",
)
"""Recipe keys (a section's name covers its keys) that may differ from a run directory's ``config.yaml``.

They say how to resume (``run.resume``), where the folder is (``run.dir``, ``root``, ``name``: a moved or
renamed run resumes), what is exported after training (``run.export``: the export is redone at every
finish), where the processes run at the same world size (``trainer.accelerator``, ``strategy``), what is
recorded (``log_every_n_steps``, ``loggers``, ``checkpoint_every_n_steps``), and how data or teacher maps are
read without changing them (``data.num_workers``: augmentation is seeded per sample; ``val_batch_size``:
metrics accumulate per image; ``cache.dir``, ``cache.batch_size``: the cache checks the teacher's id).
Everything else must match. Notably ``trainer.max_steps``/``max_epochs`` (the learning-rate schedule's
length is restored from the checkpoint: the engine cannot extend a run) and ``trainer.devices``,
``num_nodes`` and ``data.batch_size`` (they set the global batch, the unit of the resumable data stream).
"""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write checkpoints to a temporary file and rename it: a kill mid-write never corrupts ``last.ckpt``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        super().save_checkpoint(checkpoint, partial, storage_options)
        os.replace(partial, path)


def best_checkpoint_name(stage: Stage, is_last: bool) -> str:
    """``best`` for the last stage, ``best-<stage>`` for earlier ones."""
    return "best" if is_last else f"best-{stage.name}"


def checkpoint_stage(path: Path) -> int:
    """The stage index recorded in an engine checkpoint."""
    return checkpoint_position(path)[0]


def checkpoint_position(path: Path) -> tuple[int, int | None]:
    """``(stage index, logged step)`` of an engine checkpoint.

    The logged step is the ``step`` column of the last metrics row logged before the checkpoint was
    written (Lightning's ``_batches_that_stepped``, restored on resume); ``None`` when not recorded.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise DataError(
            f"{path} holds pickled objects beyond tensors and plain containers; depthkd does not load them "
            f"(unpickling can run code): {str(err).splitlines()[0]}"
        ) from err
    except (RuntimeError, OSError, EOFError) as err:
        raise DataError(f"{path} is not a readable checkpoint (truncated or not a torch file?): {err}") from err
    state = checkpoint.get(CHECKPOINT_KEY) if isinstance(checkpoint, dict) else None
    if state is None:
        raise DataError(f"{path} is not a depthkd training checkpoint (no '{CHECKPOINT_KEY}' record)")
    loop = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.state_dict", {})
    stepped = loop.get("_batches_that_stepped") if isinstance(loop, dict) else None
    return int(state["stage_index"]), None if stepped is None else int(stepped)


def resume_checkpoint(config: RecipeConfig, run_dir: Path) -> Path | None:
    """The checkpoint to resume from under ``run.resume``, or ``None`` for a fresh start."""
    last = run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT
    mode = config.run.resume
    if mode == "auto":
        return last if last.is_file() else None
    if mode == "never":
        if last.is_file():
            raise ConfigError(
                f"run directory {run_dir} already holds {last}; use run.resume=auto to continue it, or "
                "choose another run.name"
            )
        return None
    return Path(mode)


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys to leaf values (lists and empty mappings are leaves)."""
    if not isinstance(data, Mapping) or not data:
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _stored_recipe(path: Path) -> dict[str, Any]:
    """A run directory's ``config.yaml`` as a resolved recipe dict (defaults of newer keys filled in)."""
    try:
        stored = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read {path} to check the recipe against it: {err}") from err
    if not isinstance(stored, dict):
        raise ConfigError(f"{path} is not a recipe mapping; cannot check the recipe against it")
    checked = copy.deepcopy(stored)
    if isinstance(checked.get("run"), dict):
        checked["run"]["resume"] = "auto"  # a stored checkpoint path need not exist any more
    try:
        return to_dict(recipe_from_dict(checked, str(path)))
    except ConfigError:  # written by another depthkd version: compared as written
        return stored


def recipe_changes(stored: Mapping[str, Any], config: RecipeConfig) -> list[str]:
    """``key: old -> new`` for each recipe key that differs from ``stored``, beyond :data:`RESUME_FREE_KEYS`."""
    old, new = _flatten(stored), _flatten(to_dict(config))

    def free(key: str) -> bool:
        return any(key_within(key, section) for section in RESUME_FREE_KEYS)

    def show(values: dict[str, Any], key: str) -> str:
        return json.dumps(values[key], default=str) if key in values else "(absent)"

    keys = sorted(k for k in old.keys() | new.keys() if not free(k) and old.get(k, ...) != new.get(k, ...))
    return [f"{key}: {show(old, key)} -> {show(new, key)}" for key in keys]


def _holds_trained_state(run_dir: Path) -> bool:
    return (run_dir / STUDENT_FILE).is_file() or any((run_dir / CHECKPOINT_DIR).glob("*.ckpt"))


def check_same_recipe(config: RecipeConfig, run_dir: Path) -> None:
    """Refuse to train in a run directory whose checkpoints or student came from another recipe.

    A directory with ``config.yaml`` but no trained state (a run that stopped before its first
    checkpoint) may be started afresh with any recipe.
    """
    if not _holds_trained_state(run_dir):
        return
    fresh = f"to start afresh, choose another run.dir (or run.name), or delete {run_dir}"
    stored = run_dir / CONFIG_FILE
    if not stored.is_file():
        raise ConfigError(
            f"run directory {run_dir} holds checkpoints or a student but no {CONFIG_FILE} to check this recipe "
            f"against; {fresh}"
        )
    changes = recipe_changes(_stored_recipe(stored), config)
    if changes:
        raise ConfigError(
            f"run directory {run_dir} holds a run of another recipe (its {CONFIG_FILE}); resuming it would mix "
            f"the two: {'; '.join(changes)}. Undo these changes to continue that run, or {fresh}"
        )


def _owns_run_dir() -> bool:
    """Whether this process keeps the run directory's records: global rank 0, on node 0 of a launch."""
    return rank_zero_only.rank == 0 and int(os.environ.get("NODE_RANK", "0")) == 0


@contextmanager
def claim_run_dir(config: RecipeConfig, run_dir: Path) -> Iterator[Path | None]:
    """Lock ``run_dir``, check it may take this recipe and write its records; yields the resume checkpoint.

    Only the owning process (:func:`_owns_run_dir`) locks, checks and writes: processes that Lightning's
    DDP launcher starts later, or other ranks, just read the resume point. The lock is an OS file lock,
    so a killed run leaves none behind.
    """
    if not _owns_run_dir():
        yield resume_checkpoint(config, run_dir)
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(run_dir / RUN_LOCK)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ConfigError(
            f"run directory {run_dir} is in use by another run (it holds {run_dir / RUN_LOCK}); wait for that "
            "run to end, or choose another run.dir (or run.name)"
        ) from None
    try:
        resume = resume_checkpoint(config, run_dir)
        check_same_recipe(config, run_dir)
        write_run_metadata(run_dir, config)
        yield resume
    finally:
        lock.release()


__all__ = [
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "LAST_CHECKPOINT",
    "RESUME_FREE_KEYS",
    "RUN_LOCK",
    "STUDENT_FILE",
    "SUMMARY_FILE",
    "AtomicCheckpointIO",
    "best_checkpoint_name",
    "check_same_recipe",
    "checkpoint_position",
    "checkpoint_stage",
    "claim_run_dir",
    "recipe_changes",
    "resume_checkpoint",
]
