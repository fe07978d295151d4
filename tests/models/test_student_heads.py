"""Each head's output shapes and value ranges, inside a full student at a tiny size."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from depthkd.models import build_student
from depthkd.models.bins import uniform_bins
from depthkd.models.heads import BinsHead, DPMHead, RegressionHead


def test_regression_head_shapes_and_range(tiny_images: torch.Tensor) -> None:
    student = build_student(head="regression", min_depth=0.5, max_depth=10.0).eval()
    with torch.no_grad():
        out = student(tiny_images)
    assert out.depth.shape == (2, 1, 32, 48)
    assert out.probs is None and out.bin_centers is None and out.logits is None
    assert bool((out.depth >= 0.5).all()) and bool((out.depth <= 10.0).all())


@pytest.mark.parametrize("bias, expected", [(100.0, 10.0), (-100.0, 0.5)])
def test_regression_head_saturates_at_the_range_ends(bias: float, expected: float) -> None:
    head = RegressionHead(in_channels=4, min_depth=0.5, max_depth=10.0)
    torch.nn.init.zeros_(head.proj.weight)
    torch.nn.init.constant_(head.proj.bias, bias)
    out = head(torch.randn(1, 4, 3, 5), context=torch.empty(0), out_size=(6, 10))
    assert out.depth.shape == (1, 1, 6, 10)
    assert torch.allclose(out.depth, torch.full_like(out.depth, expected))


def test_bins_head_shapes_and_ranges(tiny_images: torch.Tensor) -> None:
    student = build_student(head="bins", min_depth=1e-3, max_depth=10.0).eval()
    assert student.config.num_bins == 256
    with torch.no_grad():
        out = student(tiny_images)
    assert out.depth.shape == (2, 1, 32, 48)
    assert out.probs.shape == out.logits.shape == (2, 256, 16, 24)  # head resolution, stride 2
    assert out.bin_centers.shape == (2, 256)
    assert torch.allclose(out.probs.sum(dim=1), torch.ones(2, 16, 24), atol=1e-5)
    assert torch.allclose(out.probs, torch.softmax(out.logits, dim=1))
    centers = out.bin_centers
    assert bool((centers[:, 1:] > centers[:, :-1]).all())
    assert bool((centers > 1e-3).all()) and bool((centers < 10.0).all())
    assert bool((out.depth > 1e-3).all()) and bool((out.depth < 10.0).all())
    # depth is the expectation at the head resolution, bilinearly upsampled to the input size.
    low = (out.probs * centers[:, :, None, None]).sum(dim=1, keepdim=True)
    expected = F.interpolate(low, size=(32, 48), mode="bilinear", align_corners=False)
    assert torch.allclose(out.depth, expected, atol=1e-5)


@pytest.mark.parametrize("max_depth, k", [(10.0, 49), (80.0, 257)])
def test_dpm_head_default_bins_and_shapes(tiny_images: torch.Tensor, max_depth: float, k: int) -> None:
    student = build_student(head="dpm", max_depth=max_depth).eval()
    assert student.config.num_bins == k
    with torch.no_grad():
        out = student(tiny_images)
    _, centers = uniform_bins(1e-3, max_depth, k)
    assert out.bin_centers.shape == (2, k)
    assert torch.equal(out.bin_centers[1], centers)
    assert out.probs.shape == (2, k, 16, 24)
    assert torch.allclose(out.probs.sum(dim=1), torch.ones(2, 16, 24), atol=1e-5)
    assert out.depth.shape == (2, 1, 32, 48)
    assert bool((out.depth > 0).all()) and bool((out.depth < max_depth).all())


def test_dpm_head_one_hot_map_gives_its_bin_centre() -> None:
    head = DPMHead(in_channels=3, min_depth=1.0, max_depth=9.0, num_bins=8)  # centres 1.5 .. 8.5
    torch.nn.init.zeros_(head.logits.weight)
    bias = torch.full((8,), -1e4)
    bias[5] = 0.0  # all mass on bin 5, centre 6.5 m
    head.logits.bias.data.copy_(bias)
    out = head(torch.randn(2, 3, 4, 6), context=torch.empty(0), out_size=(8, 12))
    assert torch.allclose(out.depth, torch.full((2, 1, 8, 12), 6.5))
    assert torch.allclose(out.probs[:, 5], torch.ones(2, 4, 6))


def test_bins_head_uses_the_context_for_its_bins() -> None:
    head = BinsHead(in_channels=4, context_channels=6, min_depth=0.1, max_depth=5.0, num_bins=16)
    x = torch.randn(1, 4, 3, 3)
    first = head(x, torch.randn(1, 6, 2, 2), out_size=(6, 6))
    second = head(x, torch.randn(1, 6, 2, 2), out_size=(6, 6))
    assert torch.equal(first.logits, second.logits)
    assert not torch.allclose(first.bin_centers, second.bin_centers)


def test_explicit_num_bins_is_used(tiny_images: torch.Tensor) -> None:
    student = build_student(head="dpm", num_bins=17).eval()
    with torch.no_grad():
        out = student(tiny_images)
    assert out.probs.shape[1] == out.bin_centers.shape[1] == 17
