"""``response`` KD: every loss option, the ground-truth term and the relative-teacher paths."""

from __future__ import annotations

import math

import pytest
import torch

from depthkd.distill import Stage, build_method
from depthkd.errors import ConfigError
from depthkd.losses import SSIM_C1, silog_loss
from depthkd.models.outputs import StudentOutput, TeacherOutput

STAGE = Stage()


def run(options: dict, student: torch.Tensor, teacher: torch.Tensor, kind: str = "metric_depth", gt=None):  # noqa: ANN001, ANN201
    method = build_method("response", options)
    batch = {"image": torch.rand(student.shape[0], 3, *student.shape[-2:])}
    if gt is not None:
        batch["depth"] = gt
    return method.loss(batch, StudentOutput(depth=student), TeacherOutput(depth=teacher, kind=kind), STAGE)


def ramp(scale: float = 1.0) -> torch.Tensor:
    return (torch.arange(1, 33, dtype=torch.float32).view(1, 1, 4, 8) / 8.0) * scale


def test_mse_l1_hand_values() -> None:
    teacher = torch.full((1, 1, 4, 4), 2.0)
    student = torch.full((1, 1, 4, 4), 2.5)
    assert run({"loss": "mse"}, student, teacher).total.item() == pytest.approx(0.25)
    assert run({"loss": "l1"}, student, teacher).total.item() == pytest.approx(0.5)


def test_ssim_is_weighted_one_minus_ssim() -> None:
    teacher = torch.full((1, 1, 16, 16), 1.0)
    student = torch.full((1, 1, 16, 16), 2.0)
    expected = 1.5 * (1 - (2 * 2.0 * 1.0 + SSIM_C1) / (4.0 + 1.0 + SSIM_C1))
    out = run({"loss": "ssim"}, student, teacher)
    assert out.terms.keys() == {"ssim"}
    assert out.total.item() == pytest.approx(expected, rel=1e-5)
    assert run({}, student, teacher).total.item() == pytest.approx(expected, rel=1e-5)  # auto -> ssim


def test_combined_losses_add_their_terms() -> None:
    teacher = ramp()
    student = teacher * 2.0  # g = ln 2 everywhere: SILog(alpha=1) = ln2 * sqrt(1 - 0.85)
    out = run({"loss": "ssim+si"}, student, teacher)
    assert out.terms.keys() == {"ssim", "si"}
    assert out.terms["si"].item() == pytest.approx(math.log(2) * math.sqrt(0.15), rel=1e-4)
    assert out.total.item() == pytest.approx(sum(t.item() for t in out.terms.values()))
    out = run({"loss": "ssim+mse"}, student, teacher)
    assert out.terms["mse"].item() == pytest.approx((teacher**2).mean().item(), rel=1e-5)


def test_ssi_and_grad_on_metric_teacher_ignore_scale_and_shift() -> None:
    teacher = ramp() + torch.linspace(0, 1, 8).view(1, 1, 1, 8)
    assert run({"loss": "ssi"}, teacher * 3 + 1, teacher).total.item() == pytest.approx(0.0, abs=1e-5)
    assert run({"loss": "grad"}, teacher + 1, teacher).total.item() == pytest.approx(0.0, abs=1e-6)
    assert run({"loss": "grad"}, teacher * 2, teacher).total.item() > 0


def test_ground_truth_term_uses_teacher_where_ground_truth_is_missing() -> None:
    teacher = ramp() + 1.0
    gt = teacher * 1.2
    gt[..., :2, :] = 0.0  # no ground truth in the top rows
    student = teacher * 0.9
    out = run({"loss": "mse", "gt_weight": 0.5}, student, teacher, gt=gt)
    filled = torch.where(gt > 0, gt, teacher)
    assert out.terms["gt"].item() == pytest.approx(0.5 * silog_loss(student, filled).item(), rel=1e-5)
    plain = run({"loss": "mse", "gt_weight": 0.5, "fill_with_teacher": False}, student, teacher, gt=gt)
    assert plain.terms["gt"].item() == pytest.approx(0.5 * silog_loss(student, gt).item(), rel=1e-5)
    assert plain.terms["gt"].item() != pytest.approx(out.terms["gt"].item())


def test_relative_disparity_teacher_is_matched_in_disparity_space() -> None:
    disparity = ramp() + 0.5
    student = 1.0 / (3.0 * disparity + 2.0)  # the student's disparity is an affine map of the teacher's
    out = run({}, student, disparity, kind="relative_disparity")
    assert out.terms.keys() == {"ssi"}
    assert out.total.item() == pytest.approx(0.0, abs=1e-4)
    assert run({}, 1.0 / disparity**2, disparity, kind="relative_disparity").total.item() > 0.01
    with pytest.raises(ConfigError, match="relative"):
        run({"loss": "mse"}, student, disparity, kind="relative_disparity")


def test_relative_teacher_aligned_to_ground_truth_becomes_a_metric_target() -> None:
    disparity = ramp() + 0.5
    gt = 1.0 / (2.0 * disparity + 1.0)
    out = run({"loss": "mse", "relative_mode": "align"}, gt * 1.1, disparity, kind="relative_disparity", gt=gt)
    assert out.total.item() == pytest.approx(((0.1 * gt) ** 2).mean().item(), rel=1e-3)
    method = build_method("response", {"relative_mode": "align"})
    assert method.needs_ground_truth
    assert not build_method("response", {}).needs_ground_truth


def test_mismatched_teacher_shape_is_reported() -> None:
    with pytest.raises(Exception, match="differ in shape"):
        run({"loss": "mse"}, torch.ones(1, 1, 4, 4), torch.ones(1, 1, 4, 5))


def test_relative_gradient_matching_ignores_scale_and_shift_of_disparity() -> None:
    disparity = ramp() + torch.linspace(0, 2, 8).view(1, 1, 1, 8)
    student = 1.0 / (3.0 * disparity + 2.0)
    out = run({"loss": "grad"}, student, disparity, kind="relative_disparity")
    assert out.terms.keys() == {"grad"}
    assert out.total.item() == pytest.approx(0.0, abs=1e-4)
