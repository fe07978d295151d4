"""A Hugging Face depth model's image processor, redone as batched torch ops on the device.

:class:`HFPreprocessing` reads the settings of a loaded transformers image processor (the values saved
in ``preprocessor_config.json`` merged with the processor class's defaults) and reproduces what that
processor feeds the model, then undoes its geometry on the output, as ``pipeline("depth-estimation")``
does. Three processor families cover the depth models of transformers:

- ``DPTImageProcessor`` (DPT, Depth Anything): resize to ``size`` (optionally keeping the aspect ratio,
  "scaling as little as possible"), each side rounded to a multiple of ``ensure_multiple_of``; rescale
  and normalise; optional zero padding (centred) to a multiple of ``size_divisor``.
- ``ZoeDepthImageProcessor``: rescale; reflect-pad ``int(sqrt(side / 2) * 3)`` pixels on each side;
  resize the padded image like DPT but with ``align_corners=True`` and no antialiasing; normalise. The
  padding is cut off the output again.
- ``GLPNImageProcessor``: resize each side down to a multiple of ``size_divisor``; rescale (and normalise
  when configured).

8-bit pixels: the processors of DPT, Depth Anything and GLPN resize the image as it was decoded, ``uint8``,
before rescaling it: in two passes (width, then height), the result of each pass rounded to an integer and
clamped to ``[0, 255]``, so a bicubic overshoot at an edge is cut off after the first pass. Resizing the float
image in one pass instead (``uint8_resize="none"``, depthkd's behaviour before) overshoots to -17..274 on
photo-like images and -41..296 on a checkerboard, 9-19 and 40-54 grey levels away from the processor (measured
at Depth Anything's 518 / multiple-of-14 settings, upscaling and downscaling; reported as 1-4.5% of its depth
range end to end). So by default (:meth:`HFPreprocessing.from_processor`) depthkd does what the processor
does: the ``[0,1]`` images are rounded to 8-bit levels (exact for images decoded from 8-bit files) and resized
with the fixed-point weights and rounding of torch's CPU ``uint8`` kernel (``uint8_resize="torchvision"``, for
``DPTImageProcessor``, which ``AutoImageProcessor`` loads) or of Pillow (``"pil"``, for
``DPTImageProcessorPil``). Measured on photos, checkerboards and stripes, 10x up to 2.6x down: the same
integers as the processor (0 grey levels, against up to 2 between the two backends). Costs: on the CPU the
``torchvision`` mode calls torch's own ``uint8`` kernel (1.1-1.3x the time of the float resize); on a GPU,
for ``pil`` and in exported graphs it runs as integer gathers, at most 5 per pass upscaling and about
``4 x scale + 1`` downscaling by ``scale`` (``pil`` on one CPU core: 3x the float resize upscaling 480x640,
7x downscaling 1080x1440; GPU speed not measured). Rounding has no gradient: gradients flow straight
through, as through the float resize. ``uint8_resize="none"`` is what the processor computes from float
pixels and what ZoeDepth does (it rescales to float before resizing). A processor run on a GPU
(``device="cuda"``) resizes in float and rounds once at the end, which neither mode reproduces exactly.

``resample=LANCZOS`` falls back to bicubic (torch has no Lanczos kernel), as transformers itself does on GPU
or with torchvision < 0.27. The pipeline resizes the output with bicubic interpolation; depthkd uses bilinear
by default (no overshoot, so positive depth stays positive) and bicubic on request. DPT's optional centre
padding is cut off the output (the pipeline leaves it in and resizes the padded map).
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from depthkd.errors import ModelError
from depthkd.models.teachers.base import resize_maps

log = logging.getLogger(__name__)

# PIL resampling ids (PIL.Image.Resampling) -> torch interpolate modes.
_RESAMPLE_MODES = {0: "nearest-exact", 1: "bicubic", 2: "bilinear", 3: "bicubic"}
_LANCZOS = 1
FAMILIES = ("DPTImageProcessor", "ZoeDepthImageProcessor", "GLPNImageProcessor")
# How a processor resizes 8-bit pixels: torch's CPU uint8 kernel, Pillow, or not at all (float pixels).
UINT8_RESIZES = ("torchvision", "pil", "none")
_PIL_PRECISION_BITS = 22  # Pillow's PRECISION_BITS (32 - 8 - 2): weights are int32 with 22 fraction bits
_TORCH_MAX_PRECISION_BITS = 22  # torch's int16 weights get as many fraction bits as the largest weight allows


@dataclass(frozen=True)
class Layout:
    """Where a batch's model output sits relative to its input images.

    The output is first resized to ``frame`` (height, width), then ``crop`` = (top, bottom, left,
    right) pixels are cut off, then it is resized to ``input_size`` if it is not there yet.
    """

    input_size: tuple[int, int]
    frame: tuple[int, int]
    crop: tuple[int, int, int, int] = (0, 0, 0, 0)


def constrain_to_multiple(value: float, multiple: float) -> int:
    """``value`` rounded (half to even, as transformers does) to a multiple of ``multiple``.

    At least one multiple, where the processor would produce an empty image.
    """
    rounded = int(round(value / multiple) * multiple)
    return max(rounded, math.ceil(multiple))


def _family(processor: Any) -> str:
    """The processor family name, ignoring transformers' backend suffixes (``Pil``, ``Fast``)."""
    name = type(processor).__name__
    for suffix in ("Pil", "Fast"):
        name = name.removesuffix(suffix)
    if name not in FAMILIES:
        raise ModelError(
            f"image processor {type(processor).__name__} is not supported; depthkd reproduces "
            f"{', '.join(FAMILIES)} (DPT, Depth Anything, ZoeDepth, GLPN)"
        )
    return name


def _interpolation(resample: Any, family: str) -> str:
    """The torch interpolate mode for a processor's ``resample`` value."""
    if resample is None:
        return "bilinear"
    if hasattr(resample, "value") and isinstance(resample.value, str):  # torchvision InterpolationMode
        mode = resample.value
        return "nearest-exact" if mode == "nearest" else mode
    code = int(resample)
    if code not in _RESAMPLE_MODES:
        raise ModelError(f"{family}: resample={resample!r} is not supported (nearest, bilinear, bicubic, lanczos)")
    if code == _LANCZOS:
        log.warning("%s asks for Lanczos resampling; using bicubic (torch has no Lanczos kernel)", family)
    return _RESAMPLE_MODES[code]


def _size_pair(size: Any) -> tuple[int, int] | None:
    """``(H, W)`` from a processor's ``size`` (SizeDict, dict or None)."""
    if size is None:
        return None
    get = size.get if isinstance(size, dict) else lambda key: getattr(size, key, None)
    height, width = get("height"), get("width")
    if height is None or width is None:
        raise ModelError(f"image processor size {size!r} needs 'height' and 'width'")
    return int(height), int(width)


def _triple(values: Any, what: str) -> tuple[float, float, float]:
    if isinstance(values, (int, float)):
        values = [values] * 3
    values = tuple(float(v) for v in values)
    if len(values) != 3:
        raise ModelError(f"image processor {what} {values} must have 3 values")
    return values  # type: ignore[return-value]


def _cubic_filter(x: np.ndarray, backend: str) -> np.ndarray:
    """Keys' cubic kernel (a = -0.5), evaluated in the operation order of torch's or Pillow's C code.

    The order matters only in the last bit of a weight, but that bit can flip a rounded fixed-point weight.
    """
    a = -0.5
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    if backend == "pil":
        far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    else:
        far = ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def uint8_taps(
    in_size: int, out_size: int, interpolation: str, backend: str
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One axis of the processor's antialiased ``uint8`` resize: ``(index, weights, precision)``.

    ``index`` and ``weights`` are ``(taps, out_size)`` (source pixel and integer weight of each tap of each
    output pixel); an output pixel is ``clamp(floor((sum(weights * pixels) + 2**(precision-1)) / 2**precision),
    0, 255)``. Weights follow PIL's antialiasing filter (support scaled by the downscaling factor, normalised
    to sum 1), computed in float64 like ``_compute_indices_min_size_weights_aa`` (torch) and
    ``precompute_coeffs`` (Pillow), then rounded half away from zero to int16 at the largest precision under
    which the largest weight fits (``_compute_index_ranges_int16_weights``, torch) or to 22 fraction bits
    (``normalize_coeffs_8bpc``, Pillow). Fresh tensors each call (from cached arrays): a tensor cached while
    ``torch.export`` traces would be a fake one.
    """
    index, weights, precision = _taps_arrays(in_size, out_size, interpolation, backend)
    return torch.tensor(index), torch.tensor(weights), precision


@functools.lru_cache(maxsize=256)
def _taps_arrays(
    in_size: int, out_size: int, interpolation: str, backend: str
) -> tuple[np.ndarray, np.ndarray, int]:
    """:func:`uint8_taps` as read-only numpy arrays."""
    half_width = 2.0 if interpolation == "bicubic" else 1.0  # the filter's support at scale 1
    scale = in_size / out_size
    support = half_width * scale if scale >= 1.0 else half_width
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    max_taps = int(math.ceil(support)) * 2 + 1
    center = scale * (np.arange(out_size, dtype=np.float64) + 0.5)
    first = np.maximum(np.trunc(center - support + 0.5), 0.0).astype(np.int64)  # C casts truncate
    count = np.clip(np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size) - first, 0, max_taps)
    taps = np.arange(int(count.max()), dtype=np.int64)
    source = first[:, None] + taps[None, :]
    x = (source - center[:, None] + 0.5) * invscale
    raw = _cubic_filter(x, backend) if interpolation == "bicubic" else np.maximum(1.0 - np.abs(x), 0.0)
    raw = np.where(taps[None, :] < count[:, None], raw, 0.0)
    total = np.zeros(out_size)
    for tap in taps:  # summed tap by tap, in the C code's order
        total = total + raw[:, tap]
    weights = raw / np.where(total != 0.0, total, 1.0)[:, None]
    if backend == "pil":
        precision = _PIL_PRECISION_BITS
    else:
        largest = float(weights[total != 0.0].max(initial=0.0))
        precision = 0
        while precision < _TORCH_MAX_PRECISION_BITS and int(0.5 + largest * (1 << (precision + 1))) < (1 << 15):
            precision += 1
    scaled = weights * float(1 << precision)
    fixed = np.where(scaled < 0, np.trunc(scaled - 0.5), np.trunc(scaled + 0.5))
    index = np.ascontiguousarray(np.minimum(source, in_size - 1).T)  # taps past the edge have weight 0
    fixed = np.ascontiguousarray(fixed.T.astype(np.int32))
    index.flags.writeable = fixed.flags.writeable = False
    return index, fixed, precision


def _resample_rows(levels: torch.Tensor, taps: tuple[torch.Tensor, torch.Tensor, int]) -> torch.Tensor:
    """One pass of the fixed-point resize along the rows (dim -2) of int32 ``levels``: rounded, clamped.

    Whole rows are gathered per tap (contiguous copies); a pass along the columns transposes first,
    which is ~2x faster on the CPU than gathering single columns.
    """
    index, weights, precision = taps
    index, weights = index.to(levels.device), weights.to(levels.device)
    total = levels.index_select(-2, index[0]) * weights[0].view(-1, 1) + (1 << (precision - 1))
    for tap in range(1, index.shape[0]):
        total += levels.index_select(-2, index[tap]) * weights[tap].view(-1, 1)
    # Adding half a unit (above) and flooring rounds to nearest; negative sums clamp to 0 either way, so
    # the division may truncate (what integer division does everywhere, ONNX included).
    return torch.div(total.clamp_(min=0), 1 << precision, rounding_mode="floor").clamp_(max=255)


def _tracing() -> bool:
    """Whether the graph is being traced or compiled (export it as portable integer ops, not a uint8 resize)."""
    if torch.jit.is_tracing():
        return True
    checks = (getattr(torch.compiler, name, None) for name in ("is_compiling", "is_exporting"))  # torch >= 2.3/2.5
    return any(check() for check in checks if check is not None)


def resize_uint8(
    levels: torch.Tensor, size: tuple[int, int], interpolation: str, backend: str, native: bool | None = None
) -> torch.Tensor:
    """Integer ``(B,C,H,W)`` 8-bit levels resized as the processor resizes ``uint8`` images (int32 out).

    Width first, then height, each pass rounded and clamped to ``[0, 255]`` (torch's CPU ``uint8`` kernel
    and Pillow both work this way); ``nearest-exact`` only picks pixels, so it needs no rounding.
    ``native`` (default: for ``torchvision`` on the CPU, outside tracing) calls torch's own ``uint8``
    kernel, the one the processor calls, ~15x faster there than the portable integer gathers used
    everywhere else (CUDA has no antialiased ``uint8`` kernel); the two agree bit for bit.
    """
    if interpolation == "nearest-exact":
        return nn.functional.interpolate(levels.float(), size=size, mode="nearest-exact").to(torch.int32)
    if interpolation not in ("bilinear", "bicubic"):
        raise ModelError(f"8-bit resize does not support interpolation {interpolation!r}")
    if native is None:
        native = backend == "torchvision" and levels.device.type == "cpu" and not _tracing()
    if native:
        return nn.functional.interpolate(
            levels.to(torch.uint8), size=size, mode=interpolation, align_corners=False, antialias=True
        ).to(torch.int32)
    out = levels.to(torch.int32)
    height, width = size
    if out.shape[-1] != width:
        taps = uint8_taps(int(out.shape[-1]), width, interpolation, backend)
        out = _resample_rows(out.transpose(-1, -2).contiguous(), taps).transpose(-1, -2).contiguous()
    if out.shape[-2] != height:
        out = _resample_rows(out, uint8_taps(int(out.shape[-2]), height, interpolation, backend))
    return out


@dataclass(frozen=True)
class HFPreprocessing:
    """A transformers depth processor's settings, applied to ``[0,1]`` float batches on any device.

    Attributes:
        family: the processor family reproduced (see module docs).
        resize: ``none``, ``target`` (DPT/ZoeDepth rule) or ``floor_multiple`` (GLPN rule).
        size: target ``(H, W)`` of the ``target`` rule.
        keep_aspect_ratio: scale both sides by the factor closest to 1 (``target`` rule).
        multiple: each resized side is a multiple of this (``ensure_multiple_of`` / ``size_divisor``).
        interpolation, antialias, align_corners: how the image is resized.
        pixel_scale: ``[0,1]`` images are multiplied by this (255 x ``rescale_factor``, or 255 without
            rescaling) to get the processor's pixel values.
        mean, std: normalisation, or ``None`` when the processor does not normalise.
        pad: ``none``, ``reflect_sqrt`` (ZoeDepth) or ``center_multiple`` (DPT ``do_pad``).
        pad_multiple: the ``size_divisor`` of ``center_multiple`` padding.
        output_interpolation: how the output is resized back (``bilinear`` our default, ``bicubic`` as
            the pipeline does).
        uint8_resize: ``torchvision`` or ``pil``: images are rounded to 8-bit levels and resized with that
            backend's fixed-point arithmetic, as the processor resizes ``uint8`` images (what
            :meth:`from_processor` picks for DPT, Depth Anything and GLPN); ``none``: float pixels, resized
            in one pass (ZoeDepth, or a processor given float images). See the module docs.
    """

    family: str
    resize: str
    size: tuple[int, int] | None
    keep_aspect_ratio: bool
    multiple: float
    interpolation: str
    antialias: bool
    align_corners: bool | None
    pixel_scale: float
    mean: tuple[float, float, float] | None
    std: tuple[float, float, float] | None
    pad: str
    pad_multiple: int
    output_interpolation: str = "bilinear"
    uint8_resize: str = "none"

    def __post_init__(self) -> None:
        if self.uint8_resize not in UINT8_RESIZES:
            raise ModelError(f"uint8_resize {self.uint8_resize!r} must be one of {', '.join(UINT8_RESIZES)}")
        smooth = self.interpolation in ("bilinear", "bicubic")
        floats = self.pad == "reflect_sqrt" or (smooth and (not self.antialias or self.align_corners))
        if self.uint8_resize != "none" and floats:
            raise ModelError(
                f"{self.family}: uint8_resize={self.uint8_resize!r} reproduces an antialiased resize of 8-bit "
                "pixels; this processor resizes float pixels (ZoeDepth does), use uint8_resize='none'"
            )

    @classmethod
    def from_processor(
        cls, processor: Any, output_interpolation: str = "bilinear", uint8_resize: str | None = None
    ) -> HFPreprocessing:
        """Read a loaded transformers image processor's (resolved) settings.

        ``uint8_resize=None`` picks the processor's own arithmetic for 8-bit images: ``pil`` for the
        ``...Pil`` classes, ``torchvision`` for the others, ``none`` for ZoeDepth (which resizes floats).
        """
        family = _family(processor)
        if output_interpolation not in ("bilinear", "bicubic"):
            raise ModelError(f"output_interpolation {output_interpolation!r} must be 'bilinear' or 'bicubic'")
        if uint8_resize is None:
            pil = type(processor).__name__.endswith("Pil")
            uint8_resize = "none" if family == "ZoeDepthImageProcessor" else "pil" if pil else "torchvision"
        if getattr(processor, "do_center_crop", None):
            raise ModelError(f"{family} with do_center_crop=True is not supported (the output would be cropped)")
        do_rescale = bool(getattr(processor, "do_rescale", False))
        rescale_factor = float(getattr(processor, "rescale_factor", None) or 1 / 255)
        do_normalize = bool(getattr(processor, "do_normalize", False))
        mean = _triple(processor.image_mean, "image_mean") if do_normalize else None
        std = _triple(processor.image_std, "image_std") if do_normalize else None
        interpolation = _interpolation(getattr(processor, "resample", None), family)
        smooth = interpolation in ("bilinear", "bicubic")
        do_resize = bool(getattr(processor, "do_resize", True))
        do_pad = bool(getattr(processor, "do_pad", False))

        if family == "GLPNImageProcessor":
            multiple = int(getattr(processor, "size_divisor", 32) or 32)
            return cls(
                family=family,
                resize="floor_multiple" if do_resize else "none",
                size=None,
                keep_aspect_ratio=True,
                multiple=multiple,
                interpolation=interpolation,
                antialias=smooth,
                align_corners=False if smooth else None,
                pixel_scale=255.0 * rescale_factor if do_rescale else 255.0,
                mean=mean,
                std=std,
                pad="none",
                pad_multiple=1,
                output_interpolation=output_interpolation,
                uint8_resize=uint8_resize,
            )

        zoe = family == "ZoeDepthImageProcessor"
        pad_multiple = 1
        if do_pad and not zoe:
            pad_multiple = int(getattr(processor, "size_divisor", 0) or 0)
            if pad_multiple < 1:
                raise ModelError(f"{family} has do_pad=True but no size_divisor to pad to")
        return cls(
            family=family,
            resize="target" if do_resize else "none",
            size=_size_pair(processor.size) if do_resize else None,
            keep_aspect_ratio=bool(getattr(processor, "keep_aspect_ratio", False)),
            multiple=float(getattr(processor, "ensure_multiple_of", 1) or 1),
            interpolation=interpolation,
            # ZoeDepth calls torch interpolate with align_corners=True and no antialiasing; DPT uses
            # torchvision's resize (align_corners=False, antialiasing for bilinear/bicubic).
            antialias=smooth and not zoe,
            align_corners=(True if zoe else False) if smooth else None,
            pixel_scale=255.0 * rescale_factor if do_rescale else 255.0,
            mean=mean,
            std=std,
            pad=("reflect_sqrt" if zoe else "center_multiple") if do_pad else "none",
            pad_multiple=pad_multiple,
            output_interpolation=output_interpolation,
            uint8_resize=uint8_resize,
        )

    def settings(self) -> dict[str, Any]:
        """The settings as a plain dict (hashed into the teacher's ``preprocess_id``)."""
        return asdict(self)

    # --- geometry -------------------------------------------------------------------------------
    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """The size the processor resizes a ``height x width`` image (after any reflect padding) to."""
        if self.resize == "none":
            return height, width
        if self.resize == "floor_multiple":
            step = int(self.multiple)
            return max(step, height // step * step), max(step, width // step * step)
        assert self.size is not None
        scale_h, scale_w = self.size[0] / height, self.size[1] / width
        if self.keep_aspect_ratio:
            if abs(1 - scale_w) < abs(1 - scale_h):
                scale_h = scale_w
            else:
                scale_w = scale_h
        return (
            constrain_to_multiple(scale_h * height, self.multiple),
            constrain_to_multiple(scale_w * width, self.multiple),
        )

    @staticmethod
    def reflect_padding(height: int, width: int) -> tuple[int, int]:
        """ZoeDepth's ``(pad_h, pad_w)`` on each side: ``int(sqrt(side / 2) * 3)``."""
        return int(math.sqrt(height / 2) * 3), int(math.sqrt(width / 2) * 3)

    def _center_padding(self, height: int, width: int) -> tuple[int, int, int, int]:
        """DPT's centred padding ``(top, bottom, left, right)`` up to a multiple of ``pad_multiple``."""

        def split(side: int) -> tuple[int, int]:
            total = math.ceil(side / self.pad_multiple) * self.pad_multiple - side
            return total // 2, total - total // 2

        return (*split(height), *split(width))

    # --- apply ----------------------------------------------------------------------------------
    def prepare(self, images: torch.Tensor) -> tuple[torch.Tensor, Layout]:
        """``(B,3,H,W)`` ``[0,1]`` images -> the model's ``pixel_values`` and the output layout.

        Differentiable (plain torch ops), so gradients can flow to the images when needed.
        """
        height, width = (int(s) for s in images.shape[-2:])
        if self.uint8_resize != "none":  # no reflect padding here (ZoeDepth resizes float pixels)
            size = self.resized_size(height, width)
            pixels = self._resize_8bit(images * 255.0, size) * (self.pixel_scale / 255.0)
            return self._normalise_and_pad(pixels, Layout(input_size=(height, width), frame=(height, width)))
        pixels = images * self.pixel_scale
        layout = Layout(input_size=(height, width), frame=(height, width))
        if self.pad == "reflect_sqrt":
            pad_h, pad_w = self.reflect_padding(height, width)
            if pad_h >= height or pad_w >= width:
                raise ModelError(f"image {height}x{width} is too small for ZoeDepth's reflect padding")
            pixels = nn.functional.pad(pixels, (pad_w, pad_w, pad_h, pad_h), mode="reflect")
            layout = Layout((height, width), (height + 2 * pad_h, width + 2 * pad_w), (pad_h, pad_h, pad_w, pad_w))
        size = self.resized_size(*pixels.shape[-2:])
        return self._normalise_and_pad(self._resize_float(pixels, size), layout)

    def _resize_float(self, pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """One float resize: the processor's arithmetic on float pixels."""
        if tuple(pixels.shape[-2:]) == size:
            return pixels
        return nn.functional.interpolate(
            pixels, size=size, mode=self.interpolation, align_corners=self.align_corners, antialias=self.antialias
        )

    def _resize_8bit(self, levels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """``[0, 255]`` float pixels rounded to 8 bits and resized as the processor resizes ``uint8`` images.

        Rounding has no gradient, so where one is needed it is the float resize's (straight-through):
        the values are the processor's, the gradient that of the smooth map the rounding approximates.
        """
        quantised = levels.detach().clamp(0, 255).round().to(torch.int32)
        if tuple(levels.shape[-2:]) != size:
            quantised = resize_uint8(quantised, size, self.interpolation, self.uint8_resize)
        exact = quantised.to(levels.dtype)
        if not (torch.is_grad_enabled() and levels.requires_grad):
            return exact
        smooth = self._resize_float(levels, size)
        return smooth + (exact - smooth).detach()

    def _normalise_and_pad(self, pixels: torch.Tensor, layout: Layout) -> tuple[torch.Tensor, Layout]:
        """Mean/std normalisation and DPT's centre padding of resized pixels."""
        height, width = layout.input_size
        size = (int(pixels.shape[-2]), int(pixels.shape[-1]))
        if self.mean is not None and self.std is not None:
            mean = torch.tensor(self.mean, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
            std = torch.tensor(self.std, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
            pixels = (pixels - mean) / std
        if self.pad == "center_multiple":
            top, bottom, left, right = self._center_padding(*size)
            if top + bottom + left + right:
                pixels = nn.functional.pad(pixels, (left, right, top, bottom), value=0.0)
                frame = (int(pixels.shape[-2]), int(pixels.shape[-1]))
                layout = Layout((height, width), frame, (top, bottom, left, right))
        return pixels, layout

    def restore(self, prediction: torch.Tensor, layout: Layout) -> torch.Tensor:
        """A ``(B,1,h,w)`` model output -> ``(B,1,H,W)`` at the input size, padding removed."""
        mode = self.output_interpolation
        depth = resize_maps(prediction.float(), layout.frame, mode)
        top, bottom, left, right = layout.crop
        depth = depth[..., top : depth.shape[-2] - bottom, left : depth.shape[-1] - right]
        return resize_maps(depth, layout.input_size, mode)
