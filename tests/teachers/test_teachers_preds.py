"""``preds:`` teachers read saved predictions by item name."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from depthkd.errors import DataError
from depthkd.io import write_depth_png
from depthkd.models.teachers import load_teacher


def _maps() -> dict[str, torch.Tensor]:
    ramp = torch.linspace(0.5, 8.0, 32 * 48).reshape(1, 32, 48)
    return {"room/a": ramp, "b": ramp.flip(-1) * 0.5}


def test_png_predictions_with_meta_scale(tmp_path, images):
    for name, depth in _maps().items():
        write_depth_png(tmp_path / f"{name}.png", depth, scale=256.0)
    (tmp_path / "meta.json").write_text(json.dumps({"scale": 256, "kind": "metric_depth"}))
    teacher = load_teacher(f"preds:{tmp_path}")
    out = teacher(images, names=["room/a", "b"])
    expected = torch.stack(list(_maps().values()))
    assert out.depth.shape == (2, 1, 32, 48) and out.kind == "metric_depth"
    torch.testing.assert_close(out.depth, expected, atol=0.5 / 256 + 1e-6, rtol=0)


def test_npy_predictions_resized_and_kind_keyword(tmp_path):
    np.save(tmp_path / "x.npy", np.full((16, 24), 0.25, dtype=np.float32))
    teacher = load_teacher(f"preds:{tmp_path}", kind="relative_disparity")
    out = teacher(torch.rand(1, 3, 32, 48), names=["x"])
    assert out.kind == "relative_disparity"
    torch.testing.assert_close(out.depth, torch.full((1, 1, 32, 48), 0.25))
    # New or edited predictions give the folder a new identity (so caches built from it are rebuilt).
    np.save(tmp_path / "y.npy", np.ones((16, 24), dtype=np.float32))
    assert load_teacher(f"preds:{tmp_path}").teacher_id != teacher.teacher_id


def test_missing_prediction_and_missing_names_are_clear(tmp_path, images):
    np.save(tmp_path / "b.npy", np.ones((32, 48), dtype=np.float32))
    teacher = load_teacher(f"preds:{tmp_path}")
    with pytest.raises(DataError, match=r"no prediction for item 'room/a'.*room/a\.npy"):
        teacher(images, names=["room/a", "b"])
    with pytest.raises(DataError, match="names="):
        teacher(images)
    with pytest.raises(DataError, match="2 images"):
        teacher(images, names=["b"])
