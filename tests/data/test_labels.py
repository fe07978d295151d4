"""Label-scarce data: labels= on data specs, LabelSubset, verify-data counts and data.unlabelled."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from official_formats import expected_depth, write_paired_folder

from depthkd.cli import main
from depthkd.config import load_recipe
from depthkd.data import LabelSubset, PairedFolder, WithUnlabelled, collate, dataset_from_spec, verify_dataset
from depthkd.data.labels import label_count
from depthkd.errors import ConfigError
from depthkd.io import write_rgb
from depthkd.losses import silog_loss

SIM = "sim:indoor?num=100&size=32x40&seed=1"
H, W = 16, 20


def _images(folder, n: int, h: int, w: int) -> None:
    for i in range(n):
        write_rgb(folder / f"photo_{i:02d}.png", torch.full((3, h, w), 0.1 * (i + 1)))


def test_labels_count_is_exact_seeded_and_spread():
    first = dataset_from_spec(f"{SIM}&labels=10")
    assert isinstance(first, LabelSubset) and len(first) == 100
    assert (first.num_labelled, first.num_unlabelled) == (10, 90)
    assert first.labelled_indices == sorted(set(first.labelled_indices)) and len(first.labelled_indices) == 10
    assert dataset_from_spec(f"{SIM}&labels=10").labelled_indices == first.labelled_indices
    assert dataset_from_spec(f"{SIM}&labels=10&labels_seed=0").labelled_indices == first.labelled_indices
    other = dataset_from_spec(f"{SIM}&labels=10&labels_seed=1")
    assert other.labelled_indices != first.labelled_indices and other.num_labelled == 10
    for subset in (first, other):  # not the first N, and reaching both halves
        assert subset.labelled_indices != list(range(10))
        assert min(subset.labelled_indices) < 50 <= max(subset.labelled_indices)


@pytest.mark.parametrize(
    ("labels", "length", "count"),
    [(0.05, 100, 5), (0.145, 100, 15), (0.144, 100, 14), (0.5, 3, 2), (0.001, 100, 1), (1.0, 7, 7), (7, 7, 7)],
)
def test_fraction_rounds_half_up_and_keeps_at_least_one(labels, length, count):
    assert label_count(labels, length) == count


def test_fraction_in_a_spec_and_one_is_a_count():
    assert dataset_from_spec(f"{SIM}&labels=0.05").num_labelled == 5
    assert dataset_from_spec(f"{SIM}&labels=1").num_labelled == 1
    assert dataset_from_spec(f"{SIM}&labels=1.0").num_labelled == 100


def test_unlabelled_items_have_zero_depth_and_labelled_ones_keep_their_bytes():
    subset = dataset_from_spec(f"{SIM}&labels=10")
    plain = dataset_from_spec(SIM)
    kept = subset.labelled_indices[:2]
    hidden = [i for i in range(100) if i not in subset.labelled_indices][:2]
    indices = kept + hidden
    items, originals = subset.__getitems__(indices), plain.__getitems__(indices)
    for index, item, original in zip(indices, items, originals):
        assert set(item) == set(original) | {"labelled"}
        assert torch.equal(item["image"], original["image"]) and item["name"] == original["name"]
        assert float(original["depth"].max()) > 0
        if index in kept:
            assert item["labelled"] is True
            assert item["depth"].numpy().tobytes() == original["depth"].numpy().tobytes()
        else:
            assert item["labelled"] is False
            assert item["depth"].shape == original["depth"].shape and not item["depth"].any()


def test_getitems_matches_one_by_one_reads_and_passes_prefetch_through():
    subset = dataset_from_spec(f"{SIM}&labels=10")
    indices = [subset.labelled_indices[0], 1, 2, subset.labelled_indices[-1]]
    calls: list[list[int]] = []
    inner = subset.dataset.prefetch
    subset.dataset.prefetch = lambda ids: (calls.append(list(ids)), inner(ids))  # type: ignore[method-assign]
    together = subset.__getitems__(indices)
    assert calls == [indices]  # SimDataset's one-pass render was used
    fresh = dataset_from_spec(f"{SIM}&labels=10")
    for index, item in zip(indices, together):
        alone = fresh[index]
        assert item["labelled"] == alone["labelled"] == (index in subset.labelled_indices)
        for key in ("image", "depth", "instances"):
            assert torch.equal(item[key], alone[key]), key


def test_a_mixed_batch_collates_and_supervised_losses_use_only_labelled_items():
    subset = dataset_from_spec(f"{SIM}&labels=10")
    unlabelled = [i for i in range(100) if i not in subset.labelled_indices][:2]
    indices = [subset.labelled_indices[0], *unlabelled, subset.labelled_indices[1]]
    batch = collate(subset.__getitems__(indices))
    assert batch["labelled"] == [True, False, False, True]
    assert batch["depth"].shape == (4, 1, 32, 40)
    assert not batch["depth"][1:3].any() and (batch["depth"][[0, 3]] > 0).any()
    pred = torch.full_like(batch["depth"], 2.0)
    mixed = silog_loss(pred, batch["depth"])
    labelled_only = silog_loss(pred[[0, 3]], batch["depth"][[0, 3]])
    torch.testing.assert_close(mixed, labelled_only)
    assert float(silog_loss(pred[1:3], batch["depth"][1:3])) == 0.0


def test_transform_sees_the_zeroed_depth():
    seen: list[bool] = []

    def transform(item):
        seen.append(bool(item["depth"].any()))
        return {**item, "valid": item["depth"] > 0}  # a map derived from depth

    subset = dataset_from_spec(f"{SIM}&labels=10", transform=transform)
    hidden = next(i for i in range(100) if i not in subset.labelled_indices)
    item = subset.__getitems__([hidden, subset.labelled_indices[0]])
    assert seen == [False, True]
    assert not item[0]["valid"].any() and item[1]["valid"].any()


@pytest.mark.parametrize(
    ("query", "pattern"),
    [
        ("labels=-5", r"labels=-5 must be positive"),
        ("labels=0", r"labels=0 must be positive"),
        ("labels=0.0", r"labels=0.0 must be positive"),
        ("labels=1.5", r"labels=1.5 is a fraction above 1"),
        ("labels=many", r"labels='many' is not a number"),
        ("labels=nan", r"labels=nan is not a finite number"),
        ("labels=101", r"labels=101 is more than the dataset's 100 items"),
        ("labels_seed=3", r"labels_seed=3 needs labels="),
        ("labels=5&labels_seed=x", r"labels_seed='x' is not an integer"),
        ("unlabelled=drop", r"unlabelled=drop needs labels="),
        ("labels=5&unlabelled=hide", r"unlabelled='hide' is not one of keep, drop"),
    ],
)
def test_bad_labels_are_config_errors_naming_the_key(query, pattern):
    with pytest.raises(ConfigError, match=pattern):
        dataset_from_spec(f"{SIM}&{query}")


def test_labels_on_a_dataset_without_depth_is_a_config_error(tmp_path):
    _images(tmp_path, 2, H, W)
    with pytest.raises(ConfigError, match=r"labels=1 needs items with depth.*images:"):
        dataset_from_spec(f"images:{tmp_path}?labels=1")
    with pytest.raises(ConfigError, match=r"labels=1 needs items with depth.*instances:"):
        dataset_from_spec(f"instances:{tmp_path}?masks={tmp_path}&labels=1")


def test_labels_work_on_file_schemes(tmp_path):
    tree = write_paired_folder(tmp_path, n=4, h=H, w=W)
    subset = dataset_from_spec(f"folder:{tmp_path}?labels=0.5&labels_seed=2")
    assert subset.num_labelled == 2
    for index in range(4):
        item = subset[index]
        if index in subset.labelled_indices:
            np.testing.assert_allclose(item["depth"][0].numpy(), expected_depth(tree.tags[index], H, W), atol=1e-6)
        else:
            assert not item["depth"].any() and item["labelled"] is False


def test_verify_data_reports_the_counts(tmp_path, capsys):
    write_paired_folder(tmp_path, n=4, h=H, w=W)
    report = verify_dataset(f"folder:{tmp_path}?labels=3")
    assert report.ok, report.to_text()
    assert (report.num_items, report.num_labelled, report.num_unlabelled, report.decoded) == (4, 3, 1, 4)
    assert report.valid_pixels == 3 * H * W  # statistics over the labelled items only
    assert not report.warnings  # the unlabelled item is not "an item without valid depth"
    assert "labelled: 3, unlabelled: 1" in report.to_text()
    assert verify_dataset(f"folder:{tmp_path}").num_labelled is None
    assert main(["verify-data", f"folder:{tmp_path}?labels=0.25"]) == 0
    assert "labelled: 1, unlabelled: 3" in capsys.readouterr().out


def _recipe(tmp_path, *extra: str):
    from depthkd.engine.inputs import training_dataset
    from depthkd.engine.run import build_recipe_method

    config = load_recipe(None, [f"data.train=folder:{tmp_path / 'rgbd'}", "data.augment=false", *extra])
    return training_dataset(config, build_recipe_method(config), teacher=None, device="cpu")


def test_unlabelled_recipe_field_adds_the_images_as_unlabelled_items(tmp_path):
    tree = write_paired_folder(tmp_path / "rgbd", n=3, h=H, w=W)
    _images(tmp_path / "photos", 2, H, W)
    dataset = _recipe(tmp_path, f"data.unlabelled=images:{tmp_path / 'photos'}")
    assert isinstance(dataset, WithUnlabelled) and len(dataset) == 5
    items = [dataset[i] for i in range(5)]
    assert [item["labelled"] for item in items] == [True, True, True, False, False]
    assert [item["name"] for item in items] == [*tree.names, "photo_00", "photo_01"]
    for item, tag in zip(items[:3], tree.tags):
        np.testing.assert_allclose(item["depth"][0].numpy(), expected_depth(tag, H, W), atol=1e-6)
    assert all(item["depth"].shape == (1, H, W) and not item["depth"].any() for item in items[3:])
    batch = collate(items)
    assert batch["depth"].shape == (5, 1, H, W) and batch["labelled"] == [True] * 3 + [False] * 2
    # Without the field the training set is data.train alone.
    assert isinstance(_recipe(tmp_path), PairedFolder)


def test_unlabelled_images_of_another_size_need_a_crop(tmp_path):
    write_paired_folder(tmp_path / "rgbd", n=2, h=H, w=W)
    _images(tmp_path / "photos", 2, 24, 30)
    photos = f"data.unlabelled=images:{tmp_path / 'photos'}"
    mismatch = r"data.unlabelled images are 24x30 but data.train images are 16x20.*data.crop"
    with pytest.raises(ConfigError, match=mismatch):
        _recipe(tmp_path, photos)
    cropped = _recipe(tmp_path, photos, "data.crop=[12,16]")
    batch = collate([cropped[i] for i in range(len(cropped))])
    assert batch["image"].shape == (4, 3, 12, 16) and batch["depth"].shape == (4, 1, 12, 16)
    assert batch["labelled"] == [True, True, False, False] and not batch["depth"][2:].any()
    _images(tmp_path / "small", 1, 8, 10)
    with pytest.raises(ConfigError, match=r"data.unlabelled images are 8x10.*smaller than data.crop 12x16"):
        _recipe(tmp_path, f"data.unlabelled=images:{tmp_path / 'small'}", "data.crop=[12,16]")


def test_unlabelled_join_keeps_a_label_subset_and_only_shared_keys(tmp_path):
    write_paired_folder(tmp_path / "rgbd", n=4, h=H, w=W)
    labelled = dataset_from_spec(f"folder:{tmp_path / 'rgbd'}?labels=1")
    sim = dataset_from_spec("sim:indoor?num=2&size=16x20")  # has instances, focal, ...: dropped
    joined = WithUnlabelled(labelled, sim)
    assert joined.keys == ["image", "path", "name", "depth", "labelled"]
    flags = [joined[i]["labelled"] for i in range(6)]
    assert flags == [i in labelled.labelled_indices for i in range(4)] + [False, False]
    assert not joined[4]["depth"].any()


def test_unlabelled_sensor_items_carry_no_exact_depth_either():
    from depthkd.data import dataset_from_spec

    data = dataset_from_spec("sim:indoor?num=6&size=32x40&seed=2&gt=kinect&labels=2")
    for i in range(len(data)):
        item = data[i]
        if item["labelled"]:
            assert bool((item["dense_depth"] > 0).any())
        else:
            assert not bool(item["depth"].any()) and not bool(item["dense_depth"].any())


def test_unlabelled_drop_keeps_only_the_labelled_items_and_its_own_cache_key():
    from depthkd.data.spec import image_source

    subset = dataset_from_spec(f"{SIM}&labels=7&labels_seed=3")
    only = dataset_from_spec(f"{SIM}&labels=7&labels_seed=3&unlabelled=drop")
    assert len(only) == 7
    for i, index in enumerate(subset.labelled_indices):
        assert torch.equal(only[i]["depth"], subset[index]["depth"]) and only[i]["labelled"] is True
    assert [item["name"] for item in only.__getitems__([0, 6])] == [subset[subset.labelled_indices[j]]["name"]
                                                                    for j in (0, 6)]
    # Fewer images: a teacher cache must not serve it under the full set's key.
    assert image_source(f"{SIM}&labels=7&unlabelled=drop") != image_source(SIM)
    assert image_source(f"{SIM}&labels=7&unlabelled=keep") == image_source(SIM)
