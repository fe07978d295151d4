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
recipe (beyond :data:`~depthkd.engine.rundir.RESUME_FREE_KEYS`) is refused before anything is rewritten
(:mod:`depthkd.engine.rundir`). A resumed stage keeps the CSV rows logged up to its checkpoint and replaces
the later ones (:class:`~depthkd.engine.logs.ResumingCSVLogger`).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EMAWeightAveraging, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import Dataset

from depthkd.config import RecipeConfig, to_dict
from depthkd.distill.base import CombinedMethod, Method, SetupContext, Stage
from depthkd.distill.registry import build_method
from depthkd.engine import data as engine_data
from depthkd.engine.inputs import RecipeData, load_recipe_teacher, training_dataset, validation_dataset
from depthkd.engine.interrupt import StopOnInterrupt, TrainingInterrupted
from depthkd.engine.logs import ResumingCSVLogger, quiet_lightning_warnings, route_lightning_logs
from depthkd.engine.module import DistillModule
from depthkd.engine.progress_bar import StepProgressBar
from depthkd.engine.rundir import (
    CHECKPOINT_DIR,
    LAST_CHECKPOINT,
    STUDENT_FILE,
    SUMMARY_FILE,
    AtomicCheckpointIO,
    best_checkpoint_name,
    checkpoint_position,
    claim_run_dir,
)
from depthkd.engine.scoring import final_metrics, teacher_final_metrics
from depthkd.errors import ConfigError, DataError
from depthkd.models.devices import check_device
from depthkd.progress import progress_enabled

logger = logging.getLogger(__name__)


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
        try:
            return check_device(torch.device("cuda", local_rank))
        except ConfigError as err:
            raise ConfigError(f"trainer.accelerator={accelerator!r}: {err}") from None
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
    return config.trainer.max_epochs * max(1, math.ceil(batches / stage_batches(stage, config)))


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

    ``keep_metrics_through``: keep the stage's CSV rows and TensorBoard events logged up to this step (a
    resume); ``None`` starts its ``metrics.csv`` and TensorBoard curves afresh.
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
        # TensorBoard hides the events a killed attempt wrote from this step on (SummaryWriter's purge_step).
        purge_from = 0 if keep_metrics_through is None else keep_metrics_through + 1
        loggers.append(TensorBoardLogger(save_dir=run_dir, name="tensorboard", version=stage.name, purge_step=purge_from))

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
    sample_size = min(2, config.data.batch_size)
    # With a teacher cache, first only the setup sample's maps: the budget (hence the items it visits)
    # is known once the method has declared its stages.
    cached = list(range(sample_size)) if config.cache.enabled and teacher is not None else None
    train_set = training_dataset(config, method, teacher, device, cached=cached)
    val_set = validation_dataset(config)

    sample = engine_data.sample_batch(train_set, sample_size, config.run.seed)
    if method.needs_ground_truth and "depth" not in sample:
        raise DataError(f"method {method.name!r} needs ground-truth depth but {config.data.train!r} has none")
    ctx = SetupContext(student=student, teacher=teacher, sample_batch=sample, config=config)
    method.setup(ctx)
    if config.trainer.channels_last:
        student.to(memory_format=torch.channels_last)
    stages = method.stages()
    _check_stages(stages, method)
    budgets = [stage_steps(stage, config, len(train_set)) for stage in stages]  # type: ignore[arg-type]
    if cached is not None:
        visited = _visited_items(config, stages, budgets, len(train_set))  # type: ignore[arg-type]
        train_set = training_dataset(config, method, teacher, device, cached=[*cached, *visited])
    periodic_val = engine_data.limit(val_set, config.data.val_limit) if val_set is not None else None
    module = DistillModule(student, method, teacher, config, stages, RecipeData(train_set, periodic_val, config))
    return _Prepared(module, ctx, val_set, budgets, device)


def _visited_items(config: RecipeConfig, stages: list[Stage], budgets: list[int], num_items: int) -> list[int]:
    """The training items the stages' step budgets visit: the teacher cache needs the maps of these only.

    Each stage's loader also loads a few batches past its last step (:func:`~depthkd.engine.data.lookahead_batches`).
    """
    lookahead = engine_data.lookahead_batches(config.data)
    batches = sum(budget * stage_batches(stage, config) + lookahead for stage, budget in zip(stages, budgets))
    samples = batches * config.data.batch_size * world_size(config)
    visited = engine_data.visited_indices(num_items, config.run.seed, samples)
    if len(visited) < num_items:
        logger.info("the budget visits %d of the %d training images: caching the teacher's maps of those only",
                    len(visited), num_items)
    return visited


def stage_batches(stage: Stage, config: RecipeConfig) -> int:
    """Training batches one optimiser step of ``stage`` takes (a manual stage: one, whatever its optimisers)."""
    return 1 if stage.manual else config.trainer.accumulate_grad_batches


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().parent == folder.resolve()


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
        interrupt = StopOnInterrupt()
        trainer = build_trainer(
            config,
            stage,
            steps,
            run_dir,
            is_last_stage=index == len(stages) - 1,
            has_validation=prepared.val_set is not None,
            extra_callbacks=[*callbacks, interrupt],
            keep_metrics_through=keep_rows if index == start_stage else None,
        )
        logger.info("stage %s: %d steps", stage.name, steps)
        trainer.fit(module, ckpt_path=resume if index == start_stage else None, weights_only=True)
        trainer.save_checkpoint(run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT, weights_only=False)
        if interrupt.stopped:
            raise TrainingInterrupted(
                f"interrupted at step {trainer.global_step} of stage {stage.name}; saved "
                f"{run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT}: run the same command again to continue"
            )
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
    none behind; the directory is then locked for the rest of the run
    (:func:`~depthkd.engine.rundir.claim_run_dir`).
    """
    from depthkd.models.student import DepthStudent

    config = copy.deepcopy(config)
    run_dir = config.run.path
    route_lightning_logs()
    with quiet_lightning_warnings():
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
    "RunResult",
    "build_recipe_method",
    "build_trainer",
    "distill",
    "resolve_device",
    "run_recipe",
    "stage_steps",
    "train",
    "world_size",
]
