"""List-file readers: NYUv2List and KittiEigen (None lines, focal, kb_crop, missing files, sizes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from official_formats import (
    KITTI_FOCALS,
    NYU_FOCAL,
    expected_depth,
    expected_kitti_depth,
    expected_rgb,
    write_kitti_tree,
    write_nyu_list_tree,
)
from PIL import Image

from depthkd.data import KittiEigen, NYUv2List
from depthkd.data.kitti import kb_crop_box
from depthkd.data.listfile import read_list_file
from depthkd.errors import DataError

H, W = 24, 32


def _rgb_uint8(item: dict) -> np.ndarray:
    return (item["image"] * 255).round().byte().permute(1, 2, 0).numpy()


@pytest.mark.parametrize("leading_slash", [False, True])
def test_nyu_list_reads_metres_and_orientation(tmp_path, leading_slash):
    tree = write_nyu_list_tree(tmp_path, n=3, h=H, w=W, leading_slash=leading_slash)
    dataset = NYUv2List(tree.list_file, tree.root)
    assert len(dataset) == 3 and dataset.num_lines == 3 and dataset.num_skipped == 0
    for i, item in enumerate(dataset):
        tag = tree.tags[i]
        assert item["name"] == tree.names[i]
        assert item["path"] == str(tree.rgb[i])
        assert item["focal"] == pytest.approx(NYU_FOCAL)
        # uint16 millimetres / 1000 -> metres, exactly the written pattern
        np.testing.assert_allclose(item["depth"][0].numpy(), expected_depth(tag, H, W), atol=1e-6)
        # JPEG is lossy: close to the pattern, and red grows down the rows, green along the columns
        diff = np.abs(_rgb_uint8(item).astype(int) - expected_rgb(tag, H, W).astype(int))
        assert diff.mean() < 3
        assert item["image"][0, -1].mean() > item["image"][0, 0].mean() + 0.8
        assert item["image"][1, :, -1].mean() > item["image"][1, :, 0].mean() + 0.8
    assert tree.names[0] == "bathroom/rgb_00001"


def test_nyu_list_separate_gt_root(tmp_path):
    tree = write_nyu_list_tree(tmp_path / "images", n=2, h=H, w=W)
    gt_root = tmp_path / "gt"
    for path in tree.depth:
        target = gt_root / path.relative_to(tree.root)
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
    with pytest.raises(DataError, match="2 file"):
        NYUv2List(tree.list_file, tree.root)
    dataset = NYUv2List(tree.list_file, tree.root, gt_root=gt_root)
    assert dataset[1]["depth"].shape == (1, H, W)


def test_missing_files_are_counted_and_listed(tmp_path):
    tree = write_nyu_list_tree(tmp_path, n=8, h=8, w=8)
    for path in tree.depth[:7]:
        path.unlink()
    with pytest.raises(DataError) as info:
        NYUv2List(tree.list_file, tree.root)
    message = str(info.value)
    assert "7 file(s)" in message and str(tree.depth[0]) in message and "(2 more)" in message
    assert str(tree.list_file) in message
    dataset = NYUv2List(tree.list_file, tree.root, allow_missing=True)
    assert len(dataset) == 1 and dataset.num_missing == 7
    assert dataset.missing == tree.depth[:7]
    assert dataset[0]["name"] == tree.names[7]


def test_size_mismatch_names_both_files_and_sizes(tmp_path):
    tree = write_nyu_list_tree(tmp_path, n=2, h=H, w=W)
    Image.fromarray(np.full((H + 2, W, 1), 1000, np.uint16)[..., 0]).save(tree.depth[1])
    dataset = NYUv2List(tree.list_file, tree.root)
    with pytest.raises(DataError) as info:
        dataset[1]
    message = str(info.value)
    assert str(tree.rgb[1]) in message and str(tree.depth[1]) in message
    assert f"{H}x{W}" in message and f"{H + 2}x{W}" in message


def test_list_parser_reports_line_numbers(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("# comment\n\na.png b.png 1.5\nc.png None 2\nd.png e.png\n")
    entries = read_list_file(good)
    assert [(e.line_number, e.rgb, e.depth, e.focal) for e in entries] == [
        (3, "a.png", "b.png", 1.5),
        (4, "c.png", None, 2.0),
        (5, "d.png", "e.png", None),
    ]
    bad = tmp_path / "bad.txt"
    bad.write_text("a.png b.png 518.8\na.png\n")
    with pytest.raises(DataError, match=r"bad\.txt:2"):
        read_list_file(bad)
    bad.write_text("a.png b.png fx\n")
    with pytest.raises(DataError, match=r"bad\.txt:1.*'fx'"):
        read_list_file(bad)
    with pytest.raises(DataError, match="absent.txt"):
        read_list_file(tmp_path / "absent.txt")


def test_kitti_skips_and_counts_none_lines(tmp_path):
    tree = write_kitti_tree(tmp_path, n=3, num_none=2, h=H, w=W)
    dataset = KittiEigen(tree.list_file, tree.root, tree.gt_root)
    assert dataset.num_lines == 5 and dataset.num_skipped == 2 and len(dataset) == 3
    assert "None" in tree.list_file.read_text()
    for i, item in enumerate(dataset):
        assert item["name"] == tree.names[i]
        assert item["name"].startswith("2011_09_26/2011_09_26_drive_0002_sync/image_02/data/")
        assert item["focal"] == pytest.approx(721.5377)
        assert "kb_crop" not in item
        # uint16 / 256 -> metres; sparse with no ground truth in the top rows
        np.testing.assert_array_equal(item["depth"][0].numpy(), expected_kitti_depth(tree.tags[i], H, W))
        np.testing.assert_array_equal(_rgb_uint8(item), expected_rgb(tree.tags[i], H, W))
        assert (item["depth"][0, : int(0.3 * H)] == 0).all()
    # hand-checked value: tag 1, row 20, column 17 -> (256 + 32*20 + 17//8 + 512) / 256 m
    assert float(dataset[0]["depth"][0, 20, 17]) == pytest.approx((256 + 640 + 2 + 512) / 256)


def test_kitti_focal_from_date_when_the_list_has_none(tmp_path):
    tree = write_kitti_tree(tmp_path, n=1, num_none=0, h=H, w=W, date="2011_09_30", write_focal=False)
    item = KittiEigen(tree.list_file, tree.root, tree.gt_root)[0]
    assert item["focal"] == pytest.approx(KITTI_FOCALS["2011_09_30"]) == pytest.approx(707.0912)


def test_kb_crop_full_size_geometry(tmp_path):
    tree = write_kitti_tree(tmp_path, n=2, num_none=1)  # 375x1242, the common KITTI size
    full = KittiEigen(tree.list_file, tree.root, tree.gt_root)
    cropped = KittiEigen(tree.list_file, tree.root, tree.gt_root, kb_crop=True)
    assert cropped.kb_crop and not full.kb_crop
    item = cropped[1]
    assert item["kb_crop"] == (375 - 352, (1242 - 1216) // 2) == (23, 13)
    assert item["image"].shape == (3, 352, 1216) and item["depth"].shape == (1, 352, 1216)
    np.testing.assert_array_equal(_rgb_uint8(item), expected_rgb(tree.tags[1], 375, 1242)[23:, 13:1229])
    expected = expected_kitti_depth(tree.tags[1], 375, 1242)[23:, 13:1229]
    np.testing.assert_array_equal(item["depth"][0].numpy(), expected)
    assert torch.equal(item["depth"], full[1]["depth"][..., 23:, 13:1229])


def test_kb_crop_left_is_floored_for_odd_margins(tmp_path):
    tree = write_kitti_tree(tmp_path, n=1, num_none=0, h=376, w=1241)
    item = KittiEigen(tree.list_file, tree.root, tree.gt_root, kb_crop=True)[0]
    assert item["kb_crop"] == (24, 12)  # floor((1241 - 1216) / 2) = 12
    np.testing.assert_array_equal(item["depth"][0].numpy(), expected_kitti_depth(1, 376, 1241)[24:, 12:1228])
    assert kb_crop_box(370, 1224) == (18, 4)


def test_kb_crop_on_a_small_image_names_the_file(tmp_path):
    tree = write_kitti_tree(tmp_path, n=1, num_none=0, h=H, w=W)
    dataset = KittiEigen(tree.list_file, tree.root, tree.gt_root, kb_crop=True)
    with pytest.raises(DataError, match=r"0000000010\.png.*352x1216"):
        dataset[0]
