"""write_dataset / write_preview: files read back equal the rendered tensors."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from depthkd.io import read_depth, read_label_png, read_rgb
from depthkd.sim import render_batch, write_dataset, write_preview

SIZE = (24, 32)


def test_written_dataset_reads_back(tmp_path):
    list_file = write_dataset(tmp_path / "sim", "indoor", num=3, size=SIZE, seed=7, batch_size=2)
    root = list_file.parent
    reference = render_batch("indoor", 3, SIZE, seed=7)
    lines = list_file.read_text().splitlines()
    assert len(lines) == 3
    for i, line in enumerate(lines):
        rgb_path, depth_path, focal = line.split()
        assert abs(float(focal) - float(reference["intrinsics"][i, 0])) < 1e-4
        image = read_rgb(root / rgb_path)
        depth = read_depth(root / depth_path, scale=1000.0)
        # Rendered in batches of 2 here and of 3 in the reference: equal up to float rounding.
        assert (image - reference["image"][i]).abs().max() <= 0.5 / 255 + 1e-4
        assert (depth - reference["depth"][i]).abs().max() <= 0.0005 + 1e-5
        instances = read_label_png(root / "instances" / f"{i:06d}.png")
        assert torch.equal(instances, reference["instances"][i, 0])
    meta = json.loads((root / "meta.json").read_text())
    assert meta["depth_scale"] == 1000.0 and meta["protocol"] == "sim_indoor" and meta["num"] == 3


def test_outdoor_depth_uses_kitti_scale(tmp_path):
    list_file = write_dataset(tmp_path / "street", "outdoor", num=1, size=SIZE, seed=0)
    meta = json.loads((list_file.parent / "meta.json").read_text())
    assert meta["depth_scale"] == 256.0  # 80 m does not fit 16-bit millimetres
    depth = read_depth(list_file.parent / "depth" / "000000.png", scale=256.0)
    reference = render_batch("outdoor", 1, SIZE, seed=0)["depth"][0]
    assert (depth - reference).abs().max() <= 0.5 / 256 + 1e-4


def test_preview_contact_sheet(tmp_path):
    path = write_preview(tmp_path / "sheet.png", domains=("indoor", "ood_clutter"), n=2, size=SIZE, seed=0)
    sheet = np.asarray(Image.open(path))
    assert sheet.ndim == 3 and sheet.shape[2] == 3
    assert sheet.shape[0] >= 4 * SIZE[0] and sheet.shape[1] >= 3 * SIZE[1]
    assert sheet.std() > 10


def test_sensor_dataset_writes_the_sensor_and_the_exact_depth(tmp_path):
    list_file = write_dataset(tmp_path / "lidar", "outdoor", num=2, size=(48, 160), seed=4, gt="lidar")
    root = list_file.parent
    meta = json.loads((root / "meta.json").read_text())
    assert meta["gt"] == "lidar"
    reference = render_batch("outdoor", 2, (48, 160), seed=4, gt="lidar")
    for i in range(2):
        sensor = read_depth(root / "depth" / f"{i:06d}.png", scale=256.0)
        exact = read_depth(root / "depth_dense" / f"{i:06d}.png", scale=256.0)
        assert torch.equal(sensor > 0, reference["depth"][i] > 0)  # 0 = no measurement survives the file
        assert (sensor - reference["depth"][i]).abs().max() <= 0.5 / 256 + 1e-4
        assert (exact - reference["dense_depth"][i]).abs().max() <= 0.5 / 256 + 1e-4
    assert not (tmp_path / "dense").exists()
    plain = write_dataset(tmp_path / "dense", "outdoor", num=1, size=(48, 160), seed=4)
    assert not (plain.parent / "depth_dense").exists()


def test_preview_sheet_has_a_sensor_column(tmp_path):
    path = write_preview(tmp_path / "sheet.png", domains=("outdoor",), n=1, size=SIZE, seed=0)
    sheet = np.asarray(Image.open(path))
    assert sheet.shape[1] >= 4 * SIZE[1]  # RGB | exact depth | sensor depth | instances


def test_an_existing_dataset_is_refused_unless_overwritten(tmp_path):
    import pytest

    from depthkd.errors import ConfigError

    first = write_dataset(tmp_path / "sim", "indoor", num=3, size=SIZE, seed=1)
    before = (first.parent / "rgb" / "000000.png").read_bytes()
    with pytest.raises(ConfigError, match=r"already holds a dataset \(rgb, depth, instances, classes, list.txt"):
        write_dataset(tmp_path / "sim", "indoor", num=2, size=SIZE, seed=2)
    assert (first.parent / "rgb" / "000000.png").read_bytes() == before  # nothing lost
    write_dataset(tmp_path / "sim", "indoor", num=2, size=SIZE, seed=2, overwrite=True)
    assert sorted(p.name for p in (first.parent / "rgb").iterdir()) == ["000000.png", "000001.png"]  # no stale third
    assert (first.parent / "rgb" / "000000.png").read_bytes() != before
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file; expected a folder"):
        write_dataset(tmp_path / "file", "indoor", num=1, size=SIZE)
