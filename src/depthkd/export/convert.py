"""PyTorch module -> ONNX file, with the ``torch.export``-based exporter or the TorchScript one.

``dynamo`` (our default) traces with ``torch.export`` and translates with onnxscript. On this stack
(torch 2.15, onnxscript 0.7) it is the exporter that handles every model depthkd exports: all student
heads, LG-Conv, and the transformers teachers (the TorchScript exporter fails on Depth Anything's
position-embedding interpolation, which calls ``round`` on a traced size). Its graphs come out
optimised (BatchNorm folded, constants folded: 120 nodes for a MobileNetV2-0.5 regression student),
and dynamic batch/height/width are declared with ``torch.export.Dim`` and checked symbolically, so a
graph that would silently specialise a size fails at export instead of at run time. Its cost is
export time: seconds for a static student graph, tens of seconds for a dynamic one on 2 CPU cores.

``legacy`` (``torch.onnx.export(..., dynamo=False)``, deprecated upstream) exports a student in about
a second; its raw graph (~270 nodes for the same student, ``Constant``/``Identity`` clutter) is
cleaned with the same onnxscript optimiser, after which it matches the ``dynamo`` graph. Kept for
quick iterations and as a fallback when a model trips ``torch.export``.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from depthkd.errors import ConfigError, ModelError
from depthkd.export.graph import INPUT_NAME, OUTPUT_NAME

log = logging.getLogger(__name__)

EXPORTERS = ("dynamo", "legacy")
MIN_OPSET = 17
DEFAULT_OPSET = 18
# Smallest side a dynamic graph accepts: one pixel per stride-32 feature cell (our default).
MIN_DYNAMIC_SIDE = 32


# Libraries whose INFO messages narrate every optimisation pass of the exporter.
_CHATTY_LOGGERS = ("onnx_ir", "onnxscript", "torch.onnx")


@contextlib.contextmanager
def quiet_exporter_logs() -> Iterator[None]:
    """Hold the exporter libraries' loggers at WARNING while exporting (their INFO floods the log)."""
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _axes(channels_last: bool) -> dict[int, str]:
    """Dynamic axes of the image input: batch, height, width (layout-dependent)."""
    return {0: "batch", 1: "height", 2: "width"} if channels_last else {0: "batch", 2: "height", 3: "width"}


def torch_to_onnx(
    module: nn.Module,
    example: torch.Tensor,
    path: str | Path,
    dynamic: bool = False,
    channels_last: bool = False,
    opset: int = DEFAULT_OPSET,
    exporter: str = "dynamo",
) -> Path:
    """Write ``module(example)`` as an ONNX graph with input ``image`` and output ``depth``.

    Args:
        module: maps one tensor to one ``(B,1,H,W)`` tensor (see :class:`~depthkd.export.graph.DepthGraph`).
        example: an input of the right dtype/layout; for dynamic graphs use batch >= 2 so the batch
            axis is not specialised to 1.
        dynamic: batch, height and width become symbolic (``batch``, ``height``, ``width``).
        channels_last: the input is ``(B,H,W,3)`` (``uint8`` format), else ``(B,3,H,W)``.
        opset: ONNX opset (>= 17; the ``dynamo`` exporter implements 18 and converts down).
        exporter: ``dynamo`` or ``legacy`` (see module docs).
    """
    if exporter not in EXPORTERS:
        raise ConfigError(f"exporter {exporter!r} is not one of {', '.join(EXPORTERS)}")
    if int(opset) < MIN_OPSET:
        raise ConfigError(f"opset {opset} is too old: expected {MIN_OPSET} or newer")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    axes = _axes(channels_last)
    try:
        with torch.no_grad(), quiet_exporter_logs():
            if exporter == "dynamo":
                _export_dynamo(module, example, path, dynamic, axes, int(opset))
            else:
                _export_legacy(module, example, path, dynamic, axes, int(opset))
    except (ConfigError, ModelError):
        raise
    except Exception as err:  # the exporters raise many unrelated exception types
        other = "legacy" if exporter == "dynamo" else "dynamo"
        raise ModelError(
            f"ONNX export ({exporter} exporter) of {type(module).__name__} failed: {err}. "
            f"Try exporter='{other}'."
        ) from err
    if not dynamic:
        with torch.no_grad():
            _declare_output_shape(path, tuple(module(example).shape))
    log.info("exported %s to %s (%s exporter, opset %d, dynamic=%s)", type(module).__name__, path, exporter, opset, dynamic)
    return path


def _declare_output_shape(path: Path, shape: tuple[int, ...]) -> None:
    """Write the fixed output shape into a static graph (the legacy exporter leaves some symbolic)."""
    import onnx

    model = onnx.load(str(path))
    dims = model.graph.output[0].type.tensor_type.shape.dim
    if len(dims) == len(shape) and all(d.dim_value == v for d, v in zip(dims, shape)):
        return
    del dims[:]
    for value in shape:
        dims.add().dim_value = int(value)
    onnx.save(model, str(path))


def _export_dynamo(
    module: nn.Module, example: torch.Tensor, path: Path, dynamic: bool, axes: dict[int, str], opset: int
) -> None:
    dynamic_shapes = None
    if dynamic:
        dims = {
            index: torch.export.Dim(name, min=1 if name == "batch" else MIN_DYNAMIC_SIDE)
            for index, name in axes.items()
        }
        dynamic_shapes = {INPUT_NAME: dims}
    torch.onnx.export(
        module,
        (example,),
        str(path),
        dynamo=True,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=dynamic_shapes,
        opset_version=opset,
        optimize=True,
        verbose=False,
        external_data=False,
    )


def _export_legacy(
    module: nn.Module, example: torch.Tensor, path: Path, dynamic: bool, axes: dict[int, str], opset: int
) -> None:
    import onnx
    import onnxscript.optimizer

    dynamic_axes = {INPUT_NAME: axes, OUTPUT_NAME: {0: "batch", 2: "height", 3: "width"}} if dynamic else None
    with warnings.catch_warnings():
        # Chosen explicitly by the caller; the deprecation notice and constant-folding chatter are noise.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
        )
    onnx.save(onnxscript.optimizer.optimize(onnx.load(str(path))), str(path))


def convert_to_fp16(path: str | Path, out_path: str | Path | None = None) -> Path:
    """Store weights and compute in float16, keeping the float32 ``image``/``depth`` interface.

    Uses onnxruntime's float16 converter; ops without float16 kernels stay float32 behind casts.
    The input and output stay float32 (``keep_io_types``) so callers do not change.
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    path = Path(path)
    out_path = Path(out_path) if out_path is not None else path
    converted = OnnxModel(convert_float_to_float16(onnx.load(str(path)), keep_io_types=True))
    converted.topological_sort()  # the converter appends its input casts at the end of the graph
    onnx.save(converted.model, str(out_path))
    return out_path


def read_onnx(path: str | Path, load_external_data: bool = True) -> Any:
    """``onnx.load`` with a :class:`ModelError` naming the file when it is missing or not an ONNX graph."""
    import onnx
    from google.protobuf.message import DecodeError

    if not Path(path).is_file():
        raise ModelError(f"ONNX file not found: {path}")
    try:
        return onnx.load(str(path), load_external_data=load_external_data)
    except (DecodeError, OSError, ValueError) as err:
        raise ModelError(f"{path} is not a readable ONNX graph ({type(err).__name__}: {err})") from err


def graph_summary(path: str | Path) -> dict[str, object]:
    """Node count, opset, input/output shapes (symbolic names for dynamic axes) of an ONNX file."""
    model = read_onnx(path, load_external_data=False)

    def shape(value: object) -> list[int | str]:
        dims = value.type.tensor_type.shape.dim  # type: ignore[attr-defined]
        return [d.dim_param if d.dim_param else int(d.dim_value) for d in dims]

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    return {
        "nodes": len(model.graph.node),
        "opset": opset,
        "inputs": {i.name: shape(i) for i in model.graph.input},
        "outputs": {o.name: shape(o) for o in model.graph.output},
    }


def size_of(values: Sequence[int]) -> tuple[int, int]:
    """``(H, W)`` from a two-element sequence, checked."""
    if len(values) != 2 or min(int(v) for v in values) <= 0:
        raise ConfigError(f"size {tuple(values)} must be (H, W) with positive sides")
    return int(values[0]), int(values[1])
