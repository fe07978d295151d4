"""Building students: backbones, encoder normalisation, decoder options, config, errors."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from depthkd.errors import ConfigError, ModelError
from depthkd.models import DEFAULT_BACKBONES, DepthStudent, StudentConfig, build_student


@pytest.mark.parametrize("backbone", DEFAULT_BACKBONES)
def test_default_backbones_build_and_run(backbone: str, tiny_images: torch.Tensor) -> None:
    student = build_student(backbone, head="regression").eval()
    with torch.no_grad():
        out = student(tiny_images)
    assert out.depth.shape == (2, 1, 32, 48)
    assert bool(torch.isfinite(out.depth).all()) and bool((out.depth > 0).all())
    assert [f.shape[1] for f in out.features] == student.encoder.channels
    assert student.encoder.reductions == [2, 4, 8, 16, 32]
    assert [f.shape[-2:] for f in out.features] == [
        (16, 24), (8, 12), (4, 6), (2, 3), (1, 2)
    ]


def test_encoder_normalises_with_imagenet_statistics(tiny_images: torch.Tensor) -> None:
    student = build_student().eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        ours = student.encode(tiny_images)
        manual = student.encoder.backbone((tiny_images - mean) / std)
    assert all(torch.allclose(a, b) for a, b in zip(ours, manual))


def test_odd_input_size_is_handled() -> None:
    student = build_student(head="bins", num_bins=8).eval()
    with torch.no_grad():
        out = student(torch.rand(1, 3, 30, 44))
    assert out.depth.shape == (1, 1, 30, 44)
    assert out.probs.shape == (1, 8, 15, 22)


def test_forward_is_decode_of_encode_and_ghost_decoding(tiny_images: torch.Tensor) -> None:
    student = build_student(head="bins", num_bins=16).eval()
    with torch.no_grad():
        out = student(tiny_images)
        features = student.encode(tiny_images)
        decoded = student.decode(features, tiny_images.shape[-2:])
        assert torch.equal(out.depth, decoded.depth)
        assert decoded.features == []
        # DisDepth's ghost decoder: a frozen copy run on other features of the same shapes.
        ghost = copy.deepcopy(student).requires_grad_(False)
        other = [torch.randn_like(f) for f in features]
        ghost_out = ghost.decode(other, (32, 48))
    assert ghost_out.depth.shape == out.depth.shape
    assert not torch.allclose(ghost_out.depth, out.depth)


@pytest.mark.parametrize("stride, size", [(1, (32, 48)), (4, (8, 12)), (8, (4, 6))])
def test_output_stride_option(stride: int, size: tuple[int, int], tiny_images: torch.Tensor) -> None:
    student = build_student(head="dpm", output_stride=stride).eval()
    with torch.no_grad():
        out = student(tiny_images)
    assert out.probs.shape[-2:] == size
    assert out.depth.shape == (2, 1, 32, 48)


def test_default_decoder_widths_and_custom_widths(tiny_images: torch.Tensor) -> None:
    assert build_student().decoder.channels == [128, 64, 32, 16]
    student = build_student(decoder_channels=(40, 30, 20, 10)).eval()
    assert student.decoder.out_channels == 10
    assert student(tiny_images).depth.shape == (2, 1, 32, 48)
    with pytest.raises(ConfigError, match="expected 4"):
        build_student(decoder_channels=(32, 16))


def test_backbone_with_coarse_first_map_gets_extra_upsampling_stage() -> None:
    # out_indices (1..4) starts at stride 4: one extra stage upsamples to the default stride 2.
    student = build_student(out_indices=(1, 2, 3, 4), head="dpm", num_bins=4).eval()
    assert student.decoder.stage_strides == [16, 8, 4, 2]
    with torch.no_grad():
        out = student(torch.rand(1, 3, 32, 32))
    assert out.probs.shape == (1, 4, 16, 16)


def test_config_round_trip_through_json() -> None:
    student = build_student(
        "resnet18", head="bins", max_depth=80.0, lgconv=True, decoder_channels=[64, 32, 16, 8]
    )
    config = student.config
    assert config.num_bins == 256 and config.decoder_channels == (64, 32, 16, 8)
    restored = StudentConfig.from_dict(json.loads(json.dumps(asdict(config))))
    assert restored == config
    rebuilt = build_student(**asdict(restored))
    assert isinstance(rebuilt, DepthStudent) and rebuilt.config == config
    shapes = {k: v.shape for k, v in student.state_dict().items()}
    assert shapes == {k: v.shape for k, v in rebuilt.state_dict().items()}


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"head": "softmax"}, ConfigError, "unknown head 'softmax'"),
        ({"min_depth": 0.0}, ConfigError, "0 < min_depth < max_depth"),
        ({"max_depth": 1e-4}, ConfigError, "0 < min_depth < max_depth"),
        ({"num_bins": 32}, ConfigError, "regression"),
        ({"head": "dpm", "num_bins": 1}, ConfigError, "at least 2"),
        ({"output_stride": 3}, ConfigError, "power of two"),
        ({"backbone": "no_such_net"}, ModelError, "no_such_net"),
    ],
)
def test_bad_options_raise_clear_errors(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        build_student(**kwargs)


def test_unknown_config_key_is_named() -> None:
    with pytest.raises(ConfigError, match="depht"):
        StudentConfig.from_dict({"depht": 3})


def test_missing_pretrained_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "imagenet.safetensors"
    with pytest.raises(ModelError, match="imagenet.safetensors"):
        build_student(pretrained_path=missing)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_pretrained_weights_load_from_a_local_file(tmp_path: Path, suffix: str) -> None:
    classifier = timm.create_model("mobilenetv2_100", pretrained=False)
    weights = {k: v.contiguous() for k, v in classifier.state_dict().items()}
    path = tmp_path / f"mobilenetv2{suffix}"
    if suffix == ".safetensors":
        save_file(weights, str(path))
    else:
        torch.save(weights, path)
    torch.manual_seed(1)  # a different random init than the file's
    student = build_student(pretrained_path=path)
    encoder_state = student.encoder.backbone.state_dict()
    assert len(encoder_state) > 100
    assert all(torch.equal(v, weights[k]) for k, v in encoder_state.items())


def test_foreign_pretrained_file_is_a_model_error(tmp_path: Path) -> None:
    other = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(path))
    with pytest.raises(ModelError, match="resnet18.safetensors"):
        build_student("mobilenetv2_100", pretrained_path=path)


def test_init_weights_start_a_student_from_a_checkpoint(tmp_path):
    from depthkd.errors import ModelError
    from depthkd.models import save_student
    from depthkd.models.checkpoint import load_student

    source = build_student("resnet10t", max_depth=10.0)
    path = save_student(source, tmp_path / "source.safetensors")
    started = build_student("resnet10t", max_depth=80.0, init_weights=str(path))
    for key, value in source.state_dict().items():
        assert torch.equal(started.state_dict()[key], value), key
    saved = save_student(started, tmp_path / "started.safetensors")
    assert load_student(saved).config.init_weights is None  # used at build time only
    with pytest.raises(ModelError, match="do not fit this student's architecture"):
        build_student("mobilenetv2_100", init_weights=str(path))
    with pytest.raises(ModelError, match="no such file"):
        build_student("resnet10t", init_weights=str(tmp_path / "missing.safetensors"))


def test_init_encoder_starts_only_the_encoder_from_pretrained_weights(tmp_path):
    """A student checkpoint or an encoder file gives the encoder; decoder and head stay at their seed."""
    from depthkd.models import save_student
    from depthkd.models.pretrained import read_encoder_state, save_encoder

    torch.manual_seed(1)
    source = build_student("resnet10t", head="regression", max_depth=20.0)
    checkpoint = save_student(source, tmp_path / "source.safetensors")
    encoder_file = save_encoder(source.encoder, "resnet10t", tmp_path / "encoder.safetensors", {"note": "test"})
    torch.manual_seed(2)
    fresh = build_student("resnet10t", head="dpm", max_depth=80.0, num_bins=65)
    for spec in (str(checkpoint), str(encoder_file)):
        torch.manual_seed(2)
        started = build_student("resnet10t", head="dpm", max_depth=80.0, num_bins=65, init_encoder=spec)
        for key, value in source.encoder.state_dict().items():
            assert torch.equal(started.encoder.state_dict()[key], value), key
        for key, value in fresh.decoder.state_dict().items():  # the rest as without init_encoder
            assert torch.equal(started.decoder.state_dict()[key], value), key
        assert not torch.equal(started.encoder.state_dict()["backbone.conv1.0.weight"],
                               fresh.encoder.state_dict()["backbone.conv1.0.weight"])
    path, state = read_encoder_state(str(encoder_file), "resnet10t")
    assert path == encoder_file and set(state) == set(source.encoder.state_dict())
    # LG-Conv wraps the convs after the weights are in: the wrapped convs keep them.
    lg = build_student("resnet10t", lgconv=True, init_encoder=str(encoder_file))
    assert lg.num_lgconv > 0
    with pytest.raises(ModelError, match="holds a 'resnet10t' encoder; this student's backbone is 'mobilenetv2_100'"):
        build_student("mobilenetv2_100", init_encoder=str(encoder_file))
    with pytest.raises(ModelError, match="no such file"):
        build_student("resnet10t", init_encoder=str(tmp_path / "missing.safetensors"))
    with pytest.raises(ModelError, match="exists for backbone"):
        build_student("resnet18", init_encoder="sim-pool")
    with pytest.raises(ConfigError, match="init_encoder"):
        StudentConfig(arch="depth-anything", init_encoder=str(encoder_file))
