"""Datasets defined by a list of (image, depth) file pairs, and the text list format that names them.

The depth codebases (BTS, AdaBins, NeWCRFs, ...) describe a split as a text file with one pair per
line: ``<rgb path> <depth path or None> <focal>``. Paths are relative to a data root (images) and a
ground-truth root (depth maps); train lists often start paths with ``/`` while still meaning "relative
to the root", so a leading slash is ignored. :class:`FilePairDataset` is the common reader behind the
list datasets and the folder datasets: it checks every file up front, so a split that names absent
files fails at construction with the full count instead of halfway through an evaluation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from torch.utils.data import Dataset

from depthkd.errors import DataError
from depthkd.io import PathLike, read_depth, read_rgb

logger = logging.getLogger(__name__)

Item = dict[str, Any]
Transform = Callable[[Item], Item]

#: How many missing paths an error message quotes before "...".
MISSING_SHOWN = 5


@dataclass(frozen=True)
class ListEntry:
    """One parsed line of a list file; ``depth`` is ``None`` for lines without ground truth."""

    line_number: int
    rgb: str
    depth: str | None
    focal: float | None


@dataclass(frozen=True)
class FilePair:
    """An image file, its depth file (``None`` for unlabeled data), a stable name and the focal length."""

    rgb: Path
    depth: Path | None
    name: str
    focal: float | None = None


def read_list_file(path: PathLike) -> list[ListEntry]:
    """Parse a ``<rgb> <depth or None> [focal]`` list file; blank lines and ``#`` comments are ignored."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"list file not found: {path}")
    entries: list[ListEntry] = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) not in (2, 3):
            raise DataError(
                f"{path}:{number}: expected '<rgb path> <depth path or None> [focal]', got {raw!r}"
            )
        focal = None
        if len(fields) == 3:
            try:
                focal = float(fields[2])
            except ValueError as exc:
                raise DataError(f"{path}:{number}: focal length {fields[2]!r} is not a number") from exc
        depth = None if fields[1] == "None" else fields[1]
        entries.append(ListEntry(number, fields[0], depth, focal))
    return entries


def resolve_listed_path(root: Path, listed: str) -> Path:
    """``root / listed`` with a leading ``/`` ignored (the train lists' convention).

    A genuinely absolute path that exists and is not found under ``root`` is used as is, so lists
    written with absolute paths also work.
    """
    relative = listed.lstrip("/")
    joined = root / relative
    if not joined.exists() and Path(listed).is_absolute() and Path(listed).exists():
        return Path(listed)
    return joined


def name_from_path(relative: str) -> str:
    """Stable item name: the path relative to its root, POSIX separators, without the extension."""
    pure = PurePosixPath(relative.replace("\\", "/").lstrip("/"))
    return str(pure.with_suffix(""))


def describe_missing(missing: Sequence[Path], source: str) -> str:
    """One message: how many files are missing and the first few of them."""
    shown = ", ".join(str(p) for p in missing[:MISSING_SHOWN])
    more = f", ... ({len(missing) - MISSING_SHOWN} more)" if len(missing) > MISSING_SHOWN else ""
    return (
        f"{source} names {len(missing)} file(s) that do not exist: {shown}{more}; "
        "check the data roots, or pass allow_missing=True to skip them"
    )


def check_same_size(image: torch.Tensor, depth: torch.Tensor, rgb_path: Path, depth_path: Path) -> None:
    """Raise :class:`DataError` naming both files and both sizes when they disagree."""
    if image.shape[-2:] != depth.shape[-2:]:
        ih, iw = image.shape[-2:]
        dh, dw = depth.shape[-2:]
        raise DataError(
            f"image {rgb_path} is {ih}x{iw} (HxW) but its depth map {depth_path} is {dh}x{dw}; "
            "expected the same size"
        )


class FilePairDataset(Dataset):
    """Items ``dict(image, depth, path, name[, focal])`` read from a list of :class:`FilePair`.

    Every file is checked at construction. Missing files raise one :class:`DataError` with their
    count and the first few paths, unless ``allow_missing`` is set: then those pairs are skipped,
    listed in :attr:`missing` and counted in :attr:`num_missing`.
    """

    def __init__(
        self,
        pairs: Sequence[FilePair],
        source: str,
        depth_scale: float = 1000.0,
        transform: Transform | None = None,
        allow_missing: bool = False,
    ) -> None:
        self.source = source
        self.depth_scale = float(depth_scale)
        self.transform = transform
        self.missing: list[Path] = []
        kept: list[FilePair] = []
        for pair in pairs:
            absent = [p for p in (pair.rgb, pair.depth) if p is not None and not p.is_file()]
            self.missing.extend(absent)
            if not absent:
                kept.append(pair)
        if self.missing and not allow_missing:
            raise DataError(describe_missing(self.missing, source))
        if self.missing:
            logger.warning("%s: skipped %d pair(s) with missing files", source, len(pairs) - len(kept))
        self.num_missing = len(pairs) - len(kept)
        self.pairs = kept

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Item:
        if not 0 <= index < len(self.pairs):
            raise IndexError(f"index {index} out of range for {len(self.pairs)} items of {self.source}")
        pair = self.pairs[index]
        item: Item = {"image": read_rgb(pair.rgb), "path": str(pair.rgb), "name": pair.name}
        if pair.depth is not None:
            depth = read_depth(pair.depth, scale=self.depth_scale)
            check_same_size(item["image"], depth, pair.rgb, pair.depth)
            item["depth"] = depth
        if pair.focal is not None:
            item["focal"] = float(pair.focal)
        item = self.prepare(item)
        return self.transform(item) if self.transform is not None else item

    def prepare(self, item: Item) -> Item:
        """Dataset-specific step before the user transform (e.g. the KITTI benchmark crop)."""
        return item

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r}, {len(self)} items)"


class PairListDataset(FilePairDataset):
    """A list-file split: pairs resolved against ``data_root`` (images) and ``gt_root`` (depth).

    Lines whose depth is ``None`` are skipped and counted (:attr:`num_skipped`); :attr:`num_lines`
    counts every non-empty line.
    """

    def __init__(
        self,
        list_file: PathLike,
        data_root: PathLike,
        gt_root: PathLike | None = None,
        transform: Transform | None = None,
        depth_scale: float = 1000.0,
        allow_missing: bool = False,
    ) -> None:
        self.list_file = Path(list_file)
        self.data_root = Path(data_root)
        self.gt_root = Path(gt_root) if gt_root is not None else self.data_root
        entries = read_list_file(self.list_file)
        self.num_lines = len(entries)
        labeled = [entry for entry in entries if entry.depth is not None]
        if not labeled:
            raise DataError(f"list file {self.list_file} names no image with depth ({self.num_lines} line(s)); "
                            "expected lines '<rgb path> <depth path> [focal]'")
        self.num_skipped = self.num_lines - len(labeled)
        if self.num_skipped:
            logger.info("%s: skipped %d line(s) without ground truth", self.list_file, self.num_skipped)
        pairs = [
            FilePair(
                rgb=resolve_listed_path(self.data_root, entry.rgb),
                depth=resolve_listed_path(self.gt_root, entry.depth),  # type: ignore[arg-type]
                name=name_from_path(entry.rgb),
                focal=self.focal_for(entry),
            )
            for entry in labeled
        ]
        super().__init__(
            pairs,
            source=f"list file {self.list_file}",
            depth_scale=depth_scale,
            transform=transform,
            allow_missing=allow_missing,
        )

    def focal_for(self, entry: ListEntry) -> float | None:
        """The focal length of an entry: the list's third column when present."""
        return entry.focal
