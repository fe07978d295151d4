"""What a run trains on: the recipe's teacher, its training set (with the teacher cache) and validation set."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from depthkd.config import RecipeConfig
from depthkd.distill.base import Method
from depthkd.engine import data as engine_data
from depthkd.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

_TEACHER_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_recipe_teacher(config: RecipeConfig, method: Method, device: torch.device) -> Any:
    """The recipe's teacher on ``device``, or ``None`` when the method needs none."""
    if not method.needs_teacher:
        if config.teacher.spec:
            logger.info("method %r does not use a teacher; teacher.spec is ignored", method.name)
        return None
    if not config.teacher.spec:
        raise ConfigError(f"method {method.name!r} needs a teacher: set teacher.spec (e.g. hf:DIR, torch:FILE)")
    from depthkd.models.teachers import load_teacher

    teacher = load_teacher(
        config.teacher.spec,
        device=device,
        dtype=_TEACHER_DTYPES[config.teacher.dtype],
        precision=config.teacher.precision,
        **config.teacher.options,
    )
    logger.info("teacher %s (%s) on %s", config.teacher.spec, teacher.kind, device)
    return teacher


def training_dataset(
    config: RecipeConfig,
    method: Method,
    teacher: Any,
    device: torch.device,
    cached: Sequence[int] | None = None,
) -> Dataset:
    """The training set with its transform; with ``cache.enabled``, the teacher's maps ride along.

    ``cached``: the items whose teacher maps must be in the cache (``None``: every item). The engine
    passes the items its step budget visits, so a short run on a large set does not wait for the teacher
    on images it never trains on; the maps of other items are read on demand only if cached earlier.
    """
    transform = engine_data.train_transform(config.data)
    if teacher is not None and not config.cache.enabled and config.teacher.spec.startswith("preds:"):
        if config.data.crop is not None or config.data.augment:
            raise ConfigError(
                f"teacher {config.teacher.spec} holds whole-image predictions, which do not follow random "
                "crops, flips or rotations: set cache.enabled=true (the cache applies the same geometric "
                "augmentation to image and teacher map), or data.augment=false and data.crop=null"
            )
    if not (config.cache.enabled and teacher is not None):
        if config.cache.enabled:
            logger.info("cache.enabled is set but method %r uses no teacher: no cache", method.name)
        return training_source(config, transform)
    if method.teacher_features:
        raise ConfigError(
            f"cache.enabled is true but method {method.name!r} needs the teacher's features, which the "
            "cache does not store; set cache.enabled=false"
        )
    from depthkd.data.cache import CachedTeacherDataset, TeacherCache, build_teacher_cache

    plain = training_source(config)
    total = len(plain)  # type: ignore[arg-type]
    indices = list(range(total)) if cached is None else sorted({i for i in cached if 0 <= i < total})
    cache_dir = teacher_cache_dir(config, teacher)
    fill_key = hashlib.sha256(json.dumps([total, indices]).encode()).hexdigest()[:16]
    if _launched_rank() > 0:
        cache = _wait_for_cache(cache_dir, teacher, fill_key)
    else:
        share = "" if len(indices) == total else f": {len(indices)} of {total} images"
        cache = build_teacher_cache(
            teacher,
            plain if len(indices) == total else Subset(plain, indices),
            cache_dir,
            batch_size=config.cache.batch_size,
            device=device,
            description=f"caching teacher outputs{share}",
            fill_key=fill_key,
        )
    if not isinstance(cache, TeacherCache):  # pragma: no cover - defensive
        raise DataError(f"no teacher cache in {cache_dir}")
    return CachedTeacherDataset(plain, cache, transform)


def training_source(config: RecipeConfig, transform: Any = None) -> Dataset:
    """``data.train``, joined by the images of ``data.unlabelled`` as unlabelled items when set.

    Both sources are read without a transform and :class:`depthkd.data.WithUnlabelled` applies it after
    the unlabelled depth is made, so crops move image and depth together. Images of the two sources
    must reach one size to share a batch: checked here on one image of each, before training starts.
    """
    from depthkd.data import WithUnlabelled, dataset_from_spec

    if not config.data.unlabelled:
        return dataset_from_spec(config.data.train, transform)
    joined = WithUnlabelled(dataset_from_spec(config.data.train), dataset_from_spec(config.data.unlabelled), transform)
    (train_h, train_w), (extra_h, extra_w) = joined.sample_sizes
    crop = config.data.crop
    if crop is None and (train_h, train_w) != (extra_h, extra_w):
        raise ConfigError(
            f"data.unlabelled images are {extra_h}x{extra_w} but data.train images are {train_h}x{train_w} "
            f"(HxW), so they cannot share a batch; set data.crop to a size both fit, e.g. "
            f"[{min(train_h, extra_h)}, {min(train_w, extra_w)}]"
        )
    if crop is not None and (extra_h < crop[0] or extra_w < crop[1]):
        raise ConfigError(
            f"data.unlabelled images are {extra_h}x{extra_w} (HxW), smaller than data.crop {crop[0]}x{crop[1]}; "
            "choose a smaller crop or larger images"
        )
    return joined


def teacher_cache_dir(config: RecipeConfig, teacher: Any) -> Path:
    """``cache.dir``, else ``<run.root>/teacher-cache/<hash of teacher, preprocessing, data>``.

    A cache folder holds one teacher's maps for one dataset, so the default folder is keyed by all
    three (the data by the images of ``data.train``, and ``data.unlabelled`` when set) and runs sharing
    them share the cache. Spec keys that change only the labels (``gt=``, ``labels=``) do not count: the
    teacher sees the same images.
    """
    from depthkd.data.spec import image_source

    if config.cache.dir:
        return Path(config.cache.dir)
    sources = [image_source(config.data.train)]
    if config.data.unlabelled:
        sources.append(image_source(config.data.unlabelled))
    key = json.dumps([teacher.teacher_id, teacher.preprocess_id, *sources], sort_keys=True)
    return Path(config.run.root) / "teacher-cache" / hashlib.sha256(key.encode()).hexdigest()[:16]


def _launched_rank() -> int:
    """Global rank when an external launcher (torchrun, SLURM) started all processes at once, else 0."""
    return int(os.environ.get("RANK", "0")) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0


def _wait_for_cache(cache_dir: Path, teacher: Any, fill_key: str, timeout_s: float = 6 * 3600) -> Any:
    """On ranks > 0: wait until rank 0 has recorded the fill ``fill_key`` (same items), then open the cache."""
    from depthkd.data.cache import TeacherCache, read_index

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            index = read_index(cache_dir)
        except DataError:  # caught mid-write: try again
            index = None
        if index and index.get("teacher_id") == teacher.teacher_id and fill_key in index.get("fills", []):
            return TeacherCache.open(cache_dir, teacher.teacher_id, teacher.preprocess_id)
        time.sleep(5)
    raise DataError(f"timed out waiting for rank 0 to build the teacher cache in {cache_dir}")


def validation_dataset(config: RecipeConfig) -> Dataset | None:
    """The whole validation set, or ``None`` without ``data.val`` (periodic checks take ``val_limit``)."""
    if not config.data.val:
        return None
    from depthkd.data import dataset_from_spec

    return dataset_from_spec(config.data.val, engine_data.val_transform(config.data))


class RecipeData:
    """The engine's data provider: builds each rank's loaders on demand (after a resume is restored)."""

    def __init__(self, train: Dataset, val: Dataset | None, config: RecipeConfig) -> None:
        self.train, self.val, self.config = train, val, config

    def train_loader(self, start_batch: int, rank: int, world_size: int) -> DataLoader:
        data = self.config.data
        return engine_data.train_loader(self.train, data, self.config.run.seed, rank, world_size, start_batch)

    def val_loader(self, rank: int, world_size: int) -> DataLoader | None:
        if self.val is None:
            return None
        return engine_data.val_loader(self.val, self.config.data, rank, world_size)


__all__ = [
    "RecipeData",
    "load_recipe_teacher",
    "teacher_cache_dir",
    "training_dataset",
    "training_source",
    "validation_dataset",
]
