"""Object-wise mixing (alignment, masks, z-buffer, feathering) and the datasets that carry instance masks."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from depthkd.data.instances import InstanceFolder, MultiDomainSim
from depthkd.data.mixing import MixConfig, feather_mask, mix_batch, mix_objects
from depthkd.errors import ConfigError, DataError
from depthkd.io import write_depth_png, write_label_png, write_rgb


def rectangles_batch(batch: int = 4, size: tuple[int, int] = (16, 20)) -> dict[str, torch.Tensor]:
    """Images whose colour and depth are a unique function of (image, instance): 2 boxes per image.

    Box positions differ between images, so a pasted pixel can be traced to its source exactly.
    """
    height, width = size
    instances = torch.zeros(batch, 1, height, width, dtype=torch.long)
    for b in range(batch):
        top, left = b % 3, 2 * b
        instances[b, 0, top : top + 6, left : left + 5] = 1
        instances[b, 0, 8 + top : 14 + top, 10 + b : 16 + b] = 2
    ids = instances[:, 0]
    index = torch.arange(batch).view(batch, 1, 1)
    colour = torch.stack([(index + 1) / (batch + 1) + 0 * ids, ids / 3.0, (ids + index) % 2 * 0.5 + 0.25], dim=1)
    depth = (1.0 + index + ids * 0.25).float().unsqueeze(1)
    background = ids == 0
    depth[:, 0][background] = 9.0  # "stuff" far behind the objects
    return {"image": colour.float(), "instances": instances, "depth": depth}


def test_mixing_keeps_image_instances_and_depth_aligned_and_pastes_only_masked_pixels() -> None:
    batch = rectangles_batch()
    config = MixConfig(k_max=4, p_mix=1.0, feather=0)
    out = mix_objects(batch["image"], batch["instances"], batch["depth"], config, torch.Generator().manual_seed(3))
    assert out.mixed.all()  # p_mix = 1 and every image has objects to give
    kept = out.source < 0
    assert torch.equal(out.image * kept, batch["image"] * kept)
    assert torch.equal(out.depth * kept, batch["depth"] * kept)
    assert torch.equal(out.instances * kept, batch["instances"] * kept)
    b, _, y, x = torch.nonzero(~kept, as_tuple=True)
    assert b.numel() > 0
    src = out.source[b, 0, y, x]
    assert (src != b).all()  # objects come from the other images
    source_ids = batch["instances"][src, 0, y, x]
    assert (source_ids > 0).all()  # only pixels inside a source instance mask were pasted
    assert torch.equal(out.instances[b, 0, y, x] % out.id_stride, source_ids)
    assert torch.equal(out.image[b, :, y, x], batch["image"][src, :, y, x])
    assert torch.equal(out.depth[b, 0, y, x], batch["depth"][src, 0, y, x])


def test_feathered_pastes_blend_inside_the_mask_only() -> None:
    batch = rectangles_batch()
    config = MixConfig(k_max=2, p_mix=1.0, feather=2, zbuffer=False)
    out = mix_objects(batch["image"], batch["instances"], None, config, torch.Generator().manual_seed(0))
    changed = (out.image != batch["image"]).any(1, keepdim=True)
    assert (out.source[changed] >= 0).all()
    b, _, y, x = torch.nonzero(out.source >= 0, as_tuple=True)
    assert (batch["instances"][out.source[b, 0, y, x], 0, y, x] > 0).all()
    alpha = out.alpha[b, 0, y, x]
    assert set(alpha.unique().tolist()) <= {0.5, 1.0}
    assert (alpha == 0.5).any()  # feathered edge pixels exist


def test_feather_mask_is_an_inward_ramp() -> None:
    mask = torch.zeros(1, 1, 9, 9, dtype=torch.bool)
    mask[..., 2:7, 2:7] = True
    alpha = feather_mask(mask, 2)[0, 0]
    assert alpha[4, 4] == 1.0 and alpha[3, 3] == 1.0
    assert alpha[2, 4] == 0.5 and alpha[2, 2] == 0.5  # the mask's border ring
    assert alpha[1, 4] == 0.0 and alpha[~mask[0, 0]].abs().sum() == 0
    border = torch.ones(1, 1, 4, 4, dtype=torch.bool)
    assert torch.equal(feather_mask(border, 3), border.float())  # the image border is not an edge
    assert torch.equal(feather_mask(mask, 0), mask.float())


def _two_objects(depth_a: float, depth_b: float) -> dict[str, torch.Tensor]:
    """Image 0: a 4x4 object (red) at depth ``depth_a``; image 1: a 6x6 object (green) at ``depth_b``,
    centred on the same spot; backgrounds at 10 m."""
    instances = torch.zeros(2, 1, 10, 10, dtype=torch.long)
    instances[0, 0, 3:7, 3:7] = 1
    instances[1, 0, 2:8, 2:8] = 1
    image = torch.zeros(2, 3, 10, 10)
    image[0, 0][instances[0, 0] == 1] = 1.0
    image[1, 1][instances[1, 0] == 1] = 1.0
    depth = torch.full((2, 1, 10, 10), 10.0)
    depth[0, 0][instances[0, 0] == 1] = depth_a
    depth[1, 0][instances[1, 0] == 1] = depth_b
    return {"image": image, "instances": instances, "depth": depth}


def test_zbuffer_puts_the_nearer_object_on_top() -> None:
    batch = _two_objects(depth_a=2.0, depth_b=3.0)
    config = MixConfig(k_max=1, p_mix=1.0, feather=0)
    out = mix_batch(batch, config, torch.Generator().manual_seed(0))
    # Onto image 0: the farther green object shows only around the nearer red one.
    assert out.image[0, 0, 3:7, 3:7].eq(1).all() and out.image[0, 1, 3:7, 3:7].eq(0).all()
    ring = torch.zeros(10, 10, dtype=torch.bool)
    ring[2:8, 2:8] = True
    ring[3:7, 3:7] = False
    assert out.image[0, 1][ring].eq(1).all() and out.depth[0, 0][ring].eq(3.0).all()
    assert out.depth[0, 0, 3:7, 3:7].eq(2.0).all()
    # Onto image 1: the nearer red object covers the green one.
    assert out.image[1, 0, 3:7, 3:7].eq(1).all() and out.image[1, 1, 3:7, 3:7].eq(0).all()
    assert out.depth[1, 0, 3:7, 3:7].eq(2.0).all()

    swapped = mix_batch(_two_objects(depth_a=4.0, depth_b=3.0), config, torch.Generator().manual_seed(0))
    assert swapped.image[0, 1, 2:8, 2:8].eq(1).all()  # green is nearer now: it covers red
    assert swapped.image[1, 0].eq(0).all()  # red is behind green: nothing of it shows on image 1


def test_without_depth_the_later_paste_covers() -> None:
    batch = _two_objects(depth_a=2.0, depth_b=3.0)
    del batch["depth"]
    out = mix_batch(batch, MixConfig(k_max=1, p_mix=1.0, feather=0), torch.Generator().manual_seed(0))
    assert out.depth is None
    assert out.image[0, 1, 2:8, 2:8].eq(1).all() and out.image[0, 0, 2:8, 2:8].eq(0).all()


def test_mixing_is_seeded_and_skips_what_cannot_be_mixed() -> None:
    batch = rectangles_batch()
    config = MixConfig(p_mix=1.0)
    first = mix_batch(batch, config, torch.Generator().manual_seed(5))
    again = mix_batch(batch, config, torch.Generator().manual_seed(5))
    other = mix_batch(batch, config, torch.Generator().manual_seed(6))
    assert torch.equal(first.image, again.image) and torch.equal(first.instances, again.instances)
    assert not torch.equal(first.source, other.source)
    untouched = mix_batch(batch, MixConfig(p_mix=0.0), torch.Generator().manual_seed(5))
    assert torch.equal(untouched.image, batch["image"]) and not untouched.mixed.any()
    single = {k: v[:1] for k, v in batch.items()}
    assert not mix_batch(single, config).mixed.any()  # nothing to paste from
    empty = dict(batch, instances=torch.zeros_like(batch["instances"]))
    assert torch.equal(mix_batch(empty, config).image, batch["image"])  # no object anywhere


def test_shift_and_scale_jitter_keep_depth_and_ids_with_the_object() -> None:
    batch = rectangles_batch()
    config = MixConfig(k_max=4, p_mix=1.0, feather=0, scale_jitter=0.3, shift_jitter=0.2, zbuffer=False)
    out = mix_batch(batch, config, torch.Generator().manual_seed(1))
    b, _, y, x = torch.nonzero(out.source >= 0, as_tuple=True)
    assert b.numel() > 0
    src = out.source[b, 0, y, x]
    ids = out.instances[b, 0, y, x] % out.id_stride
    assert (ids > 0).all()
    object_depth = 1.0 + src.float() + ids.float() * 0.25  # the source object's depth, before scaling
    ratio = object_depth / out.depth[b, 0, y, x]
    assert ((ratio > 0.7 - 1e-5) & (ratio < 1.3 + 1e-5)).all()  # depth / s with s in [0.7, 1.3]
    assert not torch.allclose(ratio, torch.ones_like(ratio))


def test_mixing_rejects_bad_input() -> None:
    batch = rectangles_batch()
    with pytest.raises(DataError, match="instance"):
        mix_batch({"image": batch["image"]})
    with pytest.raises(DataError, match="aligned"):
        mix_objects(batch["image"], batch["instances"][..., :-1])
    with pytest.raises(ConfigError, match="p_mix"):
        MixConfig(p_mix=1.5)
    with pytest.raises(ConfigError, match="k_max"):
        MixConfig(k_max=0)


# --- datasets with instance masks -------------------------------------------------------------------


def _write_instance_folder(root: Path, count: int = 3) -> None:
    for i in range(count):
        image = torch.rand(3, 12, 16, generator=torch.Generator().manual_seed(i))
        labels = torch.zeros(12, 16, dtype=torch.long)
        labels[2:6, 3 + i : 9 + i] = 300 + i  # 16-bit ids survive
        write_rgb(root / "rgb" / "sub" / f"{i:02d}.png", image)
        write_label_png(root / "instances" / "sub" / f"{i:02d}.png", labels)
        write_depth_png(root / "depth" / "sub" / f"{i:02d}.png", torch.full((1, 12, 16), 1.5 + i))


def test_instance_folder_pairs_images_masks_and_depth_by_name(tmp_path: Path) -> None:
    _write_instance_folder(tmp_path)
    dataset = InstanceFolder(tmp_path / "rgb", tmp_path / "instances", depth=tmp_path / "depth")
    assert len(dataset) == 3
    item = dataset[1]
    assert item["name"] == "sub/01"
    assert item["instances"].shape == (1, 12, 16) and item["instances"].dtype == torch.int64
    assert set(item["instances"].unique().tolist()) == {0, 301}
    assert item["depth"].shape == (1, 12, 16) and math.isclose(float(item["depth"].mean()), 2.5, abs_tol=1e-3)
    assert "depth" not in InstanceFolder(tmp_path / "rgb", tmp_path / "instances")[0]


def test_instance_folder_reports_missing_and_mismatched_masks(tmp_path: Path) -> None:
    _write_instance_folder(tmp_path)
    (tmp_path / "instances" / "sub" / "02.png").unlink()
    with pytest.raises(DataError, match=r"1 file.*02\.png"):
        InstanceFolder(tmp_path / "rgb", tmp_path / "instances")
    lenient = InstanceFolder(tmp_path / "rgb", tmp_path / "instances", allow_missing=True)
    assert len(lenient) == 2 and lenient.num_missing == 1
    write_label_png(tmp_path / "instances" / "sub" / "00.png", torch.zeros(5, 5, dtype=torch.long))
    with pytest.raises(DataError, match=r"00\.png is 5x5.*12x16"):
        lenient[0]
    with pytest.raises(DataError, match="not found"):
        InstanceFolder(tmp_path / "rgb", tmp_path / "nowhere")


def test_multi_domain_sim_interleaves_domains_with_instances() -> None:
    dataset = MultiDomainSim(("ood_shapes", "ood_clutter"), length=3, size=(12, 16), seed=0)
    assert len(dataset) == 3 and [len(p) for p in dataset.parts] == [2, 1]
    names = [dataset[i]["name"] for i in range(3)]
    assert names[0].startswith("sim/ood_shapes/") and names[1].startswith("sim/ood_clutter/")
    assert names[2].startswith("sim/ood_shapes/") and names[2] != names[0]
    assert dataset[1]["instances"].shape == (1, 12, 16)
    with pytest.raises(IndexError):
        dataset[3]
    fresh = MultiDomainSim(("ood_shapes", "ood_clutter"), length=3, size=(12, 16), seed=0)
    fresh.prefetch([2, -2, 0])  # each domain's share rendered in one pass
    assert sorted(fresh.parts[0].source._prefetched) == [0, 1] and list(fresh.parts[1].source._prefetched) == [0]
    for i in range(3):
        assert torch.equal(fresh[i]["image"], dataset[i]["image"])
    with pytest.raises(IndexError):
        fresh.prefetch([0, 3])
