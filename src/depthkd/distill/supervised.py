"""``supervised``: the student alone on ground truth with SILog (also how simulator teachers are trained)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from depthkd.distill.base import LossOutput, Method, Stage
from depthkd.distill.registry import register_method
from depthkd.losses import SILOG_ALPHA, SILOG_LAMBDA, silog_loss
from depthkd.models.outputs import StudentOutput, TeacherOutput


@register_method("supervised")
class Supervised(Method):
    """SILog between the student's depth and the ground truth, over pixels with ground truth."""

    @dataclass
    class Config:
        """Options of ``supervised``.

        Attributes:
            alpha, lam: SILog's scale and variance weight (docs/METHODS.md: 10 and 0.85).
        """

        alpha: float = SILOG_ALPHA
        lam: float = SILOG_LAMBDA

    needs_teacher = False
    needs_ground_truth = True

    def loss(
        self,
        batch: dict[str, Any],
        student_out: StudentOutput,
        teacher_out: TeacherOutput | None,
        stage: Stage,
    ) -> LossOutput:
        gt = self.require_ground_truth(batch)
        return LossOutput.from_terms(
            {"silog": silog_loss(student_out.depth, gt, alpha=self.config.alpha, lam=self.config.lam)}
        )
