"""Datasets whose items carry instance masks, for object-wise mixing (data-free distillation).

- :class:`InstanceFolder`: a user's folder of (simulated) images with a parallel folder of 16-bit
  instance PNGs (``depthkd simulate`` writes ``rgb/``, ``instances/`` and ``depth/`` this way), and
  optionally depth maps, which only order pasted objects (nearest wins), never supervise.
- :class:`MultiDomainSim`: several simulator domains interleaved into one dataset (the data-free
  recipe draws from both out-of-distribution domains, ``depthkd.sim.OOD_DOMAINS``).

Items are ``dict(image (3,H,W), instances (1,H,W) int64, [depth (1,H,W)], path, name)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from depthkd.data.folders import DEPTH_EXTENSIONS, ImageFolder
from depthkd.data.listfile import describe_missing
from depthkd.errors import ConfigError, DataError
from depthkd.io import PathLike, read_depth, read_label_png

logger = logging.getLogger(__name__)

Item = dict[str, Any]
Transform = Callable[[Item], Item]


def _first_existing(folder: Path, name: str, extensions: Sequence[str]) -> Path:
    candidates = [folder / f"{name}{ext}" for ext in extensions]
    return next((path for path in candidates if path.is_file()), candidates[0])


class InstanceFolder(ImageFolder):
    """Images below ``images`` paired by name with ``masks/<name>.png`` (and ``depth/<name>.png|.npy``).

    Names are image paths relative to ``images`` without the extension (as in ``ImageFolder``), so
    ``images/a/b.jpg`` pairs with ``masks/a/b.png``. Instance id 0 means "no object" (floor, walls,
    sky): it is never pasted. Missing masks (or depth maps) raise one :class:`DataError` listing them,
    unless ``allow_missing`` skips those images (their count is in :attr:`num_missing`).

    Args:
        images: folder of RGB images (searched recursively).
        masks: folder of 8- or 16-bit instance-id PNGs.
        depth: optional folder of depth maps (16-bit PNG / ``depth_scale``, or ``.npy`` metres).
        depth_scale: PNG value per metre (1000 = millimetres, ``depthkd simulate``'s default).
        transform: joint transform (instances and depth follow the image's geometry).
        allow_missing: skip images without a mask (or depth map) instead of stopping.
    """

    def __init__(
        self,
        images: PathLike,
        masks: PathLike,
        depth: PathLike | None = None,
        depth_scale: float = 1000.0,
        transform: Transform | None = None,
        allow_missing: bool = False,
    ) -> None:
        super().__init__(images, transform=transform)
        self.masks_root = Path(masks)
        self.depth_root = Path(depth) if depth is not None else None
        self.depth_scale = float(depth_scale)
        for folder, what in ((self.masks_root, "instance mask"), (self.depth_root, "depth")):
            if folder is not None and not folder.is_dir():
                raise DataError(f"{what} folder not found: {folder} (paired with images in {self.root})")
        kept, missing = [], []
        for pair in self.pairs:
            needed = [self.mask_path(pair.name)] + ([self.depth_path(pair.name)] if self.depth_root else [])
            absent = [path for path in needed if not path.is_file()]
            missing.extend(absent)
            if not absent:
                kept.append(pair)
        self.source = f"instance folder {self.root} + {self.masks_root}"
        if missing and not allow_missing:
            raise DataError(describe_missing(missing, self.source))
        if missing:
            logger.warning("%s: skipped %d image(s) without mask or depth", self.source, len(self.pairs) - len(kept))
        self.num_missing = len(self.pairs) - len(kept)
        self.missing = missing
        self.pairs = kept
        if not self.pairs:
            raise DataError(f"{self.source}: no image has its instance mask")

    def mask_path(self, name: str) -> Path:
        """The instance PNG of item ``name``."""
        return self.masks_root / f"{name}.png"

    def depth_path(self, name: str) -> Path:
        """The depth map of item ``name`` (``.png`` preferred over ``.npy``)."""
        assert self.depth_root is not None
        return _first_existing(self.depth_root, name, DEPTH_EXTENSIONS)

    def prepare(self, item: Item) -> Item:
        """Attach the instance map (and depth) to the image, checking that the sizes agree."""
        name = item["name"]
        size = tuple(item["image"].shape[-2:])
        mask_file = self.mask_path(name)
        instances = read_label_png(mask_file).unsqueeze(0)
        if tuple(instances.shape[-2:]) != size:
            raise DataError(
                f"instance mask {mask_file} is {instances.shape[-2]}x{instances.shape[-1]} (HxW) but image "
                f"{item['path']} is {size[0]}x{size[1]}; expected the same size"
            )
        item["instances"] = instances
        if self.depth_root is not None:
            depth_file = self.depth_path(name)
            depth = read_depth(depth_file, scale=self.depth_scale)
            if tuple(depth.shape[-2:]) != size:
                raise DataError(
                    f"depth map {depth_file} is {depth.shape[-2]}x{depth.shape[-1]} (HxW) but image "
                    f"{item['path']} is {size[0]}x{size[1]}; expected the same size"
                )
            item["depth"] = depth
        return item


class MultiDomainSim(Dataset):
    """Simulator domains interleaved: item ``i`` is item ``i // D`` of domain ``domains[i % D]``.

    Each domain is an independent :class:`depthkd.sim.SimDataset` with the same seed and size, so
    ``length`` items hold ``length / D`` images of each domain (the first ones get one more when
    ``length`` is not a multiple of ``D``). ``batch_render`` defaults to 1 because training samplers
    read items in random order, where larger render chunks are wasted work.
    """

    def __init__(
        self,
        domains: Sequence[str] | None = None,
        length: int = 1000,
        size: tuple[int, int] = (240, 320),
        seed: int = 0,
        transform: Transform | None = None,
        batch_render: int = 1,
        device: str = "cpu",
        gt: str = "dense",
    ) -> None:
        from depthkd.sim import OOD_DOMAINS, SimDataset

        self.domains = tuple(domains) if domains is not None else tuple(OOD_DOMAINS)
        if not self.domains:
            raise ConfigError("MultiDomainSim needs at least one domain")
        if int(length) < 1:
            raise ConfigError(f"MultiDomainSim length must be >= 1, got {length}")
        self.length = int(length)
        count = len(self.domains)
        self.parts = [
            SimDataset(
                domain,
                length=max(1, (self.length - d + count - 1) // count),
                size=size,
                seed=seed,
                transform=transform,
                batch_render=batch_render,
                device=device,
                gt=gt,
            )
            for d, domain in enumerate(self.domains)
        ]

    def __len__(self) -> int:
        return self.length

    def _check(self, index: int) -> int:
        from depthkd.sim.dataset import checked_index

        return checked_index(index, self.length, "MultiDomainSim")

    def __getitem__(self, index: int) -> Item:
        index = self._check(index)
        part, offset = index % len(self.domains), index // len(self.domains)
        return self.parts[part][offset]

    def prefetch(self, indices: Sequence[int]) -> None:
        """Render each domain's share of ``indices`` in one pass (see :meth:`SimDataset.prefetch`)."""
        count = len(self.domains)
        indices = [self._check(i) for i in indices]
        for part, dataset in enumerate(self.parts):
            dataset.prefetch([i // count for i in indices if i % count == part])

    def __repr__(self) -> str:
        return f"MultiDomainSim({'+'.join(self.domains)}, {self.length} items)"


__all__ = ["InstanceFolder", "MultiDomainSim"]
