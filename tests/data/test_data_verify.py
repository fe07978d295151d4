"""verify_dataset: known counts, every missing file, decode errors, value ranges and statistics."""

from __future__ import annotations

import numpy as np
import pytest
from official_formats import (
    expected_depth,
    write_kitti_tree,
    write_nyu_list_tree,
    write_nyu_mat,
    write_paired_folder,
)

from depthkd.data import PairedFolder, verify_dataset
from depthkd.errors import ConfigError

H, W = 8, 12


def test_eigen_test_list_counts(tmp_path):
    tree = write_kitti_tree(tmp_path, n=652, num_none=45, h=2, w=2)
    spec = f"kitti:{tree.list_file}?root={tree.root}&gt_root={tree.gt_root}"
    report = verify_dataset(spec, decode=False)
    assert report.ok, report.to_text()
    assert (report.num_lines, report.num_items, report.num_skipped) == (697, 652, 45)
    assert any("Eigen test list" in note for note in report.notes)
    # The same 697 lines with one more None: not the official test list any more.
    lines = tree.list_file.read_text().splitlines()
    first = lines[0].split()
    lines[0] = f"{first[0]} None {first[2]}"
    tree.list_file.write_text("\n".join(lines) + "\n")
    report = verify_dataset(spec, decode=False)
    assert not report.ok and "651" in report.errors[0] and "652" in report.errors[0]


def test_nyu_mat_official_count_or_expected(tmp_path):
    fixture = write_nyu_mat(tmp_path, n=4, test_idx=(1, 3), h=H, w=W)
    spec = f"nyu-mat:{fixture.mat_path}"
    report = verify_dataset(spec)
    assert not report.ok and "654" in report.errors[0]
    report = verify_dataset(spec, expected=2)
    assert report.ok and report.decoded == 2
    # filled depth of images 1 and 3: hand-checked extremes and pixel-pooled mean
    assert report.depth_min == pytest.approx(0.501)
    assert report.depth_max == pytest.approx(0.503 + 0.07 + 0.011)
    both = np.concatenate([expected_depth(1, H, W).ravel(), expected_depth(3, H, W).ravel()])
    assert report.depth_mean == pytest.approx(float(both.astype(np.float64).mean()), rel=1e-6)
    assert report.valid_pixels == 2 * H * W and report.out_of_range_pixels == 0
    assert verify_dataset(spec, expected=3).ok is False


def test_every_missing_file_is_listed(tmp_path):
    tree = write_nyu_list_tree(tmp_path, n=9, h=H, w=W)
    for path in tree.depth[:7]:
        path.unlink()
    tree.rgb[8].unlink()
    report = verify_dataset(f"nyu-list:{tree.list_file}")
    assert not report.ok
    assert sorted(report.missing) == sorted(str(p) for p in [*tree.depth[:7], tree.rgb[8]])
    assert report.num_items == 1 and report.decoded == 1
    text = report.to_text()
    assert text.startswith("FAILED") and all(str(p) in text for p in tree.depth[:7])


def test_decode_errors_name_the_file_and_the_rest_is_checked(tmp_path):
    tree = write_paired_folder(tmp_path, n=3, h=H, w=W, depth_ext=".npy")
    tree.rgb[1].write_bytes(b"garbage")
    bad = expected_depth(3, H, W)
    bad[0, 0] = -1.0
    np.save(tree.depth[2], bad)
    report = verify_dataset(f"folder:{tmp_path}")
    # Negative depth no longer decodes at all (read_depth refuses it, naming the file).
    assert not report.ok and report.decoded == 1 and len(report.errors) == 2
    assert str(tree.rgb[1]) in report.errors[0]
    assert "img_003" in report.errors[1] and "negative" in report.errors[1]


def test_wrong_depth_scale_is_flagged_by_the_range_check(tmp_path):
    tree = write_nyu_list_tree(tmp_path, n=2, h=H, w=W)
    plain = verify_dataset(f"nyu-list:{tree.list_file}")
    assert plain.ok and plain.out_of_range_pixels == 0
    assert len(plain.warnings) == 1 and plain.warnings[0].startswith("2 lines match no known NYU list")
    report = verify_dataset(f"nyu-list:{tree.list_file}?depth_scale=1")  # millimetres read as metres
    assert report.ok  # a warning, not an error: evaluation masks such pixels
    assert report.out_of_range_pixels == 2 * H * W
    assert any("depth_scale" in warning for warning in report.warnings)
    assert report.depth_min == pytest.approx(501.0)


def test_dataset_objects_and_construction_errors(tmp_path):
    write_paired_folder(tmp_path / "f", n=2, h=H, w=W)
    report = verify_dataset(PairedFolder(tmp_path / "f"), expected=2)
    assert report.ok and report.decoded == 2 and "PairedFolder" in report.source
    assert report.to_dict()["ok"] is True
    broken = verify_dataset(f"nyu-list:{tmp_path / 'absent.txt'}")
    assert not broken.ok and "absent.txt" in broken.errors[0]
    with pytest.raises(ConfigError):
        verify_dataset("nope:x")
