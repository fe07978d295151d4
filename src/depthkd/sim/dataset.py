"""``SimDataset``: simulator images for a DataLoader, map-style (fixed length) or endless.

Scene ``i`` of a seed depends only on ``(domain, seed, i)``. Items are rendered in chunks of
``batch_render`` consecutive items (chunk ``k`` = items ``k*C .. k*C + C-1``) and the most recent
chunks are cached per process; item ``i`` always comes from the same chunk, so it is the same bytes
whichever worker renders it. Chunks of 4-16 render about 10-20% faster per image on CPU than single
images, but a shuffling sampler would re-render a whole chunk for each item: the map-style default
is therefore 1 (our default), the endless stream's 8 (it reads chunks in order).

A DataLoader batch of a map-style dataset is rendered in one pass all the same: ``__getitems__``
(which PyTorch's DataLoader calls with a whole batch of indices) first :meth:`SimDataset.prefetch`-es
the indices together. At 120x160 one pass over 8 scenes costs about a third per image of eight single
renders; every image is the same bytes whichever scenes share its pass.

The endless form (``length=None``) gives DataLoader worker ``w`` of ``W`` (and, under
``torch.distributed``, rank ``r`` of ``R``) the chunks ``k = shard, shard + shards, ...`` with
``shard = r * W + w``, ``shards = R * W``: no two workers ever yield the same scene.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from depthkd.errors import ConfigError
from depthkd.sim.domains import check_ground_truth, sample_scene
from depthkd.sim.render import DEFAULT_SIZE, check_size, render_scenes

Item = dict[str, Any]


def item_name(domain: str, seed: int, size: tuple[int, int], index: int) -> str:
    """Stable key of a simulated image, e.g. ``sim/indoor/s0/240x320/000042``.

    The size is part of the key because the same scene rendered at another size is another image
    (cached teacher outputs must not be shared between them).
    """
    return f"sim/{domain}/s{seed}/{size[0]}x{size[1]}/{index:06d}"


class _SimSource:
    """Renders and caches chunks; shared by the map-style and the endless dataset."""

    def __init__(self, domain: str, size: tuple[int, int], seed: int, transform: Callable[[Item], Item] | None,
                 batch_render: int, device: torch.device | str, cache_chunks: int, gt: str = "dense") -> None:
        self.gt = check_ground_truth(gt, domain)
        if int(batch_render) < 1:
            raise ConfigError(f"batch_render must be >= 1, got {batch_render}")
        self.domain = domain
        self.size = check_size(size)
        self.seed = int(seed)
        self.transform = transform
        self.batch_render = int(batch_render)
        self.device = device
        self.cache_chunks = max(1, int(cache_chunks))
        self._cache: OrderedDict[int, dict[str, torch.Tensor]] = OrderedDict()
        self._prefetched: dict[int, tuple[dict[str, torch.Tensor], int]] = {}  # index -> (batch, row)

    def prefetch(self, indices: list[int]) -> None:
        """Render the scenes of ``indices`` not in a cached chunk in one pass; they replace the
        previous prefetched ones."""
        todo = sorted({i for i in indices if i // self.batch_render not in self._cache})
        self._prefetched = {}
        if not todo:
            return
        batch = self._render(todo)
        self._prefetched = {index: (batch, row) for row, index in enumerate(todo)}

    def _render(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """Items ``indices`` rendered in one pass, on the CPU."""
        scenes = [sample_scene(self.domain, self.seed, i, self.size) for i in indices]
        rendered = render_scenes(scenes, self.size, self.device, gt=self.gt)
        return {key: value.cpu() for key, value in rendered.items()}

    def chunk(self, k: int) -> dict[str, torch.Tensor]:
        if k in self._cache:
            self._cache.move_to_end(k)
            return self._cache[k]
        batch = self._render(range(k * self.batch_render, (k + 1) * self.batch_render))
        self._cache[k] = batch
        while len(self._cache) > self.cache_chunks:
            self._cache.popitem(last=False)
        return batch

    def item(self, index: int) -> Item:
        if index in self._prefetched:
            batch, offset = self._prefetched[index]
        else:
            k, offset = divmod(index, self.batch_render)
            batch = self.chunk(k)
        name = item_name(self.domain, self.seed, self.size, index)
        item: Item = {key: value[offset].clone() for key, value in batch.items()}
        item.update(path=name, name=name, focal=float(item["intrinsics"][0]))
        return self.transform(item) if self.transform is not None else item

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()  # workers start with an empty cache
        state["_prefetched"] = {}
        return state


def checked_index(index: int, length: int, what: str) -> int:
    """``index`` of a dataset of ``length`` items as a non-negative int (negative counts from the end)."""
    index = int(index)
    if index < 0:
        index += length
    if not 0 <= index < length:
        raise IndexError(f"{what} index {index} out of range for length {length}")
    return index


class SimDataset(Dataset):
    """Simulated RGB-D items: dicts with ``image`` (3,H,W), ``depth`` (1,H,W) metres, ``instances`` and
    ``classes`` (1,H,W) int64, ``intrinsics`` (4,) ``fx, fy, cx, cy``, ``path`` = ``name`` (a stable key,
    see :func:`item_name`) and ``focal`` (fx).

    ``length=None`` returns an endless :class:`SimStream` (an ``IterableDataset``) instead.
    ``gt`` chooses the ground truth in ``depth`` (``dense``, ``lidar``, ``kinect``, ``kinect_filled``:
    :mod:`depthkd.sim.groundtruth`); with a sensor, items also carry the exact ``dense_depth``.
    ``batch_render`` is the chunk size (our default 1, right for shuffled access; use 8 for
    sequential reads), ``cache_chunks`` how many chunks a process keeps.
    """

    def __new__(cls, domain: str = "indoor", length: int | None = 1000, *args, **kwargs):
        if cls is SimDataset and length is None:
            return SimStream(domain, *args, **kwargs)
        return super().__new__(cls)

    def __init__(
        self,
        domain: str = "indoor",
        length: int | None = 1000,
        size: tuple[int, int] = DEFAULT_SIZE,
        seed: int = 0,
        transform: Callable[[Item], Item] | None = None,
        batch_render: int = 1,
        device: torch.device | str = "cpu",
        cache_chunks: int = 2,
        gt: str = "dense",
    ) -> None:
        if length is None or int(length) < 1:
            raise ConfigError(f"SimDataset length must be a positive integer or None, got {length!r}")
        self.length = int(length)
        self.source = _SimSource(domain, size, seed, transform, batch_render, device, cache_chunks, gt)

    def __len__(self) -> int:
        return self.length

    def _check(self, index: int) -> int:
        return checked_index(index, self.length, "SimDataset")

    def __getitem__(self, index: int) -> Item:
        return self.source.item(self._check(index))

    def prefetch(self, indices: list[int]) -> None:
        """Render the items ``indices`` together now, so that reading them next costs no render pass
        each (wrappers such as the training loader call this before reading a batch)."""
        self.source.prefetch([self._check(i) for i in indices])

    def __getitems__(self, indices: list[int]) -> list[Item]:
        """A DataLoader batch: its scenes rendered in one pass, then read item by item."""
        self.prefetch(indices)
        return [self[i] for i in indices]


class SimStream(IterableDataset):
    """Endless simulated items (same item format as :class:`SimDataset`), sharded over workers/ranks."""

    def __init__(
        self,
        domain: str = "indoor",
        size: tuple[int, int] = DEFAULT_SIZE,
        seed: int = 0,
        transform: Callable[[Item], Item] | None = None,
        batch_render: int = 8,
        device: torch.device | str = "cpu",
        cache_chunks: int = 1,
        gt: str = "dense",
    ) -> None:
        self.source = _SimSource(domain, size, seed, transform, batch_render, device, cache_chunks, gt)

    @staticmethod
    def shard() -> tuple[int, int]:
        """``(this shard, number of shards)`` from the DataLoader worker and distributed rank."""
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        rank, ranks = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, ranks = torch.distributed.get_rank(), torch.distributed.get_world_size()
        return rank * workers + worker, ranks * workers

    def __iter__(self) -> Iterator[Item]:
        shard, shards = self.shard()
        chunk = shard
        per_chunk = self.source.batch_render
        while True:
            for index in range(chunk * per_chunk, (chunk + 1) * per_chunk):
                yield self.source.item(index)
            chunk += shards
