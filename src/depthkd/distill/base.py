"""The contract every distillation method follows, so a new method is one file in this package.

A method turns a batch, the student's output and the teacher's output into a loss. It never sees the
training loop: the engine (``depthkd.engine``) owns devices, precision, DDP, checkpoints and resume,
and asks the method only the questions below.

Writing a method
----------------
::

    @register_method("my-kd")
    class MyKD(Method):
        @dataclass
        class Config:                       # the recipe's ``method.options``, validated by the engine
            weight: float = 1.0

        needs_teacher = True                # the engine loads ``teacher.spec`` and runs it
        needs_ground_truth = False          # batches must carry ``depth`` (error otherwise)
        teacher_features = False            # ask the teacher for intermediate features

        def setup(self, ctx: SetupContext) -> None:
            ...                             # build trainable parts (nn.Modules) from real shapes

        def loss(self, batch, student_out, teacher_out, stage) -> LossOutput:
            term = self.config.weight * my_loss(student_out.depth, teacher_out.depth)
            return LossOutput.from_terms({"my": term})

What the engine guarantees
--------------------------
- ``setup`` runs once, before any checkpoint is restored, with a sample batch; every parameter the
  method will ever own must exist when it returns (so resuming can load them). Modules assigned as
  attributes are trainable parts: they are saved in resume checkpoints (never in the exported student)
  and moved to the training device.
- ``stages()`` is a list of :class:`Stage`, run in order. Each stage has its own step budget and its
  own optimiser(s) over named parameter owners (``student``, ``student.encoder``, ``method``,
  ``method.<submodule>``); parameters owned by no optimiser of the stage are frozen
  (``requires_grad=False``) for that stage. Resume works inside any stage.
- ``on_stage_start(stage, ctx)`` runs before each stage's first step, including when resuming inside
  that stage (a checkpoint is restored after it, so values it sets are overwritten by the saved ones,
  but flags it sets, such as ``requires_grad`` or ``eval()`` modes, persist). DisDepth copies the
  student's decoder into its ghost decoder here.
- ``train_modes(stage)`` runs when a stage's training starts, after every module was put in training
  mode (Lightning restores each module's mode after validation); put frozen parts with BatchNorm in
  ``eval()`` there.
- ``loss(batch, student_out, teacher_out, stage)`` returns :class:`LossOutput`; ``terms`` are the
  weighted contributions (they sum to ``total``), each logged as ``train/<term>``. A NaN/inf total
  stops training with the step and the first non-finite term named (or the batch is skipped under
  ``trainer.skip_nonfinite``). ``batch`` holds ``image`` ``(B,3,H,W)``, ``depth`` ``(B,1,H,W)`` (when
  the data has ground truth), ``teacher``/``teacher_kind`` (cached teacher maps), ``name``, ``path``.
  ``teacher_out`` is ``None`` when the method or the stage does not use the teacher.
- Stages with ``manual=True`` hand the whole step to ``manual_step(module, batch, stage)``, for
  alternating optimisers (the data-free method: a generator step, then a student step). It receives
  the engine's ``DistillModule``: ``module.step_optimizer(i, loss)`` (zero_grad, backward, clipping,
  step, scheduler), ``module.loss_is_usable(out)`` (the NaN/inf policy: raises, or counts a skip and
  returns ``False``), ``module.student``, ``module.teacher``, ``module.teacher_output(batch)``,
  ``module.images_of(batch)`` (channels-last), ``module.batches_seen``. In a manual stage every
  optimiser steps once per batch and ``Stage.steps`` counts batches.

Methods combine as a weighted sum (``method.add`` in the recipe, :class:`CombinedMethod`); the first
method's stages are used, and the added methods' terms are included in stages with ``combine=True``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from depthkd.errors import ConfigError, DataError
from depthkd.models.outputs import StudentOutput, TeacherOutput


@dataclass
class LossOutput:
    """A method's loss: ``total`` (what is back-propagated) and its named, weighted ``terms``."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def from_terms(cls, terms: Mapping[str, torch.Tensor]) -> LossOutput:
        """Sum of the given weighted terms (at least one)."""
        if not terms:
            raise ValueError("a loss needs at least one term")
        values = list(terms.values())
        total = values[0]
        for value in values[1:]:
            total = total + value
        return cls(total=total, terms=dict(terms))

    def scaled(self, weight: float, prefix: str = "") -> LossOutput:
        """Every term and the total times ``weight``, term names prefixed with ``prefix``."""
        return LossOutput(
            total=self.total * weight,
            terms={f"{prefix}{name}": value * weight for name, value in self.terms.items()},
        )

    def first_nonfinite(self) -> str | None:
        """``None`` for a finite total, else the first NaN/inf term (``'total'`` if only the sum is).

        A non-finite term makes the total non-finite, so the common case costs one check (one device
        synchronisation on GPUs).
        """
        if torch.isfinite(self.total.detach()).all():
            return None
        for name, value in self.terms.items():
            if not torch.isfinite(value.detach()).all():
                return name
        return "total"


@dataclass
class OptimizerSpec:
    """One optimiser of a stage: the parameter owners it trains and its settings.

    ``params`` names owners: ``student`` (encoder at ``optim.encoder_lr_scale``), ``student.<path>``,
    ``method`` (all of the method's own parameters), ``method.<path>`` (one submodule). ``optim`` is an
    ``OptimConfig``; ``None`` uses the recipe's ``optim`` section.
    """

    params: tuple[str, ...] = ("student", "method")
    optim: Any = None


@dataclass
class Stage:
    """A phase of training with its own optimiser(s) and step budget.

    Attributes:
        name: shown in logs and checkpoint names; unique within a method.
        steps: optimiser steps (batches for ``manual`` stages); ``None`` = the recipe's budget
            (``trainer.max_steps`` or ``trainer.max_epochs``).
        optimizers: one :class:`OptimizerSpec` per optimiser (several only for ``manual`` stages).
        uses_teacher: run the teacher (or read its cache) for this stage's batches.
        validate: run periodic validation of the student during this stage.
        combine: include the terms of methods added with ``method.add``.
        manual: the method drives optimisation in ``manual_step`` (alternating optimisers).
    """

    name: str = "main"
    steps: int | None = None
    optimizers: tuple[OptimizerSpec, ...] = (OptimizerSpec(),)
    uses_teacher: bool = True
    validate: bool = True
    combine: bool = True
    manual: bool = False

    def __post_init__(self) -> None:
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"stage {self.name!r}: steps={self.steps} must be >= 1")
        if not self.optimizers:
            raise ConfigError(f"stage {self.name!r} declares no optimiser")
        if len(self.optimizers) > 1 and not self.manual:
            raise ConfigError(
                f"stage {self.name!r} has {len(self.optimizers)} optimisers: several optimisers need "
                "manual=True and a manual_step"
            )


@dataclass
class SetupContext:
    """What ``Method.setup`` and ``on_stage_start`` may use.

    Attributes:
        student: the student network (train mode unchanged).
        teacher: the frozen teacher, or ``None`` when the method needs none.
        sample_batch: a small training batch (CPU), as the engine will pass it to ``loss``.
        config: the whole ``RecipeConfig``.
    """

    student: nn.Module
    teacher: nn.Module | None
    sample_batch: dict[str, Any]
    config: Any = None

    def student_forward(self, images: torch.Tensor | None = None) -> StudentOutput:
        """Student output on ``images`` (default: the sample batch) in eval mode, without gradients.

        Eval mode keeps BatchNorm running statistics untouched by the dry run.
        """
        images = self.sample_batch["image"] if images is None else images
        was_training = self.student.training
        self.student.eval()
        try:
            with torch.no_grad():
                return self.student(images)
        finally:
            self.student.train(was_training)

    def teacher_forward(
        self, images: torch.Tensor | None = None, return_features: bool = False
    ) -> TeacherOutput:
        """Teacher output on ``images`` (default: the sample batch)."""
        if self.teacher is None:
            raise ConfigError("this method asked for the teacher but none is loaded (set teacher.spec)")
        images = self.sample_batch["image"] if images is None else images
        names = self.sample_batch.get("name")
        return self.teacher(images, names=names, return_features=return_features)


@dataclass
class EmptyConfig:
    """A method without options."""


class Method(nn.Module):
    """Base class of distillation methods (see the module docstring for the contract).

    Class attributes a method sets: ``name`` (set by :func:`register_method`), ``Config`` (dataclass of
    its options), ``needs_teacher``, ``needs_ground_truth``, ``teacher_features``. The last three may
    be properties depending on the options.
    """

    name: ClassVar[str] = "method"
    Config: ClassVar[type] = EmptyConfig
    needs_teacher: bool = True
    needs_ground_truth: bool = False
    teacher_features: bool = False

    def __init__(self, config: Any = None) -> None:
        super().__init__()
        self.config = config if config is not None else self.Config()

    # --- life cycle ----------------------------------------------------------------------------
    def setup(self, ctx: SetupContext) -> None:
        """Build trainable parts from real shapes; called once before training or resuming."""

    def stages(self) -> list[Stage]:
        """The training phases, in order (default: one stage, student + method parameters)."""
        return [Stage()]

    def on_stage_start(self, stage: Stage, ctx: SetupContext) -> None:
        """Called before each stage starts or resumes."""

    def train_modes(self, stage: Stage) -> None:
        """Called after Lightning puts modules in training mode; set frozen parts to ``eval()``."""

    # --- the loss ------------------------------------------------------------------------------
    def loss(
        self,
        batch: dict[str, Any],
        student_out: StudentOutput,
        teacher_out: TeacherOutput | None,
        stage: Stage,
    ) -> LossOutput:
        """The loss of one batch; see the module docstring."""
        raise NotImplementedError(f"method {self.name!r} does not implement loss()")

    def manual_step(self, module: Any, batch: dict[str, Any], stage: Stage) -> LossOutput:
        """One training step of a ``manual`` stage (alternating optimisers)."""
        raise NotImplementedError(f"method {self.name!r} declares a manual stage but no manual_step()")

    # --- parameters ----------------------------------------------------------------------------
    def owned_parameters(self, owner: str) -> Iterator[nn.Parameter]:
        """Parameters of ``method`` or ``method.<submodule path>``."""
        if owner == "method":
            yield from self.parameters()
            return
        path = owner.removeprefix("method.")
        try:
            module = self.get_submodule(path)
        except AttributeError:
            names = [n for n, _ in self.named_children()]
            raise ConfigError(
                f"method {self.name!r} has no part {path!r} (parts: {', '.join(names) or 'none'})"
            ) from None
        yield from module.parameters()

    # --- helpers for subclasses ------------------------------------------------------------------
    def require_ground_truth(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """``batch['depth']`` or a :class:`DataError` saying the method needs ground truth."""
        depth = batch.get("depth")
        if depth is None:
            raise DataError(
                f"method {self.name!r} needs ground-truth depth but the training batches have none "
                "(use a dataset with depth, or a method that learns from the teacher only)"
            )
        return depth

    def require_teacher(self, teacher_out: TeacherOutput | None) -> TeacherOutput:
        """``teacher_out`` or an error saying the teacher output is missing."""
        if teacher_out is None:
            raise ConfigError(f"method {self.name!r} needs a teacher output but got none (set teacher.spec)")
        return teacher_out

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


class CombinedMethod(Method):
    """A weighted sum of methods' losses: the first method leads (stages, setup order, manual steps)."""

    name: ClassVar[str] = "combined"

    def __init__(self, methods: Sequence[Method], weights: Sequence[float]) -> None:
        super().__init__(EmptyConfig())
        if not methods or len(methods) != len(weights):
            raise ConfigError("a combined method needs one weight per method")
        self.parts = nn.ModuleList(methods)
        self.weights = [float(w) for w in weights]
        names = [m.name for m in methods]
        if len(set(names)) != len(names):
            raise ConfigError(f"method.add repeats a method ({', '.join(names)}); each may appear once")
        self.name = "+".join(names)  # type: ignore[misc]  # instance label, e.g. "response+supervised"

    @property
    def lead(self) -> Method:
        """The first method, whose stages the combination follows."""
        return self.parts[0]

    @property
    def needs_teacher(self) -> bool:  # type: ignore[override]
        return any(m.needs_teacher for m in self.parts)

    @property
    def needs_ground_truth(self) -> bool:  # type: ignore[override]
        return any(m.needs_ground_truth for m in self.parts)

    @property
    def teacher_features(self) -> bool:  # type: ignore[override]
        return any(m.teacher_features for m in self.parts)

    def setup(self, ctx: SetupContext) -> None:
        for method in self.parts:
            method.setup(ctx)

    def stages(self) -> list[Stage]:
        return self.lead.stages()

    def on_stage_start(self, stage: Stage, ctx: SetupContext) -> None:
        for method in self.parts:
            method.on_stage_start(stage, ctx)

    def train_modes(self, stage: Stage) -> None:
        for method in self.parts:
            method.train_modes(stage)

    def _active(self, stage: Stage) -> list[tuple[Method, float]]:
        pairs = list(zip(self.parts, self.weights))
        return pairs if stage.combine else pairs[:1]

    def loss(
        self,
        batch: dict[str, Any],
        student_out: StudentOutput,
        teacher_out: TeacherOutput | None,
        stage: Stage,
    ) -> LossOutput:
        outputs = [
            method.loss(batch, student_out, teacher_out, stage).scaled(weight, f"{method.name}/")
            for method, weight in self._active(stage)
        ]
        terms: dict[str, torch.Tensor] = {}
        for out in outputs:
            terms.update(out.terms)
        total = outputs[0].total
        for out in outputs[1:]:
            total = total + out.total
        return LossOutput(total=total, terms=terms)

    def manual_step(self, module: Any, batch: dict[str, Any], stage: Stage) -> LossOutput:
        return self.lead.manual_step(module, batch, stage)

    def owned_parameters(self, owner: str) -> Iterator[nn.Parameter]:
        if owner == "method":
            yield from self.parameters()
        else:
            yield from self.lead.owned_parameters(owner)


__all__ = [
    "CombinedMethod",
    "EmptyConfig",
    "LossOutput",
    "Method",
    "OptimizerSpec",
    "SetupContext",
    "Stage",
]
