"""Inputs that used to give a wrong result with exit 0: each is now a clear error naming what is wrong."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from depthkd.cli import main
from depthkd.errors import ConfigError, DataError, ModelError
from depthkd.io import write_depth_png
from depthkd.models import build_student, load_student, save_student
from depthkd.models.outputs import TeacherOutput
from depthkd.models.teachers import Teacher, load_teacher
from depthkd.predict import predict_folder
from official_formats import write_paired_folder


@pytest.fixture(scope="module")
def student_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_student("mobilenetv2_050", head="regression", max_depth=10.0).eval()
    return save_student(model, tmp_path_factory.mktemp("student") / "student.safetensors")


@pytest.mark.parametrize("bad", [float("inf"), -0.5])
def test_infinite_or_negative_npy_ground_truth_is_refused_naming_the_file(tmp_path: Path, bad: float) -> None:
    from depthkd.data import dataset_from_spec

    tree = write_paired_folder(tmp_path / "data", n=2, depth_ext=".npy")
    depth = np.load(tree.depth[1])
    depth[3, 4] = bad
    np.save(tree.depth[1], depth)
    dataset = dataset_from_spec(f"folder:{tree.root}")
    dataset[0]
    with pytest.raises(DataError, match=rf"{tree.depth[1].name}.*(infinite|negative)"):
        dataset[1]


def test_an_empty_list_file_is_an_error_not_an_empty_dataset(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from depthkd.data.listfile import PairListDataset

    (tmp_path / "empty.txt").write_text("# nothing here\n\n")
    with pytest.raises(DataError, match=r"empty\.txt names no image with depth \(0 line"):
        PairListDataset(tmp_path / "empty.txt", tmp_path)
    assert main(["verify-data", f"nyu-list:{tmp_path / 'empty.txt'}?root={tmp_path}"]) == 1  # verification failed
    assert "FAILED" in capsys.readouterr().out


class _Negative(Teacher):
    def __init__(self, kind: str) -> None:
        super().__init__(kind=kind, teacher_id="neg", preprocess_id="none", spec="neg")

    def _predict(self, images: torch.Tensor, names: Sequence[str] | None, return_features: bool) -> TeacherOutput:
        return TeacherOutput(depth=images[:, :1] - 0.5, kind=self.kind)


def test_a_metric_teacher_returning_negative_depth_is_refused() -> None:
    images = torch.rand(2, 3, 16, 16)
    with pytest.raises(ModelError, match=r"teacher neg returned metric depth outside \[0, inf\) \(min -0\.4"):
        _Negative("metric_depth")(images)
    assert _Negative("relative_disparity")(images).depth.min() < 0  # affine-invariant outputs may be negative


def test_png_predictions_without_a_declared_scale_are_refused(tmp_path: Path) -> None:
    write_depth_png(tmp_path / "a.png", torch.full((1, 8, 8), 2.0), scale=256.0)
    teacher = load_teacher(f"preds:{tmp_path}")
    with pytest.raises(DataError, match=r"a\.png is a 16-bit PNG but .* declares no scale.*meta\.json"):
        teacher(torch.rand(1, 3, 8, 8), names=["a"])
    (tmp_path / "meta.json").write_text(json.dumps({"scale": 256}))
    out = load_teacher(f"preds:{tmp_path}")(torch.rand(1, 3, 8, 8), names=["a"]).depth
    assert torch.allclose(out, torch.full_like(out, 2.0))


def test_student_with_nan_weights_is_refused_and_students_are_written_world_readable(tmp_path: Path) -> None:
    model = build_student("mobilenetv2_050", head="regression")
    path = save_student(model, tmp_path / "ok.safetensors")
    expected = 0o666 & ~_umask()
    assert stat.S_IMODE(path.stat().st_mode) == expected  # like every other output, not 0600
    with torch.no_grad():
        next(p for p in model.parameters() if p.ndim == 4).view(-1)[0] = float("nan")
    bad = save_student(model, tmp_path / "diverged.safetensors")
    with pytest.raises(ModelError, match=r"diverged\.safetensors holds NaN or infinite weights in 1 tensor"):
        load_student(bad)
    assert main(["predict", "--model", str(bad), "--input", str(tmp_path), "--output", str(tmp_path / "p")]) == 2


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("scale", [0.0, -5.0, float("nan")])
def test_predict_refuses_a_scale_that_is_not_positive(tmp_path: Path, student_file: Path, scale: float) -> None:
    tree = write_paired_folder(tmp_path / "data", n=1)
    with pytest.raises(ConfigError, match="--scale"):
        predict_folder(str(student_file), tree.root / "rgb", tmp_path / "out", scale=scale)


def test_predict_refuses_depth_a_16_bit_png_cannot_hold(tmp_path: Path, student_file: Path) -> None:
    tree = write_paired_folder(tmp_path / "data", n=1)
    with pytest.raises(ConfigError, match=r"beyond what a 16-bit PNG at --scale 100000 holds \(0\.655 m\)"):
        predict_folder(str(student_file), tree.root / "rgb", tmp_path / "out", scale=100000.0)


def test_predict_on_a_dataset_root_predicts_its_images_only(tmp_path: Path, student_file: Path) -> None:
    tree = write_paired_folder(tmp_path / "data", n=2)
    summary = predict_folder(str(student_file), tree.root, tmp_path / "out")
    assert summary.count == 2
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").glob("*.png"))
    assert written == ["img_001.png", "img_002.png"]  # not depth/img_001.png etc.


def test_an_output_path_under_a_file_is_one_line_not_a_traceback(
    tmp_path: Path, student_file: Path, capsys  # noqa: ANN001
) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    images = write_paired_folder(tmp_path / "data", n=1).root / "rgb"
    code = main(["predict", "--model", str(student_file), "--input", str(images), "--output", str(blocker / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert str(blocker / "out") in err or str(blocker) in err


def test_a_device_this_machine_lacks_is_one_clear_error(
    tmp_path: Path, student_file: Path, capsys  # noqa: ANN001
) -> None:
    from depthkd.models.devices import check_device

    missing = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU, on any machine
    with pytest.raises(ConfigError, match=rf"device '{missing}': this machine has"):
        check_device(missing)
    with pytest.raises(ConfigError, match="not a device name"):
        check_device("banana")
    assert check_device("cpu") == torch.device("cpu")
    images = write_paired_folder(tmp_path / "data", n=1).root / "rgb"
    args = ["predict", "--model", str(student_file), "--input", str(images), "--output", str(tmp_path / "p")]
    assert main([*args, "--device", missing]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_a_file_that_is_not_an_onnx_graph_is_named(tmp_path: Path) -> None:
    from depthkd.export.convert import graph_summary

    garbage = tmp_path / "garbage.onnx"
    garbage.write_text("not protobuf")
    with pytest.raises(ModelError, match=r"garbage\.onnx is not a readable ONNX graph"):
        graph_summary(garbage)
    assert main(["benchmark", "--model", str(garbage)]) == 2


def test_one_pixel_images_are_written_and_read_back(tmp_path: Path) -> None:
    from depthkd.data import dataset_from_spec

    assert main(["simulate", "--domain", "indoor", "--num", "1", "--size", "1x1", "--out", str(tmp_path / "s")]) == 0
    item = dataset_from_spec(f"folder:{tmp_path / 's'}")[0]
    assert item["image"].shape == (3, 1, 1) and item["depth"].shape == (1, 1, 1)


def test_predictions_over_a_data_spec_are_read_back_by_evaluate(tmp_path: Path, student_file: Path) -> None:
    from depthkd.evaluate import evaluate
    from official_formats import write_nyu_list_tree

    tree = write_nyu_list_tree(tmp_path / "nyu", n=2)
    spec = f"nyu-list:{tree.list_file}?root={tree.root}"
    summary = predict_folder(str(student_file), spec, tmp_path / "preds")
    assert summary.count == 2  # the listed images, not the depth PNGs beside them
    from_files = evaluate(f"preds:{tmp_path / 'preds'}", spec, protocol="nyu")
    direct = evaluate(str(student_file), spec, protocol="nyu")
    assert from_files.count == 2
    assert from_files.metrics["abs_rel"] == pytest.approx(direct.metrics["abs_rel"], abs=1e-3)  # 1 mm PNG steps
