"""render_batch: output contract, determinism, depth ranges per domain."""

from __future__ import annotations

import pytest
import torch

from depthkd.errors import ConfigError
from depthkd.sim import CLASS_NAMES, DOMAINS, OOD_DOMAINS, REGISTRY, render_batch, sample_scene

SIZE = (36, 48)


@pytest.fixture(scope="module")
def batches():
    return {domain: render_batch(domain, 3, SIZE, seed=5) for domain in DOMAINS}


def test_domain_names():
    assert {"indoor", "outdoor"} <= set(DOMAINS)
    assert len(OOD_DOMAINS) >= 2 and set(OOD_DOMAINS) <= set(DOMAINS)
    assert not {"indoor", "outdoor"} & set(OOD_DOMAINS)


@pytest.mark.parametrize("domain", DOMAINS)
def test_output_contract(batches, domain):
    out = batches[domain]
    assert out["image"].shape == (3, 3, *SIZE) and out["image"].dtype == torch.float32
    assert out["depth"].shape == (3, 1, *SIZE) and out["depth"].dtype == torch.float32
    for key in ("instances", "classes"):
        assert out[key].shape == (3, 1, *SIZE) and out[key].dtype == torch.int64
    assert out["intrinsics"].shape == (3, 4) and out["intrinsics"].dtype == torch.float32
    assert 0.0 <= out["image"].min() and out["image"].max() <= 1.0
    assert out["image"].std() > 0.02  # not blank
    assert (out["classes"] >= 0).all() and (out["classes"] < len(CLASS_NAMES)).all()
    fx, fy, cx, cy = out["intrinsics"].unbind(1)
    assert (fx > 0).all() and (fy > 0).all()
    assert ((cx - (SIZE[1] - 1) / 2).abs() < 0.1 * SIZE[1]).all()
    # Objects carry ids 1..N; the pixels of id 0 are stuff (walls, floor, road, sky, dome).
    for image in range(3):
        ids = out["instances"][image].unique()
        assert ids.min() >= 0 and ids.numel() >= 2


@pytest.mark.parametrize("domain", DOMAINS)
def test_depth_within_documented_range(batches, domain):
    info = REGISTRY[domain]
    depth = batches[domain]["depth"]
    valid = depth[depth > 0]
    assert valid.numel() > 0.3 * depth.numel()
    assert valid.min() >= info.min_depth and valid.max() <= info.max_depth
    if domain == "outdoor":
        sky = batches[domain]["classes"] == CLASS_NAMES.index("sky")
        assert sky.any() and (depth[sky] == 0).all()  # sky is invalid, like LiDAR
    else:
        assert (depth > 0).all()  # closed scenes: every pixel has depth


def test_same_seed_same_bytes_and_other_seeds_differ():
    first = render_batch("indoor", 2, SIZE, seed=11)
    again = render_batch("indoor", 2, SIZE, seed=11)
    for key in first:
        assert torch.equal(first[key], again[key]), key
    other = render_batch("indoor", 2, SIZE, seed=12)
    assert not torch.equal(first["image"], other["image"])
    assert not torch.equal(first["depth"], other["depth"])
    assert not torch.equal(first["image"][0], first["image"][1])  # images of one batch differ too


def test_scene_depends_only_on_seed_and_index():
    whole = render_batch("indoor", 3, SIZE, seed=3)
    part = render_batch("indoor", 1, SIZE, seed=3, start=2)
    assert torch.equal(whole["instances"][2], part["instances"][0])
    assert torch.allclose(whole["depth"][2], part["depth"][0], atol=1e-5)
    assert torch.allclose(whole["image"][2], part["image"][0], atol=1e-4)


def test_indoor_scenes_are_rich_enough():
    scenes = [sample_scene("indoor", 0, i, (240, 320)) for i in range(8)]
    assert min(s.num_primitives for s in scenes) >= 20
    assert sum(s.prim_instance.max() for s in scenes) / len(scenes) >= 5  # furniture objects per room


def test_bad_arguments_are_named():
    with pytest.raises(ConfigError, match="kitchen"):
        render_batch("kitchen", 1, SIZE)
    with pytest.raises(ConfigError, match="size"):
        render_batch("indoor", 1, (0, 10))
    with pytest.raises(ConfigError, match="batch_size"):
        render_batch("indoor", 0, SIZE)
