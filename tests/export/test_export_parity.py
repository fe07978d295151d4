"""ONNX export of every student head, fixed and dynamic shapes, input formats, and the loud failure."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
import torch
from export_utils import SIZE, ort_depth, read_json, tiny_student, torch_depth

import depthkd.export.exporter as exporter_module
from depthkd.errors import ConfigError, ModelError
from depthkd.export import GraphInput, ParityResult, Tolerance, export_onnx
from depthkd.export.parity import compare_metrics
from depthkd.models.encoder import IMAGENET_MEAN, IMAGENET_STD
from depthkd.models.lgconv import LGConv
from depthkd.models.teachers import load_teacher


def _only_io(path) -> tuple[list, list]:
    graph = onnx.load(str(path)).graph
    return [i.name for i in graph.input], [o.name for o in graph.output]


# Most tests use the quick TorchScript-based exporter; the default (dynamo) one, slower to run, is
# exercised by the dynamic-shape, LG-Conv and reference-architecture tests.


@pytest.mark.parametrize("head", ["regression", "bins", "dpm"])
def test_every_head_exports_with_parity(tmp_path, images, head) -> None:
    model = tiny_student(head)
    report = export_onnx(model, tmp_path / f"{head}.onnx", size=SIZE, exporter="legacy", check_images=2)

    assert report.checked and report.parity.passed
    assert _only_io(report.path) == (["image"], ["depth"])
    assert report.input_shape == [1, 3, *SIZE] and report.output_shape == [1, 1, *SIZE]
    for name, diff in report.parity.max_abs_diff.items():
        assert diff <= report.parity.allowed_diff[name] < 2e-3
    assert set(report.parity.max_abs_diff) == {"random", "simulated"}
    assert "abs_rel ONNX / PyTorch, parity check" in report.to_markdown()  # not mistaken for a benchmark score
    assert report.parity.metrics_onnx["abs_rel"] == pytest.approx(report.parity.metrics_torch["abs_rel"], abs=1e-3)
    # Independently of the report: onnxruntime reproduces PyTorch's depth on a fresh image.
    np.testing.assert_allclose(ort_depth(report.path, images.numpy()), torch_depth(model, images), atol=1e-4)
    sidecar = read_json(report.sidecar)
    assert sidecar == {
        "input": "image",
        "output": "depth",
        "kind": "metric_depth",
        "mean": [0.0, 0.0, 0.0],
        "std": [1.0, 1.0, 1.0],
        "size": list(SIZE),
        "size_multiple": 32,
        "input_format": "float",
    }


def test_dynamic_export_runs_at_two_sizes_and_batch_two(tmp_path) -> None:
    """The default (dynamo) exporter with symbolic shapes, on the most involved head, with LG-Conv."""
    # bins: per-image adaptive bins from a pooled MLP; LG-Conv around the stem's dense 3x3 conv.
    model = tiny_student("bins", lgconv=True)
    lgconvs = [m for m in model.modules() if isinstance(m, LGConv)]
    assert lgconvs
    # LG-Conv starts as the identity (zero output projection); give it weight so the branch matters.
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in lgconvs:
            module.out_proj.weight.copy_(0.5 * torch.randn(module.out_proj.weight.shape, generator=generator))
    report = export_onnx(model, tmp_path / "dyn.onnx", size=SIZE, dynamic=True, check_images=2)

    assert report.exporter == "dynamo" and report.parity.passed
    assert report.input_shape == ["batch", 3, "height", "width"]
    assert report.output_shape == ["batch", 1, "height", "width"]
    assert any("batch 2" in name for name in report.parity.max_abs_diff)
    for size in [(64, 64), (96, 128), (70, 90)]:
        batch = torch.rand(2, 3, *size, generator=generator)
        out = ort_depth(report.path, batch.numpy())
        assert out.shape == (2, 1, *size)
        np.testing.assert_allclose(out, torch_depth(model, batch), atol=1e-4)
    assert read_json(report.sidecar)["size"] is None
    # BatchNorm is folded, so the graph holds one Conv per nn.Conv2d, LG-Conv's four branch convs included.
    convs = [node for node in onnx.load(str(report.path)).graph.node if node.op_type == "Conv"]
    assert len(convs) == sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def test_legacy_exporter_dynamic_shapes(tmp_path) -> None:
    model = tiny_student("dpm")
    report = export_onnx(model, tmp_path / "dyn.onnx", size=SIZE, dynamic=True, exporter="legacy", check=False)
    assert report.input_shape == ["batch", 3, "height", "width"]
    batch = torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(2))
    np.testing.assert_allclose(ort_depth(report.path, batch.numpy()), torch_depth(model, batch), atol=1e-4)


def test_sidecar_preprocessing_moves_normalisation_out_of_the_graph(tmp_path, images) -> None:
    model = tiny_student("regression")
    report = export_onnx(
        model, tmp_path / "side.onnx", size=SIZE, preprocessing="sidecar", exporter="legacy", check_images=2
    )

    sidecar = read_json(report.sidecar)
    assert sidecar["mean"] == pytest.approx(IMAGENET_MEAN) and sidecar["std"] == pytest.approx(IMAGENET_STD)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    expected = torch_depth(model, images)
    normalised = ((images - mean) / std).numpy()
    np.testing.assert_allclose(ort_depth(report.path, normalised), expected, atol=1e-4)
    # Raw images are not normalised by the graph any more, so they give another answer.
    assert np.abs(ort_depth(report.path, images.numpy()) - expected).max() > 1e-3
    # The onnx: teacher adapter reads the sidecar and normalises for the graph.
    teacher = load_teacher(f"onnx:{report.path}")
    np.testing.assert_allclose(teacher(images).depth.numpy(), expected, atol=1e-4)
    # The original student still normalises its own input.
    assert model.encoder.mean.flatten().tolist() == pytest.approx(IMAGENET_MEAN)


def test_uint8_channels_last_input(tmp_path, images) -> None:
    model = tiny_student("regression")
    report = export_onnx(
        model, tmp_path / "u8.onnx", size=SIZE, input_format="uint8", exporter="legacy", check_images=2
    )

    graph_input = onnx.load(str(report.path)).graph.input[0]
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert report.input_shape == [1, *SIZE, 3]
    pixels = torch.round(images * 255).to(torch.uint8)
    out = ort_depth(report.path, pixels.permute(0, 2, 3, 1).numpy())
    np.testing.assert_allclose(out, torch_depth(model, pixels.float() / 255), atol=1e-4)
    # The sidecar says the graph takes bytes, so it loads back as a teacher fed with [0,1] images.
    assert read_json(report.sidecar)["input_format"] == "uint8"
    teacher = load_teacher(f"onnx:{report.path}")
    np.testing.assert_allclose(teacher(images).depth.numpy(), out, atol=1e-4)


def test_a_graph_that_differs_from_pytorch_fails_loudly(tmp_path, monkeypatch) -> None:
    real_export = exporter_module.torch_to_onnx

    def export_a_perturbed_copy(module, example, path, **kwargs):
        broken = copy.deepcopy(module)
        with torch.no_grad():
            broken.model.head.proj.bias += 0.5  # a small, systematic change: depth shifts everywhere
        return real_export(broken, example, path, **kwargs)

    monkeypatch.setattr(exporter_module, "torch_to_onnx", export_a_perturbed_copy)
    path = tmp_path / "broken.onnx"
    with pytest.raises(ModelError, match="mismatch.*exceeds the tolerance"):
        export_onnx(tiny_student("regression"), path, size=SIZE, exporter="legacy", check_images=2)
    assert not path.exists() and not path.with_suffix(".json").exists()


def test_metric_drift_alone_fails() -> None:
    """A per-pixel tolerance wide enough to pass still leaves the AbsRel/d1 parity to catch drift."""
    gt = torch.full((1, 1, 8, 8), 2.0)
    reference = np.full((1, 1, 8, 8), 2.0, np.float32)  # perfect: AbsRel 0
    produced = reference * 1.01  # 1% too far everywhere: AbsRel 0.01
    loose = Tolerance(atol=100.0, rtol=0.0, metric_atol=1e-3)
    result = ParityResult()
    with pytest.raises(ModelError, match="metric mismatch.*abs_rel 0.01000"):
        compare_metrics(reference, produced, gt, "sim_indoor", "none", loose, result)
    assert result.metrics_torch["abs_rel"] == 0.0 and result.metrics_onnx["abs_rel"] == pytest.approx(0.01)
    compare_metrics(reference, produced, gt, "sim_indoor", "none", Tolerance(0, 0, 0.02), ParityResult())


def test_fp16_keeps_float32_interface_within_loose_tolerance(tmp_path, images) -> None:
    model = tiny_student("regression")
    report = export_onnx(model, tmp_path / "half.onnx", size=SIZE, fp16=True, exporter="legacy", check_images=2)

    graph = onnx.load(str(report.path)).graph
    assert report.precision == "fp16"
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in graph.initializer)
    assert report.parity.allowed_diff["random"] > 1e-2  # the fp16 tolerance, not fp32's
    diff = np.abs(ort_depth(report.path, images.numpy()) - torch_depth(model, images)).max()
    assert 0 < diff < 0.1


def test_graph_input_matches_what_the_reference_sees() -> None:
    images = torch.tensor([[[[0.0, 0.5]], [[1.0, 0.2]], [[0.31, 0.999]]]])  # (1,3,1,2)
    u8 = GraphInput("uint8")  # x 255 and rounded: 0.5 -> 127.5 -> 128 (half to even), 0.31 -> 79.05 -> 79
    assert u8.to_graph(images).tolist() == [[[[0, 255, 79], [128, 51, 255]]]]
    expected = torch.tensor([[[[0.0, 128.0]], [[255.0, 51.0]], [[79.0, 255.0]]]])
    assert torch.allclose(u8.reference_images(images) * 255, expected)
    side = GraphInput("float", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    np.testing.assert_allclose(side.to_graph(images)[0, :, 0, 0], [-2.0, 2.0, -0.76], rtol=1e-6)  # (x - 0.5) / 0.25


@pytest.mark.parametrize(
    "options, error",
    [
        ({"fp16": True, "int8": "static"}, ConfigError),
        ({"preprocessing": "sidecar", "input_format": "uint8"}, ConfigError),
        ({"preprocessing": "elsewhere"}, ConfigError),
        ({"int8": "int4"}, ConfigError),
        ({"calib": "somewhere"}, ConfigError),
        ({"opset": 13}, ConfigError),
    ],
)
def test_conflicting_options_are_rejected(tmp_path, options, error) -> None:
    with pytest.raises(error):
        export_onnx(tiny_student(), tmp_path / "x.onnx", size=SIZE, exporter="legacy", **options)


def test_sidecar_preprocessing_needs_a_student(tmp_path) -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 1, 1), torch.nn.Softplus())
    with pytest.raises(ModelError, match="sidecar"):
        export_onnx(model, tmp_path / "x.onnx", size=SIZE, preprocessing="sidecar")
