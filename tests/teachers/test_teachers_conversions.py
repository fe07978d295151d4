"""Kind conversions and alignment to ground truth, on hand-made maps."""

from __future__ import annotations

import pytest
import torch

from depthkd.errors import ModelError
from depthkd.models.outputs import TeacherOutput
from depthkd.models.teachers import align_to_ground_truth, to_depth, to_disparity


def _gt() -> torch.Tensor:
    gt = torch.linspace(1.0, 9.0, 2 * 16 * 24).reshape(2, 1, 16, 24)
    gt[:, :, :3] = 0.0  # rows without ground truth
    return gt


def test_depth_disparity_round_trip():
    depth = torch.rand(2, 1, 8, 8) * 9 + 1
    out = TeacherOutput(depth=depth, kind="relative_depth")
    disparity = to_disparity(out)
    assert disparity.kind == "relative_disparity"
    torch.testing.assert_close(disparity.depth, 1.0 / depth)
    back = to_depth(disparity)
    assert back.kind == "relative_depth"
    torch.testing.assert_close(back.depth, depth)
    # Metric depth keeps its values through the round trip but is labelled relative afterwards.
    assert to_depth(to_disparity(TeacherOutput(depth=depth, kind="metric_depth"))).kind == "relative_depth"
    assert to_depth(out) is out


def test_zero_disparity_is_clamped_by_eps():
    out = to_depth(TeacherOutput(depth=torch.zeros(1, 1, 2, 2), kind="relative_disparity"), eps=1e-3)
    torch.testing.assert_close(out.depth, torch.full((1, 1, 2, 2), 1000.0))


def test_lstsq_alignment_recovers_scale_and_shift_per_image():
    gt = _gt()
    valid = gt > 0
    relative = torch.where(valid, gt, torch.full_like(gt, 99.0))  # values off the mask must not matter
    relative = torch.stack([(relative[0] - 0.5) / 2.0, (relative[1] + 1.0) * 3.0])  # gt = 2r + 0.5 | r/3 - 1
    aligned = align_to_ground_truth(TeacherOutput(depth=relative, kind="relative_depth"), gt, method="lstsq")
    assert aligned.kind == "metric_depth"
    torch.testing.assert_close(aligned.depth[valid], gt[valid], atol=1e-4, rtol=1e-4)


def test_disparity_alignment_recovers_scale_and_shift():
    gt = _gt()
    valid = gt > 0
    disparity = torch.where(valid, (1.0 / gt.clamp(min=1e-3) - 0.05) * 4.0, torch.zeros_like(gt))
    out = TeacherOutput(depth=disparity, kind="relative_disparity")
    aligned = align_to_ground_truth(out, gt, method="lstsq_disparity")
    torch.testing.assert_close(aligned.depth[valid], gt[valid], atol=1e-3, rtol=1e-4)
    with pytest.raises(ModelError, match="lstsq_disparity"):
        align_to_ground_truth(out, gt, method="median")


def test_median_alignment_scales_depth():
    gt = _gt()
    out = align_to_ground_truth(TeacherOutput(depth=gt * 0.1, kind="relative_depth"), gt, method="median")
    valid = gt > 0
    torch.testing.assert_close(out.depth[valid], gt[valid])
    with pytest.raises(ModelError, match="shape"):
        align_to_ground_truth(TeacherOutput(depth=gt[:1], kind="relative_depth"), gt)
