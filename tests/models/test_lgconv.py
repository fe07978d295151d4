"""LG-Conv: exact identity at insertion, gradients, stride handling, counts, ONNX export."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import timm
import torch
from timm.layers import Conv2dSame
from torch import nn
from torch.nn import functional as F

from depthkd.errors import ConfigError
from depthkd.models import LGConv, build_student, insert_lgconv
from depthkd.models.lgconv import is_lgconv_target


def lgconv_modules(model: nn.Module) -> list[LGConv]:
    return [m for m in model.modules() if isinstance(m, LGConv)]


def randomise_output_projections(model: nn.Module) -> None:
    """Give W_o nonzero weights so the global branch changes the output."""
    generator = torch.Generator().manual_seed(7)
    for module in lgconv_modules(model):
        weight = module.out_proj.weight
        weight.data.copy_(0.1 * torch.randn(weight.shape, generator=generator))


def test_forward_matches_the_formula() -> None:
    conv = nn.Conv2d(4, 12, 3, padding=1)
    layer = LGConv(conv)
    randomise_output_projections(layer)
    x = torch.randn(2, 4, 5, 7)
    hidden = 8  # max(8, 12 // 4)
    assert layer.local.out_channels == hidden
    u = F.relu(F.conv2d(x, layer.local.weight, layer.local.bias))
    g = u.mean(dim=(2, 3), keepdim=True).expand_as(u)
    fc1, fc2 = layer.attention[0], layer.attention[2]
    a = torch.sigmoid(F.conv2d(F.relu(F.conv2d(torch.cat([u, g], 1), fc1.weight, fc1.bias)), fc2.weight, fc2.bias))
    expected = conv(x) + F.conv2d(a * g, layer.out_proj.weight, layer.out_proj.bias)
    assert torch.allclose(layer(x), expected, atol=1e-6)


def test_hidden_width_default_and_option() -> None:
    assert LGConv(nn.Conv2d(3, 64, 3, padding=1)).local.out_channels == 16
    assert LGConv(nn.Conv2d(3, 16, 3, padding=1)).local.out_channels == 8
    assert LGConv(nn.Conv2d(3, 64, 3, padding=1), hidden=5).local.out_channels == 5
    with pytest.raises(ConfigError):
        LGConv(nn.Conv2d(3, 8, 3, padding=1), pool=0)


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(4, 6, 3, stride=2, padding=1),
        nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2),
        nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4),
        Conv2dSame(4, 6, 3, stride=2),
    ],
    ids=["strided", "dilated", "depthwise", "timm_same"],
)
@pytest.mark.parametrize("pool", [1, 2])
def test_strided_convs_keep_their_output_size(conv: nn.Conv2d, pool: int) -> None:
    x = torch.randn(1, 4, 7, 9)
    layer = LGConv(conv, pool=pool)
    randomise_output_projections(layer)
    out = layer(x)
    assert out.shape == conv(x).shape == (1, conv.out_channels, 4, 5)
    assert not torch.allclose(out, conv(x))


def test_target_selection() -> None:
    assert is_lgconv_target(nn.Conv2d(3, 8, 3, padding=1))
    assert not is_lgconv_target(nn.Conv2d(3, 8, 1))
    assert not is_lgconv_target(nn.Conv2d(3, 8, 3))  # unpadded: output shrinks
    assert not is_lgconv_target(nn.Conv2d(8, 8, 3, padding=1, groups=8))
    assert is_lgconv_target(nn.Conv2d(8, 8, 3, padding=1, groups=8), depthwise=True)
    assert not is_lgconv_target(nn.Conv2d(8, 16, 3, padding=1, groups=4), depthwise=True)


def test_insert_counts_on_mobilenetv2_and_resnet18() -> None:
    # MobileNetV2: the stem is its only dense 3x3 conv; 17 inverted-residual blocks add one
    # depthwise 3x3 each.
    backbone = timm.create_model("mobilenetv2_100", features_only=True, pretrained=False)
    assert insert_lgconv(backbone) == 1
    assert isinstance(backbone.conv_stem, LGConv)
    assert insert_lgconv(backbone) == 0  # already wrapped convs are skipped
    backbone = timm.create_model("mobilenetv2_100", features_only=True, pretrained=False)
    assert insert_lgconv(backbone, depthwise=True) == 18
    # ResNet-18: 8 basic blocks x 2 dense 3x3 convs (the 7x7 stem and 1x1 shortcuts excluded).
    resnet = timm.create_model("resnet18", features_only=True, pretrained=False)
    assert insert_lgconv(resnet) == 16
    assert build_student(lgconv=True, lgconv_depthwise=True).num_lgconv == 18


@pytest.mark.parametrize("backbone", ["mobilenetv2_100", "resnet18"])
def test_inserted_network_starts_exactly_as_the_original(
    backbone: str, tiny_images: torch.Tensor
) -> None:
    plain = build_student(backbone, head="bins", num_bins=16).eval()
    wrapped = copy.deepcopy(plain)
    count = insert_lgconv(wrapped.encoder.backbone, depthwise=True)
    assert count > 0
    with torch.no_grad():
        before, after = plain(tiny_images), wrapped(tiny_images)
    assert torch.equal(before.depth, after.depth)
    assert all(torch.equal(a, b) for a, b in zip(before.features, after.features))
    # The wrapped convs keep the original weights, and W_o starts at zero.
    originals = [m for m in plain.encoder.modules() if is_lgconv_target(m, depthwise=True)]
    layers = lgconv_modules(wrapped)
    assert len(originals) == len(layers) == count
    for original, layer in zip(originals, layers):
        assert torch.equal(original.weight, layer.conv.weight)
        assert torch.count_nonzero(layer.out_proj.weight) == 0


def test_gradients_reach_the_global_branch(tiny_images: torch.Tensor) -> None:
    student = build_student(lgconv=True, lgconv_depthwise=True)
    student(tiny_images).depth.mean().backward()
    layers = lgconv_modules(student)
    assert len(layers) == 18
    for layer in layers:
        assert layer.out_proj.weight.grad is not None
        assert layer.out_proj.weight.grad.abs().sum() > 0
        assert layer.conv.weight.grad is not None


class DepthOnly(nn.Module):
    """Exports the student's depth map as the single ONNX output."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.student(images).depth


def test_lgconv_student_exports_to_onnx(tmp_path: Path, tiny_images: torch.Tensor) -> None:
    student = build_student(head="bins", num_bins=16, lgconv=True, lgconv_depthwise=True).eval()
    randomise_output_projections(student)
    model = DepthOnly(student).eval()
    path = tmp_path / "student.onnx"
    torch.onnx.export(model, (tiny_images,), str(path), input_names=["images"], output_names=["depth"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_depth,) = session.run(None, {"images": tiny_images.numpy()})
    with torch.no_grad():
        torch_depth = model(tiny_images).numpy()
    assert onnx_depth.shape == (2, 1, 32, 48)
    np.testing.assert_allclose(onnx_depth, torch_depth, atol=1e-4, rtol=0)
