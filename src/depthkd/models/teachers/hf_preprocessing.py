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

Where this can differ from the processor by tiny amounts: transformers resizes the ``uint8`` pixels of a
PIL image (rounding the resized values to integers) while depthkd resizes float images, so model inputs
may differ by up to half a grey level (~0.002 in ``[0,1]``); given the same float pixels the two agree to
float rounding. ``resample=LANCZOS`` falls back to bicubic (torch has no Lanczos kernel), as transformers
itself does on GPU. The pipeline resizes the output with bicubic interpolation; depthkd uses bilinear by
default (no overshoot, so positive depth stays positive) and bicubic on request. DPT's optional centre
padding is cut off the output (the pipeline leaves it in and resizes the padded map).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from depthkd.errors import ModelError
from depthkd.models.teachers.base import resize_maps

log = logging.getLogger(__name__)

# PIL resampling ids (PIL.Image.Resampling) -> torch interpolate modes.
_RESAMPLE_MODES = {0: "nearest-exact", 1: "bicubic", 2: "bilinear", 3: "bicubic"}
_LANCZOS = 1
FAMILIES = ("DPTImageProcessor", "ZoeDepthImageProcessor", "GLPNImageProcessor")


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

    @classmethod
    def from_processor(cls, processor: Any, output_interpolation: str = "bilinear") -> HFPreprocessing:
        """Read a loaded transformers image processor's (resolved) settings."""
        family = _family(processor)
        if output_interpolation not in ("bilinear", "bicubic"):
            raise ModelError(f"output_interpolation {output_interpolation!r} must be 'bilinear' or 'bicubic'")
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
        pixels = images * self.pixel_scale
        layout = Layout(input_size=(height, width), frame=(height, width))
        if self.pad == "reflect_sqrt":
            pad_h, pad_w = self.reflect_padding(height, width)
            if pad_h >= height or pad_w >= width:
                raise ModelError(f"image {height}x{width} is too small for ZoeDepth's reflect padding")
            pixels = nn.functional.pad(pixels, (pad_w, pad_w, pad_h, pad_h), mode="reflect")
            layout = Layout((height, width), (height + 2 * pad_h, width + 2 * pad_w), (pad_h, pad_h, pad_w, pad_w))
        size = self.resized_size(*pixels.shape[-2:])
        if tuple(pixels.shape[-2:]) != size:
            pixels = nn.functional.interpolate(
                pixels, size=size, mode=self.interpolation, align_corners=self.align_corners, antialias=self.antialias
            )
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
