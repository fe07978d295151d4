"""``preds:DIR``: depth maps another tool already computed, looked up by each item's ``name``.

``DIR/<name>.npy`` (float, used as is) or ``DIR/<name>.png`` (16-bit, value / ``scale``), where
``name`` is the dataset item's stable key (it may contain ``/``). ``DIR/meta.json`` may hold
``{"scale": 1000, "kind": "metric_depth"}``; keyword arguments override it. Maps of another size than
the images are resized bilinearly.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from depthkd.errors import DataError, ModelError
from depthkd.io import read_depth
from depthkd.models.outputs import TeacherOutput
from depthkd.models.teachers.base import Teacher, check_kind, require_path, resize_maps, settings_hash

log = logging.getLogger(__name__)

META_FILE = "meta.json"
DEFAULT_SCALE = 1000.0
SUFFIXES = (".npy", ".png")  # float first: lossless when both exist


#: meta.json keys: ``scale`` and ``kind`` are read; the rest is provenance written by ``depthkd predict``.
META_KEYS = frozenset({"scale", "kind", "model", "count", "format"})


def read_meta(folder: Path) -> dict[str, Any]:
    """``folder/meta.json`` as a dict (``{}`` when absent)."""
    meta = folder / META_FILE
    if not meta.is_file():
        return {}
    try:
        values = json.loads(meta.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"cannot read {meta}: {err}") from err
    if not isinstance(values, dict):
        raise DataError(f"{meta} must hold a JSON object like {{\"scale\": 1000, \"kind\": \"metric_depth\"}}")
    return values


def folder_fingerprint(folder: Path) -> str:
    """Count, total size and latest modification time of the prediction files (cheap, changes on edits)."""
    count = size = latest = 0
    for file in folder.rglob("*"):
        if file.suffix in SUFFIXES and file.is_file():
            stat = file.stat()
            count, size, latest = count + 1, size + stat.st_size, max(latest, stat.st_mtime_ns)
    return settings_hash({"count": count, "size": size, "latest": latest})


class PredictionsTeacher(Teacher):
    """Saved predictions behaving like a teacher: ``teacher(images, names=[...])``."""

    def __init__(self, folder: Path, scale: float | None, kind: str, spec: str,
                 device: str | torch.device = "cpu", align_corners: bool = False) -> None:
        super().__init__(
            kind=kind,
            teacher_id=f"preds:{folder.name}#{folder_fingerprint(folder)}",
            preprocess_id=settings_hash({"preds": {"scale": scale, "resize": "bilinear",
                                                   **({"align_corners": True} if align_corners else {})}}),
            spec=spec,
            device=device,
        )
        self.folder = folder
        self.scale = scale
        self.align_corners = align_corners

    def read(self, file: Path) -> torch.Tensor:
        """One saved map; a 16-bit PNG needs its scale declared (a guess would silently rescale every map)."""
        if file.suffix == ".png" and self.scale is None:
            raise DataError(
                f"{file} is a 16-bit PNG but {self.folder} declares no scale: write {self.folder / META_FILE} "
                'with {"scale": 1000} (millimetres) or {"scale": 256} (KITTI), or pass the scale option '
                "(teacher.options.scale in a recipe)"
            )
        return read_depth(file, scale=self.scale or DEFAULT_SCALE, signed=self.kind != "metric_depth")

    def prediction_file(self, name: str) -> Path:
        """The file holding ``name``'s prediction, or a :class:`DataError` naming the files looked for."""
        candidates = [self.folder / f"{name}{suffix}" for suffix in SUFFIXES]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        raise DataError(
            f"no prediction for item {name!r} in {self.folder}: expected {candidates[0]} or {candidates[1]}"
        )

    def _predict(
        self, images: torch.Tensor, names: Sequence[str] | None, return_features: bool
    ) -> TeacherOutput:
        if return_features:
            raise self.no_features_error()
        if names is None:
            raise DataError(
                f"teacher {self.spec} looks predictions up by item name: call teacher(images, names=batch['name'])"
            )
        maps = [self.read(self.prediction_file(name)) for name in names]
        depth = torch.stack([resize_maps(m[None], images.shape[-2:], "bilinear", self.align_corners)[0] for m in maps])
        return TeacherOutput(depth=depth.to(images.device), kind=self.kind)  # type: ignore[arg-type]


def load_predictions_teacher(
    path: str | Path,
    spec: str,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    scale: float | None = None,
    kind: str | None = None,
    precision: str = "fp32",
    align_corners: bool = False,
) -> PredictionsTeacher:
    """Open a folder of predictions; ``scale`` (PNG units per unit of depth) and ``kind`` override meta.json.

    ``kind`` defaults to ``metric_depth`` when neither the keyword nor meta.json gives it; a PNG map read
    without a scale from either is an error naming the file (``.npy`` maps need none). ``dtype`` and
    ``precision`` do not apply and are ignored. ``align_corners`` is the convention of the bilinear resize of
    maps saved at another size than the images (``evaluate --align-corners``).
    """
    folder = require_path(path, spec, directory=True)
    meta = read_meta(folder)
    unknown = sorted(set(meta) - META_KEYS)
    if unknown:
        raise DataError(f"{folder / META_FILE}: unknown keys {unknown}; expected some of {sorted(META_KEYS)}")
    scale = scale if scale is not None else meta.get("scale")
    if scale is not None and float(scale) <= 0:
        raise ModelError(f"teacher {spec}: PNG scale must be positive, got {scale}")
    kind = check_kind(kind or meta.get("kind", "metric_depth"), spec)
    return PredictionsTeacher(folder, None if scale is None else float(scale), kind, spec, device=device,
                              align_corners=align_corners)
