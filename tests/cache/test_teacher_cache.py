"""The teacher-output cache: round trip, invalidation, resume, and joint augmentation at load time."""

from __future__ import annotations

import pickle
from collections.abc import Sequence

import pytest
import torch
from torch.utils.data import Dataset

from depthkd.data.cache import CachedTeacherDataset, TeacherCache, build_teacher_cache
from depthkd.errors import DataError
from depthkd.models.outputs import TeacherOutput
from depthkd.models.teachers import Teacher


class RedChannelTeacher(Teacher):
    """Depth = offset + 4 x the red channel: a map tied to the image pixel by pixel."""

    def __init__(self, teacher_id: str = "red", offset: float = 1.0) -> None:
        super().__init__(kind="metric_depth", teacher_id=teacher_id, preprocess_id="identity", spec=teacher_id)
        self.offset = offset
        self.calls: list[list[str]] = []

    def _predict(self, images: torch.Tensor, names: Sequence[str] | None, return_features: bool) -> TeacherOutput:
        self.calls.append(list(names or []))
        return TeacherOutput(depth=self.offset + 4.0 * images[:, :1], kind=self.kind)


class TinyDataset(Dataset):
    """Items with image, depth (= 2 + green channel), path and name; the last image is larger."""

    def __init__(self, count: int = 5) -> None:
        generator = torch.Generator().manual_seed(7)
        sizes = [(16, 24)] * (count - 1) + [(20, 30)]
        self.items = []
        for i, (height, width) in enumerate(sizes):
            image = torch.rand(3, height, width, generator=generator)
            depth = 2.0 + image[1:2]
            self.items.append({"image": image, "depth": depth, "path": f"/data/{i}.png", "name": f"scene/{i}"})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return dict(self.items[index])


def _flip(item: dict) -> dict:
    """Horizontal flip of the image and every dense map (stand-in for a joint transform)."""
    size = item["image"].shape[-2:]
    return {k: v.flip(-1) if isinstance(v, torch.Tensor) and v.shape[-2:] == size else v for k, v in item.items()}


@pytest.mark.parametrize("fmt", ["npy16", "png16"])
def test_round_trip_equals_teacher_output(tmp_path, fmt):
    dataset, teacher = TinyDataset(), RedChannelTeacher()
    cache = build_teacher_cache(teacher, dataset, tmp_path / "cache", batch_size=3, fmt=fmt)
    assert len(cache) == 5 and cache.kind == "metric_depth" and cache.fmt == fmt
    # Batches of 3 with a larger last image: calls are grouped by size.
    assert teacher.calls == [["scene/0", "scene/1", "scene/2"], ["scene/3"], ["scene/4"]]
    for item in dataset.items:
        expected = teacher(item["image"][None]).depth[0]
        stored = cache.get(item["name"])
        assert stored.shape == expected.shape and stored.dtype == torch.float32
        # fp16 keeps ~11 bits; png16 uses 65535 steps up to each image's maximum (5.0 here).
        tolerance = 5.0 * 2**-11 if fmt == "npy16" else 0.5 * 5.0 / 65535 + 1e-6
        assert (stored - expected).abs().max() <= tolerance
    reopened = TeacherCache.open(tmp_path / "cache", "red", "identity")
    torch.testing.assert_close(reopened.get("scene/4"), cache.get("scene/4"))


def test_changed_teacher_id_invalidates_and_rebuilds(tmp_path):
    dataset = TinyDataset()
    build_teacher_cache(RedChannelTeacher(), dataset, tmp_path)
    again = RedChannelTeacher()
    build_teacher_cache(again, dataset, tmp_path)
    assert again.calls == []  # same key: everything reused
    with pytest.raises(DataError, match="rebuild"):
        TeacherCache.open(tmp_path, "red-v2", "identity")
    other = RedChannelTeacher("red-v2", offset=3.0)
    cache = build_teacher_cache(other, dataset, tmp_path)
    assert sum(len(c) for c in other.calls) == 5
    assert cache.teacher_id == "red-v2"
    expected = 3.0 + 4.0 * dataset.items[0]["image"][:1]
    assert (cache.get("scene/0") - expected).abs().max() < 1e-2


def test_resume_computes_only_missing_items(tmp_path):
    build_teacher_cache(RedChannelTeacher(), TinyDataset(3), tmp_path)
    teacher = RedChannelTeacher()
    cache = build_teacher_cache(teacher, TinyDataset(5), tmp_path)
    # TinyDataset(3)'s last image (scene/2) was the larger one; at index 2 of 5 it is small: recomputed.
    assert sorted(n for c in teacher.calls for n in c) == ["scene/2", "scene/3", "scene/4"]
    assert len(cache) == 5 and cache.size_of("scene/2") == (16, 24)
    expected = 1.0 + 4.0 * TinyDataset(5).items[2]["image"][:1]
    torch.testing.assert_close(cache.get("scene/2"), expected, atol=5e-3, rtol=0)


def test_flip_moves_image_depth_and_teacher_together(tmp_path):
    dataset = TinyDataset()
    cache = build_teacher_cache(RedChannelTeacher(), dataset, tmp_path)
    plain = CachedTeacherDataset(dataset, cache)[1]
    flipped = CachedTeacherDataset(dataset, cache, transform=_flip)[1]
    assert flipped["teacher_kind"] == "metric_depth" and flipped["teacher"].shape == (1, 16, 24)
    torch.testing.assert_close(flipped["teacher"], plain["teacher"].flip(-1))
    # The pixel relations survive: teacher = 1 + 4 * red, depth = 2 + green, at every flipped pixel.
    torch.testing.assert_close(flipped["teacher"], 1.0 + 4.0 * flipped["image"][:1], atol=5e-3, rtol=0)
    torch.testing.assert_close(flipped["depth"], 2.0 + flipped["image"][1:2])
    assert not torch.equal(flipped["teacher"], plain["teacher"])


def test_project_flip_transform_moves_teacher_map(tmp_path):
    from depthkd.data.transforms import RandomHorizontalFlip

    dataset = TinyDataset()
    cache = build_teacher_cache(RedChannelTeacher(), dataset, tmp_path)
    item = CachedTeacherDataset(dataset, cache, transform=RandomHorizontalFlip(p=1.0))[0]
    torch.testing.assert_close(item["teacher"], 1.0 + 4.0 * item["image"][:1], atol=5e-3, rtol=0)
    torch.testing.assert_close(item["teacher"], cache.get("scene/0").flip(-1))


def test_missing_names_and_foreign_datasets_are_errors(tmp_path):
    dataset = TinyDataset()
    cache = build_teacher_cache(RedChannelTeacher(), dataset, tmp_path)
    with pytest.raises(DataError, match="no map for item 'elsewhere'"):
        cache.get("elsewhere")
    unnamed = TinyDataset()
    del unnamed.items[0]["name"]
    with pytest.raises(DataError, match="has no 'name'"):
        build_teacher_cache(RedChannelTeacher(), unnamed, tmp_path / "other")
    with pytest.raises(DataError, match="missing index.json"):
        TeacherCache.open(tmp_path / "nowhere")
    # A cache shipped to DataLoader workers pickles without its memory map.
    cache.get("scene/0")
    restored = pickle.loads(pickle.dumps(cache))
    torch.testing.assert_close(restored.get("scene/1"), cache.get("scene/1"))
