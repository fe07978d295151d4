"""``depthkd inspect``: module names and the shapes a hook would capture there."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from depthkd.distill.hooks import FeatureHooks
from depthkd.errors import ModelError
from depthkd.inspect_model import format_inspection, inspect_model
from depthkd.models import build_student, save_student


def test_student_spec_rows_match_what_hooks_capture() -> None:
    rows = inspect_model("student:mobilenetv2_050?decoder_channels=[16,16,8,8]", size=(32, 48))
    by_name = {row.name: row for row in rows}
    assert "encoder" in by_name and "decoder" in by_name
    name = next(r.name for r in rows if r.type == "Conv2d")
    student = build_student("mobilenetv2_050", decoder_channels=(16, 16, 8, 8)).eval()
    with FeatureHooks(student, [name]) as hooks, torch.no_grad():
        student(torch.zeros(1, 3, 32, 48))
        (captured,) = hooks.collect()
    assert by_name[name].shape == tuple(captured.shape)
    assert "output shape" in format_inspection(rows)


def test_teacher_spec_lists_the_adapter_modules(tmp_path: Path) -> None:
    path = save_student(build_student("mobilenetv2_050", decoder_channels=(16, 16, 8, 8)), tmp_path / "t.safetensors")
    rows = inspect_model(f"torch:{path}", size=(32, 32))
    assert any(row.name.startswith("model.encoder") for row in rows)  # names as the teacher module sees them
    student_rows = inspect_model(str(path), size=(32, 32))
    assert student_rows[0].name == "encoder"


def test_onnx_teachers_cannot_be_hooked() -> None:
    with pytest.raises(ModelError, match="no PyTorch modules"):
        inspect_model("onnx:model.onnx")
