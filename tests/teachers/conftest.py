"""Tiny random Hugging Face depth models saved with their image processors, for the ``hf:`` adapter.

Weights are re-drawn with PyTorch's default layer initialisation: transformers' own initialisation
(normal 0.02, zero biases) makes these tiny heads output near-constant maps, which would let a wrong
crop or resize pass unnoticed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def _reinit(model: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for module in model.modules():
        if module is not model and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return model.eval()


def _depth_anything(kind: str):
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    backbone = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        patch_size=14,
        image_size=28,
        out_indices=[1, 2],
        reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=32,
        neck_hidden_sizes=[8, 16],
        reassemble_factors=[2, 1],
        fusion_hidden_size=16,
        head_hidden_size=8,
        depth_estimation_type=kind,
        max_depth=20 if kind == "metric" else 1,
    )
    processor = DPTImageProcessor(
        size={"height": 42, "width": 42},
        keep_aspect_ratio=True,
        ensure_multiple_of=14,
        resample=3,
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
    )
    return DepthAnythingForDepthEstimation(config), processor


def _dpt(pad: bool):
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    config = DPTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
        backbone_out_indices=[0, 1],
        neck_hidden_sizes=[8, 16],
        reassemble_factors=[2, 1],
        fusion_hidden_size=16,
    )
    # This DPT implementation needs a square patch grid: a square target without keeping the aspect.
    extra = {"do_pad": True, "size_divisor": 8} if pad else {}
    processor = DPTImageProcessor(size={"height": 28 if pad else 32, "width": 28 if pad else 32}, **extra)
    return DPTForDepthEstimation(config), processor


def _glpn():
    from transformers import GLPNConfig, GLPNForDepthEstimation, GLPNImageProcessor

    config = GLPNConfig(
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[2, 1],
        hidden_sizes=[8, 16],
        patch_sizes=[7, 3],
        strides=[4, 2],
        num_attention_heads=[1, 1],
        decoder_hidden_size=16,
        mlp_ratios=[2, 2],
        head_in_index=-1,
    )
    return GLPNForDepthEstimation(config), GLPNImageProcessor(size_divisor=16)


def _zoedepth():
    from transformers import BeitConfig, ZoeDepthConfig, ZoeDepthForDepthEstimation, ZoeDepthImageProcessor

    backbone = BeitConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        use_relative_position_bias=True,
        reshape_hidden_states=False,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    config = ZoeDepthConfig(
        backbone_config=backbone,
        neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16,
        num_relative_features=8,
        bottleneck_features=16,
        bin_embedding_dim=16,
        num_attractors=[4, 4, 2, 1],
        bin_configurations=[{"n_bins": 16, "min_depth": 0.001, "max_depth": 10.0}],
        bin_centers_type="normed",  # spatially varying output from random weights
    )
    processor = ZoeDepthImageProcessor(size={"height": 32, "width": 40}, ensure_multiple_of=8)
    return ZoeDepthForDepthEstimation(config), processor


BUILDERS: dict[str, Callable] = {
    "depth_anything": lambda: _depth_anything("relative"),
    "depth_anything_metric": lambda: _depth_anything("metric"),
    "dpt": lambda: _dpt(pad=False),
    "dpt_pad": lambda: _dpt(pad=True),
    "glpn": _glpn,
    "zoedepth": _zoedepth,
}


@pytest.fixture(scope="session")
def hf_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``hf_model_dir(name)`` -> a folder with the tiny model ``name`` and its processor (built once)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            model, processor = BUILDERS[name]()
            folder = tmp_path_factory.mktemp(name)
            _reinit(model).save_pretrained(folder)
            processor.save_pretrained(folder)
            built[name] = folder
        return built[name]

    return get


@pytest.fixture
def images() -> torch.Tensor:
    """Two random 32x48 RGB images in [0,1]."""
    return torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(1))
