"""Metrics, protocols and alignment against hand-computed values and a plain numpy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from depthkd.errors import ConfigError, DataError
from depthkd.metrics import (
    ALIGNMENTS,
    METRIC_KEYS,
    PROTOCOLS,
    MetricAccumulator,
    NoValidPixelsError,
    align_depth,
    compute_metrics,
    flip_tta,
    get_protocol,
    protocol_label,
    register_protocol,
    resize_to,
    valid_mask,
)

# ------------------------------------------------------------------------ numpy reference (independent)

REF_CAPS = {"nyu": (1e-3, 10.0), "kitti_garg": (1e-3, 80.0), "kitti_eigen": (1e-3, 80.0),
            "sim_indoor": (1e-3, 10.0), "sim_outdoor": (1e-3, 80.0)}


def ref_crop(name: str, h: int, w: int) -> np.ndarray:
    crop = np.zeros((h, w), dtype=bool)
    if name == "nyu":
        crop[45:471, 41:601] = True
    elif name in ("kitti_garg", "kitti_eigen"):
        top, bottom = (0.40810811, 0.99189189) if name == "kitti_garg" else (0.3324324, 0.91351351)
        crop[int(top * h):int(bottom * h), int(0.03594771 * w):int(0.96405229 * w)] = True
    else:
        crop[:] = True
    return crop


def ref_resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear, half-pixel centres, source index clamped at 0 (PyTorch's align_corners=False)."""

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, src - i0

    r0, r1, fy = axis(img.shape[0], h)
    c0, c1, fx = axis(img.shape[1], w)
    top = img[r0][:, c0] * (1 - fx) + img[r0][:, c1] * fx
    bottom = img[r1][:, c0] * (1 - fx) + img[r1][:, c1] * fx
    return top * (1 - fy[:, None]) + bottom * fy[:, None]


def ref_metrics(pred, gt, name, align, lo=None, hi=None) -> dict[str, float]:
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    lo = REF_CAPS[name][0] if lo is None else lo
    hi = REF_CAPS[name][1] if hi is None else hi
    if pred.shape != gt.shape:
        pred = ref_resize(pred, *gt.shape)
    mask = (gt > lo) & (gt < hi) & ref_crop(name, *gt.shape)
    p, g = pred[mask], gt[mask]
    if align == "median":
        p = p * np.median(g) / np.median(p)
    elif align == "lstsq":
        s, t = np.polyfit(p, g, 1)
        p = s * p + t
    elif align == "lstsq_disparity":
        s, t = np.polyfit(p, 1.0 / g, 1)
        p = 1.0 / np.maximum(s * p + t, 1.0 / hi)
    p = np.clip(np.nan_to_num(p, nan=lo, posinf=hi, neginf=lo), lo, hi)
    e = np.log(p) - np.log(g)
    ratio = np.maximum(p / g, g / p)
    return {
        "abs_rel": np.mean(np.abs(g - p) / g), "sq_rel": np.mean((g - p) ** 2 / g),
        "rmse": np.sqrt(np.mean((g - p) ** 2)), "rmse_log": np.sqrt(np.mean(e**2)),
        "log10": np.mean(np.abs(np.log10(p) - np.log10(g))),
        "silog": 100 * np.sqrt(max(np.mean(e**2) - np.mean(e) ** 2, 0.0)),
        "d1": np.mean(ratio < 1.25), "d2": np.mean(ratio < 1.25**2), "d3": np.mean(ratio < 1.25**3),
    }


def assert_metrics_close(got: dict, expected: dict, rel: float = 1e-9, abs_: float = 1e-12) -> None:
    assert tuple(got) == METRIC_KEYS
    for key in METRIC_KEYS:
        assert got[key] == pytest.approx(float(expected[key]), rel=rel, abs=abs_), key


# ------------------------------------------------------------------------------------- golden values

# Four valid pixels (gt, pred) with ratios 1, 1.5, 1.9, 2.5; then gt = 0 (no ground truth) and
# gt = 10 = max (excluded: strict), both with absurd predictions that must not count.
GOLDEN_GT = np.array([[2.0, 2.0, 1.0], [5.0, 0.0, 10.0]])
GOLDEN_PRED = np.array([[2.0, 3.0, 1.9], [2.0, 500.0, 1e-3]])
LN = math.log
GOLDEN = {
    "abs_rel": (0 + 1 / 2 + 0.9 / 1 + 3 / 5) / 4,  # 0.5
    "sq_rel": (0 + 1 / 2 + 0.81 / 1 + 9 / 5) / 4,  # 0.7775
    "rmse": math.sqrt((0 + 1 + 0.81 + 9) / 4),
    "rmse_log": math.sqrt((LN(1.5) ** 2 + LN(1.9) ** 2 + LN(0.4) ** 2) / 4),
    "log10": (math.log10(1.5) + math.log10(1.9) + abs(math.log10(0.4))) / 4,
    "silog": 100 * math.sqrt((LN(1.5) ** 2 + LN(1.9) ** 2 + LN(0.4) ** 2) / 4
                             - ((LN(1.5) + LN(1.9) + LN(0.4)) / 4) ** 2),
    "d1": 1 / 4,  # ratio 1
    "d2": 2 / 4,  # + 1.5 < 1.5625
    "d3": 3 / 4,  # + 1.9 < 1.953125; 2.5 fails all
}


def test_golden_metrics_by_hand():
    assert GOLDEN["abs_rel"] == pytest.approx(0.5) and GOLDEN["sq_rel"] == pytest.approx(0.7775)
    as_tensors = (torch.tensor(GOLDEN_PRED)[None], torch.tensor(GOLDEN_GT)[None])  # (1,H,W) tensors
    for pred, gt in [(GOLDEN_PRED, GOLDEN_GT), as_tensors]:
        assert_metrics_close(compute_metrics(pred, gt, "none", min_depth=1e-3, max_depth=10.0), GOLDEN)
    # sim_indoor has the same caps (1e-3..10) and no crop; float32 input is computed in float64
    got = compute_metrics(GOLDEN_PRED.astype(np.float32), GOLDEN_GT.astype(np.float32), "sim_indoor")
    assert_metrics_close(got, GOLDEN, rel=1e-6)


def test_silog_is_scale_invariant_and_zero_for_a_scaled_prediction():
    gt = np.array([[1.0, 2.0], [3.0, 4.0]])
    got = compute_metrics(gt * 1.1, gt, "sim_outdoor")
    assert got["silog"] == pytest.approx(0.0, abs=1e-6)
    assert got["rmse_log"] == pytest.approx(LN(1.1))
    assert got["abs_rel"] == pytest.approx(0.1)
    assert (got["d1"], got["d2"], got["d3"]) == (1.0, 1.0, 1.0)


def test_delta_thresholds_are_strict():
    # ratios exactly 1.25, 1.25**2 = 1.5625 and 1.25**3 = 1.953125 (all exact in binary)
    gt = np.array([[4.0, 1.0, 1.0]])
    pred = np.array([[5.0, 1.5625, 1.953125]])
    got = compute_metrics(pred, gt, "sim_indoor")
    assert (got["d1"], got["d2"], got["d3"]) == (0.0, pytest.approx(1 / 3), pytest.approx(2 / 3))


def test_depth_caps_are_strict_and_overridable():
    gt = torch.tensor([[1.0, 5.0, 1.0 + 1e-9, 5.0 - 1e-9, 0.5, 6.0]], dtype=torch.float64)
    mask = valid_mask(gt, "none", min_depth=1.0, max_depth=5.0)
    assert mask.tolist() == [[False, False, True, True, False, False]]
    # an override replaces one cap of a named protocol, keeping the other
    mask = valid_mask(gt, "sim_outdoor", max_depth=5.0)
    assert mask.tolist() == [[True, False, True, True, True, False]]
    nan_gt = torch.tensor([[float("nan"), 2.0]])
    assert valid_mask(nan_gt, "sim_indoor").tolist() == [[False, True]]


# ------------------------------------------------------------------------------------------- crops

def _edge_probes(mask: torch.Tensor, rows: tuple[int, int], cols: tuple[int, int]) -> None:
    """Each edge: the last pixel inside is valid, the first pixel outside is not; and the area."""
    top, bottom, left, right = rows[0], rows[1] - 1, cols[0], cols[1] - 1  # inclusive bounds
    mid_r, mid_c = (top + bottom) // 2, (left + right) // 2
    assert mask[top, mid_c] and not mask[top - 1, mid_c]
    assert mask[bottom, mid_c] and (bottom + 1 == mask.shape[0] or not mask[bottom + 1, mid_c])
    assert mask[mid_r, left] and not mask[mid_r, left - 1]
    assert mask[mid_r, right] and not mask[mid_r, right + 1]
    assert mask[top, left] and mask[bottom, right]
    assert int(mask.sum()) == (rows[1] - rows[0]) * (cols[1] - cols[0])


def test_nyu_eigen_crop_edges():
    mask = valid_mask(torch.ones(480, 640), "nyu")
    _edge_probes(mask, (45, 471), (41, 601))  # rows 45..470, cols 41..600
    assert int(mask.sum()) == 426 * 560


@pytest.mark.parametrize(
    ("protocol", "shape", "rows", "cols"),
    [
        # floor(0.40810811*375)=153 (153.04), floor(0.99189189*375)=371 (371.96),
        # floor(0.03594771*1242)=44 (44.65), floor(0.96405229*1242)=1197 (1197.35)
        ("kitti_garg", (375, 1242), (153, 371), (44, 1197)),
        # 143.65 -> 143, 349.15 -> 349; 43.71 -> 43, 1172.29 -> 1172
        ("kitti_garg", (352, 1216), (143, 349), (43, 1172)),
        # floor(0.3324324*375)=124 (124.66), floor(0.91351351*375)=342 (342.57)
        ("kitti_eigen", (375, 1242), (124, 342), (44, 1197)),
        # 117.01 -> 117, 321.56 -> 321
        ("kitti_eigen", (352, 1216), (117, 321), (43, 1172)),
    ],
)
def test_kitti_crop_edges(protocol, shape, rows, cols):
    mask = valid_mask(torch.full(shape, 10.0), protocol)
    _edge_probes(mask, rows, cols)


def test_crop_excludes_pixels_from_metrics():
    gt = torch.full((352, 1216), 10.0)
    pred = torch.full((352, 1216), 10.0)
    pred[142, 600] = 70.0  # one row above the Garg crop: ignored
    assert compute_metrics(pred, gt, "kitti_garg")["abs_rel"] == 0.0
    pred[143, 600] = 70.0  # first row inside: counted
    assert compute_metrics(pred, gt, "kitti_garg")["abs_rel"] == pytest.approx(6.0 / (206 * 1129))


def test_sim_outdoor_garg_takes_the_kitti_garg_crop_at_any_size():
    for shape in ((128, 416), (375, 1242)):
        depth = torch.full(shape, 20.0)
        assert torch.equal(valid_mask(depth, "sim_outdoor_garg"), valid_mask(depth, "kitti_garg"))
        assert bool(valid_mask(depth, "sim_outdoor").all())
        assert not bool(valid_mask(depth, "sim_outdoor_garg")[0].any())  # the sky rows are cropped away


def test_nyu_protocol_rejects_other_sizes():
    with pytest.raises(DataError, match=r"480x640.*'none'"):
        compute_metrics(torch.ones(240, 320), torch.ones(240, 320), "nyu")


# --------------------------------------------------------------------------------------- alignment

def test_median_alignment_recovers_scale_and_uses_numpy_even_median():
    gt = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]], [[[2.0, 4.0], [6.0, 8.0]]]])
    pred = torch.cat([gt[:1] / 3.0, gt[1:] * 0.5])
    mask = torch.ones_like(gt, dtype=torch.bool)
    aligned, scale, shift = align_depth(pred, gt, mask, "median")
    assert scale.shape == (2,) and scale.tolist() == pytest.approx([3.0, 2.0])
    assert shift.tolist() == [0.0, 0.0]
    torch.testing.assert_close(aligned, gt)
    # even count: median(gt) = (2+3)/2 = 2.5, median(pred) = (1+2)/2 = 1.5 -> scale 5/3
    _, scale, _ = align_depth(torch.tensor([[1.0, 1.0, 2.0, 10.0]]), torch.tensor([[1.0, 2.0, 3.0, 4.0]]),
                              torch.ones(1, 4, dtype=torch.bool), "median")
    assert float(scale[0]) == pytest.approx(5 / 3)


def test_median_alignment_ignores_pixels_outside_the_mask():
    gt = torch.tensor([[2.0, 4.0, 0.0]])
    pred = torch.tensor([[1.0, 2.0, 1000.0]])
    _, scale, _ = align_depth(pred, gt, gt > 0, "median")
    assert float(scale[0]) == pytest.approx(2.0)  # median(2,4)/median(1,2) = 3/1.5


def test_lstsq_alignment_recovers_scale_and_shift():
    gt = torch.linspace(1.0, 9.0, 20, dtype=torch.float64).reshape(1, 1, 4, 5)
    pred = (gt - 0.5) / 2.0  # gt = 2 * pred + 0.5
    aligned, scale, shift = align_depth(pred, gt, gt > 0, "lstsq")
    assert float(scale[0]) == pytest.approx(2.0) and float(shift[0]) == pytest.approx(0.5)
    torch.testing.assert_close(aligned, gt)
    metrics = compute_metrics(pred[0], gt[0], "sim_indoor", align="lstsq")
    assert metrics["abs_rel"] == pytest.approx(0.0, abs=1e-12) and metrics["d1"] == 1.0


def test_lstsq_disparity_recovers_depth_from_affine_inverse_depth():
    gt = torch.linspace(1.0, 8.0, 12, dtype=torch.float64).reshape(1, 1, 3, 4)
    q = 2.0 / gt + 0.3  # q = a/g + b  ->  1/g = q/a - b/a = 0.5 q - 0.15
    aligned, scale, shift = align_depth(q, gt, gt > 0, "lstsq_disparity", max_depth=10.0)
    assert float(scale[0]) == pytest.approx(0.5) and float(shift[0]) == pytest.approx(-0.15)
    torch.testing.assert_close(aligned, gt)
    assert compute_metrics(q[0, 0], gt[0, 0], "sim_indoor", align="lstsq_disparity")["rmse"] < 1e-9


def test_lstsq_disparity_clamps_far_pixels_to_max_depth():
    gt = torch.tensor([[1.0, 2.0, 4.0, 0.0]], dtype=torch.float64)
    q = torch.tensor([[1.0, 0.5, 0.25, -3.0]], dtype=torch.float64)  # exact: 1/g = q on valid pixels
    aligned, scale, shift = align_depth(q, gt, gt > 0, "lstsq_disparity", max_depth=10.0)
    assert float(scale[0]) == pytest.approx(1.0) and float(shift[0]) == pytest.approx(0.0, abs=1e-12)
    # the negative disparity is clamped to 1/10, i.e. depth 10 m, not a negative depth
    assert aligned[0].tolist() == pytest.approx([1.0, 2.0, 4.0, 10.0])


def test_lstsq_falls_back_to_identity_when_degenerate():
    gt = torch.tensor([[1.0, 2.0, 3.0]])
    for pred, mask in [
        (torch.full((1, 3), 0.7), torch.ones(1, 3, dtype=torch.bool)),  # zero variance
        (torch.tensor([[5.0, 1.0, 2.0]]), torch.tensor([[True, False, False]])),  # one pixel
        (torch.tensor([[5.0, 1.0, 2.0]]), torch.zeros(1, 3, dtype=torch.bool)),  # no pixel
    ]:
        for method in ("lstsq", "lstsq_disparity"):
            aligned, scale, shift = align_depth(pred, gt, mask, method, max_depth=10.0)
            assert (float(scale[0]), float(shift[0])) == (1.0, 0.0), (method, pred, mask)
        assert torch.equal(align_depth(pred, gt, mask, "lstsq")[0], pred)


def test_align_keeps_dtype_and_shape():
    gt = torch.rand(2, 1, 3, 4) * 5 + 1
    pred = gt.half() * 2
    aligned, scale, shift = align_depth(pred, gt, gt > 0, "median")
    assert aligned.dtype == torch.float16 and aligned.shape == (2, 1, 3, 4)
    assert scale.dtype == torch.float16 and scale.tolist() == pytest.approx([0.5, 0.5], rel=1e-3)
    aligned, _, _ = align_depth(pred[0, 0], gt[0, 0], gt[0, 0] > 0, "none")
    assert aligned.shape == (3, 4)


# ---------------------------------------------------------------------------- clamping and resizing

def test_inf_nan_and_negative_predictions_are_clamped():
    gt = np.array([[4.0, 1.0, 2.0]])
    pred = np.array([[np.inf, np.nan, -3.0]])  # -> 8 (max), 0.5 (min), 0.5 (min)
    got = compute_metrics(pred, gt, "none", min_depth=0.5, max_depth=8.0)
    assert got["abs_rel"] == pytest.approx((4 / 4 + 0.5 / 1 + 1.5 / 2) / 3)
    assert got["rmse"] == pytest.approx(math.sqrt((16 + 0.25 + 2.25) / 3))
    assert got["d3"] == 0.0  # ratios 2, 2, 4


def test_resize_to_matches_hand_computed_bilinear():
    pred = torch.tensor([[1.0, 3.0]])
    # half-pixel centres: source x = (x + 0.5) / 2 - 0.5 -> -0.25 (clamped to 0), 0.25, 0.75, 1.25 (edge)
    assert resize_to(pred, (1, 4)).tolist() == [[1.0, 1.5, 2.5, 3.0]]
    assert resize_to(pred[None, None], (1, 4)).shape == (1, 1, 1, 4)
    same = torch.rand(1, 5, 6)
    assert resize_to(same, (5, 6)) is same


def test_smaller_prediction_is_resized_to_the_ground_truth():
    gt = np.array([[1.0, 1.5, 2.5, 3.0]] * 2)
    pred = np.array([[1.0, 3.0]])
    got = compute_metrics(pred, gt, "none", min_depth=0.1, max_depth=10.0)
    assert got["abs_rel"] == pytest.approx(0.0, abs=1e-15)
    constant = compute_metrics(np.full((2, 3), 2.0), np.full((4, 6), 4.0), "sim_indoor")
    assert constant["abs_rel"] == pytest.approx(0.5)


def test_flip_tta_averages_the_mirrored_prediction():
    ramp = torch.arange(5, dtype=torch.float32)  # breaks flip equivariance on purpose

    def predict(x):
        return x[:, :1] + ramp

    images = torch.rand(2, 3, 4, 5)
    # 0.5 * ((x + r) + flip(flip(x) + r)) = x + (r + flip(r)) / 2 = x + 2
    torch.testing.assert_close(flip_tta(predict, images), images[:, :1] + 2.0)


# ------------------------------------------------------------------------------------- accumulator

def test_accumulator_means_per_image_not_per_pixel_and_counts_skipped():
    acc = MetricAccumulator(protocol="none", align="none", min_depth=0.1, max_depth=10.0)
    acc.update(np.array([[2.0]]), np.array([[1.0]]), name="one_pixel")  # abs_rel 1
    acc.update(np.full((1, 3, 3), 1.0), np.full((1, 3, 3), 1.0), name="nine_pixels")  # abs_rel 0
    acc.update(np.ones((2, 2)), np.zeros((2, 2)), name="no_gt")
    acc.update(np.ones((2, 2)), np.zeros((2, 2)))
    assert acc.count == 2 and acc.skipped == ["no_gt", "#3"]
    result = acc.compute()
    assert tuple(result) == METRIC_KEYS
    assert result["abs_rel"] == pytest.approx(0.5)  # pixel-pooled would be 0.1
    assert result["d1"] == pytest.approx(0.5)
    assert acc.scales == []


def test_accumulator_batches_scales_and_summary():
    gt = torch.rand(3, 1, 6, 8, dtype=torch.float64) * 4 + 1
    gt[2] = 0.0  # no valid pixel
    pred = gt * torch.tensor([0.5, 0.25, 1.0], dtype=torch.float64).view(3, 1, 1, 1)
    acc = MetricAccumulator(protocol="sim_indoor", align="median")
    acc.update(pred, gt, name=["a", "b", "c"])
    summary = acc.summary()
    assert summary["count"] == 2 and summary["skipped"] == ["c"]
    assert acc.scales == pytest.approx([2.0, 4.0])
    assert summary["scale_mean"] == pytest.approx(3.0) and summary["scale_std"] == pytest.approx(1.0)
    assert summary["metrics"]["abs_rel"] == pytest.approx(0.0, abs=1e-12)
    assert summary["label"] == "sim_indoor (no crop, 1e-3..10 m), align=median"
    assert (summary["protocol"], summary["align"]) == ("sim_indoor", "median")


def test_accumulator_without_scored_images_raises():
    acc = MetricAccumulator(protocol="sim_indoor")
    acc.update(np.ones((2, 2)), np.zeros((2, 2)))
    with pytest.raises(DataError, match="1 skipped"):
        acc.compute()


# ----------------------------------------------------------------------------- names and errors

def test_registry_and_labels(monkeypatch):
    from depthkd import metrics

    monkeypatch.setattr(metrics, "PROTOCOLS", dict(metrics.PROTOCOLS))  # the test's protocol leaves with it
    assert {"nyu", "kitti_garg", "kitti_eigen", "none", "sim_indoor", "sim_outdoor"} <= set(PROTOCOLS)
    nyu = get_protocol("nyu")
    assert (nyu.min_depth, nyu.max_depth, nyu.crop) == (1e-3, 10.0, "eigen_nyu")
    assert protocol_label("nyu", "median") == "nyu (Eigen crop, 1e-3..10 m), align=median"
    assert protocol_label("kitti_garg", gt_crop="KB-cropped") == (
        "kitti_garg (Garg crop, gt=KB-cropped, 1e-3..80 m), align=none")
    label = protocol_label("none", "lstsq", min_depth=0.5, max_depth=20)
    assert label == "none (no crop, 0.5..20 m), align=lstsq"
    custom = register_protocol("test_custom_range", 0.1, 5.0, "garg", "a test range")
    assert get_protocol("test_custom_range") is custom
    with pytest.raises(ConfigError, match="already registered"):
        register_protocol("test_custom_range", 0.1, 6.0)
    with pytest.raises(ConfigError, match="unknown crop"):
        register_protocol("test_bad_crop", 0.1, 6.0, crop="centre")


def test_unknown_names_and_missing_caps_raise_config_errors():
    gt = np.ones((4, 4))
    with pytest.raises(ConfigError, match="unknown protocol 'nyuv2'.*kitti_garg"):
        compute_metrics(gt, gt, "nyuv2")
    with pytest.raises(ConfigError, match="unknown alignment 'scale'.*lstsq_disparity"):
        compute_metrics(gt, gt, "sim_indoor", align="scale")
    with pytest.raises(ConfigError, match="unknown alignment"):
        align_depth(torch.ones(2, 2), torch.ones(2, 2), torch.ones(2, 2, dtype=torch.bool), "affine")
    with pytest.raises(ConfigError, match="min_depth and max_depth"):
        compute_metrics(gt, gt, "none")
    with pytest.raises(ConfigError, match="min_depth < max_depth"):
        compute_metrics(gt, gt, "sim_indoor", min_depth=5.0, max_depth=2.0)


def test_no_valid_pixel_names_protocol_and_shape():
    with pytest.raises(NoValidPixelsError, match=r"'sim_outdoor'.*\(3, 5\)") as info:
        compute_metrics(np.ones((3, 5)), np.zeros((3, 5)), "sim_outdoor")
    assert isinstance(info.value, DataError)
    with pytest.raises(DataError, match="one image"):
        compute_metrics(np.ones((2, 3, 5)), np.ones((2, 3, 5)), "sim_outdoor")


# ------------------------------------------------------------------------------ property vs numpy

@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    protocol=st.sampled_from(["nyu", "kitti_garg", "kitti_eigen", "sim_indoor", "sim_outdoor", "none"]),
    align=st.sampled_from(ALIGNMENTS),
    half_size_pred=st.booleans(),
)
def test_matches_numpy_reference(seed, protocol, align, half_size_pred):
    rng = np.random.default_rng(seed)
    shape = (480, 640) if protocol == "nyu" else (int(rng.integers(24, 48)), int(rng.integers(40, 90)))
    lo, hi = (0.2, 30.0) if protocol == "none" else (None, None)
    top = 12.0 if protocol in ("nyu", "sim_indoor") else 90.0  # a few pixels beyond the upper cap
    gt = rng.uniform(0.0, top, shape)
    gt[rng.random(shape) < 0.3] = 0.0  # holes
    pred_shape = (shape[0] // 2, shape[1] // 2) if half_size_pred else shape
    pred = rng.uniform(0.5, top, pred_shape)
    if align == "lstsq_disparity":
        pred = 1.0 / pred
    if align == "none" and not half_size_pred:  # clamping paths: inf, NaN and negative predictions
        pred[shape[0] // 2, shape[1] // 2 : shape[1] // 2 + 3] = [np.inf, np.nan, -1.0]
        gt[shape[0] // 2, shape[1] // 2 : shape[1] // 2 + 3] = [1.0, 2.0, 3.0]
    got = compute_metrics(pred, gt, protocol, align=align, min_depth=lo, max_depth=hi)
    expected = ref_metrics(pred, gt, protocol, align, lo, hi)
    assert_metrics_close(got, expected, rel=1e-7, abs_=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_caps_are_tested_in_the_ground_truths_own_precision_as_bts_does(dtype):
    """BTS's ``eval.py`` masks ``gt > min_depth_eval`` on the array it read (float32 from a PNG / 1000):
    a float32 pixel equal to float32(1e-3) is dropped, although its float64 value is above 1e-3."""
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.5, 9.0, (48, 64)).astype(dtype)
    gt.flat[:10] = dtype(1e-3)  # NYU's 1 mm, ten times
    pred = rng.uniform(0.5, 9.0, (48, 64)).astype(dtype)
    pred.flat[:10] = 9.0  # far off: a large error where such a pixel counted
    bts_mask = np.logical_and(gt > 1e-3, gt < 10.0)
    g, p = gt[bts_mask].astype(np.float64), pred[bts_mask].astype(np.float64)
    assert bts_mask.sum() == gt.size - 10
    got = compute_metrics(pred, gt, "sim_indoor")
    assert got["sq_rel"] == pytest.approx(np.mean((g - p) ** 2 / g), rel=1e-9)
    assert got["abs_rel"] == pytest.approx(np.mean(np.abs(g - p) / g), rel=1e-9)
    assert bool(valid_mask(torch.from_numpy(gt), "sim_indoor").sum() == bts_mask.sum())
