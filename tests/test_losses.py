"""Golden values for the shared depth losses, computed by hand from the formulas in docs/METHODS.md."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from depthkd.losses import (
    SSIM_C1,
    SSIM_C2,
    berhu_loss,
    gaussian_window,
    gradient_matching_loss,
    l1_loss,
    mse_loss,
    normalize_median_mad,
    silog_loss,
    ssi_gradient_loss,
    ssi_loss,
    ssim_loss,
    ssim_map,
)


def image(values: list[list[float]]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).view(1, 1, len(values), len(values[0]))


def test_silog_matches_hand_computation_and_ignores_missing_ground_truth() -> None:
    pred = image([[2.0, 4.0, 7.0]])
    target = image([[1.0, 1.0, 0.0]])  # third pixel: no ground truth
    g = [math.log(2.0), math.log(4.0)]
    mean_sq = (g[0] ** 2 + g[1] ** 2) / 2
    mean = (g[0] + g[1]) / 2
    expected = 10.0 * math.sqrt(mean_sq - 0.85 * mean**2)
    assert silog_loss(pred, target).item() == pytest.approx(expected, rel=1e-5)
    assert expected == pytest.approx(5.3128, abs=1e-3)


def test_silog_with_lambda_one_is_scale_invariant() -> None:
    target = torch.rand(2, 1, 8, 8) + 0.5
    loss = silog_loss(target * 3.0, target, lam=1.0, alpha=1.0)
    assert loss.item() < 1e-4


def test_silog_is_float32_under_bf16_autocast() -> None:
    pred = torch.rand(2, 1, 8, 8) + 0.5
    target = torch.rand(2, 1, 8, 8) + 0.5
    reference = silog_loss(pred, target)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = silog_loss(pred.bfloat16(), target.bfloat16())
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(reference.item(), rel=2e-2)


def test_empty_mask_gives_zero_loss_that_keeps_the_graph() -> None:
    pred = torch.ones(1, 1, 4, 4, requires_grad=True)
    target = torch.zeros(1, 1, 4, 4)
    for loss_fn in (silog_loss, l1_loss, mse_loss, berhu_loss, ssi_loss, gradient_matching_loss):
        loss = loss_fn(pred, target)
        assert loss.item() == 0.0
        loss.backward()
        assert pred.grad is not None and torch.all(pred.grad == 0)


def test_l1_mse_berhu_hand_values() -> None:
    pred = image([[1.1, 2.0, 5.0]])
    target = image([[1.0, 1.0, 0.0]])
    assert l1_loss(pred, target).item() == pytest.approx((0.1 + 1.0) / 2, rel=1e-5)
    assert mse_loss(pred, target).item() == pytest.approx((0.01 + 1.0) / 2, rel=1e-5)
    # c = 0.2 * max|diff| = 0.2: 0.1 stays linear, 1.0 becomes (1 + 0.04) / 0.4 = 2.6
    assert berhu_loss(pred, target).item() == pytest.approx((0.1 + 2.6) / 2, rel=1e-5)


def test_explicit_mask_replaces_positivity_test() -> None:
    pred = image([[0.5, 2.0]])
    target = image([[0.0, 1.0]])
    everything = torch.ones_like(target, dtype=torch.bool)
    assert l1_loss(pred, target, everything).item() == pytest.approx((0.5 + 1.0) / 2)
    assert l1_loss(pred, target).item() == pytest.approx(1.0)


def test_ssim_of_constant_maps_matches_closed_form() -> None:
    a, b = 2.0, 1.0
    pred = torch.full((1, 1, 16, 16), a)
    target = torch.full((1, 1, 16, 16), b)
    expected_ssim = (2 * a * b + SSIM_C1) / (a * a + b * b + SSIM_C1)  # sigma terms are C2 / C2
    assert ssim_loss(pred, target).item() == pytest.approx(1 - expected_ssim, abs=1e-6)
    assert ssim_loss(target, target).item() == pytest.approx(0.0, abs=1e-6)


def test_ssim_centre_pixel_matches_direct_gaussian_statistics() -> None:
    generator = torch.Generator().manual_seed(3)
    pred = torch.rand(1, 1, 11, 11, generator=generator)
    target = torch.rand(1, 1, 11, 11, generator=generator)
    w = gaussian_window(11, 1.5)[0, 0].double().numpy()
    p, t = pred[0, 0].double().numpy(), target[0, 0].double().numpy()
    mu_p, mu_t = (w * p).sum(), (w * t).sum()
    var_p = (w * p * p).sum() - mu_p**2
    var_t = (w * t * t).sum() - mu_t**2
    cov = (w * p * t).sum() - mu_p * mu_t
    expected = ((2 * mu_p * mu_t + SSIM_C1) * (2 * cov + SSIM_C2)) / (
        (mu_p**2 + mu_t**2 + SSIM_C1) * (var_p + var_t + SSIM_C2)
    )
    assert np.isclose(w.sum(), 1.0)
    assert ssim_map(pred, target)[0, 0, 5, 5].item() == pytest.approx(expected, rel=1e-4)


def test_ssi_normalisation_and_loss_hand_values() -> None:
    target = image([[1.0, 2.0, 3.0, 4.0]])
    # lower median 2, mean absolute deviation (1 + 0 + 1 + 2) / 4 = 1
    normalized = normalize_median_mad(target, target > 0)
    assert normalized.flatten().tolist() == pytest.approx([-1.0, 0.0, 1.0, 2.0])
    assert ssi_loss(target * 3.0 + 5.0, target).item() == pytest.approx(0.0, abs=1e-6)
    # pred [0,0,0,1]: median 0, MAD 0.25 -> [0,0,0,4]; |diff| = [1,0,1,2] -> mean 1
    pred = image([[0.0, 0.0, 0.0, 1.0]])
    assert ssi_loss(pred, target).item() == pytest.approx(1.0, rel=1e-5)


def test_gradient_matching_hand_value() -> None:
    target = torch.ones(1, 1, 2, 2)
    pred = image([[1.0, 2.0], [1.0, 1.0]])  # residual [[0,1],[0,0]]
    # |dx| sums to 1, |dy| sums to 1, four valid pixels -> 0.5; the second scale is a single pixel
    assert gradient_matching_loss(pred, target, scales=1).item() == pytest.approx(0.5)
    assert gradient_matching_loss(pred, target, scales=4).item() == pytest.approx(0.5)


def test_gradient_matching_multiscale_adds_each_scale() -> None:
    target = torch.ones(1, 1, 4, 4)
    residual = torch.zeros(1, 1, 4, 4)
    residual[..., 0, 0] = 1.0
    # scale 0: pixel (0,0) differs from (0,1) and (1,0): 2 / 16; scale 1 (2x2): same pattern, 2 / 4
    loss = gradient_matching_loss(target + residual, target, scales=2)
    assert loss.item() == pytest.approx(2 / 16 + 2 / 4)


def test_ssi_gradient_loss_is_invariant_to_scale_and_shift() -> None:
    generator = torch.Generator().manual_seed(1)
    target = torch.rand(2, 1, 16, 16, generator=generator) + 0.1
    assert ssi_gradient_loss(target * 0.5 + 2.0, target).item() == pytest.approx(0.0, abs=1e-5)
    noisy = target + 0.2 * torch.rand(2, 1, 16, 16, generator=generator)
    assert ssi_gradient_loss(noisy, target).item() > ssi_loss(noisy, target).item() > 0


def test_ssim_of_constant_maps_is_exact_in_float32() -> None:
    """Constant maps: variances vanish, SSIM is the luminance term alone (hand-computed)."""
    from depthkd.losses import SSIM_C1, ssim_loss

    pred = torch.full((1, 1, 24, 24), 1.94)
    target = torch.full((1, 1, 24, 24), 1.0)
    expected = 1.0 - (2 * 1.94 * 1.0 + SSIM_C1) / (1.94**2 + 1.0 + SSIM_C1)
    assert ssim_loss(pred, target).item() == pytest.approx(expected, abs=2e-6)
    far = torch.full((1, 1, 24, 24), 61.94), torch.full((1, 1, 24, 24), 60.0)
    expected_far = 1.0 - (2 * 61.94 * 60.0 + SSIM_C1) / (61.94**2 + 60.0**2 + SSIM_C1)
    assert ssim_loss(*far).item() == pytest.approx(expected_far, abs=2e-6)
