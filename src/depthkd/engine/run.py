"""``train`` and ``distill``: a recipe in, a trained and exported student out.

The run directory (``run.dir`` or ``<run.root>/<run.name>``) receives::

    config.yaml            the resolved recipe
    environment.json       package versions and git revision
    checkpoints/last.ckpt  resume point (every ``trainer.checkpoint_every_n_steps`` and at stage ends)
    checkpoints/best.ckpt  best validation score of the last stage (best-<stage>.ckpt for earlier ones)
    logs/<stage>/          CSV metrics; tensorboard/<stage>/ TensorBoard events
    student.safetensors    the exported student (``save_student``: loadable by evaluate, predict, torch:)
    summary.json           final validation metrics of the student and the teacher, steps, skips
    .run.lock              held while a run uses the directory (a second run on it stops at once)

Stages declared by the method run one after another, each with its own Lightning ``Trainer`` and
optimiser(s); ``run.resume: auto`` continues from ``last.ckpt`` inside whichever stage it was written.
A directory that holds trained state belongs to the recipe in its ``config.yaml``: a run in it with another
recipe (beyond :data:`RESUME_FREE_KEYS`) is refused before anything is rewritten. A resumed stage keeps
the CSV rows logged up to its checkpoint and replaces the later ones.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import json
import logging
import math
import os
import pickle
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from filelock import FileLock, Timeout
from lightning.pytorch.callbacks import Callback, EMAWeightAveraging, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader, Dataset

from depthkd.config import RecipeConfig, load_recipe, recipe_from_dict, to_dict, write_run_metadata
from depthkd.distill.base import CombinedMethod, Method, SetupContext, Stage
from depthkd.distill.registry import build_method
from depthkd.engine import data as engine_data
from depthkd.engine.module import CHECKPOINT_KEY, DistillModule
from depthkd.errors import ConfigError, DataError
from depthkd.metrics import MetricAccumulator
from depthkd.progress import progress_enabled, track

logger = logging.getLogger(__name__)

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

_TEACHER_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

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


@dataclass
class RunResult:
    """What a finished run produced.

    Attributes:
        run_dir: the run directory.
        student_path: the exported student (``None`` on non-zero ranks of a multi-process run).
        metrics: the exported student's validation metrics (``None`` without validation data).
        teacher_metrics: the teacher's score on the same data (``None`` without a teacher).
        protocol: the label of the validation protocol.
        last_checkpoint, best_checkpoint: Lightning checkpoints (resume / best by the monitor).
        stages: per stage its name and optimiser steps.
        skipped_batches: batches skipped for a non-finite loss.
    """

    run_dir: Path
    student_path: Path | None
    metrics: dict[str, float] | None
    teacher_metrics: dict[str, float] | None
    protocol: str | None
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    stages: list[dict[str, Any]] = field(default_factory=list)
    skipped_batches: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly copy."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write checkpoints to a temporary file and rename it: a kill mid-write never corrupts ``last.ckpt``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        super().save_checkpoint(checkpoint, partial, storage_options)
        os.replace(partial, path)


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


# ----------------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------------


def build_recipe_method(config: RecipeConfig) -> Method:
    """The recipe's method, combined with ``method.add`` terms as a weighted sum."""
    lead = build_method(config.method.name, config.method.options)
    if not config.method.add:
        if config.method.weight != 1.0:
            raise ConfigError("method.weight only matters with method.add; leave it at 1.0 or add methods")
        return lead
    parts = [lead] + [build_method(t.name, t.options) for t in config.method.add]
    weights = [config.method.weight] + [t.weight for t in config.method.add]
    return CombinedMethod(parts, weights)


def resolve_device(config: RecipeConfig) -> torch.device:
    """The device this process trains on (where the teacher is loaded), from the trainer settings."""
    accelerator = config.trainer.accelerator
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if accelerator == "cpu":
        return torch.device("cpu")
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError(f"trainer.accelerator={accelerator!r} but no CUDA device is available")
        return torch.device("cuda", local_rank)
    if accelerator == "mps" or (accelerator == "auto" and torch.backends.mps.is_available()):
        return torch.device("mps")
    return torch.device("cpu")


def world_size(config: RecipeConfig) -> int:
    """Processes in the run: ``devices x num_nodes`` (``auto`` devices: all visible GPUs, else 1)."""
    devices = config.trainer.devices
    if isinstance(devices, str):
        if devices == "auto" or devices == "-1":
            count = torch.cuda.device_count() if resolve_device(config).type == "cuda" else 1
        else:
            count = len([d for d in devices.split(",") if d.strip()]) or 1
    else:
        count = devices if devices > 0 else max(1, torch.cuda.device_count())
    return max(1, count) * config.trainer.num_nodes


def stage_steps(stage: Stage, config: RecipeConfig, num_items: int) -> int:
    """Optimiser steps of ``stage``: its own, else ``trainer.max_steps``, else epochs x steps per epoch."""
    if stage.steps is not None:
        return stage.steps
    if config.trainer.max_steps is not None:
        return config.trainer.max_steps
    assert config.trainer.max_epochs is not None
    batches = math.ceil(num_items / (config.data.batch_size * world_size(config)))
    per_step = 1 if stage.manual else config.trainer.accumulate_grad_batches
    return config.trainer.max_epochs * max(1, math.ceil(batches / per_step))


def load_recipe_teacher(config: RecipeConfig, method: Method, device: torch.device) -> Any:
    """The recipe's teacher on ``device``, or ``None`` when the method needs none."""
    if not method.needs_teacher:
        if config.teacher.spec:
            logger.info("method %r does not use a teacher; teacher.spec is ignored", method.name)
        return None
    if not config.teacher.spec:
        raise ConfigError(f"method {method.name!r} needs a teacher: set teacher.spec (e.g. hf:DIR, torch:FILE)")
    from depthkd.models.teachers import load_teacher

    teacher = load_teacher(
        config.teacher.spec,
        device=device,
        dtype=_TEACHER_DTYPES[config.teacher.dtype],
        precision=config.teacher.precision,
        **config.teacher.options,
    )
    logger.info("teacher %s (%s) on %s", config.teacher.spec, teacher.kind, device)
    return teacher


def training_dataset(config: RecipeConfig, method: Method, teacher: Any, device: torch.device) -> Dataset:
    """The training set with its transform; with ``cache.enabled``, the teacher's maps ride along."""
    transform = engine_data.train_transform(config.data)
    if teacher is not None and not config.cache.enabled and config.teacher.spec.startswith("preds:"):
        if config.data.crop is not None or config.data.augment:
            raise ConfigError(
                f"teacher {config.teacher.spec} holds whole-image predictions, which do not follow random "
                "crops, flips or rotations: set cache.enabled=true (the cache applies the same geometric "
                "augmentation to image and teacher map), or data.augment=false and data.crop=null"
            )
    if not (config.cache.enabled and teacher is not None):
        if config.cache.enabled:
            logger.info("cache.enabled is set but method %r uses no teacher: no cache", method.name)
        return training_source(config, transform)
    if method.teacher_features:
        raise ConfigError(
            f"cache.enabled is true but method {method.name!r} needs the teacher's features, which the "
            "cache does not store; set cache.enabled=false"
        )
    from depthkd.data.cache import CachedTeacherDataset, TeacherCache, build_teacher_cache

    plain = training_source(config)
    cache_dir = teacher_cache_dir(config, teacher)
    if _launched_rank() > 0:
        cache = _wait_for_cache(cache_dir, teacher, len(plain))  # type: ignore[arg-type]
    else:
        cache = build_teacher_cache(teacher, plain, cache_dir, batch_size=config.cache.batch_size, device=device)
    if not isinstance(cache, TeacherCache):  # pragma: no cover - defensive
        raise DataError(f"no teacher cache in {cache_dir}")
    return CachedTeacherDataset(plain, cache, transform)


def training_source(config: RecipeConfig, transform: Any = None) -> Dataset:
    """``data.train``, joined by the images of ``data.unlabelled`` as unlabelled items when set.

    Both sources are read without a transform and :class:`depthkd.data.WithUnlabelled` applies it after
    the unlabelled depth is made, so crops move image and depth together. Images of the two sources
    must reach one size to share a batch: checked here on one image of each, before training starts.
    """
    from depthkd.data import WithUnlabelled, dataset_from_spec

    if not config.data.unlabelled:
        return dataset_from_spec(config.data.train, transform)
    joined = WithUnlabelled(dataset_from_spec(config.data.train), dataset_from_spec(config.data.unlabelled), transform)
    (train_h, train_w), (extra_h, extra_w) = joined.sample_sizes
    crop = config.data.crop
    if crop is None and (train_h, train_w) != (extra_h, extra_w):
        raise ConfigError(
            f"data.unlabelled images are {extra_h}x{extra_w} but data.train images are {train_h}x{train_w} "
            f"(HxW), so they cannot share a batch; set data.crop to a size both fit, e.g. "
            f"[{min(train_h, extra_h)}, {min(train_w, extra_w)}]"
        )
    if crop is not None and (extra_h < crop[0] or extra_w < crop[1]):
        raise ConfigError(
            f"data.unlabelled images are {extra_h}x{extra_w} (HxW), smaller than data.crop {crop[0]}x{crop[1]}; "
            "choose a smaller crop or larger images"
        )
    return joined


def teacher_cache_dir(config: RecipeConfig, teacher: Any) -> Path:
    """``cache.dir``, else ``<run.root>/teacher-cache/<hash of teacher, preprocessing, data>``.

    A cache folder holds one teacher's maps for one dataset, so the default folder is keyed by all
    three (the data by the images of ``data.train``, and ``data.unlabelled`` when set) and runs sharing
    them share the cache. Spec keys that change only the labels (``gt=``, ``labels=``) do not count: the
    teacher sees the same images.
    """
    from depthkd.data.spec import image_source

    if config.cache.dir:
        return Path(config.cache.dir)
    sources = [image_source(config.data.train)]
    if config.data.unlabelled:
        sources.append(image_source(config.data.unlabelled))
    key = json.dumps([teacher.teacher_id, teacher.preprocess_id, *sources], sort_keys=True)
    return Path(config.run.root) / "teacher-cache" / hashlib.sha256(key.encode()).hexdigest()[:16]


def _launched_rank() -> int:
    """Global rank when an external launcher (torchrun, SLURM) started all processes at once, else 0."""
    return int(os.environ.get("RANK", "0")) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0


def _wait_for_cache(cache_dir: Path, teacher: Any, count: int, timeout_s: float = 6 * 3600) -> Any:
    """On ranks > 0: wait until rank 0 has cached all ``count`` maps, then open the cache."""
    from depthkd.data.cache import TeacherCache, read_index

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            index = read_index(cache_dir)
        except DataError:  # caught mid-write: try again
            index = None
        if index and index.get("teacher_id") == teacher.teacher_id and len(index.get("entries", {})) >= count:
            return TeacherCache.open(cache_dir, teacher.teacher_id, teacher.preprocess_id)
        time.sleep(5)
    raise DataError(f"timed out waiting for rank 0 to build the teacher cache in {cache_dir}")


def validation_dataset(config: RecipeConfig) -> Dataset | None:
    """The whole validation set, or ``None`` without ``data.val`` (periodic checks take ``val_limit``)."""
    if not config.data.val:
        return None
    from depthkd.data import dataset_from_spec

    return dataset_from_spec(config.data.val, engine_data.val_transform(config.data))


class RecipeData:
    """The engine's data provider: builds each rank's loaders on demand (after a resume is restored)."""

    def __init__(self, train: Dataset, val: Dataset | None, config: RecipeConfig) -> None:
        self.train, self.val, self.config = train, val, config

    def train_loader(self, start_batch: int, rank: int, world_size: int) -> DataLoader:
        data = self.config.data
        return engine_data.train_loader(self.train, data, self.config.run.seed, rank, world_size, start_batch)

    def val_loader(self, rank: int, world_size: int) -> DataLoader | None:
        if self.val is None:
            return None
        return engine_data.val_loader(self.val, self.config.data, rank, world_size)


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
        return any(key == k or key.startswith(k + ".") for k in RESUME_FREE_KEYS)

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


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().parent == folder.resolve()


def best_checkpoint_name(stage: Stage, is_last: bool) -> str:
    """``best`` for the last stage, ``best-<stage>`` for earlier ones."""
    return "best" if is_last else f"best-{stage.name}"


def build_trainer(
    config: RecipeConfig,
    stage: Stage,
    steps: int,
    run_dir: Path,
    is_last_stage: bool,
    has_validation: bool,
    extra_callbacks: Sequence[Callback] = (),
    keep_metrics_through: int | None = None,
) -> L.Trainer:
    """The Lightning ``Trainer`` of one stage, from the recipe.

    ``keep_metrics_through``: keep the stage's CSV rows logged up to this step (a resume); ``None``
    starts its ``metrics.csv`` afresh.
    """
    trainer_cfg = config.trainer
    checkpoint_dir = run_dir / CHECKPOINT_DIR
    per_step = 1 if stage.manual else trainer_cfg.accumulate_grad_batches
    callbacks: list[Callback] = [
        ModelCheckpoint(
            dirpath=checkpoint_dir,
            filename=LAST_CHECKPOINT.removesuffix(".ckpt"),
            monitor=None,
            save_top_k=1,
            every_n_train_steps=trainer_cfg.checkpoint_every_n_steps,
            save_on_train_epoch_end=False,
            enable_version_counter=False,
        )
    ]
    validate = has_validation and stage.validate
    if validate:
        callbacks.append(
            ModelCheckpoint(
                dirpath=checkpoint_dir,
                filename=best_checkpoint_name(stage, is_last_stage),
                monitor=f"val/{trainer_cfg.monitor}",
                mode=trainer_cfg.monitor_mode,
                save_top_k=1,
                save_on_train_epoch_end=False,
                enable_version_counter=False,
                auto_insert_metric_name=False,
            )
        )
    if trainer_cfg.ema_decay is not None:
        callbacks.append(EMAWeightAveraging(decay=trainer_cfg.ema_decay))
    if progress_enabled():
        callbacks.append(StepProgressBar())
    callbacks.extend(extra_callbacks)

    loggers: list[Any] = []
    if "csv" in trainer_cfg.loggers:
        loggers.append(
            ResumingCSVLogger(save_dir=run_dir, name="logs", version=stage.name, keep_through=keep_metrics_through)
        )
    if "tensorboard" in trainer_cfg.loggers:
        loggers.append(TensorBoardLogger(save_dir=run_dir, name="tensorboard", version=stage.name))

    optimizer_calls = len(stage.optimizers) if stage.manual else 1
    val_every = trainer_cfg.val_every_n_steps or steps
    manual = stage.manual
    return L.Trainer(
        accelerator=trainer_cfg.accelerator,
        devices=trainer_cfg.devices,
        num_nodes=trainer_cfg.num_nodes,
        strategy=trainer_cfg.strategy,
        precision=trainer_cfg.precision,
        max_steps=steps * optimizer_calls,
        max_epochs=-1,
        val_check_interval=max(1, val_every * per_step) if validate else None,
        check_val_every_n_epoch=None,
        limit_val_batches=None if validate else 0,
        num_sanity_val_steps=0,
        gradient_clip_val=None if manual else trainer_cfg.gradient_clip_val,
        accumulate_grad_batches=1 if manual else trainer_cfg.accumulate_grad_batches,
        log_every_n_steps=trainer_cfg.log_every_n_steps,
        callbacks=callbacks,
        logger=loggers or False,
        plugins=[AtomicCheckpointIO()],
        use_distributed_sampler=False,
        enable_progress_bar=progress_enabled(),
        enable_model_summary=False,
        deterministic=trainer_cfg.deterministic,
        default_root_dir=run_dir,
    )


# ----------------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------------


def _check_stages(stages: list[Stage], method: Method) -> None:
    names = [s.name for s in stages]
    if not stages:
        raise ConfigError(f"method {method.name!r} declares no stage")
    if len(set(names)) != len(names):
        raise ConfigError(f"method {method.name!r} declares repeated stage names: {', '.join(names)}")


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
    from depthkd.engine.module import teacher_alignment

    align = teacher_alignment(teacher.kind, config.eval.teacher_align, config.eval.align)
    metrics, _ = score_on_validation(
        lambda batch: teacher(batch["image"].to(device), names=batch.get("name")).depth, val_set, config, align,
        "scoring the teacher",
    )
    return metrics


def _export_weights(module: DistillModule, config: RecipeConfig, best: Path | None) -> None:
    """Load the ``best`` checkpoint's student weights into the module when ``run.export`` asks for it."""
    if config.run.export != "best":
        return
    if best is None or not best.is_file():
        logger.warning("run.export=best but no best checkpoint exists (no validation); exporting the last weights")
        return
    state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    student_state = {k.removeprefix("student."): v for k, v in state.items() if k.startswith("student.")}
    module.student.load_state_dict(student_state)


@dataclass
class _Prepared:
    """Everything a run builds before its first stage."""

    module: DistillModule
    ctx: SetupContext
    val_set: Dataset | None
    budgets: list[int]
    device: torch.device


def _prepare(config: RecipeConfig, method: Method, student: torch.nn.Module) -> _Prepared:
    """Teacher, data and the Lightning module around ``method`` and ``student``; ``method.setup`` runs here."""
    device = resolve_device(config)
    teacher = load_recipe_teacher(config, method, device)
    train_set = training_dataset(config, method, teacher, device)
    val_set = validation_dataset(config)

    sample = engine_data.sample_batch(train_set, min(2, config.data.batch_size), config.run.seed)
    if method.needs_ground_truth and "depth" not in sample:
        raise DataError(f"method {method.name!r} needs ground-truth depth but {config.data.train!r} has none")
    ctx = SetupContext(student=student, teacher=teacher, sample_batch=sample, config=config)
    method.setup(ctx)
    if config.trainer.channels_last:
        student.to(memory_format=torch.channels_last)
    stages = method.stages()
    _check_stages(stages, method)
    periodic_val = engine_data.limit(val_set, config.data.val_limit) if val_set is not None else None
    module = DistillModule(student, method, teacher, config, stages, RecipeData(train_set, periodic_val, config))
    budgets = [stage_steps(stage, config, len(train_set)) for stage in stages]  # type: ignore[arg-type]
    return _Prepared(module, ctx, val_set, budgets, device)


def _train_stages(
    config: RecipeConfig, prepared: _Prepared, run_dir: Path, callbacks: Sequence[Callback], resume: Path | None
) -> L.Trainer | None:
    """Run the stages from checkpoint ``resume`` on (``None``: from the start); returns the last stage's trainer.

    Resuming from one of the run directory's own checkpoints keeps the resumed stage's metrics rows
    logged before it; a checkpoint from elsewhere starts the stage's ``metrics.csv`` afresh.
    """
    module, stages = prepared.module, prepared.module.stages
    start_stage, logged_step = checkpoint_position(resume) if resume else (0, None)
    keep_rows = logged_step if resume and _inside(resume, run_dir / CHECKPOINT_DIR) else None
    if start_stage >= len(stages):
        raise ConfigError(
            f"checkpoint {resume} names stage {start_stage}, but method {module.method.name!r} has {len(stages)}"
        )
    if resume:
        logger.info("resuming from %s (stage %s)", resume, stages[start_stage].name)
    trainer = None
    for index in range(start_stage, len(stages)):
        stage, steps = stages[index], prepared.budgets[index]
        module.begin_stage(index, steps, prepared.ctx)
        trainer = build_trainer(
            config,
            stage,
            steps,
            run_dir,
            is_last_stage=index == len(stages) - 1,
            has_validation=prepared.val_set is not None,
            extra_callbacks=callbacks,
            keep_metrics_through=keep_rows if index == start_stage else None,
        )
        logger.info("stage %s: %d steps", stage.name, steps)
        trainer.fit(module, ckpt_path=resume if index == start_stage else None, weights_only=True)
        trainer.save_checkpoint(run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT, weights_only=False)
    return trainer


def _finish(config: RecipeConfig, prepared: _Prepared, run_dir: Path, result: RunResult) -> RunResult:
    """Export the student, score it, write ``summary.json`` (rank 0 only)."""
    from depthkd.models.checkpoint import save_student

    module = prepared.module
    _export_weights(module, config, result.best_checkpoint)
    student = module.student.to("cpu").to(memory_format=torch.contiguous_format)
    result.student_path = save_student(student, run_dir / STUDENT_FILE)
    result.metrics, result.protocol = final_metrics(module.student, prepared.val_set, config, prepared.device)
    if result.teacher_metrics is None:
        result.teacher_metrics = teacher_final_metrics(module.teacher, prepared.val_set, config, prepared.device)
    summary = {**result.to_dict(), "method": module.method.name, "config": to_dict(config)}
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    logger.info("student exported to %s", result.student_path)
    return result


def run_recipe(config: RecipeConfig, callbacks: Sequence[Callback] = ()) -> RunResult:
    """Train the recipe's student with its method, stage by stage, and export it (see module docstring).

    ``callbacks`` are extra Lightning callbacks added to every stage's trainer. The method and the
    student are built before the run directory is touched, so a recipe that cannot build them leaves
    none behind; the directory is then locked for the rest of the run (:func:`claim_run_dir`).
    """
    from depthkd.models.student import DepthStudent

    config = copy.deepcopy(config)
    run_dir = config.run.path
    route_lightning_logs()
    with warnings.catch_warnings():
        for pattern in _QUIET:
            warnings.filterwarnings("ignore", message=pattern)
        L.seed_everything(config.run.seed, workers=True, verbose=False)
        method = build_recipe_method(config)
        student = DepthStudent(copy.deepcopy(config.student))
        with claim_run_dir(config, run_dir) as resume:
            return _run_claimed(config, method, student, run_dir, resume, callbacks)


def _run_claimed(
    config: RecipeConfig,
    method: Method,
    student: torch.nn.Module,
    run_dir: Path,
    resume: Path | None,
    callbacks: Sequence[Callback],
) -> RunResult:
    """The run once its directory is claimed: prepare, train the stages, export (rank 0)."""
    prepared = _prepare(config, method, student)
    trainer = _train_stages(config, prepared, run_dir, callbacks, resume)

    module = prepared.module
    best = run_dir / CHECKPOINT_DIR / f"{best_checkpoint_name(module.stages[-1], True)}.ckpt"
    result = RunResult(
        run_dir=run_dir,
        student_path=None,
        metrics=None,
        teacher_metrics=module.teacher_metrics,
        protocol=None,
        last_checkpoint=run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT,
        best_checkpoint=best if best.is_file() else None,
        stages=[{"name": s.name, "steps": b} for s, b in zip(module.stages, prepared.budgets)],
        skipped_batches=module.skipped_batches,
    )
    if trainer is not None and trainer.world_size > 1 and not trainer.is_global_zero:
        return result
    return _finish(config, prepared, run_dir, result)


def train(config: RecipeConfig, callbacks: Sequence[Callback] = ()) -> RunResult:
    """Supervised training (students, and simulator teachers): the recipe's method must be ``supervised``."""
    if config.method.name != "supervised" or config.method.add:
        raise ConfigError(
            f"train runs the 'supervised' method, but the recipe names {config.method.name!r}"
            f"{' with added methods' if config.method.add else ''}; use distill for distillation recipes"
        )
    return run_recipe(config, callbacks)


def distill(config: RecipeConfig, callbacks: Sequence[Callback] = ()) -> RunResult:
    """Distil the recipe's teacher into its student with the recipe's method (any registered method)."""
    return run_recipe(config, callbacks)


__all__ = [
    "RESUME_FREE_KEYS",
    "AtomicCheckpointIO",
    "RecipeData",
    "ResumingCSVLogger",
    "RunResult",
    "build_recipe_method",
    "build_trainer",
    "check_same_recipe",
    "claim_run_dir",
    "distill",
    "load_recipe",
    "recipe_changes",
    "resolve_device",
    "run_recipe",
    "stage_steps",
    "train",
]
