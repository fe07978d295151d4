"""Teacher-output cache: run a slow teacher once per image, then train from the stored maps.

Each image's teacher map is stored at the image's full resolution, keyed by the item ``name``, the
teacher's ``teacher_id`` and ``preprocess_id``, and the image size. A cache folder holds one teacher:

- ``index.json``: the key (teacher id, preprocessing id, output kind, format) and one entry per name.
- ``npy16`` format (our default): ``teacher_depth.f16``, one flat float16 array read through
  ``numpy.memmap`` (values up to 65504, ~3 significant digits);
- ``png16`` format: ``png/<hash of name>.png``, 16-bit PNGs of ``round(value * scale)`` with a
  per-image scale (``65535 / max`` unless a fixed ``png_scale`` is given); non-negative values only.

Building with another teacher or preprocessing wipes and rebuilds the folder; building again with the
same key computes only missing entries (an interrupted build resumes), so a cache may hold only the items a
run visits and grow when a later run visits more. A finished build can record a *fill key* (``fill_key``):
another process waits for that key rather than counting entries. Geometric augmentation must come
*after* the cache: build from an un-augmented dataset and give the transform to
:class:`CachedTeacherDataset`, which applies it to image, depth and teacher map together.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from depthkd.errors import DataError
from depthkd.io import read_depth, write_depth_png
from depthkd.progress import track

log = logging.getLogger(__name__)

Item = dict[str, Any]
INDEX_FILE = "index.json"
DATA_FILE = "teacher_depth.f16"
PNG_DIR = "png"
FORMATS = ("npy16", "png16")
INDEX_VERSION = 1
FP16_MAX = float(np.finfo(np.float16).max)


class TeacherCache:
    """Read access to a built cache folder: ``cache.get(name)`` -> ``(1,H,W)`` float32.

    Picklable for DataLoader workers: the memory map is reopened lazily in each process.
    """

    def __init__(self, cache_dir: str | Path, index: dict[str, Any]) -> None:
        self.cache_dir = Path(cache_dir)
        self.index = index
        self._memmap: np.memmap | None = None

    @classmethod
    def open(
        cls, cache_dir: str | Path, teacher_id: str | None = None, preprocess_id: str | None = None
    ) -> TeacherCache:
        """Open a cache folder; with ids given, refuse a cache built for another teacher or preprocessing."""
        cache_dir = Path(cache_dir)
        index = read_index(cache_dir)
        if index is None:
            raise DataError(
                f"no teacher cache in {cache_dir} (missing {INDEX_FILE}); build it with build_teacher_cache"
            )
        cache = cls(cache_dir, index)
        if not cache.matches(teacher_id or cache.teacher_id, preprocess_id or cache.preprocess_id):
            raise DataError(
                f"teacher cache {cache_dir} was built for teacher {cache.teacher_id!r} with preprocessing "
                f"{cache.preprocess_id!r}, not {teacher_id!r} / {preprocess_id!r}; rebuild it with build_teacher_cache"
            )
        return cache

    @property
    def teacher_id(self) -> str:
        return self.index["teacher_id"]

    @property
    def preprocess_id(self) -> str:
        return self.index["preprocess_id"]

    @property
    def kind(self) -> str:
        """The teacher's output kind (``metric_depth``, ``relative_depth``, ``relative_disparity``)."""
        return self.index["kind"]

    @property
    def fmt(self) -> str:
        return self.index["format"]

    @property
    def names(self) -> list[str]:
        return list(self.index["entries"])

    def __len__(self) -> int:
        return len(self.index["entries"])

    def __contains__(self, name: object) -> bool:
        return name in self.index["entries"]

    def has_fill(self, key: str) -> bool:
        """Whether a build recorded ``fill_key=key`` (its items are all cached)."""
        return key in self.index.get("fills", [])

    def matches(self, teacher_id: str, preprocess_id: str) -> bool:
        """Whether this cache holds outputs of ``teacher_id`` under ``preprocess_id``."""
        return self.teacher_id == teacher_id and self.preprocess_id == preprocess_id

    def size_of(self, name: str) -> tuple[int, int]:
        """The ``(H, W)`` stored for ``name``."""
        entry = self._entry(name)
        return int(entry["height"]), int(entry["width"])

    def get(self, name: str) -> torch.Tensor:
        """The teacher map of item ``name`` as float32 ``(1,H,W)`` in the unit of :attr:`kind`."""
        entry = self._entry(name)
        height, width = int(entry["height"]), int(entry["width"])
        if self.fmt == "npy16":
            start = int(entry["offset"])
            values = np.asarray(self._data()[start : start + height * width], dtype=np.float32)
            if values.size != height * width:
                raise DataError(f"teacher cache {self.cache_dir / DATA_FILE} is truncated at item {name!r}; rebuild it")
            return torch.from_numpy(values.reshape(1, height, width))
        return read_depth(self.cache_dir / PNG_DIR / entry["file"], scale=float(entry["scale"]))

    def _entry(self, name: str) -> dict[str, Any]:
        try:
            return self.index["entries"][name]
        except KeyError:
            raise DataError(
                f"teacher cache {self.cache_dir} has no map for item {name!r} ({len(self)} cached); "
                "rebuild it for this dataset with build_teacher_cache"
            ) from None

    def _data(self) -> np.memmap:
        if self._memmap is None:
            self._memmap = np.memmap(self.cache_dir / DATA_FILE, dtype=np.float16, mode="r")
        return self._memmap

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_memmap"] = None
        return state


def read_index(cache_dir: Path) -> dict[str, Any] | None:
    """The cache index, or ``None`` when the folder holds none."""
    path = cache_dir / INDEX_FILE
    if not path.is_file():
        return None
    try:
        index = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"cannot read the teacher cache index {path}: {err}; delete the folder to rebuild") from err
    if not isinstance(index, dict) or index.get("version") != INDEX_VERSION:
        raise DataError(f"{path} is not a version {INDEX_VERSION} teacher cache index; delete the folder to rebuild")
    return index


def _write_index(cache_dir: Path, index: dict[str, Any]) -> None:
    """Write the index atomically (a crash never leaves a half-written index)."""
    temporary = cache_dir / f"{INDEX_FILE}.tmp"
    temporary.write_text(json.dumps(index, indent=1))
    os.replace(temporary, cache_dir / INDEX_FILE)


class _Writer:
    """Appends teacher maps to a cache folder and records them in its index."""

    def __init__(self, cache_dir: Path, index: dict[str, Any], png_scale: float | None) -> None:
        self.cache_dir = cache_dir
        self.index = index
        self.png_scale = png_scale
        self.data = None
        if index["format"] == "npy16":
            self.data = open(cache_dir / DATA_FILE, "ab")  # noqa: SIM115 - closed in close()
        else:
            (cache_dir / PNG_DIR).mkdir(exist_ok=True)

    def add(self, name: str, depth: torch.Tensor) -> None:
        values = depth.detach().float().cpu().numpy()[0]
        height, width = values.shape
        if not np.isfinite(values).all():
            raise DataError(f"teacher map of item {name!r} has non-finite values; cannot cache it")
        entry: dict[str, Any] = {"height": height, "width": width}
        if self.data is not None:
            peak = float(np.abs(values).max(initial=0.0))
            if peak > FP16_MAX:
                raise DataError(
                    f"teacher map of item {name!r} reaches {peak:g}, beyond float16's {FP16_MAX:g}; use fmt='png16'"
                )
            self.data.seek(0, os.SEEK_END)
            entry["offset"] = self.data.tell() // 2
            self.data.write(values.astype(np.float16).tobytes())
        else:
            if values.min(initial=0.0) < 0:
                raise DataError(f"teacher map of item {name!r} has negative values; png16 stores >= 0, use fmt='npy16'")
            peak = float(values.max(initial=0.0))
            scale = self.png_scale or (65535.0 / peak if peak > 0 else 1.0)
            file = hashlib.sha1(name.encode("utf-8")).hexdigest()[:20] + ".png"
            write_depth_png(self.cache_dir / PNG_DIR / file, values, scale=scale)
            entry.update(file=file, scale=scale)
        self.index["entries"][name] = entry

    def close(self) -> None:
        if self.data is not None:
            self.data.flush()
            os.fsync(self.data.fileno())
            self.data.close()
        _write_index(self.cache_dir, self.index)


def _item_list(items: list[Item]) -> list[Item]:
    """DataLoader collate that keeps items as they are (images of several sizes may share a batch)."""
    return items


def build_teacher_cache(
    teacher: Any,
    dataset: Dataset,
    cache_dir: str | Path,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    fmt: str = "npy16",
    num_workers: int = 0,
    png_scale: float | None = None,
    description: str = "caching teacher outputs",
    fill_key: str | None = None,
) -> TeacherCache:
    """Run ``teacher`` over ``dataset`` once and store its depth per item name.

    Args:
        teacher: a :class:`~depthkd.models.teachers.Teacher` (``teacher_id``, ``preprocess_id``, ``kind``,
            ``teacher(images, names=...)``).
        dataset: items with ``image`` (3,H,W) and ``name``; **un-augmented** (geometric augmentation is
            applied at load time by :class:`CachedTeacherDataset`). Images may differ in size.
        cache_dir: the folder (created if needed) for this teacher's cache.
        batch_size: images per teacher call (same-size images are batched together).
        device: where the teacher runs (it is moved there) and the images are sent.
        fmt: ``npy16`` (float16 memory map, our default) or ``png16`` (16-bit PNG per image).
        png_scale: fixed PNG scale (e.g. 256 for metric KITTI depth); ``None`` scales each image to its max.
        description: the progress line's text.
        fill_key: recorded in the index once every item of ``dataset`` is cached (see :meth:`TeacherCache.has_fill`).

    Returns:
        The opened :class:`TeacherCache`.
    """
    if fmt not in FORMATS:
        raise DataError(f"cache format {fmt!r} is not one of {', '.join(FORMATS)}")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = {
        "teacher_id": teacher.teacher_id,
        "preprocess_id": teacher.preprocess_id,
        "kind": teacher.kind,
        "format": fmt,
    }
    index = read_index(cache_dir)
    if index is not None and any(index.get(k) != v for k, v in key.items()):
        log.info("teacher cache %s held %s; rebuilding for %s", cache_dir, index.get("teacher_id"), key["teacher_id"])
        _clear(cache_dir)
        index = None
    if index is None:
        index = {"version": INDEX_VERSION, **key, "entries": {}}

    if isinstance(teacher, torch.nn.Module):
        teacher.to(device)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=_item_list)
    writer = _Writer(cache_dir, index, png_scale)
    seen: set[str] = set()
    computed = 0
    try:
        for items in track(loader, description):
            pending = [item for item in items if _needs_map(item, index["entries"], seen)]
            for group in _same_size_groups(pending):
                images = torch.stack([item["image"] for item in group]).to(device)
                names = [item["name"] for item in group]
                output = teacher(images, names=names)
                for name, depth in zip(names, output.depth):
                    writer.add(name, depth)
                computed += len(group)
        if fill_key is not None and fill_key not in index.setdefault("fills", []):
            index["fills"].append(fill_key)
    finally:
        writer.close()
    log.info("teacher cache %s: %d maps computed, %d reused", cache_dir, computed, len(seen) - computed)
    return TeacherCache(cache_dir, index)


def _needs_map(item: Item, entries: dict[str, Any], seen: set[str]) -> bool:
    """Whether ``item`` still needs a teacher map (checks its name and refuses duplicates)."""
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise DataError(f"dataset item from {item.get('path', '?')} has no 'name'; the cache keys maps by name")
    if name in seen:
        raise DataError(f"two dataset items share the name {name!r}; cache keys must be unique")
    seen.add(name)
    entry = entries.get(name)
    height, width = item["image"].shape[-2:]
    return entry is None or (entry["height"], entry["width"]) != (height, width)


def _same_size_groups(items: Sequence[Item]) -> list[list[Item]]:
    """Items grouped by image size, in first-seen order."""
    groups: dict[tuple[int, ...], list[Item]] = {}
    for item in items:
        groups.setdefault(tuple(item["image"].shape), []).append(item)
    return list(groups.values())


def _clear(cache_dir: Path) -> None:
    """Remove a cache's files (only the ones a cache writes)."""
    for name in (INDEX_FILE, DATA_FILE):
        (cache_dir / name).unlink(missing_ok=True)
    shutil.rmtree(cache_dir / PNG_DIR, ignore_errors=True)


class CachedTeacherDataset(Dataset):
    """A dataset's items plus their cached teacher map, then the (joint) transform.

    Each item gets ``teacher`` (1,H,W) float32 and ``teacher_kind``; ``transform`` then sees image,
    depth and teacher map together, so crops, flips and rotations move all of them identically.
    """

    def __init__(self, dataset: Dataset, cache: TeacherCache, transform: Callable[[Item], Item] | None = None) -> None:
        self.dataset = dataset
        self.cache = cache
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Item:
        item = dict(self.dataset[index])
        name = item.get("name")
        teacher = self.cache.get(name)  # type: ignore[arg-type]
        if teacher.shape[-2:] != item["image"].shape[-2:]:
            raise DataError(
                f"cached teacher map of {name!r} is {tuple(teacher.shape[-2:])} but the image is "
                f"{tuple(item['image'].shape[-2:])}: build the cache from the same, un-augmented dataset"
            )
        item["teacher"] = teacher
        item["teacher_kind"] = self.cache.kind
        return self.transform(item) if self.transform is not None else item
