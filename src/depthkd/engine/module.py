"""The LightningModule: student, method (with its trainable parts) and a frozen teacher kept outside.

The teacher is held outside the module tree, so it never appears in ``state_dict``, in Lightning
checkpoints, in DDP's gradient buckets or in the EMA copy; it is moved to the training device with the
module. The module knows the current stage and asks the method for the loss; it checks every loss for
NaN/inf, and validates the student (and once, the teacher) under the recipe's named protocol.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader

from depthkd.config import RecipeConfig, to_dict
from depthkd.distill.base import LossOutput, Method, SetupContext, Stage
from depthkd.engine.optim import build_optimizer, build_scheduler, param_groups
from depthkd.errors import ConfigError, DataError, DepthkdError
from depthkd.metrics import METRIC_KEYS, MetricAccumulator
from depthkd.models.outputs import StudentOutput, TeacherOutput

logger = logging.getLogger(__name__)

CHECKPOINT_KEY = "depthkd"


class NonFiniteLossError(DepthkdError, FloatingPointError):
    """A training loss became NaN or inf (names the step and the loss term)."""


class _Outside:
    """Holds an object outside the LightningModule's tree; copies (EMA) share it instead of copying."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __deepcopy__(self, memo: dict[int, Any]) -> _Outside:
        return self


class DataProvider(Protocol):
    """Builds the DataLoaders of one rank (the engine's ``run`` module implements it)."""

    def train_loader(self, start_batch: int, rank: int, world_size: int) -> DataLoader: ...

    def val_loader(self, rank: int, world_size: int) -> DataLoader | None: ...


def teacher_alignment(kind: str, requested: str, student_align: str) -> str:
    """The alignment used to score a teacher of ``kind`` (``auto``: by kind, metric like the student)."""
    if requested != "auto":
        return requested
    from depthkd.models.teachers import alignment_for_kind

    return alignment_for_kind(kind, student_align)


class DistillModule(L.LightningModule):
    """Trains ``student`` with ``method`` stage by stage (the engine sets :attr:`stage_index`).

    Attributes:
        student: the network being trained and exported.
        method: the distillation method (its trainable parts are submodules, saved for resuming).
        teacher: the frozen teacher (``None`` when unused); not part of the module tree.
        batches_seen: global training batches consumed (the data stream's resume point).
        skipped_batches: batches skipped for a non-finite loss (``trainer.skip_nonfinite``).
        teacher_metrics: the teacher's validation score, computed once.
    """

    def __init__(
        self,
        student: nn.Module,
        method: Method,
        teacher: nn.Module | None,
        config: RecipeConfig,
        stages: list[Stage],
        data: DataProvider | None = None,
    ) -> None:
        super().__init__()
        self.student = student
        self.method = method
        self._teacher = _Outside(teacher)
        self._data = _Outside(data)
        self.recipe = config
        self.stages = stages
        self.stage_index = 0
        self.stage_steps = 1
        self.batches_seen = 0
        self.skipped_batches = 0
        self.teacher_metrics: dict[str, float] | None = None
        self.last_val_metrics: dict[str, float] | None = None
        self._scheduler_of: list[Any] = []
        self._window_has_valid = False
        self._val_student: MetricAccumulator | None = None
        self._val_teacher: MetricAccumulator | None = None

    # --- parts -----------------------------------------------------------------------------------
    @property
    def teacher(self) -> nn.Module | None:
        """The frozen teacher, or ``None``."""
        return self._teacher.value

    @property
    def stage(self) -> Stage:
        """The stage being trained."""
        return self.stages[self.stage_index]

    def forward(self, images: torch.Tensor) -> StudentOutput:
        return self.student(images)

    def begin_stage(self, index: int, steps: int, ctx: SetupContext) -> None:
        """Switch to stage ``index`` with a budget of ``steps``: freeze what it does not train."""
        self.stage_index = index
        self.stage_steps = steps
        stage = self.stage
        self.automatic_optimization = not stage.manual
        trained: set[int] = set()
        for spec in stage.optimizers:
            cfg = spec.optim or self.recipe.optim
            for group in param_groups(self.student, self.method, spec.params, cfg):
                trained.update(id(p) for p in group["params"])
        if not trained:
            raise ConfigError(f"stage {stage.name!r} of method {self.method.name!r} has no parameter to train")
        for parameter in (*self.student.parameters(), *self.method.parameters()):
            parameter.requires_grad_(id(parameter) in trained)
        self.method.on_stage_start(stage, ctx)

    def images_of(self, batch: dict[str, Any]) -> torch.Tensor:
        """The batch's images, channels-last when the recipe asks for it."""
        images = batch["image"]
        if self.recipe.trainer.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def teacher_output(self, batch: dict[str, Any], images: torch.Tensor | None = None) -> TeacherOutput | None:
        """The teacher's output for the batch: its cached map when present, else a forward pass."""
        if "teacher" in batch:
            kinds = batch.get("teacher_kind") or ["metric_depth"]
            return TeacherOutput(depth=batch["teacher"].float(), kind=kinds[0], features=[])
        if self.teacher is None:
            return None
        images = self.images_of(batch) if images is None else images
        return self.teacher(images, names=batch.get("name"), return_features=self.method.teacher_features)

    def compute_loss(self, batch: dict[str, Any]) -> LossOutput:
        """Student forward, teacher output (if the stage uses it) and the method's loss."""
        images = self.images_of(batch)
        student_out = self.student(images)
        teacher_out = None
        if self.stage.uses_teacher and self.method.needs_teacher:
            teacher_out = self.teacher_output(batch, images)
        return self.method.loss(batch, student_out, teacher_out, self.stage)

    # --- data ---------------------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        """Called by Lightning after a checkpoint is restored, so the stream resumes at ``batches_seen``."""
        if self._data.value is None:
            raise ConfigError("the module has no data provider")
        return self._data.value.train_loader(self.batches_seen, self.global_rank, self.trainer.world_size)

    def val_dataloader(self) -> Any:
        loader = None if self._data.value is None else self._data.value.val_loader(self.global_rank, self.trainer.world_size)
        return loader if loader is not None else []

    # --- training ----------------------------------------------------------------------------------
    def on_train_start(self) -> None:
        self.train()
        self.method.train_modes(self.stage)

    def _any_rank(self, flag: bool) -> bool:
        if self.trainer.world_size <= 1:
            return flag
        value = torch.tensor(float(flag), device=self.device)
        return bool(self.trainer.strategy.reduce(value, reduce_op="sum") > 0)

    def loss_is_usable(self, out: LossOutput) -> bool:
        """``True`` for a finite loss; else raise, or (``skip_nonfinite``) count the skip and return ``False``."""
        bad = out.first_nonfinite()
        if not self._any_rank(bad is not None):
            return True
        if not self.recipe.trainer.skip_nonfinite:
            where = (
                f"term {bad!r} = {out.terms[bad].item() if bad in out.terms else out.total.item()}"
                if bad is not None
                else "another rank"
            )
            raise NonFiniteLossError(
                f"non-finite loss in training step {self.trainer.global_step + 1} (batch {self.batches_seen}) of stage "
                f"{self.stage.name!r}: {where}, total = {out.total.item()}. Lower optim.lr, set "
                "trainer.gradient_clip_val, or set trainer.skip_nonfinite=true to skip such batches"
            )
        self.skipped_batches += 1
        logger.warning(
            "skipping batch %d (step %d): non-finite loss term %r (%d skipped so far)",
            self.batches_seen,
            self.trainer.global_step,
            bad,
            self.skipped_batches,
        )
        return False

    def _zero_loss(self) -> torch.Tensor:
        """A zero loss touching every trainable parameter (so DDP's gradient sync stays in step)."""
        params = [p for p in self.parameters() if p.requires_grad]
        return sum((p.sum() * 0.0 for p in params), torch.zeros((), device=self.device))

    def _log_loss(self, out: LossOutput, batch_size: int) -> None:
        values = {f"train/{name}": value.detach().float() for name, value in out.terms.items()}
        values["train/loss"] = out.total.detach().float()
        self.log_dict(values, on_step=True, on_epoch=False, batch_size=batch_size)
        self.log("train/skipped", float(self.skipped_batches), on_step=True, on_epoch=False, batch_size=batch_size)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        self.batches_seen += 1
        batch_size = batch["image"].shape[0]
        if self.stage.manual:
            out = self.method.manual_step(self, batch, self.stage)
            self._log_loss(out, batch_size)
            return None
        out = self.compute_loss(batch)
        if not self.loss_is_usable(out):
            return self._zero_loss()
        self._window_has_valid = True
        self._log_loss(out, batch_size)
        return out.total

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        if not self.recipe.trainer.skip_nonfinite:
            super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
            return
        # Run the window's last forward/backward first, then step only if some batch was usable.
        loss = optimizer_closure()
        if self._window_has_valid:
            optimizer.step(closure=lambda: loss)
        else:
            optimizer.zero_grad(set_to_none=True)
        self._window_has_valid = False

    def step_optimizer(self, index: int, loss: torch.Tensor) -> None:
        """For manual stages: zero_grad, backward, clip, step and schedule optimiser ``index``."""
        optimizers = self.optimizers()
        optimizer = optimizers[index] if isinstance(optimizers, list) else optimizers
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        clip = self.recipe.trainer.gradient_clip_val
        if clip:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")
        optimizer.step()
        scheduler = self._scheduler_of[index] if index < len(self._scheduler_of) else None
        if scheduler is not None:
            scheduler.step()

    def configure_optimizers(self) -> Any:
        stage = self.stage
        optimizers, schedulers = [], []
        for spec in stage.optimizers:
            cfg = spec.optim or self.recipe.optim
            groups = param_groups(self.student, self.method, spec.params, cfg)
            if not groups:
                raise ConfigError(f"stage {stage.name!r}: the optimiser over {', '.join(spec.params)} has no parameters")
            optimizer = build_optimizer(groups, cfg)
            optimizers.append(optimizer)
            schedulers.append(build_scheduler(optimizer, cfg, self.stage_steps))
        self._scheduler_of = schedulers
        if len(optimizers) == 1:
            if schedulers[0] is None:
                return optimizers[0]
            return {"optimizer": optimizers[0], "lr_scheduler": {"scheduler": schedulers[0], "interval": "step"}}
        return optimizers, [{"scheduler": s, "interval": "step"} for s in schedulers if s is not None]

    # --- validation --------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        cfg = self.recipe.eval
        self._val_student = MetricAccumulator(cfg.protocol, cfg.align)
        self._val_teacher = None
        if self.teacher is not None and self.teacher_metrics is None:
            align = teacher_alignment(self.teacher.kind, cfg.teacher_align, cfg.align)
            self._val_teacher = MetricAccumulator(cfg.protocol, align)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        if "depth" not in batch:
            raise DataError("validation data has no ground-truth depth; set data.val to a dataset with depth")
        gt = batch["depth"].float().cpu()
        names = batch.get("name")
        pred = self.student(self.images_of(batch)).depth
        assert self._val_student is not None
        self._val_student.update(pred.detach().float().cpu(), gt, names)
        if self._val_teacher is not None:
            teacher_depth = self.teacher(batch["image"], names=names).depth
            self._val_teacher.update(teacher_depth.float().cpu(), gt, names)

    def _reduce_metrics(self, accumulator: MetricAccumulator) -> dict[str, float]:
        """Mean over images of all ranks (each rank scored its own shard)."""
        count = accumulator.count
        means = accumulator.compute() if count else dict.fromkeys(METRIC_KEYS, 0.0)
        values = torch.tensor([count] + [means[k] * count for k in METRIC_KEYS], dtype=torch.float64)
        if self.trainer.world_size > 1:
            values = self.trainer.strategy.reduce(values.to(self.device), reduce_op="sum").cpu()
        total = float(values[0])
        if total == 0:
            raise DataError(
                f"validation scored no image under protocol {self.recipe.eval.protocol!r} "
                f"({len(accumulator.skipped)} without valid pixels on this rank)"
            )
        return {key: float(values[i + 1]) / total for i, key in enumerate(METRIC_KEYS)}

    def on_validation_epoch_end(self) -> None:
        if self._val_student is None:
            return
        metrics = self._reduce_metrics(self._val_student)
        self.last_val_metrics = metrics
        self.log_dict({f"val/{k}": v for k, v in metrics.items()}, on_epoch=True, rank_zero_only=False)
        if self._val_teacher is not None:
            self.teacher_metrics = self._reduce_metrics(self._val_teacher)
            logger.info("teacher on the validation data (%s): %s", self._val_teacher.label(), self.teacher_metrics)
        if self.teacher_metrics is not None:
            self.log_dict({f"val_teacher/{k}": v for k, v in self.teacher_metrics.items()}, on_epoch=True)
        self._val_student = self._val_teacher = None

    # --- checkpoints -------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = {
            "stage_index": self.stage_index,
            "stage_name": self.stage.name,
            "batches_seen": self.batches_seen,
            "skipped_batches": self.skipped_batches,
            "teacher_metrics": self.teacher_metrics,
            "method": self.method.name,
            "student_config": to_dict(getattr(self.student, "config", None)),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get(CHECKPOINT_KEY)
        if state is None:
            raise DataError("checkpoint was not written by depthkd's engine (no 'depthkd' record)")
        if state["method"] != self.method.name:
            raise ConfigError(
                f"checkpoint was trained with method {state['method']!r}, the recipe names {self.method.name!r}"
            )
        if state["stage_index"] != self.stage_index:
            raise ConfigError(
                f"checkpoint is from stage {state['stage_name']!r}, the engine is in stage {self.stage.name!r}"
            )
        self.batches_seen = int(state["batches_seen"])
        self.skipped_batches = int(state["skipped_batches"])
        self.teacher_metrics = state.get("teacher_metrics")
