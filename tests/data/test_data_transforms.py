"""Joint augmentation: geometry moves image and every dense map together; photometry leaves depth alone."""

from __future__ import annotations

import pytest
import torch

from depthkd.data import (
    CenterCrop,
    ColorJitter,
    Compose,
    RandomCrop,
    RandomHorizontalFlip,
    RandomRotation,
    Resize,
    collate,
    default_train_transform,
)
from depthkd.data.transforms import dense_keys
from depthkd.errors import ConfigError, DataError

H, W = 24, 32


def make_item(h: int = H, w: int = W) -> dict:
    """Depth = 1 + pixel id / 100 (every pixel unique), image red = same id normalised,
    teacher = 2 * depth, instances = pixel id // 7, a bool mask, and non-dense extras."""
    ids = torch.arange(h * w, dtype=torch.float32).reshape(1, h, w)
    image = torch.stack([ids[0] / (h * w - 1), torch.linspace(0, 1, w).expand(h, w), torch.full((h, w), 0.5)])
    depth = 1.0 + ids / 100.0
    depth[..., 0, 0] = 0.0  # a hole
    return {
        "image": image,
        "depth": depth,
        "teacher": 2.0 * depth,
        "instances": (ids[0] // 7).long(),
        "mask": depth > 0,
        "bins": torch.arange(5.0),
        "name": "x",
        "focal": 100.0,
    }


def pixel_ids(depth: torch.Tensor) -> torch.Tensor:
    return torch.round((depth - 1.0) * 100.0).long()


def assert_consistent(out: dict) -> None:
    """Invariants any geometric transform must keep: all dense maps moved by the same mapping."""
    depth, teacher = out["depth"], out["teacher"]
    assert torch.equal(teacher, 2.0 * depth)  # same pixels, nearest, same fill
    valid = depth > 0
    assert torch.equal(out["mask"], valid)  # the mask was depth > 0 and moved with it
    ids = pixel_ids(depth[valid])
    assert torch.equal(out["instances"][valid[0]], ids // 7)
    assert torch.equal(out["bins"], torch.arange(5.0))


def test_dense_keys_are_the_maps_with_the_image_size():
    assert sorted(dense_keys(make_item())) == ["depth", "instances", "mask", "teacher"]


def test_random_crop_moves_the_same_window():
    item = make_item()
    out = RandomCrop((10, 12), generator=torch.Generator().manual_seed(3))(item)
    assert out["image"].shape == (3, 10, 12) and out["depth"].shape == (1, 10, 12)
    top_left = int(pixel_ids(out["depth"][0, 0, 0]))
    top, left = divmod(top_left, W)
    assert torch.equal(out["depth"], item["depth"][:, top : top + 10, left : left + 12])
    assert torch.equal(out["image"], item["image"][:, top : top + 10, left : left + 12])
    assert_consistent(out)
    assert item["depth"].shape == (1, H, W)  # the input item is not modified


def test_random_crop_is_reproducible_with_a_generator():
    a = RandomCrop(8, generator=torch.Generator().manual_seed(7))(make_item())
    b = RandomCrop(8, generator=torch.Generator().manual_seed(7))(make_item())
    assert torch.equal(a["depth"], b["depth"])
    positions = {int(pixel_ids(RandomCrop(8)(make_item())["depth"][0, 1, 1])) for _ in range(20)}
    assert len(positions) > 1  # global RNG draws vary


def test_center_crop_hand_computed_window():
    item = make_item(10, 12)
    out = CenterCrop((4, 6))(item)
    assert torch.equal(out["depth"], item["depth"][:, 3:7, 3:9])  # top (10-4)//2 = 3, left (12-6)//2 = 3


def test_crop_larger_than_image_is_a_config_error():
    with pytest.raises(ConfigError, match="larger than the image 24x32"):
        RandomCrop((30, 10))(make_item())


def test_flip_mirrors_everything_or_nothing():
    item = make_item()
    out = RandomHorizontalFlip(p=1.0)(item)
    for key in ("image", "depth", "teacher", "instances", "mask"):
        assert torch.equal(out[key], item[key].flip(-1)), key
    assert RandomHorizontalFlip(p=0.0)(item) is item


def test_rotation_by_90_degrees_is_counter_clockwise_for_all_maps():
    item = make_item(16, 16)
    item["image"] = item["image"][:, :16, :16]
    out = RandomRotation((90.0, 90.0))(item)
    for key in ("depth", "teacher", "instances"):
        assert torch.equal(out[key], torch.rot90(item[key], 1, dims=(-2, -1))), key
    torch.testing.assert_close(out["image"], torch.rot90(item["image"], 1, dims=(-2, -1)), atol=1e-5, rtol=0)


def test_rotation_keeps_depth_unblended_and_aligned_with_the_image():
    item = make_item(32, 32)
    square = torch.zeros(1, 32, 32)
    square[:, 10:22, 8:20] = 1.0
    item["image"] = square.expand(3, 32, 32).clone()
    item["depth"] = torch.where(square > 0, 5.0, 3.0)
    item["teacher"] = 2.0 * item["depth"]
    item["mask"] = item["depth"] > 0
    item["instances"] = (square[0] > 0).long()
    out = RandomRotation((30.0, 30.0))(item)
    values = set(out["depth"].unique().tolist())
    assert values <= {0.0, 3.0, 5.0} and 0.0 in values  # corners fill with 0, never a blend
    assert torch.equal(out["teacher"], 2.0 * out["depth"])
    image_square = out["image"][0] > 0.5
    depth_square = out["depth"][0] == 5.0
    iou = (image_square & depth_square).sum() / (image_square | depth_square).sum()
    assert iou > 0.85
    assert torch.equal(out["instances"] == 1, depth_square)


def test_random_rotation_keeps_invariants():
    out = RandomRotation(10.0, generator=torch.Generator().manual_seed(1))(make_item())
    assert_consistent(out)
    assert out["depth"].shape == (1, H, W)


def test_resize_nearest_for_depth_bilinear_for_image_and_focal_scaled():
    item = make_item()
    out = Resize((12, 16))(item)
    assert out["image"].shape == (3, 12, 16) and out["depth"].shape == (1, 12, 16)
    assert set(out["depth"].unique().tolist()) <= set(item["depth"].unique().tolist())
    assert_consistent(out)
    assert out["focal"] == pytest.approx(50.0)
    # halving with nearest-exact samples the odd rows and columns
    assert torch.equal(out["depth"], item["depth"][:, 1::2, 1::2])


def test_color_jitter_changes_only_the_image():
    item = make_item()
    jitter = ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.1, gamma=0.2,
                         generator=torch.Generator().manual_seed(0))
    out = jitter(item)
    for key in ("depth", "teacher", "instances", "mask"):
        assert out[key] is item[key]
    assert not torch.equal(out["image"], item["image"])
    assert float(out["image"].min()) >= 0.0 and float(out["image"].max()) <= 1.0


def test_color_jitter_gamma_hand_value():
    item = {"image": torch.full((3, 2, 2), 0.25)}
    out = ColorJitter(gamma=(2.0, 2.0))(item)
    torch.testing.assert_close(out["image"], torch.full((3, 2, 2), 0.0625))
    with pytest.raises(ConfigError):
        ColorJitter(hue=0.7)


def test_default_train_transform_output_and_alignment():
    transform = default_train_transform((16, 24), generator=torch.Generator().manual_seed(0))
    assert isinstance(transform, Compose)
    out = transform(make_item())
    assert out["image"].shape == (3, 16, 24) and out["depth"].shape == (1, 16, 24)
    assert_consistent(out)
    again = default_train_transform((16, 24), generator=torch.Generator().manual_seed(0))(make_item())
    assert torch.equal(out["image"], again["image"]) and torch.equal(out["depth"], again["depth"])


def test_collate_batches_tensors_strings_numbers_and_tuples():
    items = []
    for i in range(3):
        item = make_item()
        item["name"] = f"n{i}"
        item["kb_crop"] = (i, 2 * i)
        items.append(item)
    batch = collate(items)
    assert batch["image"].shape == (3, 3, H, W) and batch["depth"].shape == (3, 1, H, W)
    assert batch["name"] == ["n0", "n1", "n2"]
    assert batch["focal"].tolist() == [100.0, 100.0, 100.0]
    assert batch["kb_crop"].tolist() == [[0, 0], [1, 2], [2, 4]]


def test_collate_errors_name_the_key():
    a, b = make_item(), make_item(8, 8)
    with pytest.raises(DataError, match="'image'.*different shapes"):
        collate([a, b])
    c = make_item()
    del c["focal"]
    with pytest.raises(DataError, match="focal"):
        collate([a, c])
