"""DisDepth: attentive KD loss, FAM shapes for ViT and CNN teachers, ghost decoder, stages and resume.

LG-Conv's identity at initialisation, gradient flow and ONNX export are tested in
``tests/models/test_lgconv.py``; here the student is used with and without it.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import lightning as L
import pytest
import torch
from engine.conftest import tiny_data, tiny_overrides  # noqa: F401 - tiny_data is a fixture
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file
from teachers.conftest import hf_model_dir  # noqa: F401 - a fixture: tiny Hugging Face models on disk

from depthkd.config import load_recipe
from depthkd.distill import SetupContext, build_method
from depthkd.distill.disdepth import (
    DisDepth,
    attention_weights,
    attentive_kd_loss,
    evenly_spaced_layers,
)
from depthkd.distill.fam import FeatureAcclimation, GhostDecoder
from depthkd.engine import distill
from depthkd.errors import ConfigError, ModelError
from depthkd.models import TeacherOutput, build_student, load_teacher, save_student

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY = dict(backbone="mobilenetv2_050", decoder_channels=(16, 16, 8, 8))


def tiny_student(**options: object) -> torch.nn.Module:
    return build_student(**{**TINY, **options})  # type: ignore[arg-type]


def sample_batch(size: tuple[int, int] = (32, 48), batch: int = 2) -> dict:
    generator = torch.Generator().manual_seed(3)
    return {
        "image": torch.rand(batch, 3, *size, generator=generator),
        "depth": 1 + 4 * torch.rand(batch, 1, *size, generator=generator),
        "name": [f"item{i}" for i in range(batch)],
    }


@pytest.fixture(scope="module")
def cnn_teacher_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny depthkd student of another architecture (ResNet), saved as a ``torch:`` teacher."""
    torch.manual_seed(1)
    teacher = build_student("resnet10t", decoder_channels=(16, 16, 8, 8))
    return save_student(teacher, tmp_path_factory.mktemp("cnn-teacher") / "teacher.safetensors")


@pytest.fixture(scope="module")
def mobilenet_teacher_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny student architecture saved as a ``torch:`` teacher, for the end-to-end runs."""
    torch.manual_seed(2)
    return save_student(tiny_student(), tmp_path_factory.mktemp("mb-teacher") / "teacher.safetensors")


def set_up(method: DisDepth, student: torch.nn.Module, teacher: torch.nn.Module, batch: dict) -> None:
    method.setup(SetupContext(student=student, teacher=teacher, sample_batch=batch))


# --------------------------------------------------------------------------------------------------
# The attentive loss
# --------------------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 3),
    channels=st.integers(1, 5),
    height=st.integers(1, 6),
    width=st.integers(1, 6),
    tau=st.floats(0.05, 5.0),
    seed=st.integers(0, 1000),
)
def test_attention_weights_average_to_one_per_image(
    batch: int, channels: int, height: int, width: int, tau: float, seed: int
) -> None:
    target = 3 * torch.randn(batch, channels, height, width, generator=torch.Generator().manual_seed(seed))
    weights = attention_weights(target, tau)
    assert weights.shape == (batch, 1, height, width)
    # Non-negative, not positive: a pixel far below the most active one (gap / tau beyond ~100) has a
    # softmax weight under float32's smallest number, and 0 is its correctly rounded value.
    assert (weights >= 0).all()
    # More active pixels never weigh less.
    activity = target.abs().mean(dim=1).flatten(1)
    order = activity.argsort(dim=1)
    sorted_weights = weights.flatten(1).gather(1, order)
    assert (sorted_weights[:, 1:] >= sorted_weights[:, :-1]).all()
    torch.testing.assert_close(weights.mean(dim=(1, 2, 3)), torch.ones(batch), rtol=1e-5, atol=1e-5)


def test_attention_weights_hand_computed() -> None:
    # Two pixels whose mean |T| over channels is 0 and 1; tau 0.5 -> softmax over (0, 2), times H*W = 2.
    target = torch.tensor([[[[0.0, 2.0]], [[0.0, -0.0]]]])  # (1, 2, 1, 2): a = (0, 1)
    weights = attention_weights(target, tau=0.5).flatten()
    e2 = math.exp(2.0)
    torch.testing.assert_close(weights, torch.tensor([2 / (1 + e2), 2 * e2 / (1 + e2)]))


def test_attentive_loss_hand_computed_and_uniform_is_mse() -> None:
    target = torch.tensor([[[[0.0, 2.0]], [[0.0, 0.0]]]])
    student = torch.tensor([[[[1.0, 2.0]], [[1.0, 3.0]]]])  # squared errors: pixel 0 -> 1, 1; pixel 1 -> 0, 9
    e2 = math.exp(2.0)
    w0, w1 = 2 / (1 + e2), 2 * e2 / (1 + e2)
    expected = (w0 * 1 + w1 * 0 + w0 * 1 + w1 * 9) / 4
    assert attentive_kd_loss(student, target, tau=0.5) == pytest.approx(expected, rel=1e-6)
    assert attentive_kd_loss(student, target, attentive=False) == pytest.approx((1 + 0 + 1 + 9) / 4)
    with pytest.raises(ModelError, match="differ in shape"):
        attentive_kd_loss(student, target[..., :1])


def test_evenly_spaced_layers() -> None:
    assert evenly_spaced_layers(13, 4) == [3, 6, 9, 12]  # ViT-S/B hidden states: DPT's layers
    assert evenly_spaced_layers(25, 4) == [6, 12, 18, 24]  # ViT-L
    assert evenly_spaced_layers(5, 4) == [1, 2, 3, 4]  # a CNN's levels
    assert evenly_spaced_layers(5, 5) == [0, 1, 2, 3, 4]
    assert evenly_spaced_layers(3, 4) == [0, 0, 1, 2]


# --------------------------------------------------------------------------------------------------
# FAM and ghost decoder
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("resize_first", [False, True])
def test_fam_maps_any_teacher_grid_to_the_student_map(resize_first: bool) -> None:
    fam = FeatureAcclimation(32, 16, resize_first=resize_first)
    out = fam(torch.randn(2, 32, 3, 5), (8, 12))
    assert out.shape == (2, 16, 8, 12)


def test_fam_outputs_match_student_feature_shapes_for_a_vit_teacher(hf_model_dir) -> None:  # noqa: ANN001, F811
    """Tiny Depth Anything (Dinov2 ViT, patch 14) saved with save_pretrained and loaded through ``hf:``."""
    teacher = load_teacher(f"hf:{hf_model_dir('depth_anything')}")
    student = tiny_student(head="bins", num_bins=16, bins_mlp_hidden=16, lgconv=True)
    method = build_method("disdepth", {"student_stages": [1, 2, 3, 4]})
    batch = sample_batch((32, 48))
    set_up(method, student, teacher, batch)
    assert method.teacher_layers == [0, 0, 1, 2]  # 3 hidden states (embeddings + 2 blocks), evenly spaced

    teacher_out = teacher(batch["image"], return_features=True)
    maps = method.teacher_maps(teacher_out, batch["image"].shape[-2:])
    assert all(m.ndim == 4 and m.shape[1] == 32 for m in maps)  # tokens laid on the patch grid
    assert maps[-1].shape[-2:] == teacher_out.features[-1].shape[-2:]
    student_out = student(batch["image"])
    acclimated = method.acclimated_features(maps, student_out.features)
    for index, fam_out in zip(method.stage_indices, acclimated):
        assert fam_out.shape == student_out.features[index].shape
    depth = method.ghost_depth(maps, student_out.features, batch["image"].shape[-2:]).depth
    assert depth.shape == (2, 1, 32, 48) and (depth > 0).all()


def test_fam_outputs_match_student_feature_shapes_for_a_cnn_teacher_through_hooks(cnn_teacher_file: Path) -> None:
    teacher = load_teacher(f"torch:{cnn_teacher_file}")
    student = tiny_student()
    layers = ["model.encoder.backbone.layer2", "model.encoder.backbone.layer3", "model.encoder.backbone.layer4"]
    method = build_method("disdepth", {"student_stages": [-3, -2, -1], "teacher_layers": layers})
    batch = sample_batch((32, 48))
    set_up(method, student, teacher, batch)
    assert method.stage_indices == [2, 3, 4]

    teacher_out = teacher(batch["image"], return_features=True)
    maps = method.teacher_maps(teacher_out, batch["image"].shape[-2:])
    # ResNet layer2..4 widths and strides 8, 16, 32 of a 32x48 image.
    assert [tuple(m.shape[1:]) for m in maps] == [(128, 4, 6), (256, 2, 3), (512, 1, 2)]
    student_out = student(batch["image"])
    for index, fam_out in zip(method.stage_indices, method.acclimated_features(maps, student_out.features)):
        assert fam_out.shape == student_out.features[index].shape
    # The hooks were emptied by collecting: a forward without hooks firing is an error, not stale maps.
    with pytest.raises(ModelError, match="did not run"):
        method.teacher_maps(teacher_out, batch["image"].shape[-2:])


def test_ghost_decoder_decodes_like_the_student_it_copies() -> None:
    student = tiny_student(head="bins", num_bins=16, bins_mlp_hidden=16).eval()
    ghost = GhostDecoder(tiny_student(head="bins", num_bins=16, bins_mlp_hidden=16)).eval()
    images = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        features = student.encode(images)
        assert not torch.equal(ghost(features, (32, 48)).depth, student.decode(features, (32, 48)).depth)
        ghost.copy_from(student)
        torch.testing.assert_close(ghost(features, (32, 48)).depth, student.decode(features, (32, 48)).depth)


def test_fill_with_a_relative_disparity_teacher_aligns_it_to_the_ground_truth() -> None:
    true_depth = 1 + 4 * torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    gt = true_depth.clone()
    gt[..., :2, :] = 0  # no ground truth in the top rows
    teacher = TeacherOutput(depth=3.0 / true_depth + 0.5, kind="relative_disparity")  # exact up to scale+shift
    method = DisDepth()
    target = method.depth_target({"depth": gt}, teacher)
    torch.testing.assert_close(target, true_depth, rtol=1e-4, atol=1e-4)
    assert torch.equal(DisDepth(DisDepth.Config(fill_with_teacher=False)).depth_target({"depth": gt}, teacher), gt)


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="paired one to one"):
        build_method("disdepth", {"student_stages": [-1, -2], "teacher_layers": [3]})
    with pytest.raises(ConfigError, match="warmup_steps=0"):
        build_method("disdepth", {"warmup_steps": 0})
    with pytest.raises(ConfigError, match="out of range"):
        method = build_method("disdepth", {"student_stages": [7]})
        set_up(method, tiny_student(), None, sample_batch())  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# Stages through the engine
# --------------------------------------------------------------------------------------------------


def disdepth_overrides(data: Path, run_dir: Path, teacher: Path, *extra: str) -> list[str]:
    return tiny_overrides(
        data,
        run_dir,
        "method.name=disdepth",
        f"teacher.spec=torch:{teacher}",
        "student.head=bins",
        "student.num_bins=16",
        "student.bins_mlp_hidden=16",
        "method.options.warmup_steps=2",
        "method.options.acclimation_steps=3",
        "method.options.distill_steps=1",
        "method.options.acclimation_lr=1e-2",
        "data.crop=[32,48]",  # the images' own size: one input shape for training and validation
        "data.val_limit=4",
        "trainer.val_every_n_steps=100",  # no validation inside the stages: the report and the end still score
        "trainer.checkpoint_every_n_steps=1",
        "trainer.log_every_n_steps=1",
        "optim.scheduler=none",
        *extra,
    )


class StageRecorder(L.Callback):
    """Copies of student, ghost and FAM state at the start and end of every stage."""

    def __init__(self) -> None:
        self.start: dict[str, dict[str, dict[str, torch.Tensor]]] = {}
        self.end: dict[str, dict[str, dict[str, torch.Tensor]]] = {}

    @staticmethod
    def _state(module: L.LightningModule) -> dict[str, dict[str, torch.Tensor]]:
        method = module.method
        parts = {"student": module.student, "fam": method.fam}
        if method.ghost is not None:
            parts["ghost"] = method.ghost
        return {k: {n: t.detach().clone() for n, t in m.state_dict().items()} for k, m in parts.items()}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start[pl_module.stage.name] = self._state(pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.end[pl_module.stage.name] = self._state(pl_module)


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class SnapshotRunDir(L.Callback):
    """Copy the run directory as a kill right after optimiser step ``step`` of ``stage`` leaves it.

    Lightning runs checkpoint callbacks last, so at this point ``last.ckpt`` still holds step
    ``step - 1``: the copy is the state of a run stopped mid-stage before its latest checkpoint.
    """

    def __init__(self, stage: str, step: int, destination: Path) -> None:
        self.stage, self.step, self.destination = stage, step, destination

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
        if pl_module.stage.name == self.stage and trainer.global_step == self.step:
            shutil.copytree(trainer.default_root_dir, self.destination)


@pytest.fixture(scope="module")
def straight_run(tiny_data: Path, mobilenet_teacher_file: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: F811
    """A three-stage run, with a copy of its run directory as it stood inside the acclimation stage."""
    recorder = StageRecorder()
    run_dir = tmp_path_factory.mktemp("disdepth-straight")
    stopped = tmp_path_factory.mktemp("disdepth-stopped") / "run"
    overrides = disdepth_overrides(tiny_data, run_dir, mobilenet_teacher_file)
    result = distill(load_recipe(None, overrides), [recorder, SnapshotRunDir("acclimation", 2, stopped)])
    return result, recorder, stopped


def test_three_stages_run_end_to_end_and_the_ghost_decoder_stays_frozen(straight_run) -> None:  # noqa: ANN001
    result, recorder, _ = straight_run
    assert [s["name"] for s in result.stages] == ["warmup", "acclimation", "distill"]
    assert [s["steps"] for s in result.stages] == [2, 3, 1]
    # Warm-up trains the student; acclimation copies its decoder + head into the ghost, then trains
    # the FAMs only: ghost decoder weights and statistics, and the whole student, unchanged.
    assert not same(recorder.start["warmup"]["student"], recorder.end["warmup"]["student"])
    acclimation_start, acclimation_end = recorder.start["acclimation"], recorder.end["acclimation"]
    warm = recorder.end["warmup"]["student"]
    for name, tensor in acclimation_start["ghost"].items():
        assert torch.equal(tensor, warm[name]), name  # a copy of the warmed-up decoder and head
    assert same(acclimation_start["ghost"], acclimation_end["ghost"])
    assert same(acclimation_start["student"], acclimation_end["student"])  # BatchNorm statistics included
    assert not same(acclimation_start["fam"], acclimation_end["fam"])
    # Distillation trains the student with the FAMs (and the ghost) frozen.
    distill_start, distill_end = recorder.start["distill"], recorder.end["distill"]
    assert same(distill_start["fam"], distill_end["fam"]) and same(distill_start["ghost"], distill_end["ghost"])
    assert not same(distill_start["student"], distill_end["student"])

    report = json.loads((result.run_dir / "acclimation.json").read_text())
    assert set(report) == {"teacher", "acclimated_teacher", "student"}
    assert all(entry["count"] == 4 and "abs_rel" in entry["metrics"] for entry in report.values())
    logged = (result.run_dir / "logs" / "distill" / "metrics.csv").read_text().splitlines()[0]
    assert "train/silog" in logged and "train/akd4" in logged and "train/akd1" in logged
    assert "train/akd0" not in logged  # the stride-2 stage is not distilled by default
    assert "train/acclimation" in (result.run_dir / "logs" / "acclimation" / "metrics.csv").read_text()
    assert result.metrics is not None and math.isfinite(result.metrics["abs_rel"])


def test_a_run_stopped_inside_acclimation_resumes_there_and_ends_like_the_straight_run(
    straight_run, tiny_data: Path, mobilenet_teacher_file: Path  # noqa: ANN001, F811
) -> None:
    straight, recorder, stopped = straight_run
    checkpoint = torch.load(stopped / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["depthkd"]["stage_name"] == "acclimation" and checkpoint["global_step"] == 1

    resumed_recorder = StageRecorder()
    overrides = disdepth_overrides(tiny_data, stopped, mobilenet_teacher_file)  # run.resume=auto
    resumed = distill(load_recipe(None, overrides), [resumed_recorder])
    assert list(resumed_recorder.start) == ["acclimation", "distill"]  # the warm-up was not run again
    assert same(resumed_recorder.end["acclimation"]["ghost"], recorder.end["acclimation"]["ghost"])
    assert same(resumed_recorder.end["acclimation"]["fam"], recorder.end["acclimation"]["fam"])
    expected, actual = load_file(str(straight.student_path)), load_file(str(resumed.student_path))
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[k], actual[k]) for k in expected)


def test_without_acclimation_fitnet_adapters_train_with_the_student(mobilenet_teacher_file: Path) -> None:
    teacher = load_teacher(f"torch:{mobilenet_teacher_file}")
    student = tiny_student(lgconv=True)
    options = {"acclimation": False, "attentive": False, "lambda_kd": 0.5, "student_stages": [-2, -1]}
    method = build_method("disdepth", options)
    batch = sample_batch((32, 48), batch=4)
    set_up(method, student, teacher, batch)
    assert method.ghost is None and len(method.fam) == 0 and len(method.adapters) == 2
    stages = method.stages()
    assert [s.name for s in stages] == ["warmup", "distill"]
    assert stages[-1].optimizers[0].params == ("student", "method.adapters")

    student_out = student(batch["image"])
    teacher_out = teacher(batch["image"], return_features=True)
    out = method.loss(batch, student_out, teacher_out, stages[-1])
    assert set(out.terms) == {"silog", "akd3", "akd4"}
    # Uniform weighting: the term is 0.5 x the MSE between the adapted student map and the teacher map.
    adapted = method.adapters[1](student_out.features[4])
    expected = 0.5 * torch.nn.functional.mse_loss(adapted, teacher_out.features[4])  # both 1x2 maps
    torch.testing.assert_close(out.terms["akd4"], expected)
    out.total.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.adapters.parameters() if p.ndim > 1)


# --------------------------------------------------------------------------------------------------
# Recipes
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["disdepth-sim", "disdepth-nyu", "disdepth-kitti"])
def test_recipes_load_and_validate(name: str) -> None:
    config = load_recipe(CONFIGS / f"{name}.yaml")
    assert config.method.name == "disdepth"
    options = config.method.options
    assert isinstance(options, DisDepth.Config) and options.acclimation and options.attentive
    assert config.student.head == "bins" and config.student.lgconv
    assert all(getattr(options, f"{s}_steps") for s in ("warmup", "acclimation", "distill"))
    assert config.optim.encoder_lr_scale == pytest.approx(0.1) and config.optim.weight_decay == pytest.approx(0.1)
    assert config.teacher.spec and not config.cache.enabled
