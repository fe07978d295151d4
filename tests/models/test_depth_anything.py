"""The depth-anything student arch: the transformers network split into encoder / decoder / head."""

from __future__ import annotations

import json

import pytest
import torch

from depthkd.errors import ConfigError
from depthkd.models import StudentConfig, build_student, load_student, save_student
from depthkd.models.depth_anything import IMAGENET_MEAN, IMAGENET_STD, tapped_layers, to_huggingface



@pytest.fixture(scope="module")
def tiny(tiny_depth_anything_options):
    torch.manual_seed(0)
    return build_student(arch="depth-anything", arch_options=tiny_depth_anything_options, max_depth=10).eval()


def test_config_is_resolved_and_checked():
    config = StudentConfig(arch="depth-anything", arch_options={"num_layers": 4})
    assert config.backbone == "dinov2" and config.arch_options["hidden_size"] == 192  # defaults filled in
    assert tapped_layers(12) == [3, 6, 9, 12] and tapped_layers(8) == [2, 4, 6, 8]
    with pytest.raises(ConfigError, match="head='bins' does not fit arch 'depth-anything'"):
        StudentConfig(arch="depth-anything", head="bins")
    with pytest.raises(ConfigError, match="unknown depth-anything option.*depth"):
        StudentConfig(arch="depth-anything", arch_options={"depth": 3})
    with pytest.raises(ConfigError, match="not divisible by num_heads"):
        StudentConfig(arch="depth-anything", arch_options={"hidden_size": 30, "num_heads": 4})
    with pytest.raises(ConfigError, match="arch_options given for arch 'unet'"):
        StudentConfig(arch_options={"hidden_size": 32})
    with pytest.raises(ConfigError, match="unknown student arch"):
        StudentConfig(arch="transformer")


def test_non_integer_max_depth_is_refused(tiny_depth_anything_options):
    with pytest.raises(ConfigError, match="whole number of metres"):
        build_student(arch="depth-anything", arch_options=tiny_depth_anything_options, max_depth=10.5)


@pytest.mark.parametrize("size", [(64, 96), (60, 90)])
def test_shapes_features_and_range(tiny, size):
    with torch.no_grad():
        out = tiny(torch.rand(2, 3, *size))
    assert out.depth.shape == (2, 1, *size)
    grid = (round(size[0] / 8), round(size[1] / 8))
    assert [tuple(f.shape) for f in out.features] == [(2, 32, *grid)] * 4
    assert tiny.encoder.channels == [32] * 4 and tiny.encoder.reductions == [8] * 4
    assert float(out.depth.min()) >= 1e-3 and float(out.depth.max()) <= 10.0


def test_same_function_as_the_transformers_model(tiny):
    images = torch.rand(2, 3, 64, 96)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        reference = to_huggingface(tiny)(pixel_values=(images - mean) / std).predicted_depth
        ours = tiny(images).depth
    torch.testing.assert_close(ours, reference.unsqueeze(1).clamp_min(1e-3))


def test_checkpoint_round_trip_and_float16_file(tiny, tmp_path):
    images = torch.rand(1, 3, 64, 96)
    path = save_student(tiny, tmp_path / "vit.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(load_student(path)(images).depth, tiny(images).depth)
        half = save_student(load_student(path).half(), tmp_path / "vit16.safetensors")
        loaded = load_student(half)
        assert next(loaded.parameters()).dtype == torch.float32  # fp16 file, fp32 model
        assert (loaded(images).depth - tiny(images).depth).abs().max() < 0.05


def test_trains_through_the_engine(tmp_path, tiny_depth_anything_options):
    from depthkd.engine import load_recipe, train

    overrides = [
        "data.train=sim:indoor?num=8&size=64x96&seed=0",
        "data.val=sim:indoor?num=4&size=64x96&seed=9",
        "data.crop=null",
        "data.batch_size=4",
        "data.num_workers=0",
        "student.arch=depth-anything",
        f"student.arch_options={json.dumps(tiny_depth_anything_options)}",
        "trainer.max_epochs=null",
        "trainer.max_steps=3",
        f"run.dir={tmp_path / 'run'}",
    ]
    result = train(load_recipe("supervised-sim", overrides))
    student = load_student(result.student_path)
    assert student.config.arch == "depth-anything" and result.metrics["abs_rel"] > 0


@pytest.fixture(scope="module")
def tiny_hybrid(tiny_depth_anything_options):
    torch.manual_seed(0)
    options = {**tiny_depth_anything_options, "stem": "resnet10t"}
    return build_student(arch="depth-anything", arch_options=options, max_depth=10).eval()


def test_hybrid_stem_feeds_the_finest_level_and_the_vit_reads_its_coarse_map(tiny_hybrid):
    with torch.no_grad():
        out = tiny_hybrid(torch.rand(2, 3, 64, 96))
    assert out.depth.shape == (2, 1, 64, 96)
    assert [tuple(f.shape) for f in out.features] == [(2, 32, 16, 24)] + [(2, 32, 8, 12)] * 3
    assert tiny_hybrid.encoder.reductions == [4, 8, 8, 8]
    # One token per stem pixel: the ViT's patch embedding is a 1x1 projection of the stem's channels.
    embedding = tiny_hybrid.encoder.backbone.embeddings.patch_embeddings.projection
    assert embedding.kernel_size == (1, 1) and embedding.in_channels == tiny_hybrid.encoder.stem.channels


def test_hybrid_learns_through_the_stem_and_round_trips(tiny_hybrid, tmp_path):
    tiny_hybrid.train()
    tiny_hybrid(torch.rand(2, 3, 64, 96)).depth.mean().backward()
    stem_grads = [p.grad for p in tiny_hybrid.encoder.stem.parameters()]
    assert all(g is not None for g in stem_grads) and any(float(g.abs().sum()) > 0 for g in stem_grads)
    tiny_hybrid.eval()
    path = save_student(tiny_hybrid, tmp_path / "hybrid.safetensors")
    images = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(load_student(path)(images).depth, tiny_hybrid(images).depth)
    with pytest.raises(ConfigError, match="hybrid .* has no transformers class"):
        to_huggingface(tiny_hybrid)


def test_hybrid_stem_errors_name_the_problem(tiny_depth_anything_options):
    with pytest.raises(ConfigError, match="stem .resnet10t. has no feature map at stride 64"):
        build_student(arch="depth-anything", arch_options={**tiny_depth_anything_options, "stem": "resnet10t",
                                                           "patch_size": 64, "num_heads": 2})
    with pytest.raises(ConfigError, match="stem=3: expected a timm model name"):
        StudentConfig(arch="depth-anything", arch_options={"stem": 3})
