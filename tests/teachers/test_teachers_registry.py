"""Spec parsing, the built-in registry and the frozen base class."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
from torch import nn

from depthkd.errors import DataError, ModelError
from depthkd.models.outputs import TeacherOutput
from depthkd.models.teachers import Teacher, builtin_teacher_names, load_teacher, register_builtin_teacher
from depthkd.models.teachers import registry


class _Constant(Teacher):
    """Depth = a learnable-looking (but frozen) constant, with BatchNorm to check eval mode."""

    def __init__(self, device="cpu", dtype=None, value: float = 2.0, shape_bug: bool = False) -> None:
        super().__init__(kind="metric_depth", teacher_id="const", preprocess_id="none", spec="const", device=device)
        self.value = nn.Parameter(torch.tensor(value))
        self.norm = nn.BatchNorm2d(3)
        self.shape_bug = shape_bug
        self.freeze()

    def _predict(self, images: torch.Tensor, names: Sequence[str] | None, return_features: bool) -> TeacherOutput:
        normed = self.norm(images)
        depth = self.value + 0.0 * normed[:, :1]
        if self.shape_bug:
            depth = depth[..., :-1]
        return TeacherOutput(depth=depth, kind=self.kind)


@pytest.fixture
def clean_registry(monkeypatch):
    monkeypatch.setattr(registry, "_BUILTINS", {})


def test_unknown_spec_lists_forms_and_builtins(clean_registry):
    register_builtin_teacher("const", _Constant)
    with pytest.raises(ModelError, match=r"hf:DIR, onnx:FILE, torch:FILE, preds:DIR.*\(const\)"):
        load_teacher("sim-vitt")
    with pytest.raises(ModelError, match="names no path"):
        load_teacher("hf:")


def test_builtin_registration_and_kwargs(clean_registry):
    register_builtin_teacher("const", _Constant)
    assert builtin_teacher_names() == ["const"]
    teacher = load_teacher("const", value=3.0)
    torch.testing.assert_close(teacher(torch.rand(2, 3, 4, 5)).depth, torch.full((2, 1, 4, 5), 3.0))
    with pytest.raises(ModelError, match="already registered"):
        register_builtin_teacher("const", _Constant)
    with pytest.raises(ModelError, match="no ':'"):
        register_builtin_teacher("hf:x", _Constant)


def test_base_class_keeps_eval_mode_and_checks_shapes():
    teacher = _Constant()
    teacher.train()
    assert not teacher.norm.training
    running = teacher.norm.running_mean.clone()
    teacher(torch.rand(2, 3, 4, 5) + 5.0)
    assert torch.equal(teacher.norm.running_mean, running)  # eval mode: statistics untouched
    with pytest.raises(ModelError, match="expected the input size"):
        _Constant(shape_bug=True)(torch.rand(1, 3, 4, 5))
    with pytest.raises(DataError, match=r"\(B,3,H,W\)"):
        teacher(torch.rand(3, 4, 5))
    with pytest.raises(ModelError, match="output kind"):
        Teacher(kind="depth", teacher_id="x", preprocess_id="y", spec="x")
    with pytest.raises(ModelError, match="precision"):
        Teacher(kind="metric_depth", teacher_id="x", preprocess_id="y", spec="x", precision="fp8")
