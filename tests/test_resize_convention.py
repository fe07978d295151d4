"""The resize convention of low-resolution predictions is an evaluation option, named in the label."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from depthkd.metrics import MetricAccumulator, compute_metrics, protocol_label


def _low_res_and_gt() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    gt = torch.rand(1, 48, 64) * 8 + 1
    low = F.interpolate(gt[None], size=(12, 16), mode="area")[0] * (1 + 0.1 * torch.rand(1, 12, 16))
    return low, gt


def test_align_corners_resize_equals_resizing_by_hand_and_differs_from_the_default() -> None:
    low, gt = _low_res_and_gt()
    by_hand = F.interpolate(low[None], size=(48, 64), mode="bilinear", align_corners=True)[0]
    corners = compute_metrics(low, gt, protocol="sim_indoor", align_corners=True)
    assert corners == pytest.approx(compute_metrics(by_hand, gt, protocol="sim_indoor"), rel=1e-6)
    default = compute_metrics(low, gt, protocol="sim_indoor")
    assert abs(corners["rmse"] - default["rmse"]) > 1e-3


def test_the_label_names_align_corners_and_keeps_todays_label_by_default() -> None:
    assert protocol_label("nyu") == "nyu (Eigen crop, 1e-3..10 m), align=none"
    assert protocol_label("nyu", align_corners=True) == "nyu (Eigen crop, 1e-3..10 m, resize=align_corners), align=none"
    accumulator = MetricAccumulator("sim_indoor", align_corners=True)
    low, gt = _low_res_and_gt()
    accumulator.update(low, gt)
    assert "resize=align_corners" in accumulator.label()


def test_saved_low_resolution_predictions_follow_the_option(tmp_path) -> None:
    from depthkd.evaluate import evaluate
    from official_formats import write_paired_folder

    tree = write_paired_folder(tmp_path / "data", n=2, h=32, w=48)
    preds = tmp_path / "preds"
    preds.mkdir()
    for rgb in tree.rgb:
        np.save(preds / f"{rgb.stem}.npy", np.linspace(0.4, 0.7, 8 * 12, dtype=np.float32).reshape(8, 12))
    (preds / "meta.json").write_text(json.dumps({"kind": "metric_depth"}))
    data = f"folder:{tree.root}"
    plain = evaluate(f"preds:{preds}", data, protocol="none", min_depth=1e-3, max_depth=10.0)
    corners = evaluate(f"preds:{preds}", data, protocol="none", min_depth=1e-3, max_depth=10.0, align_corners=True)
    assert "resize=align_corners" in corners.label and "resize" not in plain.label
    assert corners.metrics["rmse"] != pytest.approx(plain.metrics["rmse"], rel=1e-6)


def test_the_cli_flag_reaches_the_label(tmp_path, capsys) -> None:  # noqa: ANN001
    from depthkd.cli import main
    from official_formats import write_paired_folder

    tree = write_paired_folder(tmp_path / "data", n=1, h=16, w=24)
    preds = tmp_path / "preds"
    preds.mkdir()
    np.save(preds / f"{tree.rgb[0].stem}.npy", np.full((4, 6), 0.5, dtype=np.float32))
    (preds / "meta.json").write_text(json.dumps({"kind": "metric_depth"}))
    args = ["evaluate", "--predictions", str(preds), "--data", f"folder:{tree.root}", "--protocol", "sim_indoor"]
    assert main([*args, "--align-corners"]) == 0
    assert "resize=align_corners" in capsys.readouterr().out
