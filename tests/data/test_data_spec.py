"""Data specs: parsing, every scheme building the right reader, and errors listing the valid choices."""

from __future__ import annotations

import numpy as np
import pytest
from official_formats import write_kitti_tree, write_nyu_list_tree, write_nyu_mat, write_paired_folder

from depthkd.data import (
    ImageFolder,
    KittiEigen,
    NYUv2List,
    NYUv2Mat,
    PairedFolder,
    Resize,
    dataset_from_spec,
    parse_spec,
)
from depthkd.errors import ConfigError

H, W = 12, 16


def test_parse_spec_splits_scheme_path_and_parameters():
    parsed = parse_spec("kitti:lists/eigen test.txt?root=raw&gt_root=gt%3Fx&kb_crop=1")
    assert parsed.scheme == "kitti" and parsed.path == "lists/eigen test.txt"
    assert parsed.params == {"root": "raw", "gt_root": "gt?x", "kb_crop": "1"}
    assert parse_spec("images:photos").params == {}


@pytest.mark.parametrize(
    ("spec", "pattern"),
    [
        ("nyu:x.mat", r"unknown scheme 'nyu'.*nyu-mat:.*nyu-list:.*kitti:.*folder:.*images:.*sim:"),
        ("just/a/path", r"unknown scheme ''"),
        ("folder:root?scale=1000", r"unknown parameter 'scale'.*valid: depth_scale, allow_missing"),
        ("images:root?depth_scale=1", r"unknown parameter 'depth_scale'.*valid: none"),
        ("kitti:list.txt?kb_crop", r"'kb_crop' is not key=value"),
        ("folder:root?depth_scale=1&depth_scale=2", r"given twice"),
        ("folder:", r"names no path"),
    ],
)
def test_bad_specs_are_config_errors(spec, pattern):
    with pytest.raises(ConfigError, match=pattern):
        parse_spec(spec)


@pytest.mark.parametrize(
    ("spec", "pattern"),
    [
        ("kitti:list.txt?kb_crop=maybe", r"kb_crop='maybe' is not a boolean"),
        ("folder:root?depth_scale=mm", r"depth_scale='mm' is not a number"),
        ("sim:indoor?size=240by320", r"size='240by320' is not HxW"),
        ("sim:indoor?num=many", r"num='many' is not an integer"),
    ],
)
def test_bad_values_are_config_errors(spec, pattern):
    with pytest.raises(ConfigError, match=pattern):
        dataset_from_spec(spec)


def test_nyu_mat_spec_defaults_splits_beside_the_mat(tmp_path, monkeypatch):
    write_nyu_mat(tmp_path / "nyu", n=4, test_idx=(1, 3), h=H, w=W)
    monkeypatch.chdir(tmp_path)  # relative paths
    dataset = dataset_from_spec("nyu-mat:nyu/nyu_depth_v2_labeled.mat")
    assert isinstance(dataset, NYUv2Mat) and len(dataset) == 2 and dataset.depth == "filled"
    spec = "nyu-mat:nyu/nyu_depth_v2_labeled.mat?splits=nyu/splits.mat&split=train&depth=raw"
    train = dataset_from_spec(spec)
    assert train.split == "train" and train.depth == "raw" and train[0]["name"] == "nyu_mat/train/00002"
    with pytest.raises(ConfigError, match="split"):
        dataset_from_spec("nyu-mat:nyu/nyu_depth_v2_labeled.mat?split=validation")


def test_nyu_list_spec_root_defaults_to_the_list_folder(tmp_path):
    tree = write_nyu_list_tree(tmp_path, n=2, h=H, w=W)
    dataset = dataset_from_spec(f"nyu-list:{tree.list_file}")
    assert isinstance(dataset, NYUv2List) and len(dataset) == 2
    scaled = dataset_from_spec(f"nyu-list:{tree.list_file}?root={tree.root}&depth_scale=100")
    assert float(scaled[0]["depth"].max()) == pytest.approx(10 * float(dataset[0]["depth"].max()))


def test_kitti_spec_with_kb_crop_flag(tmp_path):
    tree = write_kitti_tree(tmp_path, n=1, num_none=1, h=H, w=W)
    spec = f"kitti:{tree.list_file}?root={tree.root}&gt_root={tree.gt_root}"
    dataset = dataset_from_spec(spec)
    assert isinstance(dataset, KittiEigen) and not dataset.kb_crop
    assert dataset.num_lines == 2 and dataset.num_skipped == 1 and len(dataset) == 1
    assert dataset_from_spec(spec + "&kb_crop=true").kb_crop


def test_folder_and_images_specs_and_transform(tmp_path):
    write_paired_folder(tmp_path, n=2, h=H, w=W)
    paired = dataset_from_spec(f"folder:{tmp_path}?depth_scale=1000", transform=Resize((6, 8)))
    assert isinstance(paired, PairedFolder) and paired[0]["depth"].shape == (1, 6, 8)
    images = dataset_from_spec(f"images:{tmp_path / 'rgb'}")
    assert isinstance(images, ImageFolder) and len(images) == 2 and "depth" not in images[0]


def test_allow_missing_in_spec(tmp_path):
    tree = write_paired_folder(tmp_path, n=2, h=H, w=W, depth_ext=".npy")
    np.save(tree.depth[0].with_name("other.npy"), np.ones((H, W), np.float32))
    tree.depth[0].unlink()
    dataset = dataset_from_spec(f"folder:{tmp_path}?allow_missing=1")
    assert len(dataset) == 1 and dataset.num_missing == 1


def test_with_params_replaces_in_place_appends_and_refuses_unknown_keys():
    from depthkd.data.spec import with_params

    assert with_params("sim:indoor?num=256&size=128x160&seed=9", num=64) == "sim:indoor?num=64&size=128x160&seed=9"
    assert with_params("folder:data/x?labels=0.05", unlabelled="drop") == "folder:data/x?labels=0.05&unlabelled=drop"
    assert with_params("folder:data/x", labels=3) == "folder:data/x?labels=3"
    with pytest.raises(ConfigError, match="unknown parameter 'nope' for folder:"):
        with_params("folder:data/x", nope=1)


@pytest.mark.parametrize("scale", ["0", "-1", "inf"])
def test_a_depth_scale_that_is_not_positive_names_the_parameter(scale: str) -> None:
    with pytest.raises(ConfigError, match=rf"depth_scale='{scale}' must be a positive number"):
        dataset_from_spec(f"folder:somewhere?depth_scale={scale}")
