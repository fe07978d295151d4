"""PairedFolder and ImageFolder: pairing by name, depth formats, and errors that name the file."""

from __future__ import annotations

import numpy as np
import pytest
from official_formats import expected_depth, expected_rgb, write_paired_folder

from depthkd.data import ImageFolder, PairedFolder
from depthkd.errors import DataError
from depthkd.io import write_rgb

H, W = 16, 20


@pytest.mark.parametrize("depth_ext", [".png", ".npy"])
def test_paired_folder_pairs_by_name(tmp_path, depth_ext):
    tree = write_paired_folder(tmp_path, n=3, h=H, w=W, depth_ext=depth_ext)
    dataset = PairedFolder(tmp_path)
    assert len(dataset) == 3
    for i, item in enumerate(dataset):
        assert item["name"] == tree.names[i] and item["path"] == str(tree.rgb[i])
        assert "focal" not in item
        np.testing.assert_allclose(item["depth"][0].numpy(), expected_depth(tree.tags[i], H, W), atol=1e-6)
        image = (item["image"] * 255).round().byte().permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(image, expected_rgb(tree.tags[i], H, W))


def test_paired_folder_depth_scale(tmp_path):
    write_paired_folder(tmp_path, n=1, h=H, w=W, scale=256.0)
    item = PairedFolder(tmp_path, depth_scale=256.0)[0]
    np.testing.assert_allclose(item["depth"][0].numpy(), expected_depth(1, H, W), atol=1 / 512)
    wrong = PairedFolder(tmp_path)[0]  # millimetre scale on a /256 file: 3.9x too small
    assert float(wrong["depth"].max()) == pytest.approx(float(item["depth"].max()) * 0.256, rel=1e-3)
    # A folder that records its scale (as depthkd simulate writes meta.json) is read at that scale.
    (tmp_path / "meta.json").write_text('{"domain": "outdoor", "depth_scale": 256.0}')
    assert np.array_equal(PairedFolder(tmp_path)[0]["depth"].numpy(), item["depth"].numpy())
    (tmp_path / "meta.json").write_text('{"depth_scale": "fast"}')
    with pytest.raises(DataError, match=r"meta.json: cannot read its depth_scale"):
        PairedFolder(tmp_path)


def test_paired_folder_missing_depth_listed_or_skipped(tmp_path):
    tree = write_paired_folder(tmp_path, n=3, h=H, w=W)
    tree.depth[0].unlink()
    with pytest.raises(DataError, match=r"1 file\(s\).*img_001\.png"):
        PairedFolder(tmp_path)
    dataset = PairedFolder(tmp_path, allow_missing=True)
    assert len(dataset) == 2 and dataset.num_missing == 1 and dataset.missing == [tree.depth[0]]
    with pytest.raises(DataError, match="depth/"):
        PairedFolder(tmp_path / "rgb")


def test_size_mismatch_names_both_files(tmp_path):
    tree = write_paired_folder(tmp_path, n=2, h=H, w=W, depth_ext=".npy")
    np.save(tree.depth[1], np.ones((H, W + 4), np.float32))
    with pytest.raises(DataError) as info:
        PairedFolder(tmp_path)[1]
    message = str(info.value)
    assert str(tree.rgb[1]) in message and str(tree.depth[1]) in message
    assert f"{H}x{W}" in message and f"{H}x{W + 4}" in message


def test_nan_depth_names_the_file(tmp_path):
    tree = write_paired_folder(tmp_path, n=1, h=H, w=W, depth_ext=".npy")
    depth = expected_depth(1, H, W)
    depth[3, 3] = np.nan
    np.save(tree.depth[0], depth)
    with pytest.raises(DataError, match=r"img_001\.npy.*NaN"):
        PairedFolder(tmp_path)[0]


def test_corrupt_image_names_the_file(tmp_path):
    tree = write_paired_folder(tmp_path, n=2, h=H, w=W)
    tree.rgb[0].write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DataError, match=r"rgb/img_001\.png"):
        PairedFolder(tmp_path)[0]


def test_image_folder_recursive_names_without_depth(tmp_path):
    write_rgb(tmp_path / "b.jpg", np.zeros((H, W, 3), np.uint8))
    write_rgb(tmp_path / "sub" / "a.png", np.full((H, W, 3), 255, np.uint8))
    dataset = ImageFolder(tmp_path)
    assert [dataset[i]["name"] for i in range(len(dataset))] == ["b", "sub/a"]
    item = dataset[1]
    assert set(item) == {"image", "path", "name"}
    assert item["image"].shape == (3, H, W) and float(item["image"].min()) == 1.0


def test_image_folder_rejects_two_files_with_one_name(tmp_path):
    write_rgb(tmp_path / "a.jpg", np.zeros((H, W, 3), np.uint8))
    write_rgb(tmp_path / "a.png", np.zeros((H, W, 3), np.uint8))
    with pytest.raises(DataError, match="'a'"):
        ImageFolder(tmp_path)


def test_image_folder_empty_or_absent(tmp_path):
    with pytest.raises(DataError, match="no images"):
        ImageFolder(tmp_path)
    with pytest.raises(DataError, match="not found"):
        ImageFolder(tmp_path / "absent")
