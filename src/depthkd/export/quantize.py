"""int8 models with onnxruntime quantisation: static (calibrated, QDQ) or dynamic (weights only).

What runs fast on a CPU with onnxruntime decides the defaults (measured with onnxruntime 1.31 on an
x86 CPU with VNNI, MobileNetV2 student at 480x640, 2 threads, float32 and int8 runs interleaved):

- **static, QDQ, uint8 activations / int8 weights** (our default): every convolution becomes a
  fused ``QLinearConv``; 1.6-2x faster than float32.
- static with *int8* activations: onnxruntime's x86 kernels leave a third of the convolutions in
  float32 behind ``Transpose``/``QuantizeLinear``/``DequantizeLinear`` chains: about half the speed of
  uint8 activations, no faster than float32.
- **dynamic** (weights-only int8, activations quantised on the fly): convolutions become
  ``ConvInteger``, which has no fast CPU kernel: ~6x *slower* than float32 for a CNN. It is offered
  for transformer-style models whose cost is in ``MatMul``; a warning says so for convolutional ones.
- per-channel weight scales (our default) cost a few percent of speed and keep depthwise
  convolutions, whose filters differ widely in scale, accurate.

The output head (the last convolution and everything after it: sigmoid or softmax over bins, bin
centres, the final upsampling) stays float32 by default: depth quantised to 256 levels over 0-10 m
moves in ~4 cm steps, up to 2% of a 1 m depth on its own, and the head is a tiny share of the cost.

Static quantisation calibrates activation ranges on images: a folder of the user's images
(:class:`~depthkd.data.ImageFolder`, resized to the export size) or, when none is given, simulated
scenes from :func:`depthkd.sim.render_batch`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from depthkd.errors import ConfigError, DataError, ModelError
from depthkd.export.graph import GraphInput
from depthkd.progress import track

log = logging.getLogger(__name__)

QUANT_MODES = ("static", "dynamic")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_CALIBRATION_IMAGES = 32  # our default: enough for stable min/max ranges, seconds to run


def _resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(3,h,w)`` -> ``(3,H,W)`` bilinear with antialiasing (a calibration image at the graph size)."""
    if tuple(image.shape[-2:]) == size:
        return image
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]


def calibration_images(
    size: Sequence[int],
    count: int = DEFAULT_CALIBRATION_IMAGES,
    folder: str | Path | None = None,
    domain: str = "indoor",
    seed: int = 0,
) -> torch.Tensor:
    """``(N,3,H,W)`` images in ``[0,1]`` to calibrate activation ranges on.

    Args:
        size: the graph's input ``(H, W)``; images are resized to it (aspect ratio not kept: the
            ranges, not the geometry, matter here).
        count: how many images; from a folder, a seeded random subset when it holds more.
        folder: a folder of images (read with :class:`~depthkd.data.ImageFolder`); ``None`` renders
            simulated ``domain`` scenes instead.
        seed: seed of the subset choice or of the simulated scenes.
    """
    height, width = int(size[0]), int(size[1])
    if count < 1:
        raise ConfigError(f"calibration needs at least one image, got count={count}")
    if folder is None:
        from depthkd.sim import render_batch

        return render_batch(domain=domain, batch_size=count, size=(height, width), seed=seed)["image"]
    from depthkd.data import ImageFolder

    dataset = ImageFolder(folder)
    if len(dataset) == 0:
        raise DataError(f"calibration folder {folder} holds no images")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(dataset), generator=generator)[:count].tolist()
    images = [_resize(dataset[i]["image"], (height, width)) for i in track(order, "reading calibration images")]
    if len(images) < count:
        log.warning("calibration folder %s holds %d images, fewer than the %d asked for", folder, len(images), count)
    return torch.stack(images)


def _reader(images: torch.Tensor, graph_input: GraphInput, input_name: str) -> Any:
    """An onnxruntime ``CalibrationDataReader`` feeding ``images`` one at a time, with a progress bar."""
    from onnxruntime.quantization import CalibrationDataReader

    class ImageReader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items: Iterator[int] = iter(track(range(images.shape[0]), "calibrating int8 ranges"))

        def get_next(self) -> dict[str, np.ndarray] | None:
            index = next(self._items, None)
            if index is None:
                return None
            return {input_name: graph_input.to_graph(images[index : index + 1])}

    return ImageReader()


def head_nodes(model: Any) -> list[str]:
    """Names of the last ``Conv`` node and every node after it (ONNX graphs are topologically sorted)."""
    nodes = list(model.graph.node)
    last_conv = max((i for i, node in enumerate(nodes) if node.op_type == "Conv"), default=None)
    if last_conv is None:
        return []
    return [node.name for node in nodes[last_conv:]]


def _name_nodes(model: Any) -> None:
    """Give unnamed nodes a name, so they can be excluded from quantisation by name."""
    taken = {node.name for node in model.graph.node if node.name}
    for index, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{index}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)


def _has_convolutions(model: Any) -> bool:
    return any(node.op_type == "Conv" for node in model.graph.node)


def quantize_onnx(
    fp32_path: str | Path,
    int8_path: str | Path,
    mode: str = "static",
    images: torch.Tensor | None = None,
    graph_input: GraphInput | None = None,
    per_channel: bool = True,
    keep_head_float: bool = True,
    calibrate_method: str = "minmax",
    reduce_range: bool = False,
) -> Path:
    """Write an int8 version of the float32 graph at ``fp32_path`` to ``int8_path``.

    Args:
        mode: ``static`` (QDQ, calibrated on ``images``) or ``dynamic`` (see module docs).
        images: ``(N,3,H,W)`` calibration images in ``[0,1]`` (static only), e.g. from
            :func:`calibration_images`.
        graph_input: how images become the graph input (format, sidecar normalisation).
        per_channel: per-output-channel weight scales.
        keep_head_float: leave the output head in float32 (see module docs).
        calibrate_method: ``minmax`` (our default: fast, no outlier clipping), ``entropy`` or
            ``percentile``.
        reduce_range: 7-bit weights, for x86 CPUs without VNNI (see onnxruntime's guidance).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if mode not in QUANT_MODES:
        raise ConfigError(f"int8 mode {mode!r} is not one of {', '.join(QUANT_MODES)}")
    if calibrate_method not in CALIBRATION_METHODS:
        raise ConfigError(f"calibrate_method {calibrate_method!r} is not one of {', '.join(CALIBRATION_METHODS)}")
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    graph_input = graph_input or GraphInput()
    prepared = int8_path.with_name(int8_path.stem + ".prep.onnx")
    try:
        # Shape inference and graph optimisation first, as onnxruntime recommends before quantising.
        quant_pre_process(str(fp32_path), str(prepared))
        model = onnx.load(str(prepared))
        _name_nodes(model)
        onnx.save(model, str(prepared))
        exclude = head_nodes(model) if keep_head_float else []
        if mode == "dynamic":
            if _has_convolutions(model):
                log.warning(
                    "dynamic int8 turns convolutions into ConvInteger, which runs slower than float32 on CPUs; "
                    "use static int8 for convolutional models"
                )
            quantize_dynamic(
                str(prepared),
                str(int8_path),
                per_channel=per_channel,
                reduce_range=reduce_range,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=exclude,
            )
        else:
            if images is None or images.shape[0] == 0:
                raise ConfigError("static int8 needs calibration images (see calibration_images)")
            input_name = model.graph.input[0].name
            method = {
                "minmax": CalibrationMethod.MinMax,
                "entropy": CalibrationMethod.Entropy,
                "percentile": CalibrationMethod.Percentile,
            }[calibrate_method]
            quantize_static(
                str(prepared),
                str(int8_path),
                _reader(images, graph_input, input_name),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                reduce_range=reduce_range,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=exclude,
                calibrate_method=method,
            )
    except (ConfigError, DataError):
        raise
    except Exception as err:  # onnxruntime's quantiser raises many exception types
        raise ModelError(f"{mode} int8 quantisation of {fp32_path} failed: {err}") from err
    finally:
        prepared.unlink(missing_ok=True)
    log.info("wrote %s int8 model %s (per_channel=%s, head float=%s)", mode, int8_path, per_channel, keep_head_float)
    return int8_path
