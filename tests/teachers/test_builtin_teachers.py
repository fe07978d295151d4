"""The shipped simulator teachers: they load offline and reach the metrics their cards state."""

from __future__ import annotations

import hashlib

import pytest
import torch

from depthkd.evaluate import evaluate
from depthkd.models import load_teacher
from depthkd.models.teachers import builtin_teacher_names
from depthkd.models.teachers.builtin import BUILTIN_TEACHERS, CARD_FILE, read_card, weights_dir, weights_path

MAX_PACKAGE_MB = 40.0


def test_the_teachers_are_registered_and_shipped():
    assert {"sim-vit", "sim-resnet", "sim-vit-outdoor"} <= set(builtin_teacher_names())
    total = sum(weights_path(name).stat().st_size for name in BUILTIN_TEACHERS) / 2**20
    assert total <= MAX_PACKAGE_MB
    assert (weights_dir() / CARD_FILE).is_file()
    for name in BUILTIN_TEACHERS:
        card = read_card(name)
        assert hashlib.sha256(weights_path(name).read_bytes()).hexdigest() == card["sha256"]
        assert card["steps"] > 0 and card["recipe"].endswith(f"teacher-{name}.yaml")


@pytest.mark.parametrize("name", sorted(BUILTIN_TEACHERS))
def test_shipped_weights_reach_the_card_metrics(name):
    card = read_card(name)
    result = evaluate(str(weights_path(name)), card["test_set"], protocol=card["protocol"], batch_size=8)
    assert result.count == int(card["test_set"].split("num=")[1].split("&")[0])
    for key in ("abs_rel", "rmse", "d1"):
        assert result.metrics[key] == pytest.approx(card["metrics"][key], rel=2e-3, abs=1e-4), key


def test_sim_vit_is_a_metric_transformer_teacher_with_features():
    teacher = load_teacher("sim-vit")
    assert teacher.kind == "metric_depth" and teacher.model.config.arch == "depth-anything"
    out = teacher(torch.rand(1, 3, 96, 128), return_features=True)
    assert out.depth.shape == (1, 1, 96, 128) and float(out.depth.min()) > 0
    hidden = teacher.model.config.arch_options["hidden_size"]
    assert [tuple(f.shape[:2]) for f in out.features] == [(1, hidden)] * 4


def test_sim_vit_outdoor_is_a_street_teacher_clearly_better_than_a_student_trained_alike():
    teacher = load_teacher("sim-vit-outdoor")
    assert teacher.kind == "metric_depth" and teacher.model.config.max_depth == 80.0
    out = teacher(torch.rand(1, 3, 96, 320))
    assert out.depth.shape == (1, 1, 96, 320) and float(out.depth.min()) > 0
    card = read_card("sim-vit-outdoor")
    assert card["protocol"] == "sim_outdoor" and card["test_set"].startswith("sim:outdoor?")
    baseline = card["baseline"]
    assert baseline["backbone"] == "mobilenetv2_100" and baseline["steps"] == card["steps"]
    assert card["metrics"]["abs_rel"] < 0.9 * baseline["metrics"]["abs_rel"]


def test_sim_resnet_has_batchnorm_for_data_free():
    teacher = load_teacher("sim-resnet")
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in teacher.model.modules())
    assert all(not p.requires_grad for p in teacher.parameters())


def test_unknown_builtin_name_is_a_clear_error():
    from depthkd.errors import ModelError

    with pytest.raises(ModelError, match="unknown built-in teacher 'sim-cnn'"):
        weights_path("sim-cnn")


def test_the_shipped_sim_pool_encoder_starts_a_mobilenetv2_student():
    """The ImageNet stand-in loads, in float32, with its card; the decoder stays at its seed."""
    import json

    from safetensors import safe_open

    from depthkd.models import build_student
    from depthkd.models.pretrained import builtin_encoder_path, read_encoder_state

    path = builtin_encoder_path("sim-pool", "mobilenetv2_100")
    with safe_open(str(path), framework="pt") as handle:
        card = json.loads(handle.metadata()["card"])
    assert card["train_data"].startswith("sim:ood_shapes+ood_clutter") and card["steps"] > 0
    student = build_student("mobilenetv2_100", head="dpm", max_depth=10.0, init_encoder="sim-pool")
    _, state = read_encoder_state("sim-pool", "mobilenetv2_100")
    loaded = student.encoder.state_dict()
    for key, value in state.items():
        assert torch.equal(loaded[key], value.to(loaded[key].dtype)), key
    assert loaded["backbone.conv_stem.weight"].dtype == torch.float32
