"""``feature``: feature-based KD (baseline): student features regress teacher features through adapters.

Layers are chosen per side, as pairs: an integer indexes the model's own feature list
(``StudentOutput.features`` / ``TeacherOutput.features``, shallow to deep; ``-1`` is the deepest), a
string names a module hooked with :class:`~depthkd.distill.hooks.FeatureHooks`. Each pair gets an
adapter on the student side (1x1 conv to the teacher's channels + BatchNorm, as in FitNet); the
teacher map (ViT tokens laid on their patch grid first) is resized bilinearly to the student map's
size. Losses: ``mse`` (FitNet) or ``cwd`` (channel-wise distillation: per channel a softmax over
space at temperature ``tau``, KL(teacher || student), times ``tau^2``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from depthkd.distill.base import LossOutput, Method, SetupContext, Stage
from depthkd.distill.hooks import FeatureHooks, as_feature_map
from depthkd.distill.registry import register_method
from depthkd.errors import ConfigError, ModelError
from depthkd.losses import SILOG_ALPHA, SILOG_LAMBDA, silog_loss
from depthkd.models.outputs import StudentOutput, TeacherOutput

Layer = int | str


def channel_wise_distillation(student: torch.Tensor, teacher: torch.Tensor, tau: float) -> torch.Tensor:
    """CWD (Shu et al. 2021): ``tau^2`` x mean over (batch, channel) of KL(softmax_space(T/tau) || ...(S/tau))."""
    s = student.float().flatten(2) / tau
    t = teacher.float().flatten(2) / tau
    log_p_s = F.log_softmax(s, dim=-1)
    log_p_t = F.log_softmax(t, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)
    return (tau * tau) * kl.mean()


class Adapter(nn.Sequential):
    """1x1 convolution from the student's to the teacher's channels, then BatchNorm."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False), nn.BatchNorm2d(out_channels))


def _pick(features: list[torch.Tensor], hooked: list[torch.Tensor], layers: list[Layer], side: str) -> list[torch.Tensor]:
    """The features named by ``layers``: list indices into ``features``, hooked modules in order."""
    out, hooked_iter = [], iter(hooked)
    for layer in layers:
        if isinstance(layer, str):
            out.append(next(hooked_iter))
            continue
        if not -len(features) <= layer < len(features):
            raise ModelError(
                f"feature: {side} layer index {layer} is out of range; the {side} returns "
                f"{len(features)} feature maps"
            )
        out.append(features[layer])
    return out


@register_method("feature")
class FeatureKD(Method):
    """Feature KD with per-pair adapters and MSE (FitNet) or channel-wise distillation losses."""

    @dataclass
    class Config:
        """Options of ``feature``.

        Attributes:
            student_layers, teacher_layers: paired layers (ints index the feature lists, strings name
                modules); our default pairs the deepest maps of both.
            loss: ``mse`` (FitNet) or ``cwd`` (channel-wise distillation).
            temperature: CWD's temperature (4).
            weight: weight of the summed feature terms.
            gt_weight: weight of a SILog term on ground truth (our default 1: feature hints alone do
                not train the decoder and head); 0 for features only.
        """

        student_layers: list[int | str] = field(default_factory=lambda: [-1])
        teacher_layers: list[int | str] = field(default_factory=lambda: [-1])
        loss: Literal["mse", "cwd"] = "mse"
        temperature: float = 4.0
        weight: float = 1.0
        gt_weight: float = 1.0
        gt_alpha: float = SILOG_ALPHA
        gt_lambda: float = SILOG_LAMBDA

    needs_teacher = True

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        if len(self.config.student_layers) != len(self.config.teacher_layers):
            raise ConfigError(
                f"feature: {len(self.config.student_layers)} student_layers but "
                f"{len(self.config.teacher_layers)} teacher_layers; they are paired one to one"
            )
        if not self.config.student_layers:
            raise ConfigError("feature: student_layers is empty; name at least one pair of layers")
        self.adapters = nn.ModuleList()
        self._student_hooks: FeatureHooks | None = None
        self._teacher_hooks: FeatureHooks | None = None

    @property
    def needs_ground_truth(self) -> bool:  # type: ignore[override]
        return self.config.gt_weight > 0

    @property
    def teacher_features(self) -> bool:  # type: ignore[override]
        return any(isinstance(layer, int) for layer in self.config.teacher_layers)

    def _named(self, layers: list[Layer]) -> list[str]:
        return [layer for layer in layers if isinstance(layer, str)]

    def setup(self, ctx: SetupContext) -> None:
        student_names = self._named(self.config.student_layers)
        teacher_names = self._named(self.config.teacher_layers)
        if student_names:
            self._student_hooks = FeatureHooks(ctx.student, student_names, "student")
        if teacher_names:
            if ctx.teacher is None:
                raise ConfigError("feature: teacher layers given but no teacher is loaded (set teacher.spec)")
            self._teacher_hooks = FeatureHooks(ctx.teacher, teacher_names, "teacher")
        student_out = ctx.student_forward()
        teacher_out = ctx.teacher_forward(return_features=self.teacher_features)
        image_size = ctx.sample_batch["image"].shape[-2:]
        pairs = self.feature_pairs(student_out, teacher_out, image_size)
        self.adapters = nn.ModuleList(Adapter(s.shape[1], t.shape[1]) for s, t in pairs)

    def feature_pairs(
        self, student_out: StudentOutput, teacher_out: TeacherOutput, image_size: Any
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(student map, teacher map) per pair, as ``(B,C,h,w)``, before adapters and resizing."""
        student_hooked = self._student_hooks.collect() if self._student_hooks else []
        teacher_hooked = self._teacher_hooks.collect() if self._teacher_hooks else []
        students = _pick(list(student_out.features), student_hooked, self.config.student_layers, "student")
        teachers = _pick(list(teacher_out.features), teacher_hooked, self.config.teacher_layers, "teacher")
        return [
            (as_feature_map(s, image_size), as_feature_map(t, image_size).detach())
            for s, t in zip(students, teachers)
        ]

    def pair_loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """The configured loss between an adapted student map and a resized teacher map."""
        if self.config.loss == "cwd":
            return channel_wise_distillation(student, teacher, self.config.temperature)
        return F.mse_loss(student.float(), teacher.float())

    def loss(
        self,
        batch: dict[str, Any],
        student_out: StudentOutput,
        teacher_out: TeacherOutput | None,
        stage: Stage,
    ) -> LossOutput:
        teacher = self.require_teacher(teacher_out)
        image_size = batch["image"].shape[-2:]
        feature_total = None
        for adapter, (s, t) in zip(self.adapters, self.feature_pairs(student_out, teacher, image_size)):
            adapted = adapter(s)
            target = F.interpolate(t, size=adapted.shape[-2:], mode="bilinear", align_corners=False)
            term = self.pair_loss(adapted, target)
            feature_total = term if feature_total is None else feature_total + term
        terms = {"feature": self.config.weight * feature_total}
        if self.config.gt_weight > 0:
            gt = self.require_ground_truth(batch)
            terms["silog"] = self.config.gt_weight * silog_loss(
                student_out.depth, gt, alpha=self.config.gt_alpha, lam=self.config.gt_lambda
            )
        return LossOutput.from_terms(terms)
