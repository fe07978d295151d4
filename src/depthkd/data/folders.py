"""Datasets from plain folders: RGB + depth pairs matched by file name, or images alone.

``PairedFolder`` is the simplest way to bring your own labeled data (``root/rgb/x.jpg`` with
``root/depth/x.png`` or ``x.npy``); ``ImageFolder`` feeds distillation without labels and prediction.
Item names are the image path relative to its folder without the extension, so ``rgb/a/b.jpg`` is
``a/b``: the key under which teacher maps are cached and predictions are written.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from depthkd.data.listfile import FilePair, FilePairDataset, Transform, name_from_path
from depthkd.errors import DataError
from depthkd.io import PathLike, list_images

#: Depth file extensions looked for next to each image, in order of preference.
DEPTH_EXTENSIONS = (".png", ".npy")


def _named_images(folder: Path) -> list[tuple[str, Path]]:
    """``(name, path)`` for every image below ``folder``; two files with one name are an error."""
    named: dict[str, Path] = {}
    for path in list_images(folder):
        name = name_from_path(path.relative_to(folder).as_posix())
        if name in named:
            raise DataError(
                f"{named[name]} and {path} share the name {name!r}; keep one image per name in {folder}"
            )
        named[name] = path
    return list(named.items())


def _depth_file(depth_dir: Path, name: str, extensions: Sequence[str]) -> Path:
    """The first existing ``depth_dir/name<ext>``, else the first candidate (reported as missing)."""
    candidates = [depth_dir / f"{name}{ext}" for ext in extensions]
    return next((path for path in candidates if path.is_file()), candidates[0])


DEFAULT_DEPTH_SCALE = 1000.0
"""16-bit depth PNG value per metre when a folder says nothing (millimetres, NYU's convention)."""


def folder_depth_scale(root: Path) -> float:
    """The ``depth_scale`` recorded in ``root/meta.json`` (written by ``depthkd simulate``), else the default."""
    meta = root / "meta.json"
    if not meta.is_file():
        return DEFAULT_DEPTH_SCALE
    try:
        value = json.loads(meta.read_text()).get("depth_scale", DEFAULT_DEPTH_SCALE)
        scale = float(value)
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError) as err:
        raise DataError(f"{meta}: cannot read its depth_scale ({err}); expected a JSON object with a number "
                        "'depth_scale', or pass depth_scale= in the data spec") from err
    if not scale > 0:
        raise DataError(f"{meta}: depth_scale={value!r}; expected a positive number")
    return scale


class PairedFolder(FilePairDataset):
    """``root/rgb/<name>.png|jpg`` with ``root/depth/<name>.png`` (16-bit, / ``depth_scale``) or ``.npy``.

    Images without a depth file raise one :class:`DataError` listing them (``allow_missing=True``
    skips and counts them instead). ``depth_scale`` defaults to the ``depth_scale`` of the folder's
    ``meta.json`` when there is one (``depthkd simulate`` writes street scenes in KITTI's 1/256 m), else to
    1000 (millimetres, NYU's convention).
    """

    def __init__(
        self,
        root: PathLike,
        depth_scale: float | None = None,
        transform: Transform | None = None,
        allow_missing: bool = False,
    ) -> None:
        self.root = Path(root)
        rgb_dir, depth_dir = self.root / "rgb", self.root / "depth"
        for folder in (rgb_dir, depth_dir):
            if not folder.is_dir():
                raise DataError(
                    f"paired folder {self.root} has no {folder.name}/ subfolder (expected rgb/ and depth/)"
                )
        pairs = [
            FilePair(rgb=path, depth=_depth_file(depth_dir, name, DEPTH_EXTENSIONS), name=name)
            for name, path in _named_images(rgb_dir)
        ]
        if depth_scale is None:
            depth_scale = folder_depth_scale(self.root)
        super().__init__(
            pairs,
            source=f"paired folder {self.root}",
            depth_scale=depth_scale,
            transform=transform,
            allow_missing=allow_missing,
        )


class ImageFolder(FilePairDataset):
    """Every image below ``root`` (recursively, sorted), without depth: items ``dict(image, path, name)``."""

    def __init__(self, root: PathLike, transform: Transform | None = None) -> None:
        self.root = Path(root)
        pairs = [FilePair(rgb=path, depth=None, name=name) for name, path in _named_images(self.root)]
        super().__init__(pairs, source=f"image folder {self.root}", transform=transform)
