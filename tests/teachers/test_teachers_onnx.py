"""``onnx:`` teachers: a two-conv graph built with onnx.helper, compared with the same convs in torch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from depthkd.errors import ModelError
from depthkd.models.teachers import load_teacher

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _torch_model() -> nn.Module:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1), nn.Softplus())
    return model.eval()


def _write_onnx(model: nn.Module, path, batch: int | str = "batch", size: tuple = ("h", "w")) -> None:
    """The graph X -> Conv -> Relu (output 'feat') -> Conv -> Softplus (output 'depth')."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    conv1, conv2 = model[0], model[2]
    weights = [
        numpy_helper.from_array(t.detach().numpy(), name)
        for t, name in [(conv1.weight, "w1"), (conv1.bias, "b1"), (conv2.weight, "w2"), (conv2.bias, "b2")]
    ]
    nodes = [
        helper.make_node("Conv", ["pixels", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["feat"]),
        helper.make_node("Conv", ["feat", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Softplus", ["c2"], ["depth"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_depth",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [batch, 3, *size])],
        [
            helper.make_tensor_value_info("depth", TensorProto.FLOAT, [batch, 1, *size]),
            helper.make_tensor_value_info("feat", TensorProto.FLOAT, [batch, 4, *size]),
        ],
        initializer=weights,
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx_model.ir_version = 8
    onnx.checker.check_model(onnx_model)
    onnx.save(onnx_model, str(path))


def _normalise(images: torch.Tensor) -> torch.Tensor:
    return (images - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def test_onnx_with_sidecar_matches_torch(tmp_path, images):
    model = _torch_model()
    _write_onnx(model, tmp_path / "tiny.onnx")
    sidecar = {"input": "pixels", "output": "depth", "kind": "metric_depth", "mean": MEAN, "std": STD,
               "size": None, "size_multiple": 16, "features": ["feat"]}
    (tmp_path / "tiny.json").write_text(json.dumps(sidecar))
    teacher = load_teacher(f"onnx:{tmp_path / 'tiny.onnx'}")
    assert teacher.kind == "metric_depth"
    out = teacher(images, return_features=True)
    # 32x48 is already a multiple of 16: no resizing, so the output is the torch model's exactly.
    with torch.no_grad():
        expected = model(_normalise(images))
        feature = model[1](model[0](_normalise(images)))
    torch.testing.assert_close(out.depth, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.features[0], feature, atol=1e-5, rtol=1e-5)
    assert out.depth.dtype == torch.float32 and not any(p.requires_grad for p in teacher.parameters())


def test_fixed_size_graph_resizes_in_and_out(tmp_path, images):
    model = _torch_model()
    _write_onnx(model, tmp_path / "fixed.onnx", batch=1, size=(16, 16))
    teacher = load_teacher(f"onnx:{tmp_path / 'fixed.onnx'}", kind="relative_disparity")
    out = teacher(images)  # batch of 2 through a batch-1 graph, 32x48 -> 16x16 -> 32x48
    assert out.depth.shape == (2, 1, 32, 48) and out.kind == "relative_disparity"
    small = nn.functional.interpolate(images, size=(16, 16), mode="bilinear", antialias=True)
    with torch.no_grad():
        expected = nn.functional.interpolate(model(small), size=(32, 48), mode="bilinear")
    torch.testing.assert_close(out.depth, expected, atol=1e-5, rtol=1e-5)


def test_keywords_override_sidecar_and_kind_is_required(tmp_path, images):
    _write_onnx(_torch_model(), tmp_path / "tiny.onnx")
    with pytest.raises(ModelError, match="kind"):
        load_teacher(f"onnx:{tmp_path / 'tiny.onnx'}")
    (tmp_path / "tiny.json").write_text(json.dumps({"kind": "metric_depth", "output": "nope"}))
    with pytest.raises(ModelError, match="no output 'nope'"):
        load_teacher(f"onnx:{tmp_path / 'tiny.onnx'}")
    teacher = load_teacher(f"onnx:{tmp_path / 'tiny.onnx'}", output="depth")
    assert teacher(images).depth.shape == (2, 1, 32, 48)
    with pytest.raises(ModelError, match="no intermediate features"):
        teacher(images, return_features=True)
    (tmp_path / "tiny.json").write_text(json.dumps({"kind": "metric_depth", "colour": "rgb"}))
    with pytest.raises(ModelError, match="unknown keys"):
        load_teacher(f"onnx:{tmp_path / 'tiny.onnx'}")


def test_wrong_output_shape_is_a_model_error(tmp_path, images):
    _write_onnx(_torch_model(), tmp_path / "tiny.onnx")
    teacher = load_teacher(f"onnx:{tmp_path / 'tiny.onnx'}", kind="metric_depth", output="feat")
    with pytest.raises(ModelError, match=r"shape \(2, 4, 32, 48\)"):
        teacher(images)
    assert np.isfinite(teacher.preprocess(images).numpy()).all()
