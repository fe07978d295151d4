"""Student checkpoints: safetensors round trip and clear errors for bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from depthkd.errors import ModelError
from depthkd.models import build_student, load_student, read_student_config, save_student


@pytest.mark.parametrize(
    "kwargs",
    [
        {"head": "regression"},
        {"head": "bins", "num_bins": 32, "lgconv": True, "lgconv_depthwise": True},
        {"backbone": "resnet18", "head": "dpm", "max_depth": 80.0, "output_stride": 4},
    ],
)
def test_round_trip_gives_identical_outputs(
    tmp_path: Path, tiny_images: torch.Tensor, kwargs: dict
) -> None:
    student = build_student(**kwargs)
    student.train()
    with torch.no_grad():
        student(tiny_images)  # moves BatchNorm running statistics away from their init
    student.eval()
    path = save_student(student, tmp_path / "ckpt" / "student.safetensors")
    loaded = load_student(path)
    assert loaded.config == student.config
    assert not loaded.training
    with torch.no_grad():
        a, b = student(tiny_images), loaded(tiny_images)
    assert torch.equal(a.depth, b.depth)
    if a.probs is not None:
        assert torch.equal(a.probs, b.probs) and torch.equal(a.bin_centers, b.bin_centers)


def test_config_is_stored_as_json_metadata(tmp_path: Path) -> None:
    student = build_student(head="dpm", max_depth=80.0)
    path = save_student(student, tmp_path / "s.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        stored = json.loads(handle.metadata()["depthkd_student_config"])
    assert stored["head"] == "dpm" and stored["num_bins"] == 257 and stored["max_depth"] == 80.0
    assert read_student_config(path) == student.config


def test_load_does_not_need_the_pretrained_file(tmp_path: Path) -> None:
    weights = tmp_path / "imagenet.safetensors"
    classifier = timm.create_model("mobilenetv2_100", pretrained=False)
    save_file({k: v.contiguous() for k, v in classifier.state_dict().items()}, str(weights))
    student = build_student(pretrained_path=weights).eval()
    path = save_student(student, tmp_path / "s.safetensors")
    weights.unlink()
    loaded = load_student(path)
    assert loaded.config.pretrained_path is None
    images = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(student(images).depth, loaded(images).depth)


def test_missing_file_is_a_model_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="nowhere.safetensors"):
        load_student(tmp_path / "nowhere.safetensors")


def test_foreign_safetensors_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(3)}, str(path))
    with pytest.raises(ModelError, match="depthkd_student_config"):
        load_student(path)


def test_non_safetensors_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "student.safetensors"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ModelError, match="not a safetensors file"):
        load_student(path)


def test_weights_that_do_not_fit_the_config_are_rejected(tmp_path: Path) -> None:
    path = save_student(build_student(head="dpm"), tmp_path / "s.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
        metadata = handle.metadata()
    config = json.loads(metadata["depthkd_student_config"])
    config["num_bins"] = 12  # head weights hold 49 bins
    metadata["depthkd_student_config"] = json.dumps(config)
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(ModelError, match="do not match"):
        load_student(path)
