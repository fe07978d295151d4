"""int8 quantisation: static (calibrated) and dynamic models run and report their accuracy change."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from export_utils import SIZE, ort_depth, read_json, tiny_student
from onnx import TensorProto, helper

from depthkd.errors import DataError, ModelError
from depthkd.export import calibration_images, export_onnx
from depthkd.export.quantize import head_nodes
from depthkd.io import write_rgb


def _ops(path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def test_static_int8_from_a_calibration_folder(tmp_path, images) -> None:
    folder = tmp_path / "calib"
    folder.mkdir()
    generator = torch.Generator().manual_seed(5)
    for i in range(3):
        write_rgb(folder / f"{i}.png", torch.rand(3, 40, 50, generator=generator))  # resized to 64x64
    report = export_onnx(
        tiny_student(), tmp_path / "s.onnx", size=SIZE, int8="static", calib=folder, exporter="legacy", check_images=2
    )

    q = report.int8
    assert q is not None and q.mode == "static" and q.path.name == "s.int8.onnx"
    assert q.calibration == f"3 images from {folder}"
    ops = _ops(q.path)
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # The head stays float: the sigmoid reads a float Conv whose weight is a plain float initialiser.
    graph = onnx.load(str(q.path)).graph
    producer = {output: node for node in graph.node for output in node.output}
    sigmoid = next(n for n in graph.node if n.op_type == "Sigmoid")
    head_conv = producer[sigmoid.input[0]]
    assert head_conv.op_type == "Conv" and head_conv.input[1] not in producer
    # The reported change is the relative AbsRel difference of the two graphs' numbers.
    expected = (q.metrics_int8["abs_rel"] - q.metrics_float["abs_rel"]) / q.metrics_float["abs_rel"]
    assert q.abs_rel_change == pytest.approx(expected)
    assert 0 < q.max_abs_diff < 2.0
    assert q.size_mb < report.size_mb / 2
    out = ort_depth(q.path, images.numpy())
    assert out.shape == (1, 1, *SIZE) and np.isfinite(out).all() and (out > 0).all()
    assert read_json(q.path.with_suffix(".json"))["kind"] == "metric_depth"
    assert "int8 (static)" in report.to_markdown()


def test_dynamic_int8_and_the_accuracy_limit(tmp_path) -> None:
    report = export_onnx(
        tiny_student(), tmp_path / "d.onnx", size=SIZE, int8="dynamic", exporter="legacy", check=False, check_images=2
    )
    assert report.int8 is not None and report.int8.mode == "dynamic"
    assert "ConvInteger" in _ops(report.int8.path)
    assert np.isfinite(report.int8.abs_rel_change)

    # A limit nothing can meet (AbsRel may not improve by more than 100%) fails loudly and cleans up.
    path = tmp_path / "limit.onnx"
    with pytest.raises(ModelError, match="loses too much accuracy"):
        export_onnx(
            tiny_student(), path, size=SIZE, int8="static", calib_count=2, exporter="legacy",
            int8_max_abs_rel_change=-1.0, check=False, check_images=2,
        )
    assert not path.exists() and not path.with_suffix(".int8.onnx").exists()


def test_head_nodes_are_the_last_conv_and_after() -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1"),
        helper.make_node("Relu", ["a"], ["b"], name="relu"),
        helper.make_node("Conv", ["b", "w2"], ["c"], name="conv2"),
        helper.make_node("Sigmoid", ["c"], ["d"], name="sigmoid"),
        helper.make_node("Mul", ["d", "k"], ["y"], name="scale"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])])
    assert head_nodes(helper.make_model(graph)) == ["conv2", "sigmoid", "scale"]


def test_calibration_images_are_resized_and_seeded(tmp_path) -> None:
    for i in range(5):
        write_rgb(tmp_path / f"{i}.png", torch.full((3, 20, 30), i / 10))
    first = calibration_images((16, 24), count=3, folder=tmp_path, seed=1)
    again = calibration_images((16, 24), count=3, folder=tmp_path, seed=1)
    assert first.shape == (3, 3, 16, 24) and torch.equal(first, again)
    # Each image is one of the five flat greys (PNG bytes round to 1/255).
    levels = {round(float(img.mean()) * 10) for img in first}
    assert levels <= {0, 1, 2, 3, 4} and len(levels) == 3
    simulated = calibration_images((16, 24), count=2, seed=0)
    assert simulated.shape == (2, 3, 16, 24) and 0 <= simulated.min() and simulated.max() <= 1


def test_empty_calibration_folder_is_a_data_error(tmp_path) -> None:
    with pytest.raises(DataError):
        calibration_images((16, 16), count=2, folder=tmp_path)


def test_a_failed_calibration_leaves_no_float_graph_behind(tmp_path) -> None:
    empty = tmp_path / "calib"
    empty.mkdir()
    with pytest.raises(DataError, match="no images"):
        export_onnx(tiny_student(), tmp_path / "s.onnx", size=SIZE, int8="static", calib=empty, exporter="legacy",
                    check=False, check_images=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib"]  # neither s.onnx nor its sidecar
