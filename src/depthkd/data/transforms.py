"""Joint augmentation on item dicts: geometry moves the image and every dense map together.

A *dense map* is any tensor in the item, other than ``image``, whose last two dimensions equal the
image's height and width: ``depth``, ``instances``, a cached teacher map under ``teacher``, masks.
Geometric transforms apply the same crop/flip/rotation/resize to all of them; the image is
interpolated bilinearly, dense maps with nearest neighbour so that a valid depth is never blended with
a ``0`` hole (and rotation fills uncovered pixels with ``0`` = invalid). Photometric transforms touch
only the image.

Randomness comes from the ``generator`` given at construction, or the global torch RNG when it is
``None``. Leave it ``None`` inside a DataLoader with workers: a generator object is copied into each
worker with the same state, so every worker would draw the same augmentations, whereas the global RNG
is seeded per worker by the DataLoader. Pass a generator for reproducible single-process use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from numbers import Number
from typing import Any

import torch
import torchvision.transforms.v2.functional as TF
from torch.utils.data import default_collate
from torchvision.transforms import InterpolationMode

from depthkd.errors import ConfigError, DataError

Item = dict[str, Any]
Size = int | tuple[int, int]
Range = float | tuple[float, float]


def as_size(size: Size) -> tuple[int, int]:
    """``(H, W)`` from an int (square) or a pair."""
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if height <= 0 or width <= 0:
        raise ConfigError(f"size {size!r} must be positive (H, W)")
    return int(height), int(width)


def dense_keys(item: Item) -> list[str]:
    """Keys of the tensors (besides ``image``) that share the image's height and width."""
    if "image" not in item:
        raise DataError(f"item {item.get('name', '?')!r} has no 'image'; joint transforms need one")
    size = item["image"].shape[-2:]
    return [
        key
        for key, value in item.items()
        if key != "image" and isinstance(value, torch.Tensor) and value.ndim >= 2 and value.shape[-2:] == size
    ]


def apply_geometric(
    item: Item,
    on_image: Callable[[torch.Tensor], torch.Tensor],
    on_dense: Callable[[torch.Tensor], torch.Tensor],
) -> Item:
    """A copy of ``item`` with ``on_image`` applied to the image and ``on_dense`` to every dense map."""
    out = dict(item)
    for key in dense_keys(item):
        out[key] = _on_map(on_dense, item[key])
    out["image"] = on_image(item["image"])
    return out


def _on_map(fn: Callable[[torch.Tensor], torch.Tensor], tensor: torch.Tensor) -> torch.Tensor:
    """Run ``fn`` on a dense map of any shape ``(..., H, W)`` and dtype, returning the same shape and dtype.

    torchvision's geometry wants ``(..., C, H, W)`` and does not resample bool tensors, so ``(H, W)``
    maps get a channel and masks go through uint8.
    """
    flat = tensor.unsqueeze(0) if tensor.ndim == 2 else tensor
    if flat.dtype == torch.bool:
        result = fn(flat.to(torch.uint8)).bool()
    else:
        result = fn(flat)
    return result.squeeze(0) if tensor.ndim == 2 else result


class RandomTransform:
    """Base for transforms that draw random numbers from an optional generator."""

    def __init__(self, generator: torch.Generator | None = None) -> None:
        self.generator = generator

    def uniform(self, low: float, high: float) -> float:
        """A float uniform in ``[low, high]``."""
        return low + (high - low) * float(torch.rand((), generator=self.generator))

    def randint(self, high: int) -> int:
        """An int uniform in ``[0, high)``."""
        return int(torch.randint(high, (), generator=self.generator))


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Callable[[Item], Item]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, item: Item) -> Item:
        for transform in self.transforms:
            item = transform(item)
        return item

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"


def _crop(item: Item, top: int, left: int, height: int, width: int) -> Item:
    def crop(t: torch.Tensor) -> torch.Tensor:
        return t[..., top : top + height, left : left + width]

    return apply_geometric(item, crop, crop)


def _check_fits(item: Item, height: int, width: int, what: str) -> tuple[int, int]:
    image_h, image_w = item["image"].shape[-2:]
    if height > image_h or width > image_w:
        raise ConfigError(
            f"{what} size {height}x{width} is larger than the image {image_h}x{image_w} of "
            f"{item.get('name', item.get('path', '?'))!r}; choose a smaller crop or Resize first"
        )
    return image_h, image_w


class RandomCrop(RandomTransform):
    """Crop a random ``size`` window (same window for image and dense maps)."""

    def __init__(self, size: Size, generator: torch.Generator | None = None) -> None:
        super().__init__(generator)
        self.size = as_size(size)

    def __call__(self, item: Item) -> Item:
        height, width = self.size
        image_h, image_w = _check_fits(item, height, width, "crop")
        top = self.randint(image_h - height + 1)
        left = self.randint(image_w - width + 1)
        return _crop(item, top, left, height, width)

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size})"


class CenterCrop:
    """Crop the central ``size`` window (top/left rounded down)."""

    def __init__(self, size: Size) -> None:
        self.size = as_size(size)

    def __call__(self, item: Item) -> Item:
        height, width = self.size
        image_h, image_w = _check_fits(item, height, width, "crop")
        return _crop(item, (image_h - height) // 2, (image_w - width) // 2, height, width)

    def __repr__(self) -> str:
        return f"CenterCrop(size={self.size})"


class RandomHorizontalFlip(RandomTransform):
    """Mirror left-right with probability ``p``."""

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None) -> None:
        super().__init__(generator)
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"flip probability {p} must be in [0, 1]")
        self.p = p

    def __call__(self, item: Item) -> Item:
        if self.uniform(0.0, 1.0) >= self.p:
            return item
        return apply_geometric(item, TF.horizontal_flip, TF.horizontal_flip)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class RandomRotation(RandomTransform):
    """Rotate about the centre by an angle uniform in ``[-degrees, degrees]`` (or a given range).

    The image is resampled bilinearly with black fill; dense maps with nearest neighbour and fill ``0``
    (no ground truth where the rotated frame leaves the original).
    """

    def __init__(self, degrees: Range, generator: torch.Generator | None = None) -> None:
        super().__init__(generator)
        low, high = (-abs(degrees), abs(degrees)) if isinstance(degrees, Number) else degrees
        if low > high:
            raise ConfigError(f"rotation range {degrees!r} must be (low, high) with low <= high")
        self.degrees = (float(low), float(high))

    def __call__(self, item: Item) -> Item:
        angle = self.uniform(*self.degrees)
        return self.rotate(item, angle)

    @staticmethod
    def rotate(item: Item, angle: float) -> Item:
        """Rotate ``item`` counter-clockwise by ``angle`` degrees."""
        return apply_geometric(
            item,
            lambda t: TF.rotate(t, angle, interpolation=InterpolationMode.BILINEAR, fill=0.0),
            lambda t: TF.rotate(t, angle, interpolation=InterpolationMode.NEAREST, fill=0.0),
        )

    def __repr__(self) -> str:
        return f"RandomRotation(degrees={self.degrees})"


class Resize:
    """Resize to ``size`` (H, W): image bilinear with antialiasing, dense maps nearest.

    Depth values stay metres (resampling does not change distances); ``focal`` is rescaled with the
    width because it is measured in pixels.
    """

    def __init__(self, size: Size) -> None:
        self.size = as_size(size)

    def __call__(self, item: Item) -> Item:
        old_width = item["image"].shape[-1]
        out = apply_geometric(
            item,
            lambda t: TF.resize(t, list(self.size), interpolation=InterpolationMode.BILINEAR, antialias=True),
            lambda t: TF.resize(t, list(self.size), interpolation=InterpolationMode.NEAREST_EXACT),
        )
        if "focal" in out:
            out["focal"] = float(out["focal"]) * self.size[1] / old_width
        return out

    def __repr__(self) -> str:
        return f"Resize(size={self.size})"


def _factor_range(value: Range, name: str, centre: float = 1.0) -> tuple[float, float]:
    """``x`` -> ``(max(0, centre - x), centre + x)``; a pair is taken as the range itself."""
    if isinstance(value, Number):
        if value < 0:
            raise ConfigError(f"{name} jitter {value} must be >= 0")
        low, high = centre - float(value), centre + float(value)
        return (max(0.0, low) if centre == 1.0 else low), high
    low, high = (float(v) for v in value)
    if low > high:
        raise ConfigError(f"{name} range {value!r} must be (low, high) with low <= high")
    return low, high


class ColorJitter(RandomTransform):
    """Random brightness, contrast, saturation, hue and gamma, on the image only.

    Each of ``brightness``, ``contrast``, ``saturation``, ``gamma`` is a jitter ``x`` (factor drawn from
    ``[1-x, 1+x]``) or an explicit ``(low, high)`` factor range; ``hue`` is a shift in ``[-x, x]``
    (``x <= 0.5``). They are applied in that fixed order (our choice, so one seed gives one result) and
    the image is clamped to ``[0, 1]``.
    """

    def __init__(
        self,
        brightness: Range = 0.0,
        contrast: Range = 0.0,
        saturation: Range = 0.0,
        hue: Range = 0.0,
        gamma: Range = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(generator)
        self.brightness = _factor_range(brightness, "brightness")
        self.contrast = _factor_range(contrast, "contrast")
        self.saturation = _factor_range(saturation, "saturation")
        self.hue = _factor_range(hue, "hue", centre=0.0)
        self.gamma = _factor_range(gamma, "gamma")
        if not -0.5 <= self.hue[0] <= self.hue[1] <= 0.5:
            raise ConfigError(f"hue range {self.hue} must lie within [-0.5, 0.5]")

    def __call__(self, item: Item) -> Item:
        image = item["image"]
        steps = (
            (self.brightness, 1.0, TF.adjust_brightness),
            (self.contrast, 1.0, TF.adjust_contrast),
            (self.saturation, 1.0, TF.adjust_saturation),
            (self.hue, 0.0, TF.adjust_hue),
            (self.gamma, 1.0, TF.adjust_gamma),
        )
        for (low, high), identity, adjust in steps:
            if low == high == identity:
                continue
            image = adjust(image, self.uniform(low, high))
        out = dict(item)
        out["image"] = image.clamp(0.0, 1.0)
        return out

    def __repr__(self) -> str:
        return (
            f"ColorJitter(brightness={self.brightness}, contrast={self.contrast}, "
            f"saturation={self.saturation}, hue={self.hue}, gamma={self.gamma})"
        )


def default_train_transform(
    size: Size,
    rotation: float = 2.5,
    flip_p: float = 0.5,
    brightness: Range = 0.1,
    contrast: Range = 0.1,
    saturation: Range = 0.1,
    hue: Range = 0.0,
    gamma: Range = 0.1,
    generator: torch.Generator | None = None,
) -> Compose:
    """The recipes' training augmentation: rotation, random crop to ``size``, flip, colour jitter.

    Rotation comes before the crop so most of its black corners are cropped away. ``rotation`` 2.5°
    is the NYU value of the common recipes (KITTI recipes use 1.0); the jitter ranges are our defaults
    (gamma and brightness close to the common 0.9..1.1). Set any of them to 0 to disable it.
    """
    steps: list[Callable[[Item], Item]] = []
    if rotation:
        steps.append(RandomRotation(rotation, generator=generator))
    steps.append(RandomCrop(size, generator=generator))
    if flip_p:
        steps.append(RandomHorizontalFlip(flip_p, generator=generator))
    steps.append(ColorJitter(brightness, contrast, saturation, hue, gamma, generator=generator))
    return Compose(steps)


def collate(items: Sequence[Item]) -> dict[str, Any]:
    """Batch item dicts: tensors stacked, numbers and tuples as tensors, strings (and others) as lists.

    Items of one batch must have the same keys and tensor shapes; the error names the key and items.
    """
    if not items:
        raise DataError("cannot collate an empty batch")
    keys = list(items[0].keys())
    names = [item.get("name", "?") for item in items]
    for item, name in zip(items, names):
        if set(item.keys()) != set(keys):
            differ = sorted(set(item.keys()) ^ set(keys))
            raise DataError(
                f"items {names[0]!r} and {name!r} differ in keys {differ}; a batch needs the same keys"
            )
    batch: dict[str, Any] = {}
    for key in keys:
        values = [item[key] for item in items]
        first = values[0]
        if isinstance(first, torch.Tensor):
            shapes = {tuple(v.shape) for v in values}
            if len(shapes) > 1:
                raise DataError(
                    f"cannot batch {key!r} of different shapes {sorted(shapes)} (items {names}); "
                    "crop or resize to one size, or use batch size 1"
                )
            batch[key] = default_collate(values)  # stacks straight into shared memory in a worker
        elif isinstance(first, bool) or not isinstance(first, (Number, tuple)):
            batch[key] = values
        else:
            batch[key] = torch.tensor(values)
    return batch
