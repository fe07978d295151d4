"""Generic input preparation for black-box teachers (ONNX, TorchScript): resize and normalise.

Hugging Face teachers read their own processor settings (see :mod:`.hf_preprocessing`); files that
carry no such settings declare them in a sidecar JSON or as keyword arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from depthkd.errors import ModelError

INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "area")


def nearest_multiple(value: float, multiple: int) -> int:
    """``value`` rounded to the nearest multiple of ``multiple``, at least one ``multiple``."""
    return max(multiple, int(round(value / multiple)) * multiple)


@dataclass(frozen=True)
class ImagePreprocessing:
    """How images in ``[0,1]`` become a black-box model's input.

    Attributes:
        mean, std: per-channel normalisation ``(x - mean) / std`` on ``[0,1]`` images; the defaults
            (0 and 1) leave images as they are (our default: no normalisation unless declared).
        size: fixed model input ``(H, W)``, or ``None`` to keep the image size.
        size_multiple: with ``size=None``, resize each side to its nearest multiple of this (1 = never).
        interpolation: resize mode (``bilinear`` our default, ``bicubic``, ``nearest``, ``area``); the
            output is resized back with bilinear interpolation.
        antialias: antialias when downsizing (bilinear/bicubic only; our default ``True``, like PIL).
    """

    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    size: tuple[int, int] | None = None
    size_multiple: int = 1
    interpolation: str = "bilinear"
    antialias: bool = True

    def __post_init__(self) -> None:
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise ModelError(f"mean {self.mean} and std {self.std} must be 3 values each, std > 0")
        if self.size is not None and (len(self.size) != 2 or min(self.size) <= 0):
            raise ModelError(f"input size {self.size} must be [H, W] with positive sides (or null)")
        if int(self.size_multiple) < 1:
            raise ModelError(f"size_multiple {self.size_multiple} must be a positive integer")
        if self.interpolation not in INTERPOLATIONS:
            raise ModelError(f"interpolation {self.interpolation!r} is not one of {', '.join(INTERPOLATIONS)}")

    @classmethod
    def from_options(
        cls,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        size: Sequence[int] | None = None,
        size_multiple: int | None = None,
        interpolation: str | None = None,
        antialias: bool | None = None,
    ) -> ImagePreprocessing:
        """Build from optional (JSON-style) values; ``None`` keeps each default."""
        values: dict = {}
        if mean is not None:
            values["mean"] = tuple(float(v) for v in mean)
        if std is not None:
            values["std"] = tuple(float(v) for v in std)
        if size is not None:
            values["size"] = (int(size[0]), int(size[1]))
        if size_multiple is not None:
            values["size_multiple"] = int(size_multiple)
        if interpolation is not None:
            values["interpolation"] = interpolation
        if antialias is not None:
            values["antialias"] = bool(antialias)
        return cls(**values)

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """The model input ``(H, W)`` for an image of ``height x width``."""
        if self.size is not None:
            return int(self.size[0]), int(self.size[1])
        if self.size_multiple > 1:
            return nearest_multiple(height, self.size_multiple), nearest_multiple(width, self.size_multiple)
        return height, width

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """``(B,3,H,W)`` in ``[0,1]`` -> the model input (resized, normalised), same dtype."""
        size = self.input_size(*images.shape[-2:])
        if tuple(images.shape[-2:]) != size:
            smooth = self.interpolation in ("bilinear", "bicubic")
            images = nn.functional.interpolate(
                images,
                size=size,
                mode=self.interpolation,
                align_corners=False if smooth else None,
                antialias=self.antialias and smooth,
            )
        if self.mean != (0.0, 0.0, 0.0) or self.std != (1.0, 1.0, 1.0):
            mean = torch.tensor(self.mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
            std = torch.tensor(self.std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
            images = (images - mean) / std
        return images

    def settings(self) -> dict:
        """The settings as a plain dict (what :func:`~.base.settings_hash` keys the cache on)."""
        return asdict(self)


def is_finite_size(value: object) -> bool:
    """Whether an ONNX/TorchScript dimension is a fixed positive integer (not symbolic)."""
    return isinstance(value, int) and value > 0
