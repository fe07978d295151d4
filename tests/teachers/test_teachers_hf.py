"""``hf:`` teachers behave like the transformers model under its own processor and pipeline post-processing."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch

from depthkd.errors import ModelError
from depthkd.models.teachers import Teacher, load_teacher

# Families whose pipeline post-processing depthkd reproduces exactly (bicubic resize, padding removed).
PIPELINE_FAMILIES = ["depth_anything", "dpt", "glpn", "zoedepth"]
ALL_FAMILIES = PIPELINE_FAMILIES + ["depth_anything_metric", "dpt_pad"]


@pytest.fixture
def images(images):
    """The conftest's images on the 8-bit grid, as decoded image files are (the processor sees ``uint8``)."""
    return (images * 255).round() / 255


def _reference(folder, images, uint8=True):
    """The processor's pixel values (from ``uint8`` or float pixels) and the model's raw output, via transformers."""
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    processor = AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)
    model = AutoModelForDepthEstimation.from_pretrained(str(folder), local_files_only=True).eval()
    pixels = (images * 255).round().to(torch.uint8) if uint8 else images * 255.0
    pixel_values = processor(images=list(pixels), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        raw = model(pixel_values=pixel_values)
    return processor, pixel_values, raw


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_model_input_matches_the_image_processor(hf_model_dir, images, family):
    folder = hf_model_dir(family)
    _, pixel_values, _ = _reference(folder, images)
    teacher = load_teacher(f"hf:{folder}")
    ours = teacher.preprocess(images)
    assert ours.shape == pixel_values.shape
    torch.testing.assert_close(ours, pixel_values, atol=2e-5, rtol=0)


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_float_resize_matches_the_processor_given_float_pixels(hf_model_dir, family):
    images = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(3))  # off the 8-bit grid
    folder = hf_model_dir(family)
    _, pixel_values, _ = _reference(folder, images, uint8=False)
    teacher = load_teacher(f"hf:{folder}", uint8_resize="none")
    torch.testing.assert_close(teacher.preprocess(images), pixel_values, atol=2e-5, rtol=0)
    assert teacher.preprocess_id != load_teacher(f"hf:{folder}").preprocess_id or family == "zoedepth"


@pytest.mark.parametrize("family", PIPELINE_FAMILIES)
def test_output_matches_model_plus_pipeline_postprocessing(hf_model_dir, images, family):
    folder = hf_model_dir(family)
    processor, _, raw = _reference(folder, images)
    sizes = [tuple(images.shape[-2:])] * images.shape[0]
    # The pipeline passes the image size as the first size argument (ZoeDepth: source size, padding removed).
    expected = torch.stack([r["predicted_depth"] for r in processor.post_process_depth_estimation(raw, sizes)])
    teacher = load_teacher(f"hf:{folder}", output_interpolation="bicubic")
    out = teacher(images)
    assert out.depth.shape == (2, 1, 32, 48)
    assert expected[:, None].std() > 1e-4  # the tiny model's output varies, so a misplaced map would show
    torch.testing.assert_close(out.depth, expected[:, None], atol=1e-5, rtol=1e-5)


def test_default_bilinear_output_and_center_padding_removed(hf_model_dir, images):
    folder = hf_model_dir("dpt_pad")
    _, pixel_values, raw = _reference(folder, images)
    assert pixel_values.shape[-2:] == (32, 32)  # 28x28 resized, then 2 zero pixels padded on each side
    teacher = load_teacher(f"hf:{folder}")
    frame = torch.nn.functional.interpolate(raw.predicted_depth[:, None], size=(32, 32), mode="bilinear")
    expected = torch.nn.functional.interpolate(frame[..., 2:30, 2:30], size=(32, 48), mode="bilinear")
    torch.testing.assert_close(teacher(images).depth, expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    ("family", "kind", "max_depth"),
    [
        ("depth_anything", "relative_disparity", None),
        ("depth_anything_metric", "metric_depth", 20.0),
        ("dpt", "relative_disparity", None),
        ("glpn", "metric_depth", 10.0),
        ("zoedepth", "metric_depth", 10.0),
    ],
)
def test_kind_and_max_depth_read_from_config(hf_model_dir, family, kind, max_depth):
    teacher = load_teacher(f"hf:{hf_model_dir(family)}")
    assert teacher.kind == kind
    assert teacher.max_depth == max_depth


@pytest.mark.parametrize(
    ("family", "shapes"),
    [
        # 32x48 -> 28x42 model input, patch 14 -> 2x3 grid; CLS token dropped; embeddings + 2 layers.
        ("depth_anything", [(2, 32, 2, 3)] * 3),
        # GLPN's hierarchical encoder: strides 4 and 8 on the 32x48 input.
        ("glpn", [(2, 8, 8, 12), (2, 16, 4, 6)]),
    ],
)
def test_features_are_maps_shallow_to_deep(hf_model_dir, images, family, shapes):
    teacher = load_teacher(f"hf:{hf_model_dir(family)}")
    out = teacher(images, return_features=True)
    assert [tuple(f.shape) for f in out.features] == shapes
    assert teacher(images).features == []


def test_vit_tokens_reshaped_in_row_major_patch_order(hf_model_dir, images):
    from transformers import AutoModelForDepthEstimation

    folder = hf_model_dir("depth_anything")
    teacher = load_teacher(f"hf:{folder}", feature_layers=[-1])
    model = AutoModelForDepthEstimation.from_pretrained(str(folder), local_files_only=True).eval()
    with torch.no_grad():
        tokens = model(pixel_values=teacher.preprocess(images), output_hidden_states=True).hidden_states[-1]
    (feature,) = teacher(images, return_features=True).features
    # Patch (row 1, column 2) of a 2x3 grid is token 1 + 1*3 + 2 (after the CLS token).
    torch.testing.assert_close(feature[:, :, 1, 2], tokens[:, 1 + 5, :])


def test_teacher_is_frozen(hf_model_dir, images):
    teacher = load_teacher(f"hf:{hf_model_dir('glpn')}")
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    teacher.train()
    assert not teacher.training and not any(m.training for m in teacher.modules())
    assert not any(p.requires_grad for p in teacher.parameters())
    out = teacher(images)
    assert not out.depth.requires_grad and not out.depth.is_inference()
    # Outputs are ordinary tensors: usable as targets of a differentiable loss.
    weight = torch.ones(1, requires_grad=True)
    ((weight * out.depth - out.depth) ** 2).mean().backward()
    assert weight.grad is not None
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_bf16_precision_returns_float32_close_to_fp32(hf_model_dir, images):
    folder = hf_model_dir("glpn")
    fp32 = load_teacher(f"hf:{folder}")(images).depth
    bf16_teacher = load_teacher(f"hf:{folder}", precision="bf16")
    bf16 = bf16_teacher(images).depth
    assert bf16.dtype == torch.float32
    assert (bf16 - fp32).abs().max() < 0.05 * fp32.abs().max()
    assert bf16_teacher.teacher_id != load_teacher(f"hf:{folder}").teacher_id


def test_identities_stable_and_sensitive_to_preprocessing(hf_model_dir):
    folder = hf_model_dir("depth_anything")
    first, second = load_teacher(f"hf:{folder}"), load_teacher(f"hf:{folder}")
    assert (first.teacher_id, first.preprocess_id) == (second.teacher_id, second.preprocess_id)
    smaller = load_teacher(f"hf:{folder}", image_processor_kwargs={"size": {"height": 28, "width": 28}})
    assert smaller.preprocess_id != first.preprocess_id
    assert smaller.teacher_id == first.teacher_id
    assert smaller.preprocess(torch.rand(1, 3, 32, 48)).shape[-2:] == (28, 42)
    content = load_teacher(f"hf:{folder}", content_hash=True)
    assert content.teacher_id != first.teacher_id  # keyed on bytes, not modification times
    assert content.teacher_id == load_teacher(f"hf:{folder}", content_hash=True).teacher_id


def test_missing_folder_and_unknown_kind_are_model_errors(hf_model_dir, tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_teacher(f"hf:{tmp_path / 'absent'}")
    folder = tmp_path / "dpt"
    shutil.copytree(hf_model_dir("dpt"), folder)
    config = json.loads((folder / "config.json").read_text())
    assert isinstance(load_teacher(f"hf:{folder}", kind="metric_depth"), Teacher)
    with pytest.raises(ModelError, match="output kind"):
        load_teacher(f"hf:{folder}", kind="inverse_metres")
    assert config["model_type"] == "dpt"


def test_missing_processor_config_uses_class_defaults_with_warning(hf_model_dir, tmp_path, caplog):
    folder = tmp_path / "glpn"
    shutil.copytree(hf_model_dir("glpn"), folder)
    (folder / "preprocessor_config.json").unlink()
    with caplog.at_level(logging.WARNING):
        teacher = load_teacher(f"hf:{folder}")
    assert "preprocessor_config.json" in caplog.text
    # GLPNImageProcessor's default size_divisor is 32: 32x48 floors to 32x32.
    assert teacher.preprocess(torch.rand(1, 3, 32, 48)).shape[-2:] == (32, 32)
