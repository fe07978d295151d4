"""depthkd simulate: folders, previews, sensor ground truth and refusing to overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from depthkd.cli import main
from depthkd.errors import ConfigError


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


def test_render_spec_once_writes_a_folder_once_with_the_same_scenes(tmp_path):
    from depthkd.data import dataset_from_spec
    from depthkd.sim.writer import render_spec_once

    spec = "sim:outdoor?num=3&size=32x96&seed=5&gt=lidar&labels=2"
    folder_spec = render_spec_once(spec, tmp_path)
    assert folder_spec.startswith("folder:") and folder_spec.endswith("?labels=2")
    folder = Path(folder_spec[len("folder:"):].split("?")[0])
    stamp = (folder / "list.txt").stat().st_mtime_ns
    assert render_spec_once(spec, tmp_path) == folder_spec  # reused, not rendered again
    assert (folder / "list.txt").stat().st_mtime_ns == stamp
    rendered = dataset_from_spec(folder_spec.split("?")[0])
    live = dataset_from_spec(spec.replace("&labels=2", ""))
    for i in range(3):
        assert (rendered[i]["image"] - live[i]["image"]).abs().max() <= 1 / 255 + 1e-6  # 8-bit PNG
        assert (rendered[i]["depth"] - live[i]["depth"]).abs().max() <= 1 / 256 + 1e-6  # KITTI's 1/256 m
    assert render_spec_once("folder:somewhere", tmp_path) == "folder:somewhere"
    with pytest.raises(ConfigError, match="joins several domains"):
        render_spec_once("sim:ood_shapes+ood_clutter?num=2", tmp_path)


def test_render_spec_once_renders_once_when_two_runs_share_the_work_folder(tmp_path, monkeypatch):
    """Two benchmark rows started side by side on one work folder: the second waits for the first render
    and reuses it rather than clearing the files the first is writing."""
    import threading
    import time

    from depthkd.sim import writer

    real_write, calls = writer.write_dataset, []

    def slow_write(*args, **kwargs):
        calls.append(args[0])
        time.sleep(0.5)  # long enough for the other run to look for the marker meanwhile
        return real_write(*args, **kwargs)

    monkeypatch.setattr(writer, "write_dataset", slow_write)
    spec = "sim:indoor?num=2&size=32x32&seed=3"
    results: list[str] = []
    runs = [threading.Thread(target=lambda: results.append(writer.render_spec_once(spec, tmp_path)))
            for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert len(calls) == 1 and len(set(results)) == 1


def test_a_disk_full_part_way_says_the_folder_holds_a_partial_dataset(tmp_path, capsys, monkeypatch):
    import errno

    from depthkd.sim import writer

    written = []

    def write_rgb_until_full(path, image):  # noqa: ANN001 - the third image finds the disk full
        if len(written) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        written.append(path)
        return real_write_rgb(path, image)

    real_write_rgb = writer.write_rgb
    monkeypatch.setattr(writer, "write_rgb", write_rgb_until_full)
    out = tmp_path / "sim"
    assert main(["simulate", "--num", "5", "--size", "16x20", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "No space left on device, after 2 of 5 images" in err and "partial dataset" in err
    assert "--overwrite" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (out / "list.txt").exists() and len(list((out / "rgb").iterdir())) == 2
