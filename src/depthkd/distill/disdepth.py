"""``disdepth``: a transformer teacher's features taught to a CNN student (Zheng et al. 2024).

Three engine stages, each resumable (docs/METHODS.md, section ``disdepth``):

1. ``warmup``: the student alone, SILog on ground truth (``fill_with_teacher``: the teacher's depth,
   aligned to the ground truth when it is relative, fills pixels without ground truth).
2. ``acclimation``: the ghost decoder, a frozen copy of the warmed-up student's decoder and head, is
   fed the outputs of one Feature Acclimation Module (FAM) per distilled stage; only the FAMs train,
   with SILog on the ghost decoder's depth, so the teacher's features become ones the student's decoder
   can read. The student and the teacher stay frozen (the student in eval mode, so its BatchNorm
   statistics stay those of the warm-up).
3. ``distill``: SILog on ground truth + ``lambda_kd`` x the attentive KD loss between each distilled
   student map and its (detached) FAM target, the FAMs frozen.

At the first step of ``distill`` the acclimated teacher (teacher -> FAM -> ghost decoder) is scored on
the validation data beside the teacher's own depth and the warmed-up student; the numbers are logged,
written to ``<run dir>/acclimation.json`` and kept in :attr:`DisDepth.acclimation_report`.

What the ghost decoder receives (our choice, the paper does not say): the student's decoder reads
every encoder stage through its skips, but only ``student_stages`` are distilled. At the stages that
are not distilled it receives the student's own (detached) features: a ViT teacher's maps sit on a
stride-14 patch grid and hold nothing for the stride-2 skip, and the FAMs then learn what the teacher
adds on top of the student. To acclimate the teacher alone, list every encoder stage in
``student_stages``.

Teacher features: integers in ``teacher_layers`` index the teacher's own feature list (Hugging Face
ViT hidden states already laid on the patch grid by the ``hf:`` adapter, a depthkd student's encoder
maps); strings name modules hooked with :class:`~depthkd.distill.hooks.FeatureHooks` (any CNN, or a
ViT block whose tokens are laid on the patch grid here). ``teacher_layers: null`` (our default) pairs
the distilled stages with evenly spaced teacher layers ending at the deepest (13 ViT hidden states, 4
stages: 3, 6, 9, 12, the layers DPT reads).

Terms of methods added with ``method.add`` join the distillation stage only (the warm-up and the
acclimation train what DisDepth alone defines).

Ablations: ``student.lgconv`` (LG-Conv on/off, a student option); ``acclimation: false`` (no FAM and
no acclimation stage: FitNet-style adapters on the student side, 1x1 conv + BN to the teacher's
channels, regress the resized teacher maps, trained with the student in ``distill``); ``attentive:
false`` (uniform weights: plain MSE); ``lambda_kd``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset

from depthkd.distill.base import LossOutput, Method, OptimizerSpec, SetupContext, Stage
from depthkd.distill.fam import FeatureAcclimation, GhostDecoder
from depthkd.distill.feature import Adapter
from depthkd.distill.hooks import FeatureHooks, as_feature_map
from depthkd.distill.registry import register_method
from depthkd.errors import ConfigError, DataError, ModelError
from depthkd.losses import SILOG_ALPHA, SILOG_LAMBDA, silog_loss, valid_mask
from depthkd.models.outputs import StudentOutput, TeacherOutput
from depthkd.progress import track

logger = logging.getLogger(__name__)

WARMUP, ACCLIMATION, DISTILL = "warmup", "acclimation", "distill"
REPORT_FILE = "acclimation.json"
DEFAULT_TAU = 0.5


# --------------------------------------------------------------------------------------------------
# The attentive KD loss
# --------------------------------------------------------------------------------------------------


def attention_weights(target: torch.Tensor, tau: float = DEFAULT_TAU) -> torch.Tensor:
    """``A = H*W * softmax_p(a / tau)`` with ``a(p) = mean_c |T(c,p)|``, per image: ``(B,1,H,W)``.

    Pixels where the target is most active weigh most; each image's weights average to exactly 1, so
    the attentive loss keeps the scale of a plain MSE.
    """
    if target.ndim != 4:
        raise ModelError(f"attention weights need (B,C,H,W) maps, got shape {tuple(target.shape)}")
    if tau <= 0:
        raise ConfigError(f"disdepth: tau={tau} must be > 0")
    batch, _, height, width = target.shape
    activity = target.detach().float().abs().mean(dim=1).flatten(1)
    weights = torch.softmax(activity / tau, dim=1) * (height * width)
    return weights.view(batch, 1, height, width)


def attentive_kd_loss(
    student: torch.Tensor, target: torch.Tensor, tau: float = DEFAULT_TAU, attentive: bool = True
) -> torch.Tensor:
    """``mean_{c,p} A(p) * (S - T)^2`` (mean over the batch too), in float32; ``attentive=False``: ``A = 1``."""
    if student.shape != target.shape:
        raise ModelError(
            f"disdepth: student map {tuple(student.shape)} and its target {tuple(target.shape)} differ in shape"
        )
    squared = (student.float() - target.float()).square()
    if attentive:
        squared = squared * attention_weights(target, tau)
    return squared.mean()


def evenly_spaced_layers(num_layers: int, count: int) -> list[int]:
    """``count`` layer indices out of ``num_layers``, evenly spaced and ending at the deepest.

    The spacing is ``(num_layers - 1) // count`` (at least 1): 13 ViT hidden states and 4 stages give
    3, 6, 9, 12; 5 CNN levels and 4 stages give 1, 2, 3, 4. Too few layers repeat the shallowest.
    """
    if num_layers < 1:
        raise ModelError("the teacher returned no feature maps to distil (check teacher.spec and teacher_layers)")
    step = max(1, (num_layers - 1) // count)
    return [max(0, num_layers - 1 - (count - 1 - i) * step) for i in range(count)]


# --------------------------------------------------------------------------------------------------
# The method
# --------------------------------------------------------------------------------------------------


class _Shared:
    """The engine's student and teacher, seen by the method but not part of its module tree.

    As attributes of an ``nn.Module`` they would be registered as submodules: their parameters would
    count among the method's own and be saved twice. Copies of the method (the EMA average) share
    them instead of copying a large teacher.
    """

    def __init__(self, student: nn.Module | None = None, teacher: nn.Module | None = None) -> None:
        self.student = student
        self.teacher = teacher

    def __deepcopy__(self, memo: dict[int, Any]) -> _Shared:
        return self


@register_method("disdepth")
class DisDepth(Method):
    """DisDepth: warm-up, teacher acclimation with a ghost decoder, attentive feature KD."""

    @dataclass
    class Config:
        """Options of ``disdepth``.

        Attributes:
            student_stages: student encoder levels distilled (indices into ``StudentOutput.features``,
                shallow to deep; negative from the deepest). Our default: the four deepest (strides 4
                to 32 on the usual backbones); the stride-2 level gets no ViT target.
            teacher_layers: one teacher layer per student stage (integers index the teacher's
                feature list, strings name modules to hook); ``null``: evenly spaced, ending at the
                deepest (our default, see :func:`evenly_spaced_layers`).
            lambda_kd: weight of the summed attentive KD terms (docs/METHODS.md: 1; sweep 0.5-10).
            attentive: attentive weighting (``False``: uniform, i.e. MSE).
            tau: the attention's softmax temperature (0.5).
            acclimation: the FAM + ghost decoder stage (``False``: FitNet-style student adapters).
            warmup_steps, acclimation_steps, distill_steps: optimiser steps of each stage; ``null``
                takes the recipe's budget (``trainer.max_steps`` or ``max_epochs``) for that stage.
                ``warmup_steps: 0`` skips the warm-up (only without acclimation: the ghost decoder
                must be a trained decoder).
            acclimation_lr: peak learning rate of the FAMs (``null``: ``optim.lr``).
            fam_resize_first: resize teacher maps before the FAM's convolutions (our default:
                after, see :class:`~depthkd.distill.fam.FeatureAcclimation`).
            fill_with_teacher: in the warm-up and acclimation SILog, the teacher's depth (aligned to
                the ground truth per image when relative) fills pixels without ground truth. The
                distillation stage's SILog stays on ground truth alone, as docs/METHODS.md's total.
            report_acclimation: score the acclimated teacher on ``data.val`` when ``distill`` starts.
            silog_alpha, silog_lambda: SILog's scale and variance weight (10 and 0.85).
        """

        student_stages: list[int] = field(default_factory=lambda: [-4, -3, -2, -1])
        teacher_layers: list[int | str] | None = None
        lambda_kd: float = 1.0
        attentive: bool = True
        tau: float = DEFAULT_TAU
        acclimation: bool = True
        warmup_steps: int | None = None
        acclimation_steps: int | None = None
        distill_steps: int | None = None
        acclimation_lr: float | None = None
        fam_resize_first: bool = False
        fill_with_teacher: bool = True
        report_acclimation: bool = True
        silog_alpha: float = SILOG_ALPHA
        silog_lambda: float = SILOG_LAMBDA

    needs_teacher = True
    needs_ground_truth = True
    # Always the live teacher: its features are the targets (the depth cache cannot serve them).
    teacher_features = True

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        cfg = self.config
        if not cfg.student_stages:
            raise ConfigError("disdepth: student_stages is empty; name at least one encoder stage to distil")
        if cfg.teacher_layers is not None and len(cfg.teacher_layers) != len(cfg.student_stages):
            raise ConfigError(
                f"disdepth: {len(cfg.teacher_layers)} teacher_layers for {len(cfg.student_stages)} "
                "student_stages; they are paired one to one (or set teacher_layers: null)"
            )
        for name in ("warmup_steps", "acclimation_steps", "distill_steps"):
            value = getattr(cfg, name)
            if value is not None and value < (0 if name == "warmup_steps" else 1):
                raise ConfigError(f"disdepth: {name}={value} must be >= {0 if name == 'warmup_steps' else 1}")
        if cfg.warmup_steps == 0 and cfg.acclimation:
            raise ConfigError(
                "disdepth: warmup_steps=0 with acclimation: the ghost decoder is a copy of the warmed-up "
                "student's decoder; give the warm-up steps or set acclimation: false"
            )
        if cfg.tau <= 0:
            raise ConfigError(f"disdepth: tau={cfg.tau} must be > 0")
        if cfg.lambda_kd < 0:
            raise ConfigError(f"disdepth: lambda_kd={cfg.lambda_kd} must be >= 0")
        self.fam = nn.ModuleList()
        self.adapters = nn.ModuleList()
        self.ghost: GhostDecoder | None = None
        self.acclimation_report: dict[str, Any] | None = None
        self._stage_indices: list[int] = []
        self._teacher_layers: list[int | str] = []
        self._teacher_hooks: FeatureHooks | None = None
        self._recipe: Any = None
        # The engine's student and teacher, held outside this module's tree (see _Shared).
        self._parts = _Shared()

    # --- set-up ----------------------------------------------------------------------------------
    def setup(self, ctx: SetupContext) -> None:
        self._parts = _Shared(ctx.student, ctx.teacher)
        self._recipe = ctx.config
        student_out = ctx.student_forward()
        self._stage_indices = self._resolve_stages(len(student_out.features))
        named = [layer for layer in self.config.teacher_layers or [] if isinstance(layer, str)]
        if named:
            if ctx.teacher is None:
                raise ConfigError("disdepth: teacher layers are named but no teacher is loaded (set teacher.spec)")
            self._teacher_hooks = FeatureHooks(ctx.teacher, named, "teacher")
        teacher_out = ctx.teacher_forward(return_features=True)
        if self.config.teacher_layers is None:
            self._teacher_layers = list(evenly_spaced_layers(len(teacher_out.features), len(self._stage_indices)))
        else:
            self._teacher_layers = list(self.config.teacher_layers)
        teacher_maps = self.teacher_maps(teacher_out, ctx.sample_batch["image"].shape[-2:])
        student_maps = [student_out.features[i] for i in self._stage_indices]
        if self.config.acclimation:
            self.fam = nn.ModuleList(
                FeatureAcclimation(t.shape[1], s.shape[1], self.config.fam_resize_first)
                for s, t in zip(student_maps, teacher_maps)
            )
            self.ghost = GhostDecoder(ctx.student)
        else:
            self.adapters = nn.ModuleList(Adapter(s.shape[1], t.shape[1]) for s, t in zip(student_maps, teacher_maps))
        logger.info(
            "disdepth: student stages %s <- teacher layers %s (%s)",
            self._stage_indices,
            self._teacher_layers,
            ", ".join(f"{tuple(t.shape[1:])}->{tuple(s.shape[1:])}" for s, t in zip(student_maps, teacher_maps)),
        )

    def _resolve_stages(self, num_features: int) -> list[int]:
        """``student_stages`` as non-negative indices, checked against the student's feature count."""
        indices = []
        for stage in self.config.student_stages:
            if not -num_features <= stage < num_features:
                raise ConfigError(
                    f"disdepth: student stage {stage} is out of range; the student has {num_features} encoder stages"
                )
            indices.append(stage % num_features)
        if len(set(indices)) != len(indices):
            raise ConfigError(f"disdepth: student_stages {self.config.student_stages} name a stage twice")
        return indices

    @property
    def stage_indices(self) -> list[int]:
        """The distilled student stages (non-negative indices), known after :meth:`setup`."""
        return list(self._stage_indices)

    @property
    def teacher_layers(self) -> list[int | str]:
        """The teacher layer paired with each distilled stage, known after :meth:`setup`."""
        return list(self._teacher_layers)

    # --- stages ----------------------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        cfg = self.config
        stages = []
        if cfg.warmup_steps != 0:
            stages.append(
                Stage(
                    WARMUP,
                    steps=cfg.warmup_steps,
                    optimizers=(OptimizerSpec(("student",)),),
                    uses_teacher=cfg.fill_with_teacher,
                    combine=False,
                )
            )
        if cfg.acclimation:
            stages.append(
                Stage(
                    ACCLIMATION,
                    steps=cfg.acclimation_steps,
                    optimizers=(OptimizerSpec(("method.fam",), self._acclimation_optim()),),
                    validate=False,  # the student does not change
                    combine=False,
                )
            )
        trained = ("student",) if cfg.acclimation else ("student", "method.adapters")
        stages.append(Stage(DISTILL, steps=cfg.distill_steps, optimizers=(OptimizerSpec(trained),)))
        return stages

    def _acclimation_optim(self) -> Any:
        """The FAMs' optimiser settings: the recipe's, with ``acclimation_lr`` when given."""
        if self.config.acclimation_lr is None:
            return None
        from depthkd.config import OptimConfig

        base = getattr(self._recipe, "optim", None) or OptimConfig()
        return dataclasses.replace(base, lr=self.config.acclimation_lr)

    def on_stage_start(self, stage: Stage, ctx: SetupContext) -> None:
        if stage.name == ACCLIMATION and self.ghost is not None:
            # On resume inside acclimation or later the checkpoint restores the ghost afterwards.
            self.ghost.copy_from(ctx.student)
            logger.info("disdepth: ghost decoder copied from the warmed-up student")

    def train_modes(self, stage: Stage) -> None:
        if self.ghost is not None:
            self.ghost.eval()
        if stage.name == ACCLIMATION and self._parts.student is not None:
            self._parts.student.eval()  # frozen: its BatchNorm statistics stay those of the warm-up
        if stage.name != ACCLIMATION:
            self.fam.eval()

    # --- features --------------------------------------------------------------------------------
    def teacher_maps(self, teacher_out: TeacherOutput, image_size: Sequence[int]) -> list[torch.Tensor]:
        """The teacher map paired with each distilled stage, ``(B,C_t,h,w)``, detached, float32."""
        hooked = iter(self._teacher_hooks.collect() if self._teacher_hooks else [])
        features = list(teacher_out.features)
        maps = []
        for layer in self._teacher_layers:
            if isinstance(layer, str):
                feature = next(hooked)
            else:
                if not -len(features) <= layer < len(features):
                    raise ModelError(
                        f"disdepth: teacher layer index {layer} is out of range; the teacher returns "
                        f"{len(features)} feature maps"
                    )
                feature = features[layer]
            maps.append(as_feature_map(feature, image_size).detach().float())
        return maps

    def acclimated_features(
        self, teacher_maps: Sequence[torch.Tensor], student_features: Sequence[torch.Tensor]
    ) -> list[torch.Tensor]:
        """FAM outputs, one per distilled stage, each shaped like the student map it targets."""
        if not self.config.acclimation:
            raise ConfigError("disdepth: acclimation is off; there are no FAM outputs")
        return [
            fam(t, student_features[i].shape[-2:]) for fam, i, t in zip(self.fam, self._stage_indices, teacher_maps)
        ]

    def ghost_depth(
        self,
        teacher_maps: Sequence[torch.Tensor],
        student_features: Sequence[torch.Tensor],
        out_size: Sequence[int],
    ) -> StudentOutput:
        """The acclimated teacher's prediction: FAM outputs (student features elsewhere) -> ghost decoder."""
        assert self.ghost is not None
        inputs = [f.detach() for f in student_features]
        for index, acclimated in zip(self._stage_indices, self.acclimated_features(teacher_maps, student_features)):
            inputs[index] = acclimated
        return self.ghost(inputs, out_size)

    # --- losses ----------------------------------------------------------------------------------
    def _silog(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return silog_loss(pred, target, alpha=self.config.silog_alpha, lam=self.config.silog_lambda)

    def depth_target(self, batch: dict[str, Any], teacher_out: TeacherOutput | None) -> torch.Tensor:
        """Ground truth, with the (metric or aligned) teacher depth where it is missing if asked."""
        gt = self.require_ground_truth(batch)
        if not self.config.fill_with_teacher or teacher_out is None:
            return gt
        valid = valid_mask(gt)
        if bool(valid.all()):
            return gt
        if teacher_out.kind == "metric_depth":
            metric = teacher_out.depth
        else:
            from depthkd.models.teachers import align_to_ground_truth, alignment_for_kind

            method = alignment_for_kind(teacher_out.kind)
            metric = align_to_ground_truth(teacher_out, gt, method=method).depth
        return torch.where(valid, gt, metric.detach().to(gt.dtype))

    def distillation_terms(
        self, student_features: Sequence[torch.Tensor], teacher_maps: Sequence[torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """``lambda_kd`` x the attentive KD term of each distilled stage, named ``akd<stage>``."""
        cfg = self.config
        terms = {}
        if cfg.acclimation:
            with torch.no_grad():
                targets = self.acclimated_features(teacher_maps, student_features)
            pairs = [(student_features[i], t.detach()) for i, t in zip(self._stage_indices, targets)]
        else:
            pairs = []
            for adapter, i, t in zip(self.adapters, self._stage_indices, teacher_maps):
                adapted = adapter(student_features[i])
                pairs.append((adapted, F.interpolate(t, size=adapted.shape[-2:], mode="bilinear", align_corners=False)))
        for index, (student_map, target) in zip(self._stage_indices, pairs):
            terms[f"akd{index}"] = cfg.lambda_kd * attentive_kd_loss(student_map, target, cfg.tau, cfg.attentive)
        return terms

    def loss(
        self,
        batch: dict[str, Any],
        student_out: StudentOutput,
        teacher_out: TeacherOutput | None,
        stage: Stage,
    ) -> LossOutput:
        if stage.name == WARMUP:
            target = self.depth_target(batch, teacher_out)
            return LossOutput.from_terms({"silog": self._silog(student_out.depth, target)})
        teacher = self.require_teacher(teacher_out)
        image_size = batch["image"].shape[-2:]
        teacher_maps = self.teacher_maps(teacher, image_size)
        if stage.name == ACCLIMATION:
            depth = self.ghost_depth(teacher_maps, student_out.features, image_size).depth
            return LossOutput.from_terms({"acclimation": self._silog(depth, self.depth_target(batch, teacher))})
        terms = {"silog": self._silog(student_out.depth, self.require_ground_truth(batch))}
        terms.update(self.distillation_terms(student_out.features, teacher_maps))
        out = LossOutput.from_terms(terms)
        # After this batch's teacher features are collected: the report runs the teacher again.
        self._report_once(batch["image"].device)
        return out

    # --- the acclimation report --------------------------------------------------------------------
    def get_extra_state(self) -> dict[str, Any]:
        """Saved in checkpoints: a run resumed after the report does not score again."""
        return {"acclimation_report": self.acclimation_report}

    def set_extra_state(self, state: Any) -> None:
        self.acclimation_report = (state or {}).get("acclimation_report")

    def _report_once(self, device: torch.device) -> None:
        """Score the acclimated teacher on ``data.val`` once, at the first step of ``distill``."""
        cfg = self.config
        recipe = self._recipe
        if not (cfg.acclimation and cfg.report_acclimation) or self.acclimation_report is not None:
            return
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if distributed and torch.distributed.get_rank() != 0:
            return  # scored once, by the first process
        if recipe is None or not recipe.data.val:
            logger.info("disdepth: no data.val, so the acclimated teacher is not scored")
            self.acclimation_report = {"skipped": "no validation data"}
            return
        from depthkd.data import Resize, collate, dataset_from_spec

        transform = Resize(recipe.data.val_resize) if recipe.data.val_resize is not None else None
        dataset = dataset_from_spec(recipe.data.val, transform)
        if recipe.data.val_limit is not None and recipe.data.val_limit < len(dataset):
            dataset = Subset(dataset, range(recipe.data.val_limit))
        loader = DataLoader(dataset, batch_size=recipe.data.val_batch_size, collate_fn=collate)
        report = self.evaluate_acclimation(
            self._parts.student, loader, recipe.eval.protocol, recipe.eval.align, recipe.eval.teacher_align, device
        )
        self.acclimation_report = report
        for name in ("teacher", "acclimated_teacher", "student"):
            entry = report[name]
            logger.info(
                "disdepth acclimation report, %s (%s, %d images): abs_rel %.4f rmse %.4f d1 %.4f",
                name,
                entry["label"],
                entry["count"],
                entry["metrics"]["abs_rel"],
                entry["metrics"]["rmse"],
                entry["metrics"]["d1"],
            )
        run_dir = Path(recipe.run.path)
        if run_dir.is_dir():
            (run_dir / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")

    @torch.no_grad()
    def evaluate_acclimation(
        self,
        student: nn.Module,
        loader: Any,
        protocol: str,
        align: str = "none",
        teacher_align: str = "auto",
        device: torch.device | str | None = None,
    ) -> dict[str, Any]:
        """Scores of the teacher's own depth, the acclimated teacher (FAM -> ghost) and the student.

        Args:
            student: the student whose features fill the stages that are not distilled.
            loader: batches with ``image`` and ``depth``.
            protocol, align: the named protocol and alignment of the student and the acclimated teacher.
            teacher_align: the teacher's own alignment; ``auto``: by its kind (``lstsq_disparity`` for
                relative disparity, ``lstsq`` for relative depth, ``align`` for metric teachers).

        Returns:
            ``{"teacher" | "acclimated_teacher" | "student": MetricAccumulator.summary()}``.
        """
        from depthkd.metrics import MetricAccumulator

        teacher = self._teacher_module()
        if teacher_align == "auto":
            from depthkd.models.teachers import alignment_for_kind

            teacher_align = alignment_for_kind(teacher.kind, align)
        scores = {
            "teacher": MetricAccumulator(protocol, teacher_align),
            "acclimated_teacher": MetricAccumulator(protocol, align),
            "student": MetricAccumulator(protocol, align),
        }
        device = torch.device(device) if device is not None else next(student.parameters()).device
        modes = [(m, m.training) for root in (student, self) for m in root.modules()]
        student.eval()
        self.eval()
        try:
            for batch in track(loader, "acclimated teacher"):
                if "depth" not in batch:
                    raise DataError("disdepth: the acclimation report needs validation data with ground-truth depth")
                images = batch["image"].to(device)
                gt = batch["depth"].float().cpu()
                names = batch.get("name")
                teacher_out = teacher(images, names=names, return_features=True)
                student_out = student(images)
                maps = self.teacher_maps(teacher_out, images.shape[-2:])
                acclimated = self.ghost_depth(maps, student_out.features, images.shape[-2:]).depth
                scores["teacher"].update(teacher_out.depth.float().cpu(), gt, names)
                scores["acclimated_teacher"].update(acclimated.float().cpu(), gt, names)
                scores["student"].update(student_out.depth.float().cpu(), gt, names)
        finally:
            for module, mode in modes:
                module.training = mode  # each submodule's own flag (frozen parts stay in eval mode)
        return {name: accumulator.summary() for name, accumulator in scores.items()}

    def _teacher_module(self) -> nn.Module:
        teacher = self._parts.teacher
        if teacher is None:
            raise ConfigError("disdepth: no teacher is loaded (set teacher.spec)")
        return teacher


__all__ = ["DisDepth", "attention_weights", "attentive_kd_loss", "evenly_spaced_layers"]
