"""``response``: the student regresses the teacher's final map (the baseline of the TIE-KD comparison).

Metric teachers: the loss named by ``loss`` between the student's depth and the teacher's depth.
Relative teachers (``relative_disparity``, ``relative_depth``) have no metres to regress, so either

- ``relative_mode: ssi`` (our default): scale-and-shift-invariant L1 plus gradient matching in the
  teacher's space (the student's depth is inverted to disparity for a disparity teacher), or
- ``relative_mode: align``: the teacher map is aligned per image to the ground truth (``lstsq`` for
  relative depth, ``lstsq_disparity`` for relative disparity) and then used as a metric target.

An optional ground-truth term (``gt_weight``) adds SILog against the ground truth, with the (metric)
teacher filling pixels where the ground truth is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from depthkd.distill.base import LossOutput, Method, Stage
from depthkd.distill.registry import register_method
from depthkd.errors import ConfigError, ModelError
from depthkd.losses import (
    SILOG_ALPHA,
    SILOG_LAMBDA,
    gradient_matching_loss,
    l1_loss,
    mse_loss,
    normalize_median_mad,
    silog_loss,
    ssi_gradient_loss,
    ssim_loss,
    valid_mask,
)
from depthkd.models.outputs import StudentOutput, TeacherOutput

RESPONSE_LOSSES = ("auto", "mse", "si", "ssim", "ssim+si", "ssim+mse", "l1", "ssi", "grad")
RELATIVE_LOSSES = ("ssi", "grad")


@register_method("response")
class ResponseKD(Method):
    """Response-based KD on the teacher's final depth (or disparity) map."""

    @dataclass
    class Config:
        """Options of ``response``.

        Attributes:
            loss: ``mse``, ``si`` (SILog against the teacher, ``si_alpha``/``si_lambda``), ``ssim``
                (``ssim_weight * (1 - SSIM)``), ``ssim+si``, ``ssim+mse``, ``l1``, ``ssi`` (SSI L1 +
                ``grad_weight`` x gradient matching), ``grad`` (gradient matching alone), or ``auto``
                (our default: ``ssim``, the best response loss in the TIE-KD comparison, for metric
                targets; ``ssi`` for relative teachers under ``relative_mode: ssi``).
            ssim_weight: weight of the SSIM term (1.5 as in the TIE-KD comparison).
            si_alpha, si_lambda: SILog against the teacher (docs/METHODS.md: 1 and 0.85).
            grad_weight, grad_scales: gradient matching weight inside ``ssi`` and its scales (MiDaS).
            relative_mode: ``ssi`` or ``align`` for relative teachers (see the module docstring).
            align_method: ``auto`` (``lstsq_disparity`` for disparity, ``lstsq`` for depth), or one of
                ``lstsq``, ``lstsq_disparity``, ``median``.
            gt_weight: weight of the ground-truth SILog term (0 = teacher only).
            gt_alpha, gt_lambda: SILog parameters of the ground-truth term (10 and 0.85).
            fill_with_teacher: in the ground-truth term, use the (metric) teacher where ground truth
                is missing.
        """

        loss: Literal["auto", "mse", "si", "ssim", "ssim+si", "ssim+mse", "l1", "ssi", "grad"] = "auto"
        ssim_weight: float = 1.5
        si_alpha: float = 1.0
        si_lambda: float = SILOG_LAMBDA
        grad_weight: float = 0.5
        grad_scales: int = 4
        relative_mode: Literal["ssi", "align"] = "ssi"
        align_method: Literal["auto", "lstsq", "lstsq_disparity", "median"] = "auto"
        gt_weight: float = 0.0
        gt_alpha: float = SILOG_ALPHA
        gt_lambda: float = SILOG_LAMBDA
        fill_with_teacher: bool = True

    needs_teacher = True

    @property
    def needs_ground_truth(self) -> bool:  # type: ignore[override]
        return self.config.gt_weight > 0 or self.config.relative_mode == "align"

    # --- targets -------------------------------------------------------------------------------
    def metric_target(self, teacher: TeacherOutput, gt: torch.Tensor | None) -> torch.Tensor:
        """The teacher's map in metres (aligned to ground truth for relative teachers)."""
        if teacher.kind == "metric_depth":
            return teacher.depth
        if gt is None:
            raise ConfigError(
                f"response: a {teacher.kind} teacher has no metres; relative_mode=align needs ground truth"
            )
        from depthkd.models.teachers import align_to_ground_truth, alignment_for_kind

        method = self.config.align_method
        if method == "auto":
            method = alignment_for_kind(teacher.kind)
        return align_to_ground_truth(teacher, gt, method=method).depth.detach()

    def _loss_name(self, relative: bool) -> str:
        name = self.config.loss
        if name == "auto":
            return "ssi" if relative else "ssim"
        if relative and name not in RELATIVE_LOSSES:
            raise ConfigError(
                f"response: loss {name!r} needs metric targets but the teacher is relative; use loss "
                f"{' or '.join(RELATIVE_LOSSES)}, or relative_mode=align (with ground truth)"
            )
        return name

    # --- losses --------------------------------------------------------------------------------
    def metric_terms(self, pred: torch.Tensor, target: torch.Tensor, name: str) -> dict[str, torch.Tensor]:
        """Weighted terms of loss ``name`` between metric maps (teacher pixels > 0 count)."""
        cfg = self.config
        mask = valid_mask(target)
        terms: dict[str, torch.Tensor] = {}
        for part in name.split("+"):
            if part == "ssim":
                terms["ssim"] = cfg.ssim_weight * ssim_loss(pred, target, mask)
            elif part == "si":
                terms["si"] = silog_loss(pred, target, mask, alpha=cfg.si_alpha, lam=cfg.si_lambda)
            elif part == "mse":
                terms["mse"] = mse_loss(pred, target, mask)
            elif part == "l1":
                terms["l1"] = l1_loss(pred, target, mask)
            elif part == "ssi":
                terms["ssi"] = ssi_gradient_loss(pred, target, mask, cfg.grad_weight, cfg.grad_scales)
            elif part == "grad":
                terms["grad"] = gradient_matching_loss(pred, target, mask, cfg.grad_scales)
            else:  # pragma: no cover - Config's Literal rules this out
                raise ConfigError(f"response: unknown loss {part!r}; expected one of {', '.join(RESPONSE_LOSSES)}")
        return terms

    def relative_terms(self, student_depth: torch.Tensor, teacher: TeacherOutput, name: str) -> dict[str, torch.Tensor]:
        """SSI / gradient terms in the teacher's space (disparity for a disparity teacher)."""
        cfg = self.config
        pred = 1.0 / student_depth if teacher.kind == "relative_disparity" else student_depth
        target = teacher.depth
        mask = torch.isfinite(target)
        if name == "ssi":
            return {"ssi": ssi_gradient_loss(pred, target, mask, cfg.grad_weight, cfg.grad_scales)}
        pred_n, target_n = normalize_median_mad(pred, mask), normalize_median_mad(target, mask)
        return {"grad": gradient_matching_loss(pred_n, target_n, mask, cfg.grad_scales)}

    def loss(
        self,
        batch: dict[str, Any],
        student_out: StudentOutput,
        teacher_out: TeacherOutput | None,
        stage: Stage,
    ) -> LossOutput:
        teacher = self.require_teacher(teacher_out)
        pred = student_out.depth
        if teacher.depth.shape != pred.shape:
            raise ModelError(
                f"response: teacher map {tuple(teacher.depth.shape)} and student depth {tuple(pred.shape)} "
                "differ in shape"
            )
        gt = batch.get("depth")
        relative = teacher.kind != "metric_depth"
        use_ssi = relative and self.config.relative_mode == "ssi"
        name = self._loss_name(use_ssi)
        if use_ssi:
            terms = self.relative_terms(pred, teacher, name)
            metric_teacher = None
        else:
            metric_teacher = self.metric_target(teacher, gt)
            terms = self.metric_terms(pred, metric_teacher, name)

        if self.config.gt_weight > 0:
            gt = self.require_ground_truth(batch)
            target = gt
            if self.config.fill_with_teacher and metric_teacher is not None:
                target = torch.where(valid_mask(gt), gt, metric_teacher)
            terms["gt"] = self.config.gt_weight * silog_loss(
                pred, target, alpha=self.config.gt_alpha, lam=self.config.gt_lambda
            )
        return LossOutput.from_terms(terms)
