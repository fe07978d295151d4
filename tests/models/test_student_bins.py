"""Uniform and adaptive bins, and the expected depth they give."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from depthkd.errors import ConfigError
from depthkd.models.bins import AdaptiveBinWidths, adaptive_bins, expected_depth, uniform_bins


def test_uniform_bins_hand_values() -> None:
    edges, centers = uniform_bins(1.0, 5.0, 4)
    assert torch.allclose(edges, torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert torch.allclose(centers, torch.tensor([1.5, 2.5, 3.5, 4.5]))
    assert edges.dtype == centers.dtype == torch.float32


def test_uniform_bins_reference_nyu_layout() -> None:
    edges, centers = uniform_bins(1e-3, 10.0, 49)
    assert edges.shape == (50,) and centers.shape == (49,)
    width = (10.0 - 1e-3) / 49
    assert centers[0].item() == pytest.approx(1e-3 + width / 2, rel=1e-6)
    assert centers[-1].item() == pytest.approx(10.0 - width / 2, rel=1e-6)
    assert edges[-1].item() == pytest.approx(10.0)


@pytest.mark.parametrize("d_min, d_max", [(0.0, 10.0), (5.0, 5.0), (3.0, 1.0)])
def test_uniform_bins_reject_bad_range(d_min: float, d_max: float) -> None:
    with pytest.raises(ConfigError, match="min_depth"):
        uniform_bins(d_min, d_max, 8)


def test_adaptive_bins_hand_values() -> None:
    # ReLU + 0.1: widths (0.1, 1.1, 2.1) -> sum 3.3 -> normalised and scaled to the range 3.3 m.
    raw = torch.tensor([[-5.0, 1.0, 2.0]])
    edges, centers = adaptive_bins(raw, 0.5, 3.8)
    assert torch.allclose(edges, torch.tensor([[0.5, 0.6, 1.7, 3.8]]), atol=1e-6)
    assert torch.allclose(centers, torch.tensor([[0.55, 1.15, 2.75]]), atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    raw=st.lists(st.floats(-50, 50, allow_nan=False), min_size=2, max_size=64),
    d_min=st.floats(1e-3, 5.0),
    span=st.floats(0.1, 100.0),
)
def test_adaptive_bins_cover_the_range_and_increase(raw: list[float], d_min: float, span: float) -> None:
    d_max = d_min + span
    edges, centers = adaptive_bins(torch.tensor([raw]), d_min, d_max)
    widths = edges[0, 1:] - edges[0, :-1]
    assert edges[0, 0].item() == pytest.approx(d_min)
    assert edges[0, -1].item() == pytest.approx(d_max, rel=1e-5)
    assert widths.sum().item() == pytest.approx(span, rel=1e-5)
    assert bool((widths > 0).all())
    assert bool((centers[0, 1:] > centers[0, :-1]).all())
    assert bool(((centers > edges[:, :-1]) & (centers < edges[:, 1:])).all())


def test_adaptive_bin_widths_module_per_image() -> None:
    module = AdaptiveBinWidths(in_channels=8, num_bins=16, d_min=1e-3, d_max=10.0, hidden=12)
    features = torch.randn(3, 8, 2, 3)
    edges, centers = module(features)
    assert edges.shape == (3, 17) and centers.shape == (3, 16)
    assert torch.allclose(edges[:, -1], torch.full((3,), 10.0), atol=1e-5)
    # Different images get different layouts.
    assert not torch.allclose(centers[0], centers[1])


def test_expected_depth_of_one_hot_is_its_bin_centre() -> None:
    _, centers = uniform_bins(1.0, 9.0, 8)  # centres 1.5, 2.5, ..., 8.5
    chosen = torch.tensor([[0, 3], [7, 5]])
    probs = torch.nn.functional.one_hot(chosen, 8).permute(2, 0, 1).unsqueeze(0).float()
    depth = expected_depth(probs, centers)
    assert depth.shape == (1, 1, 2, 2)
    assert torch.allclose(depth[0, 0], torch.tensor([[1.5, 4.5], [8.5, 6.5]]))


def test_expected_depth_mixes_centres_linearly() -> None:
    centers = torch.tensor([[1.0, 3.0], [2.0, 10.0]])  # per-image centres
    probs = torch.tensor([0.25, 0.75]).view(1, 2, 1, 1).expand(2, 2, 1, 1)
    depth = expected_depth(probs, centers)
    assert torch.allclose(depth.flatten(), torch.tensor([2.5, 8.0]))
