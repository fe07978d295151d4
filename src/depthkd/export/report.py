"""What an export produced and what its checks measured, as a dataclass, a dict and Markdown."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from depthkd.export.parity import ParityResult


@dataclass
class QuantizationResult:
    """The int8 model and its accuracy next to the float graph, on simulated scenes.

    Attributes:
        path: the int8 ``.onnx`` file.
        mode: ``static`` or ``dynamic``.
        calibration: where the calibration images came from (``static`` only).
        metric_label: protocol label of the metrics.
        metrics_float, metrics_int8: AbsRel and d1 of the float and the int8 graph (onnxruntime).
        abs_rel_change: ``(AbsRel_int8 - AbsRel_float) / AbsRel_float`` (relative; 0.02 = 2% worse).
        max_abs_diff: largest ``|d_int8 - d_float|`` on those scenes.
        size_mb: file size of the int8 model.
    """

    path: Path
    mode: str
    calibration: str
    metric_label: str
    metrics_float: dict[str, float]
    metrics_int8: dict[str, float]
    abs_rel_change: float
    max_abs_diff: float
    size_mb: float


@dataclass
class ExportReport:
    """Everything :func:`~depthkd.export.export_onnx` wrote and checked.

    Attributes:
        path: the ``.onnx`` file (float32, or float16 with ``fp16``).
        sidecar: the JSON file beside it.
        size: the export size ``(H, W)`` (fixed size, or the traced size of a dynamic graph).
        dynamic: batch, height and width are symbolic.
        precision: ``fp32`` or ``fp16``.
        preprocessing, input_format, opset, exporter: how it was exported.
        kind: what the output means (``metric_depth`` for students).
        input_shape, output_shape: as declared in the graph (names for dynamic axes).
        nodes: node count of the graph.
        size_mb: file size.
        checked: whether the parity checks ran (they all passed if so: failures raise).
        parity: what they measured.
        int8: the int8 model, when asked for.
        seconds: wall time of export + checks.
    """

    path: Path
    sidecar: Path
    size: tuple[int, int]
    dynamic: bool
    precision: str
    preprocessing: str
    input_format: str
    opset: int
    exporter: str
    kind: str
    input_shape: list[int | str]
    output_shape: list[int | str]
    nodes: int
    size_mb: float
    checked: bool
    parity: ParityResult = field(default_factory=ParityResult)
    int8: QuantizationResult | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable values (paths as strings)."""

        def plain(value: Any) -> Any:
            if isinstance(value, Path):
                return str(value)
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [plain(v) for v in value]
            return value

        return plain(asdict(self))

    def to_markdown(self) -> str:
        """A short human-readable summary."""
        shape = "x".join(str(s) for s in self.input_shape)
        lines = [
            f"## ONNX export: `{self.path.name}`",
            "",
            "| | |",
            "|---|---|",
            f"| input | `image` {shape} ({self.input_format}, preprocessing {self.preprocessing}) |",
            f"| output | `depth` {'x'.join(str(s) for s in self.output_shape)} ({self.kind}) |",
            f"| precision | {self.precision} |",
            f"| graph | {self.nodes} nodes, opset {self.opset}, {self.exporter} exporter, {self.size_mb:.1f} MB |",
            f"| sidecar | `{self.sidecar.name}` |",
        ]
        if self.checked:
            for name, diff in self.parity.max_abs_diff.items():
                lines.append(
                    f"| max abs diff ({name}) | {diff:.2e} (tolerance {self.parity.allowed_diff[name]:.1e}) |"
                )
            for key, value in self.parity.metrics_onnx.items():
                lines.append(
                    f"| {key} ONNX / PyTorch, parity check | {value:.4f} / {self.parity.metrics_torch[key]:.4f} "
                    f"(the export's own simulated check scenes, {self.parity.metric_label}: a check that the graph "
                    "computes what PyTorch does, not a score to compare with `evaluate`) |"
                )
        else:
            lines.append("| checks | skipped |")
        if self.int8 is not None:
            q = self.int8
            lines += [
                f"| int8 ({q.mode}) | `{q.path.name}`, {q.size_mb:.1f} MB, calibration: {q.calibration} |",
                f"| AbsRel float / int8 | {q.metrics_float['abs_rel']:.4f} / {q.metrics_int8['abs_rel']:.4f} "
                f"({q.abs_rel_change:+.1%} relative; {q.metric_label}) |",
            ]
        lines.append(f"| time | {self.seconds:.1f} s |")
        return "\n".join(lines) + "\n"
