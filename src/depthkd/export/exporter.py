"""``export_onnx``: a depth model -> a checked ONNX graph (+ sidecar, + optional int8 copy).

Steps, each behind a progress bar: export (see :mod:`.convert`), optional float16 conversion, the
sidecar JSON, parity checks against PyTorch (see :mod:`.parity`), optional int8 quantisation (see
:mod:`.quantize`) with its accuracy change measured on simulated scenes. A graph that fails a check
is deleted and :class:`~depthkd.errors.ModelError` says why: nothing half-checked is left behind for
a pipeline to pick up (``check=False`` keeps everything, unchecked).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from depthkd.errors import ConfigError, ModelError
from depthkd.export.convert import DEFAULT_OPSET, MIN_DYNAMIC_SIDE, convert_to_fp16, graph_summary, size_of, torch_to_onnx
from depthkd.export.graph import (
    PREPROCESSING_MODES,
    DepthGraph,
    GraphInput,
    depth_of,
    student_normalization,
    without_normalization,
)
from depthkd.export.parity import (
    DEFAULT_TOLERANCES,
    ParityResult,
    Tolerance,
    check_graph,
    compare_metrics,
    compare_outputs,
    score,
)
from depthkd.export.quantize import DEFAULT_CALIBRATION_IMAGES, QUANT_MODES, calibration_images, quantize_onnx
from depthkd.export.report import ExportReport, QuantizationResult
from depthkd.export.runtime import onnx_session, run_depth
from depthkd.export.sidecar import sidecar_path, sidecar_settings, write_sidecar
from depthkd.export.specs import ModelSource, load_model_spec
from depthkd.models.outputs import OUTPUT_KINDS
from depthkd.progress import track
from depthkd.sim.domains import get_domain

log = logging.getLogger(__name__)

ALIGN_BY_KIND = {"metric_depth": "none", "relative_depth": "lstsq", "relative_disparity": "lstsq_disparity"}


def int8_path_for(path: str | Path) -> Path:
    """Where the int8 copy of ``model.onnx`` goes: ``model.int8.onnx`` beside it."""
    return Path(path).with_suffix(".int8.onnx")


def _mb(path: Path) -> float:
    return path.stat().st_size / 2**20


def _int8_mode(int8: str | bool | None) -> str | None:
    if int8 is None or int8 is False:
        return None
    if int8 is True:
        return "static"
    if int8 not in QUANT_MODES:
        raise ConfigError(f"int8={int8!r} is not one of {', '.join(QUANT_MODES)} (or True for static)")
    return str(int8)


def _second_size(size: tuple[int, int]) -> tuple[int, int]:
    """Another input size for checking a dynamic graph (our choice: 32 px taller and 64 px wider)."""
    return size[0] + MIN_DYNAMIC_SIDE, size[1] + 2 * MIN_DYNAMIC_SIDE


@dataclass(frozen=True)
class _Options:
    """The resolved options of one :func:`export_onnx` call (documented there)."""

    size: tuple[int, int]
    dynamic: bool
    fp16: bool
    preprocessing: str
    input_format: str
    opset: int
    exporter: str
    int8: str | None
    calib: str | Path | None
    calib_count: int
    per_channel: bool
    int8_max_abs_rel_change: float | None
    tolerance: Tolerance | None
    check_images: int
    domain: str
    protocol: str
    align: str
    kind: str
    seed: int


class _Export:
    """The state shared by the steps of one :func:`export_onnx` call."""

    def __init__(self, source: ModelSource, path: Path, options: _Options) -> None:
        self.source = source
        self.path = path
        self.options = options
        self.module: nn.Module = source.module  # type: ignore[assignment]
        self.device = next((p.device for p in self.module.parameters()), torch.device("cpu"))
        self.parity = ParityResult()
        self.int8: QuantizationResult | None = None
        self.written: list[Path] = []
        self.scenes: dict[str, torch.Tensor] | None = None
        self.settings: dict[str, Any] = {}
        if options.preprocessing == "sidecar":
            mean, std = student_normalization(self.module)  # type: ignore[arg-type]
            self.graph_module: nn.Module = without_normalization(self.module)  # type: ignore[arg-type]
            self.graph_input = GraphInput("float", mean, std)  # type: ignore[arg-type]
        else:
            self.graph_module = self.module
            self.graph_input = GraphInput(options.input_format)

    # --- the reference -----------------------------------------------------------------------
    def reference(self, images: torch.Tensor) -> torch.Tensor:
        """The PyTorch model's depth for ``[0,1]`` images (on the model's device, returned on the CPU)."""
        return depth_of(self.module(images.to(self.device))).float().cpu()

    def simulated(self) -> dict[str, torch.Tensor]:
        """The simulated check scenes (rendered once, shared by the parity and int8 checks)."""
        if self.scenes is None:
            from depthkd.sim import render_batch

            o = self.options
            self.scenes = render_batch(domain=o.domain, batch_size=o.check_images, size=o.size, seed=o.seed)
        return self.scenes

    # --- steps -------------------------------------------------------------------------------
    def export(self) -> None:
        o = self.options
        generator = torch.Generator().manual_seed(o.seed)
        example = self.graph_input.example(2 if o.dynamic else 1, o.size, generator).to(self.device)
        wrapper = DepthGraph(self.graph_module, self.graph_input.input_format).eval()
        self.written.append(self.path)
        torch_to_onnx(
            wrapper,
            example,
            self.path,
            dynamic=o.dynamic,
            channels_last=self.graph_input.channels_last,
            opset=o.opset,
            exporter=o.exporter,
        )
        if o.fp16:
            convert_to_fp16(self.path)
        fixed_size = None if o.dynamic else o.size
        self.settings = sidecar_settings(self.graph_input, o.kind, fixed_size, self.source.size_multiple)
        self.written.append(write_sidecar(self.path, self.settings))

    def check(self) -> None:
        o = self.options
        check_graph(self.path)
        session = onnx_session(self.path)
        tolerance = o.tolerance or DEFAULT_TOLERANCES["fp16" if o.fp16 else "fp32"]
        generator = torch.Generator().manual_seed(o.seed)
        random = torch.rand(2 if o.dynamic else 1, 3, *o.size, generator=generator)
        compare_outputs(self.reference, session, self.graph_input, random, tolerance, "random", self.parity)
        if o.dynamic:
            other = _second_size(o.size)
            images = torch.rand(2, 3, *other, generator=generator)
            name = f"random {other[0]}x{other[1]}, batch 2"
            compare_outputs(self.reference, session, self.graph_input, images, tolerance, name, self.parity)
        scenes = self.simulated()
        reference, produced = compare_outputs(
            self.reference, session, self.graph_input, scenes["image"], tolerance, "simulated", self.parity
        )
        compare_metrics(reference, produced, scenes["depth"], o.protocol, o.align, tolerance, self.parity)
        self.parity.passed = True

    def quantize(self) -> None:
        o = self.options
        assert o.int8 is not None
        int8_path = int8_path_for(self.path)
        images = None
        calibration = "none (dynamic)"
        if o.int8 == "static":
            images = calibration_images(o.size, o.calib_count, o.calib, o.domain, seed=o.seed + 1)
            count = images.shape[0]
            calibration = f"{count} images from {o.calib}" if o.calib is not None else f"{count} simulated {o.domain} scenes"
        self.written.append(int8_path)
        quantize_onnx(self.path, int8_path, o.int8, images, self.graph_input, per_channel=o.per_channel)
        self.written.append(write_sidecar(int8_path, self.settings))
        self.int8 = self.int8_accuracy(int8_path, o.int8, calibration)
        limit = o.int8_max_abs_rel_change
        if limit is not None and self.int8.abs_rel_change > limit:
            raise ModelError(
                f"int8 model loses too much accuracy: AbsRel {self.int8.metrics_int8['abs_rel']:.4f} vs "
                f"{self.int8.metrics_float['abs_rel']:.4f} in float ({self.int8.abs_rel_change:+.1%} relative, "
                f"limit {limit:+.1%}); calibrate on images of the target domain (calib=DIR)"
            )

    def int8_accuracy(self, int8_path: Path, mode: str, calibration: str) -> QuantizationResult:
        """AbsRel/d1 of the float and the int8 graph (both in onnxruntime) on the simulated scenes."""
        scenes = self.simulated()
        graph_images = self.graph_input.to_graph(scenes["image"])
        float_depth = run_depth(onnx_session(self.path), graph_images)
        int8_depth = run_depth(onnx_session(int8_path), graph_images)
        protocol, align = self.options.protocol, self.options.align
        metrics_float, label = score(float_depth, scenes["depth"], protocol, align)
        metrics_int8, _ = score(int8_depth, scenes["depth"], protocol, align)
        change = (metrics_int8["abs_rel"] - metrics_float["abs_rel"]) / max(metrics_float["abs_rel"], 1e-12)
        return QuantizationResult(
            path=int8_path,
            mode=mode,
            calibration=calibration,
            metric_label=label,
            metrics_float=metrics_float,
            metrics_int8=metrics_int8,
            abs_rel_change=float(change),
            max_abs_diff=float(np.abs(int8_depth - float_depth).max()),
            size_mb=_mb(int8_path),
        )

    def remove_outputs(self) -> None:
        for path in self.written:
            path.unlink(missing_ok=True)


def export_onnx(
    model: nn.Module | str | Path,
    path: str | Path,
    size: Sequence[int] = (480, 640),
    dynamic: bool = False,
    fp16: bool = False,
    preprocessing: str = "inside",
    input_format: str = "float",
    opset: int = DEFAULT_OPSET,
    check: bool = True,
    *,
    int8: str | bool | None = None,
    calib: str | Path | None = None,
    calib_count: int = DEFAULT_CALIBRATION_IMAGES,
    per_channel: bool = True,
    int8_max_abs_rel_change: float | None = None,
    exporter: str = "dynamo",
    tolerance: Tolerance | None = None,
    check_images: int = 4,
    domain: str = "indoor",
    protocol: str | None = None,
    kind: str | None = None,
    seed: int = 0,
) -> ExportReport:
    """Export a depth model to ONNX with one input ``image`` and one output ``depth``, and check it.

    Args:
        model: a module (student, reference architecture, teacher) or a model spec
            (:func:`~depthkd.export.specs.load_model_spec`: ``.safetensors``, ``student:...``, ``arch:...``,
            teacher specs).
        path: the ``.onnx`` file to write; the sidecar JSON goes beside it (``.json``).
        size: input ``(H, W)``; the fixed size, or the traced size of a dynamic graph.
        dynamic: symbolic batch, height and width (any size >= 32 px).
        fp16: float16 weights and compute, float32 input/output; checked with looser tolerances.
        preprocessing: ``inside`` (the graph normalises) or ``sidecar`` (the caller does, with the
            mean/std written to the sidecar); see :mod:`depthkd.export.graph`.
        input_format: ``float`` (``(B,3,H,W)`` float32 in ``[0,1]``) or ``uint8`` (``(B,H,W,3)`` bytes).
        opset: ONNX opset, 17 or newer (18 by default: the exporter's native opset).
        check: run the checker, the onnxruntime/PyTorch comparisons and the metric parity.
        int8: also write ``<name>.int8.onnx``: ``static`` (or ``True``: calibrated QDQ) or ``dynamic``.
        calib: folder of calibration images for static int8 (``None``: simulated ``domain`` scenes).
        calib_count: number of calibration images.
        per_channel: per-channel int8 weight scales.
        int8_max_abs_rel_change: fail when int8 AbsRel is worse than float by more than this
            fraction (e.g. 0.02); ``None`` only reports it.
        exporter: ``dynamo`` (default) or ``legacy``; see :mod:`depthkd.export.convert`.
        tolerance: parity tolerances (default :data:`~depthkd.export.parity.DEFAULT_TOLERANCES` for
            the precision).
        check_images: simulated scenes for the parity and int8 checks.
        domain: simulator domain of those scenes and of default calibration images.
        protocol: metrics protocol of the checks (default: the simulator domain's own).
        kind: the output kind written to the sidecar (default: what the model declares).
        seed: seed of the random and simulated check images and of the calibration subset.

    Returns:
        :class:`~depthkd.export.report.ExportReport`.

    Raises:
        ConfigError: conflicting or unknown options.
        ModelError: export failed, or the graph does not match PyTorch (the files are removed).
    """
    started = time.perf_counter()
    size = size_of(size)
    if preprocessing not in PREPROCESSING_MODES:
        raise ConfigError(f"preprocessing {preprocessing!r} is not one of {', '.join(PREPROCESSING_MODES)}")
    if preprocessing == "sidecar" and input_format != "float":
        raise ConfigError("preprocessing='sidecar' takes normalised float input: use input_format='float'")
    mode = _int8_mode(int8)
    if mode is not None and fp16:
        raise ConfigError("choose fp16 or int8, not both: int8 is quantised from the float32 graph")
    if calib is not None and mode != "static":
        raise ConfigError("calib is for static int8 (int8='static')")
    if check_images < 1:
        raise ConfigError(f"check_images={check_images}: expected at least 1")
    if dynamic and min(size) < MIN_DYNAMIC_SIDE:
        raise ConfigError(f"dynamic export needs a traced size of at least {MIN_DYNAMIC_SIDE} px per side, got {size}")
    path = Path(path)
    if path.suffix != ".onnx":
        raise ConfigError(f"export path {path} must end in .onnx")

    source = load_model_spec(model)
    if source.module is None:
        raise ConfigError(f"{source.spec} is already an ONNX graph; export_onnx needs a PyTorch model")
    resolved_kind = kind or source.kind
    if resolved_kind not in OUTPUT_KINDS:
        raise ConfigError(f"kind {resolved_kind!r} is not one of {', '.join(OUTPUT_KINDS)}")
    options = _Options(
        size=size,
        dynamic=bool(dynamic),
        fp16=bool(fp16),
        preprocessing=preprocessing,
        input_format=input_format,
        opset=int(opset),
        exporter=exporter,
        int8=mode,
        calib=calib,
        calib_count=int(calib_count),
        per_channel=bool(per_channel),
        int8_max_abs_rel_change=int8_max_abs_rel_change,
        tolerance=tolerance,
        check_images=int(check_images),
        domain=domain,
        protocol=protocol or get_domain(domain).protocol,  # the domain's own caps
        align=ALIGN_BY_KIND.get(resolved_kind, "none"),
        kind=resolved_kind,
        seed=int(seed),
    )
    job = _Export(source, path, options)
    steps: list[tuple[str, Callable[[], None]]] = [("export", job.export)]
    if check:
        steps.append(("parity checks", job.check))
    if mode is not None:
        steps.append((f"{mode} int8", job.quantize))
    was_training = job.module.training
    job.module.eval()
    try:
        for name, step in track(steps, f"ONNX export of {source.label}"):
            log.info("%s: %s", path.name, name)
            step()
    except ModelError as err:
        job.remove_outputs()
        written = ", ".join(p.name for p in job.written) or "nothing"
        raise ModelError(f"{err} [removed what it wrote: {written}; check=False keeps unchecked files]") from err
    except BaseException:  # bad calibration data, an interrupt: no half-finished export is left behind
        job.remove_outputs()
        raise
    finally:
        job.module.train(was_training)

    summary = graph_summary(path)
    return ExportReport(
        path=path,
        sidecar=sidecar_path(path),
        size=size,
        dynamic=bool(dynamic),
        precision="fp16" if fp16 else "fp32",
        preprocessing=preprocessing,
        input_format=input_format,
        opset=int(summary["opset"] or opset),  # type: ignore[arg-type]
        exporter=exporter,
        kind=resolved_kind,
        input_shape=summary["inputs"]["image"],  # type: ignore[index]
        output_shape=summary["outputs"]["depth"],  # type: ignore[index]
        nodes=int(summary["nodes"]),  # type: ignore[arg-type]
        size_mb=_mb(path),
        checked=bool(check),
        parity=job.parity,
        int8=job.int8,
        seconds=time.perf_counter() - started,
    )
