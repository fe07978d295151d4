"""``tie-kd``: the teacher DPM in both forms, the KL + SSIM loss, its masks and ablations, relative
teachers, gradients, and short engine runs with cached, ``preds:`` and ``onnx:`` teachers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from engine.conftest import TINY_STUDENT, make_paired_folder, tiny_overrides
from torch import nn

from depthkd.config import load_recipe
from depthkd.distill import SetupContext, Stage, build_method
from depthkd.distill.tiekd import dpm_at_resolution, dpm_kl, edges_from_centers, teacher_dpm
from depthkd.engine import distill
from depthkd.errors import ConfigError, ModelError
from depthkd.losses import SSIM_C1
from depthkd.models import build_student, load_student, save_student
from depthkd.models.bins import expected_depth, uniform_bins
from depthkd.models.outputs import StudentOutput, TeacherOutput

STAGE = Stage()
KITTI_BINS = uniform_bins(1e-3, 80.0, 257)
NYU_BINS = uniform_bins(1e-3, 10.0, 49)
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def column(values: list[float] | torch.Tensor) -> torch.Tensor:
    """Depths as a ``(1,1,1,N)`` map."""
    return torch.as_tensor(values, dtype=torch.float32).view(1, 1, 1, -1)


def student_output(logits: torch.Tensor, centers: torch.Tensor, size: tuple[int, int]) -> StudentOutput:
    """A DPM student's output from its logits (depth upsampled like the real head)."""
    probs = torch.softmax(logits, dim=1)
    batch_centers = centers.unsqueeze(0).expand(logits.shape[0], -1)
    depth = F.interpolate(expected_depth(probs, batch_centers), size=size, mode="bilinear", align_corners=False)
    return StudentOutput(depth=depth, probs=probs, bin_centers=batch_centers, logits=logits)


def tie_kd(**options):  # noqa: ANN003, ANN201
    return build_method("tie-kd", options)


# --- the teacher DPM -----------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["integrated", "softmax_pdf"])
@pytest.mark.parametrize(("bins", "sigma"), [(KITTI_BINS, 0.5), (NYU_BINS, 0.15)])
def test_dpm_rows_sum_to_one(target: str, bins, sigma: float) -> None:  # noqa: ANN001
    edges, _ = bins
    depth = torch.linspace(-1.0, float(edges[-1]) + 5.0, 64).view(2, 1, 4, 8)  # also outside the range
    q = teacher_dpm(depth, edges, sigma, target)
    assert q.shape == (2, edges.numel() - 1, 4, 8)
    assert (q >= 0).all()
    torch.testing.assert_close(q.sum(dim=1), torch.ones(2, 4, 8), atol=1e-5, rtol=0)


@pytest.mark.parametrize(("bins", "sigma"), [(KITTI_BINS, 0.5), (NYU_BINS, 0.15)])
def test_integrated_dpm_mean_is_the_teacher_depth(bins, sigma: float) -> None:  # noqa: ANN001
    edges, centers = bins
    width = float(edges[1] - edges[0])
    d_max = float(edges[-1])
    depth = torch.linspace(4 * sigma, d_max - 4 * sigma, 101)  # away from the range ends
    mean = expected_depth(teacher_dpm(column(depth), edges, sigma), centers).flatten()
    error = (mean - depth).abs().max().item()
    assert error < width
    assert error < 0.01 * width  # in fact much closer than a bin: the midpoint rule is unbiased here
    # Near the ends the Gaussian is cut off, so the mean is pulled inwards.
    assert expected_depth(teacher_dpm(column([d_max]), edges, sigma), centers).item() < d_max - sigma / 4


def test_softmax_pdf_reproduces_the_released_numbers_with_midpoint_centres() -> None:
    edges, _ = KITTI_BINS  # K = 257 on [1e-3, 80]: centres at the middles of the 258 edges
    q = teacher_dpm(column([20.0]), edges, 0.5, "softmax_pdf").flatten()
    assert int((q > 0).sum()) == 27
    assert round(q.max().item(), 3) == 0.070
    # Another convention, centres = linspace(1e-3, 80, 257), has the same support but peak 0.071.
    step = (80.0 - 1e-3) / 256
    end_centres = torch.linspace(1e-3 - step / 2, 80.0 + step / 2, 258, dtype=torch.float64).float()
    other = teacher_dpm(column([20.0]), end_centres, 0.5, "softmax_pdf").flatten()
    assert int((other > 0).sum()) == 27 and round(other.max().item(), 3) == 0.071
    # The integrated target is far more peaked.
    assert teacher_dpm(column([20.0]), edges, 0.5).max().item() > 0.2


def test_one_hot_dpm_expected_depth_is_its_bin_centre() -> None:
    edges, centers = NYU_BINS
    depth = column([centers[3].item() + 0.01, centers[30].item() - 0.02])
    q = teacher_dpm(depth, edges, sigma=1e-4)  # narrower than a bin: all mass in one bin
    assert q.max(dim=1).values.min().item() == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(expected_depth(q, centers).flatten(), centers[[3, 30]])
    # The student's own head: a one-hot DPM reads out exactly that bin centre.
    student = build_student("mobilenetv2_050", head="dpm", max_depth=10.0, decoder_channels=(16, 16, 8, 8)).eval()
    with torch.no_grad():
        student.head.logits.weight.zero_()
        student.head.logits.bias.fill_(-50.0)
        student.head.logits.bias[17] = 50.0
        out = student(torch.rand(1, 3, 32, 32))
    torch.testing.assert_close(out.depth, torch.full_like(out.depth, centers[17].item()))


def test_edges_from_centers_inverts_uniform_bins_and_refuses_adaptive_ones() -> None:
    edges, centers = KITTI_BINS
    torch.testing.assert_close(edges_from_centers(centers), edges, atol=1e-4, rtol=0)
    with pytest.raises(ModelError, match="uniform bins"):
        edges_from_centers(torch.tensor([[0.5, 1.0, 2.0, 4.0]]))


# --- the loss ---------------------------------------------------------------------------------------


def test_kl_against_a_uniform_student_is_log_k_minus_entropy() -> None:
    edges, centers = NYU_BINS
    depth = 1.0 + 6.0 * torch.rand(1, 1, 4, 6)
    out = student_output(torch.zeros(1, 49, 4, 6), centers, (4, 6))
    q = teacher_dpm(depth, edges, 0.15)
    entropy = -(q * torch.log(q.clamp_min(1e-30))).sum(dim=1)
    expected = (math.log(49) - entropy).mean().item()
    loss = tie_kd(terms="dpm", w_dpm=2.0).loss({}, out, TeacherOutput(depth, "metric_depth"), STAGE)
    assert loss.terms.keys() == {"kl"}
    assert loss.total.item() == pytest.approx(2.0 * expected, rel=1e-5)


def test_kl_is_zero_when_the_student_predicts_the_teacher_dpm() -> None:
    edges, centers = NYU_BINS
    depth = 1.0 + 6.0 * torch.rand(2, 1, 4, 6)
    for target in ("integrated", "softmax_pdf"):
        q = teacher_dpm(depth, edges, 0.15, target)
        out = student_output(torch.log(q.clamp_min(1e-30)), centers, (4, 6))
        kl = tie_kd(terms="dpm", target=target).loss({}, out, TeacherOutput(depth, "metric_depth"), STAGE)
        assert abs(kl.total.item()) < 1e-5


def test_mixture_target_has_the_gradient_of_the_full_resolution_kl() -> None:
    """KL(mean_i q_i || p) and mean_i KL(q_i || p) differ by a constant: same gradient in p."""
    edges, _ = NYU_BINS
    depth = 1.0 + 6.0 * torch.rand(1, 1, 4, 6)
    valid = torch.ones_like(depth, dtype=torch.bool)
    logits = torch.randn(1, 49, 2, 3, requires_grad=True)
    mixture, small_valid = dpm_at_resolution(depth, valid, edges, 0.15, (2, 3), mode="mixture")
    assert small_valid.all()
    pooled_loss = dpm_kl(logits, mixture, small_valid)
    (pooled_grad,) = torch.autograd.grad(pooled_loss, logits)
    upsampled = F.interpolate(logits, scale_factor=2, mode="nearest")
    full_loss = dpm_kl(upsampled, teacher_dpm(depth, edges, 0.15), valid)
    (full_grad,) = torch.autograd.grad(full_loss, logits)
    torch.testing.assert_close(pooled_grad, full_grad, atol=1e-6, rtol=1e-4)
    assert full_loss.item() >= pooled_loss.item() - 1e-6  # Jensen: the constant is the mixing gap


def test_mixture_keeps_both_surfaces_and_depth_mode_averages_them() -> None:
    edges, centers = NYU_BINS
    depth = torch.tensor([[2.0, 4.0], [2.0, 4.0]]).view(1, 1, 2, 2)  # one student pixel, two surfaces
    valid = torch.ones_like(depth, dtype=torch.bool)
    mixture, _ = dpm_at_resolution(depth, valid, edges, 0.15, (1, 1), mode="mixture")
    averaged, _ = dpm_at_resolution(depth, valid, edges, 0.15, (1, 1), mode="depth")
    expected_mixture = 0.5 * (teacher_dpm(column([2.0]), edges, 0.15) + teacher_dpm(column([4.0]), edges, 0.15))
    torch.testing.assert_close(mixture, expected_mixture)
    torch.testing.assert_close(averaged, teacher_dpm(column([3.0]), edges, 0.15))
    near_three = int(torch.argmin((centers - 3.0).abs()))
    assert mixture[0, near_three, 0, 0] < 1e-3 < averaged[0, near_three, 0, 0]


def test_strided_mixture_equals_area_pooling_and_odd_sizes_work() -> None:
    edges, _ = NYU_BINS
    depth = 1.0 + 6.0 * torch.rand(2, 1, 6, 8)
    valid = torch.rand_like(depth) > 0.3
    fast, fast_valid = dpm_at_resolution(depth, valid, edges, 0.15, (3, 4))
    full = teacher_dpm(depth, edges, 0.15) * valid
    weight = F.avg_pool2d(valid.float(), 2)
    slow = F.avg_pool2d(full, 2) / weight.clamp_min(1e-12)
    torch.testing.assert_close(fast, slow, atol=1e-6, rtol=1e-5)
    assert torch.equal(fast_valid, weight > 0)
    odd, odd_valid = dpm_at_resolution(depth[..., :5, :7], valid[..., :5, :7], edges, 0.15, (3, 4))
    sums = odd.sum(dim=1, keepdim=True)
    torch.testing.assert_close(sums[odd_valid], torch.ones_like(sums[odd_valid]), atol=1e-5, rtol=0)


def test_invalid_teacher_pixels_and_ignored_top_rows_do_not_count() -> None:
    _, centers = NYU_BINS
    depth = 1.0 + 6.0 * torch.rand(1, 1, 16, 16)
    out = student_output(torch.randn(1, 49, 8, 8), centers, (16, 16))
    method = tie_kd(ignore_top_rows=4)
    base = method.loss({}, out, TeacherOutput(depth.clone(), "metric_depth"), STAGE)
    changed = depth.clone()
    changed[..., :4, :] = 9.0  # the ignored rows
    other = method.loss({}, out, TeacherOutput(changed, "metric_depth"), STAGE)
    for name in ("kl", "ssim"):
        assert other.terms[name].item() == pytest.approx(base.terms[name].item(), rel=1e-6)
    holes = depth.clone()
    holes[..., 10, 3] = 0.0
    nans = depth.clone()
    nans[..., 10, 3] = float("nan")
    with_zero = method.loss({}, out, TeacherOutput(holes, "metric_depth"), STAGE)
    with_nan = method.loss({}, out, TeacherOutput(nans, "metric_depth"), STAGE)
    assert torch.isfinite(with_nan.total)
    assert with_nan.total.item() == pytest.approx(with_zero.total.item(), rel=1e-6)
    with pytest.raises(ConfigError, match="ignore_top_rows=16"):
        tie_kd(ignore_top_rows=16).loss({}, out, TeacherOutput(depth, "metric_depth"), STAGE)


def test_ablation_switches_select_the_terms_and_weights_apply() -> None:
    _, centers = uniform_bins(0.5, 4.5, 4)  # centres 1, 2, 3, 4: exact in float32
    logits = torch.full((1, 4, 8, 8), -30.0)
    logits[:, 1] = 30.0  # one-hot at bin 1: student depth = 2 everywhere
    out = student_output(logits, centers, (16, 16))
    teacher = TeacherOutput(torch.full((1, 1, 16, 16), 1.0), "metric_depth")
    ssim = 1 - (2 * 2.0 * 1.0 + SSIM_C1) / (2.0**2 + 1.0 + SSIM_C1)  # constant maps: luminance term only
    both = tie_kd(sigma=0.5).loss({}, out, teacher, STAGE)
    assert both.terms.keys() == {"kl", "ssim"}
    assert both.terms["ssim"].item() == pytest.approx(9.0 * ssim, rel=1e-4)
    assert both.total.item() == pytest.approx(both.terms["kl"].item() + both.terms["ssim"].item())
    assert tie_kd(terms="dpm").loss({}, out, teacher, STAGE).terms.keys() == {"kl"}
    depth_only = tie_kd(terms="depth", w_depth=3.0).loss({}, out, teacher, STAGE)
    assert depth_only.terms.keys() == {"ssim"}
    assert depth_only.total.item() == pytest.approx(3.0 * ssim, rel=1e-4)


@pytest.mark.parametrize(("bins", "sigma"), [(KITTI_BINS, 0.5), (NYU_BINS, 0.15)])
def test_banded_dpm_is_the_full_map_to_float32_rounding(bins, sigma: float) -> None:  # noqa: ANN001
    """Bins beyond 8 sigmas carry less than 6e-16: leaving them out changes nothing a loss can see."""
    edges, _ = bins
    torch.manual_seed(0)
    depth = torch.rand(2, 1, 12, 20) * float(edges[-1]) * 1.1  # also beyond the range (clamped)
    depth[0, 0, 0, :4] = torch.tensor([float(edges[0]), float(edges[-1]), float(edges[1]), float(edges[-2])])
    full, banded = teacher_dpm(depth, edges, sigma), teacher_dpm(depth, edges, sigma, band=8.0)
    assert float((full - banded).abs().max()) < 5e-7
    far = (full - banded).abs()[banded == 0]
    assert float(far.max()) < 1e-14  # what the band leaves out
    torch.testing.assert_close(banded.sum(dim=1), torch.ones(2, 12, 20), atol=1e-6, rtol=0)
    valid = torch.rand(2, 1, 12, 20) > 0.3
    a, mask_a = dpm_at_resolution(depth, valid, edges, sigma, (6, 10))
    b, mask_b = dpm_at_resolution(depth, valid, edges, sigma, (6, 10), band=8.0)
    assert torch.equal(mask_a, mask_b) and float((a - b).abs().max()) < 5e-7
    logits = torch.randn(2, edges.numel() - 1, 6, 10)
    assert dpm_kl(logits, a, mask_a).item() == pytest.approx(dpm_kl(logits, b, mask_b).item(), rel=1e-5)


def test_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="dpm_band"):
        tie_kd(dpm_band=2.0)
    with pytest.raises(ConfigError, match="sigma"):
        tie_kd(sigma=0.0)
    with pytest.raises(ConfigError, match="trains nothing"):
        tie_kd(terms="dpm", w_dpm=0.0)
    with pytest.raises(ConfigError, match="target"):
        tie_kd(target="pdf")


# --- relative teachers --------------------------------------------------------------------------------


def test_relative_teacher_is_aligned_to_ground_truth_and_needs_it() -> None:
    _, centers = NYU_BINS
    gt = 1.0 + 6.0 * torch.rand(2, 1, 16, 16)
    gt[1] = 0.0  # the second image has no ground truth: it cannot be aligned and is left out
    disparity = 2.0 / gt.clamp_min(1e-3) + 0.1  # affine in 1/depth: alignment recovers gt exactly
    out = student_output(torch.randn(2, 49, 8, 8), centers, (16, 16))
    method = tie_kd()
    aligned = method.loss({"depth": gt}, out, TeacherOutput(disparity, "relative_disparity"), STAGE)
    first = student_output(out.logits[:1], centers, (16, 16))
    metric = method.loss({}, first, TeacherOutput(gt[:1], "metric_depth"), STAGE)
    for name in ("kl", "ssim"):
        assert aligned.terms[name].item() == pytest.approx(metric.terms[name].item(), rel=1e-3)
    with pytest.raises(ConfigError, match="relative_disparity.*no ground truth"):
        method.loss({}, out, TeacherOutput(disparity, "relative_disparity"), STAGE)


def test_setup_refuses_wrong_students_and_unalignable_teachers() -> None:
    regression = build_student("mobilenetv2_050", decoder_channels=(16, 16, 8, 8))
    batch = {"image": torch.rand(1, 3, 32, 32), "teacher": torch.ones(1, 1, 32, 32), "teacher_kind": ["metric_depth"]}
    with pytest.raises(ConfigError, match="student.head=dpm"):
        tie_kd().setup(SetupContext(student=regression, teacher=None, sample_batch=batch))
    dpm = build_student("mobilenetv2_050", head="dpm", decoder_channels=(16, 16, 8, 8))
    tie_kd().setup(SetupContext(student=dpm, teacher=None, sample_batch=batch))
    relative = {**batch, "teacher_kind": ["relative_depth"]}
    with pytest.raises(ConfigError, match="relative_depth"):
        tie_kd().setup(SetupContext(student=dpm, teacher=None, sample_batch=relative))
    with_depth = {**relative, "depth": torch.ones(1, 1, 32, 32)}
    tie_kd().setup(SetupContext(student=dpm, teacher=None, sample_batch=with_depth))


def test_gradients_reach_the_student_only() -> None:
    student = build_student("mobilenetv2_050", head="dpm", decoder_channels=(16, 16, 8, 8)).train()
    teacher = nn.Sequential(nn.Conv2d(3, 1, 3, padding=1), nn.Softplus())  # trainable on purpose
    images = torch.rand(2, 3, 32, 32)
    teacher_depth = teacher(images) + 0.5
    assert teacher_depth.requires_grad
    loss = tie_kd().loss({"image": images}, student(images), TeacherOutput(teacher_depth, "metric_depth"), STAGE)
    loss.total.backward()
    assert all(p.grad is None for p in teacher.parameters())
    grads = [p.grad for p in student.parameters()]
    assert all(g is not None for g in grads)
    assert student.head.logits.weight.grad.abs().sum() > 0
    assert student.encoder.backbone.conv_stem.weight.grad.abs().sum() > 0


# --- recipes -------------------------------------------------------------------------------------------


def test_recipes_hold_the_reference_settings() -> None:
    kitti = load_recipe(CONFIGS / "tiekd-kitti.yaml")
    nyu = load_recipe(CONFIGS / "tiekd-nyu.yaml")
    sim = load_recipe(CONFIGS / "tiekd-sim.yaml")
    for recipe in (kitti, nyu, sim):
        assert recipe.method.name == "tie-kd" and recipe.student.head == "dpm"
        options = recipe.method.options
        assert (options.w_dpm, options.w_depth, options.terms) == (1.0, 9.0, "both")
        assert recipe.optim.betas == (0.95, 0.99) and recipe.optim.weight_decay == 0.01
        assert recipe.trainer.gradient_clip_val == 35.0 and recipe.cache.enabled
    assert (kitti.student.num_bins, kitti.student.max_depth, kitti.method.options.sigma) == (257, 80.0, 0.5)
    assert kitti.method.options.ignore_top_rows == 110 and kitti.data.crop == (352, 704)
    assert (kitti.trainer.max_epochs, kitti.data.batch_size, kitti.optim.lr) == (24, 8, 1e-3)
    assert (nyu.student.num_bins, nyu.student.max_depth, nyu.method.options.sigma) == (49, 10.0, 0.15)
    assert kitti.eval.protocol == "kitti_garg" and nyu.eval.protocol == "nyu"


# --- short engine runs ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rgbd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_paired_folder(tmp_path_factory.mktemp("tiekd-rgbd"))


@pytest.fixture(scope="module")
def torch_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(1)
    teacher = build_student("mobilenetv2_050", decoder_channels=(16, 16, 8, 8))
    return save_student(teacher, tmp_path_factory.mktemp("tiekd-teacher") / "teacher.safetensors")


def write_onnx_teacher(path: Path) -> Path:
    """A 1x1-conv + softplus graph: a black-box teacher with a positive output."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.array([0.5, -0.3, 0.8], dtype=np.float32).reshape(1, 3, 1, 1), "w")
    bias = numpy_helper.from_array(np.array([0.2], dtype=np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w", "b"], ["c"]), helper.make_node("Softplus", ["c"], ["depth"])],
        "tiny_teacher",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("depth", TensorProto.FLOAT, ["n", 1, "h", "w"])],
        initializer=[weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_sim_recipe_runs_from_a_cached_teacher(torch_teacher: Path, tmp_path: Path) -> None:
    overrides = [
        "data.train=sim:indoor?num=4&size=32x48&seed=0",
        "data.val=sim:indoor?num=2&size=32x48&seed=99",
        "data.crop=[32,32]",
        "data.batch_size=4",
        "data.val_batch_size=2",
        "data.num_workers=0",
        *TINY_STUDENT,
        f"teacher.spec=torch:{torch_teacher}",
        f"cache.dir={tmp_path / 'cache'}",
        "trainer.accelerator=cpu",
        "trainer.max_steps=2",
        "trainer.max_epochs=null",
        "trainer.log_every_n_steps=1",
        "trainer.loggers=[csv]",
        f"run.dir={tmp_path / 'run'}",
    ]
    result = distill(load_recipe(CONFIGS / "tiekd-sim.yaml", overrides))
    assert (tmp_path / "cache" / "index.json").is_file()
    student = load_student(result.student_path)
    assert student.config.head == "dpm" and student.config.num_bins == 49
    assert all(math.isfinite(v) for v in result.metrics.values())
    logged = (tmp_path / "run" / "logs" / "main" / "metrics.csv").read_text()
    assert "train/kl" in logged and "train/ssim" in logged


def test_preds_teacher_through_the_cache(rgbd: Path, tmp_path: Path) -> None:
    preds = tmp_path / "preds"
    preds.mkdir()
    for index in range(8):
        depth = 1.0 + torch.rand(32, 48).numpy() * 4.0
        np.save(preds / f"{index:03d}.npy", depth.astype(np.float32))
    overrides = tiny_overrides(
        rgbd,
        tmp_path / "run",
        "method.name=tie-kd",
        "method.options.target=softmax_pdf",
        "method.options.terms=dpm",
        "student.head=dpm",
        f"teacher.spec=preds:{preds}",
        "teacher.options.kind=metric_depth",
        "cache.enabled=true",
        f"cache.dir={tmp_path / 'cache'}",
        "data.val=null",
        "trainer.max_steps=2",
    )
    result = distill(load_recipe(None, overrides))
    assert load_student(result.student_path).config.head == "dpm"


def test_relative_onnx_teacher_is_aligned_or_refused(rgbd: Path, tmp_path: Path) -> None:
    model = write_onnx_teacher(tmp_path / "teacher.onnx")
    common = [
        "method.name=tie-kd",
        "student.head=dpm",
        f"teacher.spec=onnx:{model}",
        "teacher.options.kind=relative_disparity",
        "data.val=null",
        "trainer.max_steps=2",
    ]
    result = distill(load_recipe(None, tiny_overrides(rgbd, tmp_path / "run", *common)))
    assert load_student(result.student_path).config.head == "dpm"
    images_only = [*tiny_overrides(rgbd, tmp_path / "run2", *common), f"data.train=images:{rgbd / 'rgb'}"]
    with pytest.raises(ConfigError, match="no ground truth to align"):
        distill(load_recipe(None, images_only))
