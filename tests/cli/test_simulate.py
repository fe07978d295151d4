"""depthkd simulate: folders, previews, sensor ground truth and refusing to overwrite."""

from __future__ import annotations

import json

from depthkd.cli import main


def test_preview_only_into_a_folder_or_a_png(tmp_path, capsys):
    assert main(["simulate", "--preview-only", "--size", "16x20", "--out", str(tmp_path / "sim-preview")]) == 0
    assert (tmp_path / "sim-preview" / "preview.png").is_file()
    assert main(["simulate", "--preview-only", "--size", "16x20", "--out", str(tmp_path / "sheet.png")]) == 0
    assert (tmp_path / "sheet.png").is_file()


def test_simulate_with_a_sensor_and_twice_into_one_folder(tmp_path, capsys):
    out = tmp_path / "street"
    args = ["simulate", "--domain", "outdoor", "--gt", "lidar", "--num", "2", "--size", "32x104", "--out", str(out)]
    assert main(args) == 0
    assert json.loads((out / "meta.json").read_text())["gt"] == "lidar"
    assert (out / "depth_dense" / "000001.png").is_file()
    capsys.readouterr()
    assert main(args) == 2  # a second run into the same folder is refused, with one line
    err = capsys.readouterr().err
    assert "already holds a dataset" in err and "--overwrite" in err and "Traceback" not in err
    assert main([*args, "--overwrite"]) == 0
    assert main(["simulate", "--domain", "indoor", "--gt", "lidar", "--num", "1", "--out", str(tmp_path / "x")]) == 2
    assert "gt='lidar' does not fit the indoor domain" in capsys.readouterr().err
