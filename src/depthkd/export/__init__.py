"""Deployment: ONNX export with parity checks, float16 and int8 variants.

>>> report = export_onnx(student, "student.onnx", size=(480, 640), int8="static")  # doctest: +SKIP
>>> print(report.to_markdown())                                                     # doctest: +SKIP

Modules: :mod:`.graph` (what the graph holds, input formats), :mod:`.convert` (the exporters),
:mod:`.parity` (checks), :mod:`.quantize` (int8), :mod:`.sidecar` (the JSON beside the graph),
:mod:`.specs` (model spec strings), :mod:`.runtime` (onnxruntime sessions), :mod:`.exporter`
(:func:`export_onnx`). Latency measurement lives in :mod:`depthkd.latency`.
"""

from depthkd.export.convert import DEFAULT_OPSET, EXPORTERS, convert_to_fp16, graph_summary, torch_to_onnx
from depthkd.export.exporter import export_onnx, int8_path_for
from depthkd.export.graph import INPUT_FORMATS, INPUT_NAME, OUTPUT_NAME, PREPROCESSING_MODES, DepthGraph, GraphInput
from depthkd.export.parity import DEFAULT_TOLERANCES, ParityResult, Tolerance, check_graph
from depthkd.export.quantize import QUANT_MODES, calibration_images, quantize_onnx
from depthkd.export.report import ExportReport, QuantizationResult
from depthkd.export.runtime import onnx_session, run_depth
from depthkd.export.sidecar import sidecar_path, write_sidecar
from depthkd.export.specs import ModelSource, load_model_spec

__all__ = [
    "DEFAULT_OPSET",
    "DEFAULT_TOLERANCES",
    "EXPORTERS",
    "INPUT_FORMATS",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "PREPROCESSING_MODES",
    "QUANT_MODES",
    "DepthGraph",
    "ExportReport",
    "GraphInput",
    "ModelSource",
    "ParityResult",
    "QuantizationResult",
    "Tolerance",
    "calibration_images",
    "check_graph",
    "convert_to_fp16",
    "export_onnx",
    "graph_summary",
    "int8_path_for",
    "load_model_spec",
    "onnx_session",
    "quantize_onnx",
    "run_depth",
    "sidecar_path",
    "torch_to_onnx",
    "write_sidecar",
]
