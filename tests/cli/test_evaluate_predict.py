"""evaluate / predict: library calls and the CLI, on official-format fixtures and a tiny student."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from depthkd.cli import main
from depthkd.errors import ConfigError
from depthkd.evaluate import check_alignment, evaluate
from depthkd.io import read_depth, read_rgb
from depthkd.metrics import METRIC_KEYS, compute_metrics
from depthkd.models import build_student, save_student
from depthkd.predict import predict_folder
from official_formats import write_nyu_list_tree, write_paired_folder


@pytest.fixture(scope="module")
def student_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_student("mobilenetv2_050", head="regression", max_depth=10.0).eval()
    path = tmp_path_factory.mktemp("student") / "student.safetensors"
    save_student(model, path)
    return path


def test_evaluate_student_matches_direct_metrics(tmp_path: Path, student_file: Path) -> None:
    tree = write_nyu_list_tree(tmp_path / "nyu", n=2)
    spec = f"nyu-list:{tree.list_file}?root={tree.root}"
    result = evaluate(str(student_file), spec, protocol="nyu")

    from depthkd.models import load_student

    model = load_student(student_file)
    per_image = []
    for rgb, depth in zip(tree.rgb, tree.depth):
        with torch.inference_mode():
            pred = model(read_rgb(rgb).unsqueeze(0)).depth[0]
        per_image.append(compute_metrics(pred, read_depth(depth, 1000.0), protocol="nyu"))
    assert result.count == 2 and result.skipped == []
    for key in METRIC_KEYS:
        assert result.metrics[key] == pytest.approx(np.mean([m[key] for m in per_image]), rel=1e-6)
    assert result.label.startswith("nyu (Eigen crop")


def test_one_pass_under_several_protocols_equals_one_pass_each(tmp_path: Path, student_file: Path) -> None:
    from depthkd.data import dataset_from_spec
    from depthkd.evaluate import evaluate_protocols
    from depthkd.inference import load_predictor

    tree = write_nyu_list_tree(tmp_path / "nyu", n=2)
    spec = f"nyu-list:{tree.list_file}?root={tree.root}"
    both = evaluate_protocols(load_predictor(str(student_file)), dataset_from_spec(spec), ["nyu", "sim_indoor"])
    assert list(both) == ["nyu", "sim_indoor"] and both["nyu"].metrics != both["sim_indoor"].metrics
    for protocol, result in both.items():
        alone = evaluate(str(student_file), spec, protocol=protocol)
        assert result.label == alone.label and result.count == alone.count
        for key in METRIC_KEYS:
            assert result.metrics[key] == pytest.approx(alone.metrics[key], rel=1e-12), (protocol, key)


def test_evaluate_cli_writes_json_with_protocol(tmp_path: Path, student_file: Path, capsys) -> None:
    root = write_paired_folder(tmp_path / "pairs", n=2, h=32, w=48).root
    out = tmp_path / "result.json"
    code = main(
        ["evaluate", "--model", str(student_file), "--data", f"folder:{root}", "--protocol", "sim_indoor",
         "--align", "median", "--output", str(out)]
    )
    assert code == 0
    payload = json.loads(out.read_text())
    assert payload["protocol"] == "sim_indoor" and payload["align"] == "median"
    assert set(payload["metrics"]) == set(METRIC_KEYS) and payload["count"] == 2
    assert payload["scale_mean"] is not None
    assert "sim_indoor" in capsys.readouterr().out


def test_relative_outputs_need_alignment() -> None:
    with pytest.raises(ConfigError, match="lstsq_disparity"):
        check_alignment("relative_disparity", "none", "hf:dpt")
    with pytest.raises(ConfigError, match="median or lstsq"):
        check_alignment("relative_depth", "lstsq_disparity", "x")
    check_alignment("metric_depth", "none", "x")


def test_predict_then_evaluate_saved_predictions(tmp_path: Path, student_file: Path) -> None:
    fixture = write_paired_folder(tmp_path / "pairs", n=2, h=32, w=48)
    out = tmp_path / "preds"
    summary = predict_folder(str(student_file), fixture.root / "rgb", out)
    assert summary.count == 2 and summary.kind == "metric_depth"
    assert json.loads((out / "meta.json").read_text())["scale"] == 1000.0
    for name in fixture.names:
        assert (out / f"{name}.png").is_file() and (out / "colormap" / f"{name}.png").is_file()

    from depthkd.models import load_student

    model = load_student(student_file)
    with torch.inference_mode():
        direct = model(read_rgb(fixture.rgb[0]).unsqueeze(0)).depth[0]
    saved = read_depth(out / f"{fixture.names[0]}.png", 1000.0)
    assert torch.allclose(saved, direct, atol=0.5e-3 + 1e-6)  # 16-bit millimetres

    data = f"folder:{fixture.root}"
    from_model = evaluate(str(student_file), data, protocol="sim_indoor")
    from_files = evaluate(f"preds:{out}", data, protocol="sim_indoor")
    assert from_files.count == from_model.count == 2
    assert from_files.metrics["abs_rel"] == pytest.approx(from_model.metrics["abs_rel"], abs=1e-3)


def test_an_exported_onnx_file_is_scored_like_its_student(tmp_path: Path, student_file: Path) -> None:
    from depthkd.export import export_onnx
    from depthkd.models import load_student

    onnx_path = tmp_path / "student.onnx"
    export_onnx(load_student(student_file), onnx_path, size=(32, 48), exporter="legacy", check=False)
    data = f"folder:{write_paired_folder(tmp_path / 'pairs', n=2, h=32, w=48).root}"
    from_onnx = evaluate(str(onnx_path), data, protocol="sim_indoor")
    from_torch = evaluate(str(student_file), data, protocol="sim_indoor")
    assert from_onnx.metrics["abs_rel"] == pytest.approx(from_torch.metrics["abs_rel"], rel=1e-4)


def test_cli_errors_are_one_line(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "absent.safetensors"
    root = write_paired_folder(tmp_path / "pairs", n=1).root
    code = main(["evaluate", "--model", str(missing), "--data", f"folder:{root}", "--protocol", "sim_indoor"])
    err = capsys.readouterr().err
    assert code == 2 and str(missing) in err and "Traceback" not in err
    assert main(["evaluate", "--data", f"folder:{root}"]) == 2  # neither --model nor --predictions


def _subcommands() -> list[str]:
    from depthkd.cli import build_parser

    parser = build_parser()
    (action,) = [a for a in parser._actions if a.dest == "command"]
    return sorted(action.choices)


def test_cli_lists_the_documented_commands() -> None:
    expected = {"simulate", "verify-data", "evaluate", "predict", "train", "distill", "inspect"}
    assert expected <= set(_subcommands())


@pytest.mark.parametrize("command", _subcommands())
def test_every_subcommand_has_help(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: depthkd " + command in capsys.readouterr().out
