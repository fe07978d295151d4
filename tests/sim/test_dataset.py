"""SimDataset: deterministic map-style items, non-repeating endless stream per worker."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import pytest
import torch

from depthkd.errors import ConfigError
from depthkd.sim import SimDataset, render_batch
from depthkd.sim import dataset as sim_dataset
from depthkd.sim.dataset import SimStream

SIZE = (24, 32)


def test_map_style_items_are_deterministic_and_chunk_order_free():
    first = SimDataset("indoor", length=6, size=SIZE, seed=2, batch_render=4)
    second = SimDataset("indoor", length=6, size=SIZE, seed=2, batch_render=4)
    a = [first[i] for i in (5, 1, 4)]  # chunks rendered in another order
    b = [second[i] for i in (1, 4, 5)]
    for x, y in zip(a, (b[2], b[0], b[1])):
        assert x["name"] == y["name"]
        for key in ("image", "depth", "instances", "classes", "intrinsics"):
            assert torch.equal(x[key], y[key]), key


def test_item_format_and_agreement_with_render_batch():
    data = SimDataset("indoor", length=3, size=SIZE, seed=4, batch_render=3)
    item = data[2]
    assert item["image"].shape == (3, *SIZE) and item["depth"].shape == (1, *SIZE)
    assert item["instances"].shape == (1, *SIZE) and item["classes"].shape == (1, *SIZE)
    assert item["name"] == item["path"] == "sim/indoor/s4/24x32/000002"
    assert item["focal"] == pytest.approx(float(item["intrinsics"][0]))
    batch = render_batch("indoor", 3, SIZE, seed=4)
    assert torch.equal(item["depth"], batch["depth"][2])
    assert torch.equal(item["image"], batch["image"][2])
    assert len(data) == 3 and data[-1]["name"] == item["name"]
    with pytest.raises(IndexError):
        data[3]


KEYS = ("image", "depth", "instances", "classes", "intrinsics")


def test_a_batch_of_indices_renders_in_one_pass_with_the_same_items(monkeypatch):
    indices = [5, 0, 3, -1, 0]  # unsorted, negative, repeated
    alone = [SimDataset("indoor", length=7, size=SIZE, seed=3)[i] for i in indices]
    data = SimDataset("indoor", length=7, size=SIZE, seed=3)
    passes = []
    render = sim_dataset.render_scenes
    monkeypatch.setattr(sim_dataset, "render_scenes", lambda scenes, *a, **k: passes.append(len(scenes))
                        or render(scenes, *a, **k))
    together = data.__getitems__(indices)
    assert passes == [4]  # 0, 3, 5 and 6 once each, in one pass
    for x, y in zip(alone, together):
        assert x["name"] == y["name"]
        for key in KEYS:
            assert torch.equal(x[key], y[key]), key
    together[0]["image"].zero_()  # items own their tensors
    assert data[5]["image"].abs().sum() > 0
    assert passes == [4]  # read from the prefetched pass, not rendered again
    with pytest.raises(IndexError):
        data.__getitems__([1, 7])


def test_dataloader_batches_match_single_items():
    from torch.utils.data import DataLoader

    from depthkd.data import collate

    data = SimDataset("outdoor", length=5, size=SIZE, seed=1)
    batch = next(iter(DataLoader(data, batch_size=3, collate_fn=collate)))
    for k in range(3):
        assert torch.equal(batch["image"][k], SimDataset("outdoor", length=5, size=SIZE, seed=1)[k]["image"])


def test_transform_is_applied():
    def flip(item):
        item["image"] = item["image"].flip(-1)
        return item

    plain = SimDataset("indoor", length=1, size=SIZE, seed=0, batch_render=1)[0]
    flipped = SimDataset("indoor", length=1, size=SIZE, seed=0, transform=flip, batch_render=1)[0]
    assert torch.equal(flipped["image"], plain["image"].flip(-1))


def test_endless_stream_workers_never_repeat(monkeypatch):
    stream = SimDataset("ood_shapes", length=None, size=SIZE, seed=1, batch_render=2)
    assert isinstance(stream, SimStream)

    def names(worker: int, count: int) -> list[str]:
        info = SimpleNamespace(id=worker, num_workers=2)
        monkeypatch.setattr(sim_dataset, "get_worker_info", lambda: info)
        iterator = iter(pickle.loads(pickle.dumps(stream)))  # as a DataLoader worker gets it
        return [next(iterator)["name"] for _ in range(count)]

    worker0, worker1 = names(0, 4), names(1, 4)
    assert len(set(worker0) | set(worker1)) == 8
    indices = sorted(int(n.rsplit("/", 1)[1]) for n in worker0 + worker1)
    assert indices == list(range(8))  # together they cover the map-style order, without gaps
    assert names(0, 4) == worker0  # and each worker's stream is reproducible


def test_bad_arguments():
    with pytest.raises(ConfigError, match="length"):
        SimDataset("indoor", length=0, size=SIZE)
    with pytest.raises(ConfigError, match="domain"):
        SimDataset("attic", length=2, size=SIZE)
    with pytest.raises(ConfigError, match="batch_render"):
        SimDataset("indoor", length=2, size=SIZE, batch_render=0)
