"""Benchmark numbers: latency statistics, peak memory, parameter/MAC counts, ratios, model specs."""

from __future__ import annotations

import time

import numpy as np
import onnx
import pytest
import torch
from export_utils import SIZE, tiny_student
from onnx import TensorProto, helper, numpy_helper

from depthkd.bench import count_macs, count_parameters
from depthkd.errors import ConfigError
from depthkd.export import export_onnx, load_model_spec
from depthkd.latency import benchmark, measure_latency, onnx_parameter_count, peak_memory


def test_measure_latency_times_only_the_timed_calls() -> None:
    calls: list[float] = []

    def run() -> None:
        calls.append(time.perf_counter())
        time.sleep(0.002)

    stats = measure_latency(run, warmup=2, iters=5, batch=4)
    assert len(calls) == 7 and stats.iters == 5 and stats.warmup == 2
    assert stats.p90_ms >= stats.p50_ms >= stats.min_ms >= 2.0
    assert stats.throughput == pytest.approx(4 * 1000 / stats.mean_ms, rel=1e-6)


def test_peak_memory_sees_a_temporary_allocation() -> None:
    with peak_memory() as memory:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        del block
    assert memory.peak_mb >= 48
    assert "VmHWM" in memory.method or "ru_maxrss" in memory.method


def test_student_benchmark_is_sane_and_counts_match_bench() -> None:
    report = benchmark("student:mobilenetv2_050", size=SIZE, backend="torch", threads=1, warmup=1, iters=4)
    row = report.model
    assert row.latency.p90_ms >= row.latency.p50_ms > 0 and row.latency.throughput > 0
    reference = tiny_student()
    assert row.params == count_parameters(reference)
    assert row.macs == count_macs(reference, input_size=SIZE)
    assert row.size == SIZE and row.threads == 1 and row.kind == "metric_depth"
    assert report.ratios() == {}


def test_teacher_ratios_are_teacher_over_student() -> None:
    report = benchmark(
        "student:mobilenetv2_050", teacher="student:resnet18?head=dpm", size=SIZE, threads=1, warmup=0, iters=2
    )
    s, t = report.model, report.teacher
    assert t is not None
    ratios = report.ratios()
    assert ratios["params"] == pytest.approx(t.params / s.params)
    assert ratios["macs"] == pytest.approx(t.macs / s.macs) and ratios["macs"] > 1
    assert ratios["latency_p50"] == pytest.approx(t.latency.p50_ms / s.latency.p50_ms)
    table = report.to_markdown()
    assert "student:resnet18?head=dpm" in table and "| parameters |" in table


def test_onnxruntime_backend_from_a_spec_and_from_a_file(tmp_path) -> None:
    from_spec = benchmark(
        "student:mobilenetv2_050", size=SIZE, backend="onnxruntime", threads=1, warmup=1, iters=3, exporter="legacy"
    )
    assert from_spec.model.backend == "onnxruntime" and from_spec.model.latency.p50_ms > 0
    assert from_spec.model.params == count_parameters(tiny_student())  # counted on the PyTorch model

    exported = export_onnx(tiny_student(), tmp_path / "m.onnx", size=SIZE, exporter="legacy", check=False)
    from_file = benchmark(str(exported.path), size=SIZE, backend="onnxruntime", threads=1, warmup=1, iters=3)
    assert from_file.model.macs is None and from_file.model.params == onnx_parameter_count(exported.path)
    assert from_file.model.label == "m.onnx"
    # The report says which graph was timed: a fresh export of a spec, or the file handed in.
    assert "Timed for" in from_spec.to_markdown() and "a fresh float32 ONNX export of" in from_spec.to_markdown()
    assert f"the ONNX graph {exported.path} as given" in from_file.to_markdown()
    with pytest.raises(ConfigError, match="onnxruntime"):
        benchmark(str(exported.path), size=SIZE, backend="torch")


def test_onnx_parameter_count_skips_quantisation_constants(tmp_path) -> None:
    initializers = [
        numpy_helper.from_array(np.zeros((8, 3, 3, 3), np.float32), "conv.weight"),  # 216
        numpy_helper.from_array(np.zeros(8, np.float32), "conv.bias"),  # 8
        numpy_helper.from_array(np.zeros(8, np.float32), "conv.weight_scale"),  # skipped
        numpy_helper.from_array(np.array(0, np.uint8), "x_zero_point"),  # skipped
        numpy_helper.from_array(np.array(2.0, np.float32), "k"),  # scalar, skipped
    ]
    node = helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["y"])
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 2, 2])],
        initializer=initializers,
    )
    onnx.save(helper.make_model(graph), str(tmp_path / "g.onnx"))
    assert onnx_parameter_count(tmp_path / "g.onnx") == 216 + 8


def test_student_spec_options() -> None:
    source = load_model_spec("student:mobilenetv2_050?head=bins&lgconv=1&max_depth=80&num_bins=16")
    config = source.module.config
    assert (config.backbone, config.head, config.lgconv, config.max_depth, config.num_bins) == (
        "mobilenetv2_050", "bins", True, 80.0, 16,
    )
    assert source.kind == "metric_depth" and source.size_multiple == 32
    narrow = load_model_spec("student:mobilenetv2_050?decoder_channels=32,16,16,8")
    assert narrow.module.config.decoder_channels == (32, 16, 16, 8)
    with pytest.raises(ConfigError, match="unknown"):
        load_model_spec("student:mobilenetv2_050?colour=blue")


def test_bad_backend_is_rejected() -> None:
    with pytest.raises(ConfigError, match="backend"):
        benchmark(torch.nn.Identity(), backend="tensorrt")
