"""Training and validation data for the engine: a resumable sample order and per-sample seeded augmentation.

Training runs in optimiser steps, not epochs. The sample order is an endless stream of per-epoch
permutations (seeded by ``run.seed``); global batch ``b`` takes stream positions ``[b*G, (b+1)*G)``
with ``G = batch_size * world_size``, and each rank takes its contiguous slice. The random draws of a
sample's augmentation are seeded by its stream position. Together these make a resumed run see
exactly the batches an uninterrupted one would, whatever the number of workers, and make a
1-device and a 2-device run with the same global batch see the same samples.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from depthkd.config import DataConfig
from depthkd.data import CenterCrop, ColorJitter, Compose, RandomHorizontalFlip, Resize, collate
from depthkd.data.transforms import RandomRotation, default_train_transform

logger = logging.getLogger(__name__)

_SEED_MULTIPLIER = 0x9E3779B97F4A7C15  # golden-ratio constant: spreads consecutive seeds apart
_SEED_MASK = (1 << 63) - 1


def sample_seed(seed: int, position: int) -> int:
    """The augmentation seed of stream position ``position`` in a run seeded with ``seed``."""
    return ((seed + 1) * _SEED_MULTIPLIER + position) & _SEED_MASK


class StepSampler(Sampler):
    """Endless, resumable ``(index, sample_seed)`` stream for one rank (see the module docstring).

    Args:
        num_items: dataset length.
        batch_size: per-rank batch size.
        seed: run seed (permutations and augmentation seeds).
        rank, world_size: this process's slice of each global batch.
        start_batch: global batches already consumed (resume point).
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
    ) -> None:
        if num_items < 1:
            raise ValueError("cannot sample from an empty dataset")
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start_batch = start_batch
        self._cached: tuple[int, torch.Tensor] | None = None

    def permutation(self, epoch: int) -> torch.Tensor:
        """The item order of pass ``epoch`` over the dataset."""
        if self._cached is None or self._cached[0] != epoch:
            generator = torch.Generator().manual_seed(sample_seed(self.seed, -1 - epoch))
            self._cached = (epoch, torch.randperm(self.num_items, generator=generator))
        return self._cached[1]

    def index_at(self, position: int) -> int:
        """Dataset index at stream position ``position``."""
        epoch, offset = divmod(position, self.num_items)
        return int(self.permutation(epoch)[offset])

    def __iter__(self) -> Iterator[tuple[int, int]]:
        global_batch = self.batch_size * self.world_size
        batch = self.start_batch
        while True:
            first = batch * global_batch + self.rank * self.batch_size
            for position in range(first, first + self.batch_size):
                yield self.index_at(position), sample_seed(self.seed, position)
            batch += 1


def visited_indices(num_items: int, seed: int, samples: int) -> list[int]:
    """The dataset indices (sorted, each once) that the stream's first ``samples`` positions visit.

    A run of ``B`` global batches of ``G`` samples visits positions ``[0, B*G)``: the first epoch's
    permutation decides which items a budget shorter than one epoch ever sees.
    """
    if samples >= num_items:
        return list(range(num_items))
    return sorted(int(i) for i in StepSampler(num_items, 1, seed).permutation(0)[: max(samples, 0)])


class SeededItems(Dataset):
    """Wrap a dataset so that ``items[(index, seed)]`` draws its augmentation from ``seed``.

    The global torch RNG is forked around the item, so the training process's own RNG is untouched.
    A dataset with a ``prefetch(indices)`` method (the simulator's) is handed each DataLoader batch's
    indices first, so that it can produce them together (one render pass instead of one per item).
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            # The CPU generator only: augmentation draws from it, and torch.manual_seed would also
            # reseed (without restoring) every accelerator's generator, at ~80 us per item.
            torch.default_generator.manual_seed(seed)
            return self.dataset[index]

    def __getitems__(self, keys: list[tuple[int, int]]) -> list[dict[str, Any]]:
        """A DataLoader batch: prefetched together where the dataset can, then item by item."""
        prefetch = getattr(self.dataset, "prefetch", None)
        if callable(prefetch):
            prefetch([index for index, _ in keys])
        return [self[key] for key in keys]


class ShardSampler(Sampler):
    """Indices ``rank, rank + world_size, ...`` in order: each validation item on exactly one rank."""

    def __init__(self, num_items: int, rank: int = 0, world_size: int = 1) -> None:
        self.indices = list(range(rank, num_items, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def train_transform(config: DataConfig) -> Any:
    """The training transform of a recipe: augmentation and/or crop, or ``None``."""
    aug = config.augmentation
    if config.augment:
        if config.crop is not None:
            return default_train_transform(
                config.crop,
                rotation=aug.rotation,
                flip_p=aug.flip_p,
                brightness=aug.brightness,
                contrast=aug.contrast,
                saturation=aug.saturation,
                hue=aug.hue,
                gamma=aug.gamma,
            )
        steps: list[Any] = []
        if aug.rotation:
            steps.append(RandomRotation(aug.rotation))
        if aug.flip_p:
            steps.append(RandomHorizontalFlip(aug.flip_p))
        steps.append(ColorJitter(aug.brightness, aug.contrast, aug.saturation, aug.hue, aug.gamma))
        return Compose(steps)
    return CenterCrop(config.crop) if config.crop is not None else None


def val_transform(config: DataConfig) -> Any:
    """The validation transform: resize to ``val_resize`` or nothing."""
    return Resize(config.val_resize) if config.val_resize is not None else None


def limit(dataset: Dataset, count: int | None) -> Dataset:
    """The first ``count`` items of ``dataset`` (all when ``None``)."""
    if count is None or count >= len(dataset):  # type: ignore[arg-type]
        return dataset
    return Subset(dataset, range(count))


PREFETCH_FACTOR = 2  # batches each DataLoader worker loads ahead (torch's default, named here)


def lookahead_batches(config: DataConfig) -> int:
    """Batches a training loader loads beyond the last one trained on: Lightning's one, plus the workers' own."""
    return 1 + config.num_workers * PREFETCH_FACTOR


def train_loader(
    dataset: Dataset,
    config: DataConfig,
    seed: int,
    rank: int,
    world_size: int,
    start_batch: int,
) -> DataLoader:
    """The endless training DataLoader of one rank, starting after ``start_batch`` global batches."""
    sampler = StepSampler(len(dataset), config.batch_size, seed, rank, world_size, start_batch)  # type: ignore[arg-type]
    return DataLoader(
        SeededItems(dataset),
        batch_size=config.batch_size,
        sampler=sampler,
        collate_fn=collate,
        num_workers=config.num_workers,
        persistent_workers=config.num_workers > 0,
        prefetch_factor=PREFETCH_FACTOR if config.num_workers > 0 else None,
    )


def val_loader(dataset: Dataset, config: DataConfig, rank: int, world_size: int) -> DataLoader:
    """The validation DataLoader of one rank (its shard, in order)."""
    return DataLoader(
        dataset,
        batch_size=config.val_batch_size,
        sampler=ShardSampler(len(dataset), rank, world_size),  # type: ignore[arg-type]
        collate_fn=collate,
        num_workers=config.num_workers,
    )


def sample_batch(dataset: Dataset, size: int, seed: int) -> dict[str, Any]:
    """A small batch of the first items (augmented with fixed seeds), for method setup."""
    items = SeededItems(dataset)
    count = min(size, len(dataset))  # type: ignore[arg-type]
    return collate([items[(i, sample_seed(seed, -(10**6) - i))] for i in range(count)])
