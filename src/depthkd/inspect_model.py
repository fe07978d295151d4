"""``depthkd inspect MODEL``: module names and output shapes, to choose feature-KD hook points.

A dry forward pass on a blank image records, for every submodule that runs, the shape of the tensor a
forward hook would capture there (:func:`depthkd.distill.hooks.first_tensor`: for modules returning
tuples or lists, their first tensor). Names are relative to the model a method hooks: the student, or
the teacher adapter (``load_teacher``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from depthkd.distill.hooks import first_tensor
from depthkd.errors import ConfigError, ModelError

TEACHER_PREFIXES = ("hf:", "onnx:", "torch:", "preds:")


class ModuleInfo(NamedTuple):
    """One row of :func:`inspect_model`: dotted module name, class name, captured output shape."""

    name: str
    type: str
    shape: tuple[int, ...]


def _student_from_spec(spec: str) -> nn.Module:
    """``student:BACKBONE?head=bins&max_depth=80`` (or a bare timm backbone name) -> a fresh student."""
    from depthkd.config import student_config_from_spec
    from depthkd.models.student import DepthStudent

    return DepthStudent(student_config_from_spec(spec))


def load_inspectable(spec: str, device: str | torch.device = "cpu") -> tuple[nn.Module, bool]:
    """``(model, is_teacher)`` for a student file/spec or a teacher spec."""
    if spec.startswith("onnx:") or spec.startswith("preds:"):
        raise ModelError(
            f"{spec!r}: ONNX graphs and saved predictions have no PyTorch modules to hook; feature KD "
            "needs an hf: or torch: teacher"
        )
    if spec.startswith(TEACHER_PREFIXES):
        from depthkd.models.teachers import load_teacher

        return load_teacher(spec, device=device), True
    path = Path(spec)
    if path.suffix == ".safetensors" and path.is_file():
        from depthkd.models.checkpoint import load_student

        return load_student(path, map_location=device), False
    from depthkd.models.teachers import builtin_teacher_names

    if spec in builtin_teacher_names():
        from depthkd.models.teachers import load_teacher

        return load_teacher(spec, device=device), True
    if spec.startswith("student:") or "/" not in spec:
        return _student_from_spec(spec).to(device), False
    raise ConfigError(
        f"cannot inspect {spec!r}: expected a teacher spec ({', '.join(p + '...' for p in TEACHER_PREFIXES)} or a "
        "built-in name), a student .safetensors file, or student:BACKBONE[?option=value&...]"
    )


def inspect_model(spec: str, size: tuple[int, int] = (224, 224), device: str | torch.device = "cpu") -> list[ModuleInfo]:
    """Every submodule that runs on a ``(1,3,H,W)`` image, in registration order, with its output shape."""
    model, is_teacher = load_inspectable(spec, device)
    model.eval()
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def record(module: nn.Module, inputs: Any, output: Any, name: str = name) -> None:
            tensor = first_tensor(output)
            if tensor is not None and name not in shapes:
                shapes[name] = tuple(tensor.shape)

        handles.append(module.register_forward_hook(record))
    images = torch.zeros(1, 3, int(size[0]), int(size[1]), device=device)
    try:
        with torch.no_grad():
            if is_teacher:
                model(images, return_features=False)
            else:
                model(images)
    finally:
        for handle in handles:
            handle.remove()
    return [
        ModuleInfo(name, type(module).__name__, shapes[name])
        for name, module in model.named_modules()
        if name in shapes
    ]


def format_inspection(rows: list[ModuleInfo]) -> str:
    """A plain-text table of :func:`inspect_model` rows."""
    if not rows:
        return "(no submodule ran)"
    width_name = max(len("module"), *(len(r.name) for r in rows))
    width_type = max(len("type"), *(len(r.type) for r in rows))
    lines = [f"{'module':<{width_name}}  {'type':<{width_type}}  output shape"]
    lines += [f"{r.name:<{width_name}}  {r.type:<{width_type}}  {tuple(r.shape)}" for r in rows]
    return "\n".join(lines)


__all__ = ["ModuleInfo", "format_inspection", "inspect_model", "load_inspectable"]
