"""NYUv2Mat: official .mat layout (transposed), 1-based splits, raw vs filled, lazy per-process file."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
import scipy.io
import torch
from official_formats import NYU_FOCAL, expected_depth, expected_raw_depth, expected_rgb, write_nyu_mat
from torch.utils.data import DataLoader

from depthkd.data import NYUv2Mat, collate
from depthkd.errors import ConfigError, DataError

H, W = 24, 32  # not square, so a missing transpose cannot go unnoticed


@pytest.fixture(scope="module")
def small_mat(tmp_path_factory):
    return write_nyu_mat(tmp_path_factory.mktemp("nyu_small"), n=6, test_idx=(1, 2, 5), h=H, w=W)


def test_full_size_test_split_matches_official_layout(tmp_path):
    fixture = write_nyu_mat(tmp_path, n=3, test_idx=(2,))
    with h5py.File(fixture.mat_path, "r") as mat:  # the on-disk layout the reader must undo
        assert mat["images"].shape == (3, 3, 640, 480)
        assert mat["depths"].shape == (3, 640, 480)
    dataset = NYUv2Mat(fixture.mat_path, fixture.splits_path, split="test")
    assert len(dataset) == 1
    item = dataset[0]
    assert item["image"].shape == (3, 480, 640) and item["image"].dtype == torch.float32
    assert item["depth"].shape == (1, 480, 640) and item["depth"].dtype == torch.float32
    assert item["name"] == "nyu_mat/test/00002"
    assert item["focal"] == pytest.approx(NYU_FOCAL)
    rgb = (item["image"] * 255).round().byte().permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(rgb, expected_rgb(2, 480, 640))
    np.testing.assert_allclose(item["depth"][0].numpy(), expected_depth(2, 480, 640), atol=1e-6)
    # Hand-checked corners: 0.5 + 0.002 (tag) at the top left; +10 mm per row, +1 mm per column.
    assert float(item["depth"][0, 0, 0]) == pytest.approx(0.502)
    assert float(item["depth"][0, 479, 0]) == pytest.approx(0.502 + 4.79)
    assert float(item["depth"][0, 0, 639]) == pytest.approx(0.502 + 0.639)


def test_splits_are_one_based(small_mat):
    test = NYUv2Mat(small_mat.mat_path, small_mat.splits_path, split="test")
    train = NYUv2Mat(small_mat.mat_path, small_mat.splits_path, split="train")
    assert [test[i]["name"] for i in range(len(test))] == [f"nyu_mat/test/0000{k}" for k in (1, 2, 5)]
    assert [train[i]["name"] for i in range(len(train))] == [f"nyu_mat/train/0000{k}" for k in (3, 4, 6)]
    # testNdxs[0] == 1 is the FIRST image of the file (pattern tag 1), not the second.
    for position, index in enumerate((1, 2, 5)):
        np.testing.assert_allclose(test[position]["depth"][0].numpy(), expected_depth(index, H, W), atol=1e-6)
        assert round(float(test[position]["image"][2, 0, 0]) * 255) == (index * 37) % 256


def test_all_split_has_every_image(small_mat):
    dataset = NYUv2Mat(small_mat.mat_path, small_mat.splits_path, split="all")
    assert len(dataset) == 6
    assert dataset[5]["name"] == "nyu_mat/all/00006"


def test_raw_depth_keeps_holes_filled_does_not(small_mat):
    raw = NYUv2Mat(small_mat.mat_path, small_mat.splits_path, depth="raw")[0]["depth"][0]
    filled = NYUv2Mat(small_mat.mat_path, small_mat.splits_path, depth="filled")[0]["depth"][0]
    np.testing.assert_allclose(raw.numpy(), expected_raw_depth(1, H, W), atol=1e-6)
    assert (raw[:, : W // 8] == 0).all() and (filled > 0).all()
    holes = raw == 0
    assert torch.equal(raw[~holes], filled[~holes])


@pytest.mark.parametrize(("kwargs", "word"), [({"split": "val"}, "split"), ({"depth": "dense"}, "depth")])
def test_unknown_split_or_depth_is_a_config_error(small_mat, kwargs, word):
    with pytest.raises(ConfigError, match=word):
        NYUv2Mat(small_mat.mat_path, small_mat.splits_path, **kwargs)


def test_zero_based_splits_file_is_rejected(small_mat, tmp_path):
    bad = tmp_path / "splits.mat"
    scipy.io.savemat(bad, {"trainNdxs": np.array([[0.0], [3.0]]), "testNdxs": np.array([[1.0]])})
    with pytest.raises(DataError, match=r"trainNdxs.*1-based"):
        NYUv2Mat(small_mat.mat_path, bad, split="test")


def test_split_index_past_the_end_is_rejected(small_mat, tmp_path):
    bad = tmp_path / "splits.mat"
    scipy.io.savemat(bad, {"trainNdxs": np.array([[3.0]]), "testNdxs": np.array([[1.0], [7.0]])})
    with pytest.raises(DataError, match=r"outside 1\.\.6"):
        NYUv2Mat(small_mat.mat_path, bad)


def test_missing_or_foreign_files_are_named(small_mat, tmp_path):
    with pytest.raises(DataError, match="nope.mat"):
        NYUv2Mat(tmp_path / "nope.mat", small_mat.splits_path)
    with pytest.raises(DataError, match="nosplits.mat"):
        NYUv2Mat(small_mat.mat_path, tmp_path / "nosplits.mat")
    text = tmp_path / "fake.mat"
    text.write_text("not hdf5")
    with pytest.raises(DataError, match="fake.mat.*HDF5"):
        NYUv2Mat(text, small_mat.splits_path)
    no_depth = tmp_path / "images_only.mat"
    with h5py.File(no_depth, "w") as mat:
        mat["images"] = np.zeros((1, 3, 4, 3), np.uint8)
    with pytest.raises(DataError, match="depths"):
        NYUv2Mat(no_depth, small_mat.splits_path)


def test_nan_depth_names_file_and_image(tmp_path):
    fixture = write_nyu_mat(tmp_path, n=3, test_idx=(2,), h=H, w=W)
    with h5py.File(fixture.mat_path, "r+") as mat:
        mat["depths"][1, 3, 4] = np.nan  # image 2 (1-based)
    with pytest.raises(DataError, match=r"nyu_depth_v2_labeled\.mat.*image 2"):
        NYUv2Mat(fixture.mat_path, fixture.splits_path)[0]


def test_index_out_of_range(small_mat):
    with pytest.raises(IndexError):
        NYUv2Mat(small_mat.mat_path, small_mat.splits_path)[3]


def test_pickle_drops_the_open_handle(small_mat):
    dataset = NYUv2Mat(small_mat.mat_path, small_mat.splits_path)
    dataset[0]  # opens the file in this process
    assert dataset._h5 is not None
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone._h5 is None
    assert torch.equal(clone[1]["depth"], dataset[1]["depth"])
    dataset.close()


def test_dataloader_workers_read_their_own_handle(small_mat):
    dataset = NYUv2Mat(small_mat.mat_path, small_mat.splits_path, split="all")
    dataset[0]  # a handle opened before the fork must not be shared by the workers
    loader = DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=collate)
    names, depths = [], []
    for batch in loader:
        names.extend(batch["name"])
        depths.append(batch["depth"])
    assert names == [f"nyu_mat/all/{i:05d}" for i in range(1, 7)]
    expected = torch.stack([torch.from_numpy(expected_depth(i, H, W))[None] for i in range(1, 7)])
    torch.testing.assert_close(torch.cat(depths), expected)
