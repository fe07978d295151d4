"""The engine's sample stream: resumable, rank-partitioned, with per-sample seeded augmentation."""

from __future__ import annotations

import itertools

import torch
from torch.utils.data import Dataset

from depthkd.engine.data import SeededItems, ShardSampler, StepSampler, sample_seed


def take(sampler: StepSampler, count: int) -> list[tuple[int, int]]:
    return list(itertools.islice(iter(sampler), count))


def test_stream_is_a_sequence_of_permutations() -> None:
    sampler = StepSampler(num_items=5, batch_size=2, seed=3)
    indices = [index for index, _ in take(sampler, 15)]
    for epoch in range(3):
        assert sorted(indices[epoch * 5 : (epoch + 1) * 5]) == list(range(5))
    assert indices[:5] != indices[5:10]  # each pass has its own order


def test_resuming_at_a_batch_continues_the_same_stream() -> None:
    full = take(StepSampler(7, batch_size=3, seed=0), 3 * 6)
    resumed = take(StepSampler(7, batch_size=3, seed=0, start_batch=4), 3 * 2)
    assert resumed == full[12:18]


def test_ranks_split_each_global_batch_like_one_process_with_the_global_batch() -> None:
    single = take(StepSampler(10, batch_size=4, seed=1), 4 * 3)
    rank0 = take(StepSampler(10, batch_size=2, seed=1, rank=0, world_size=2), 2 * 3)
    rank1 = take(StepSampler(10, batch_size=2, seed=1, rank=1, world_size=2), 2 * 3)
    merged = []
    for b in range(3):
        merged += rank0[2 * b : 2 * b + 2] + rank1[2 * b : 2 * b + 2]
    assert merged == single


def test_sample_seeds_depend_on_position_and_run_seed() -> None:
    assert sample_seed(0, 5) == sample_seed(0, 5)
    assert len({sample_seed(0, p) for p in range(100)}) == 100
    assert sample_seed(0, 5) != sample_seed(1, 5)


class RandomItems(Dataset):
    def __len__(self) -> int:
        return 3

    def __getitem__(self, index: int) -> dict:
        return {"image": torch.rand(2), "index": index}


def test_seeded_items_are_reproducible_and_leave_the_global_rng_alone() -> None:
    items = SeededItems(RandomItems())
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first = items[(1, 42)]["image"]
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(items[(1, 42)]["image"], first)
    assert not torch.equal(items[(1, 43)]["image"], first)


class PrefetchingItems(RandomItems):
    def __init__(self) -> None:
        self.prefetched: list[list[int]] = []

    def prefetch(self, indices: list[int]) -> None:
        self.prefetched.append(list(indices))


def test_seeded_items_hand_a_batch_to_prefetch_then_seed_each_item() -> None:
    dataset = PrefetchingItems()
    items = SeededItems(dataset)
    keys = [(2, 7), (0, 8), (2, 9)]
    batch = items.__getitems__(keys)
    assert dataset.prefetched == [[2, 0, 2]]
    for key, item in zip(keys, batch):
        assert torch.equal(item["image"], items[key]["image"]) and item["index"] == key[0]
    assert len(SeededItems(RandomItems()).__getitems__(keys)) == 3  # no prefetch: item by item


def test_shard_sampler_covers_each_item_once() -> None:
    shards = [list(ShardSampler(7, rank, 3)) for rank in range(3)]
    assert sorted(itertools.chain(*shards)) == list(range(7))
    assert shards[0] == [0, 3, 6]
