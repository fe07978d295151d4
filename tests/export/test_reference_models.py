"""Reference teacher architectures: the released hyperparameters, and a tiny variant that runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers
from export_utils import TINY_DEPTH_ANYTHING, ort_depth

from depthkd.errors import ModelError
from depthkd.export import export_onnx, load_model_spec
from depthkd.reference_models import (
    REFERENCE_SPECS,
    build_reference,
    reference_config,
    reference_names,
    reference_processor,
)
from depthkd.models.teachers.hf_preprocessing import HFPreprocessing


def test_depth_anything_v2_released_values() -> None:
    small = reference_config("depth-anything-v2-small")
    assert (small.backbone_config.hidden_size, small.backbone_config.num_attention_heads) == (384, 6)
    assert small.backbone_config.num_hidden_layers == 12 and small.backbone_config.patch_size == 14
    assert list(small.backbone_config.out_indices) == [3, 6, 9, 12]
    assert list(small.neck_hidden_sizes) == [48, 96, 192, 384] and small.fusion_hidden_size == 64
    assert small.reassemble_hidden_size == 384 and small.depth_estimation_type == "relative"
    base = reference_config("depth-anything-v2-base")
    assert (base.backbone_config.hidden_size, base.backbone_config.num_attention_heads) == (768, 12)
    assert list(base.neck_hidden_sizes) == [96, 192, 384, 768] and base.fusion_hidden_size == 128


def test_dpt_hybrid_released_values() -> None:
    config = reference_config("dpt-hybrid")
    assert config.is_hybrid and config.hidden_size == 768 and config.num_hidden_layers == 12
    assert list(config.backbone_out_indices) == [2, 5, 8, 11]
    assert list(config.reassemble_factors) == [1, 1, 1, 0.5]
    assert list(config.neck_hidden_sizes) == [256, 512, 768, 768] and config.fusion_hidden_size == 256
    assert type(config.backbone_config).__name__ == "BitConfig"
    assert list(config.backbone_config.depths) == [3, 4, 9]


@pytest.mark.parametrize(
    "name, millions",
    # Published sizes: Depth Anything V2 paper (24.8M, 97.5M); DPT paper (DPT-Hybrid 123M).
    [("depth-anything-v2-small", 24.8), ("depth-anything-v2-base", 97.5), ("dpt-hybrid", 123.0)],
)
def test_parameter_counts_match_the_papers(name, millions) -> None:
    spec = REFERENCE_SPECS[name]
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = getattr(transformers, spec.model_class)(reference_config(name))
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(millions, rel=0.01)


def test_processor_geometry() -> None:
    depth_anything = HFPreprocessing.from_processor(reference_processor("depth-anything-v2-small"))
    # 480x640: scale 518/480 (closer to 1 than 518/640) -> 518 x 690.7 -> multiples of 14: 518 x 686.
    assert depth_anything.resized_size(480, 640) == (518, 686)
    assert depth_anything.interpolation == "bicubic" and depth_anything.mean == pytest.approx((0.485, 0.456, 0.406))
    dpt = HFPreprocessing.from_processor(reference_processor("dpt-hybrid"))
    assert dpt.resized_size(480, 640) == (384, 384) and dpt.mean == (0.5, 0.5, 0.5)


def test_tiny_depth_anything_runs_seeded_and_exports(tmp_path) -> None:
    model = build_reference("depth-anything-v2-small", seed=3, **TINY_DEPTH_ANYTHING)
    again = build_reference("depth-anything-v2-small", seed=3, **TINY_DEPTH_ANYTHING)
    images = torch.rand(2, 3, 48, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        depth = model(images)
        assert torch.equal(depth, again(images))
    assert depth.shape == (2, 1, 48, 64) and torch.isfinite(depth).all()
    assert model.kind == "relative_disparity"

    report = export_onnx(model, tmp_path / "da.onnx", size=(48, 64), check_images=2)
    assert report.kind == "relative_disparity" and "lstsq_disparity" in report.parity.metric_label
    assert json.loads(json.dumps(report.to_dict()))["parity"]["passed"] is True
    np.testing.assert_allclose(ort_depth(report.path, images[:1].numpy()), depth[:1].numpy(), atol=1e-4)


def test_hf_teacher_spec_resolves_to_the_same_network(tmp_path) -> None:
    """``hf:DIR`` becomes model + processor steps without the adapter's wrapper, computing the same depth."""
    from depthkd.models.teachers import load_teacher

    reference = build_reference("depth-anything-v2-small", seed=4, **TINY_DEPTH_ANYTHING)
    reference.model.save_pretrained(tmp_path)
    reference_processor("depth-anything-v2-small", TINY_DEPTH_ANYTHING["processor_overrides"]).save_pretrained(tmp_path)
    source = load_model_spec(f"hf:{tmp_path}")
    assert source.kind == "relative_disparity" and source.module is not None
    images = torch.rand(1, 3, 40, 60, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        depth = source.module(images)
    torch.testing.assert_close(depth, load_teacher(f"hf:{tmp_path}")(images).depth)
    torch.testing.assert_close(depth, reference(images))


def test_arch_specs_resolve_and_unknown_names_fail() -> None:
    assert reference_names() == ["depth-anything-v2-base", "depth-anything-v2-small", "dpt-hybrid"]
    with pytest.raises(ModelError, match="depth-anything-v2-small"):
        load_model_spec("arch:depth-anything-v3-huge")
