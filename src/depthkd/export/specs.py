"""Model specs for ``export`` and ``benchmark``: one string names any model depthkd can run.

| spec | model |
|---|---|
| ``PATH.safetensors`` | a trained student (:func:`~depthkd.models.load_student`) |
| ``PATH.onnx`` | an ONNX graph (onnxruntime only; its sidecar says the output kind) |
| ``student:BACKBONE[?head=bins&lgconv=1&max_depth=80]`` | a student architecture, random weights |
| ``arch:NAME`` | a published teacher architecture, random weights (:mod:`depthkd.reference_models`) |
| ``hf:DIR``, ``onnx:FILE``, ``torch:FILE``, built-in name | a teacher (:func:`~depthkd.models.teachers.load_teacher`) |

Random weights are enough to time a network: its cost does not depend on what it has learnt.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from depthkd.errors import ModelError
from depthkd.models.student import DepthStudent
from depthkd.models.teachers.base import Teacher

STUDENT_PREFIX = "student:"  # parsed by depthkd.config.student_config_from_spec
ARCH_PREFIX = "arch:"
TEACHER_PREFIXES = ("hf", "onnx", "torch", "preds")


@dataclass
class ModelSource:
    """A resolved spec: a PyTorch module, an ONNX file, or both.

    Attributes:
        spec: the spec as given (or the module's class name).
        module: maps ``(B,3,H,W)`` ``[0,1]`` images to a depth output (``None`` for ``.onnx`` files);
            a clean, exportable network (teacher adapters are unwrapped to their model + preprocessing).
        onnx_path: the graph file for ``.onnx``/``onnx:`` specs.
        kind: what the output means.
        size_multiple: input sides the model handles best (the student's deepest stride; 1 when the
            model resizes its input itself).
    """

    spec: str
    module: nn.Module | None
    onnx_path: Path | None
    kind: str
    size_multiple: int = 1

    @property
    def label(self) -> str:
        """A short name for tables."""
        return Path(self.spec).name if self.spec.endswith((".onnx", ".safetensors")) else self.spec


def student_size_multiple(student: DepthStudent) -> int:
    """The coarsest encoder stride: inputs that are multiples of it need no padding anywhere."""
    return int(max(student.encoder.reductions))


def _from_module(module: nn.Module, spec: str) -> ModelSource:
    """Wrap a module (student, reference architecture, teacher adapter) as a :class:`ModelSource`."""
    from depthkd.reference_models import ReferenceDepthModel

    if isinstance(module, DepthStudent):
        return ModelSource(spec, module.eval(), None, "metric_depth", student_size_multiple(module))
    if isinstance(module, ReferenceDepthModel):
        return ModelSource(spec, module.eval(), None, module.kind, 1)
    if isinstance(module, Teacher):
        return _from_teacher(module, spec)
    return ModelSource(spec, module.eval(), None, "metric_depth", 1)


def _from_teacher(teacher: Teacher, spec: str) -> ModelSource:
    """A teacher adapter's network without the adapter's inference-mode wrapper (exportable)."""
    from depthkd.models.teachers.huggingface import HuggingFaceTeacher
    from depthkd.reference_models import ReferenceDepthModel

    if isinstance(teacher, HuggingFaceTeacher):
        module = ReferenceDepthModel(spec, teacher.model, teacher.preprocessing, teacher.kind).eval()
        return ModelSource(spec, module, None, teacher.kind, 1)
    inner = getattr(teacher, "model", None)
    if isinstance(inner, DepthStudent):
        return ModelSource(spec, inner.eval(), None, teacher.kind, student_size_multiple(inner))
    return ModelSource(spec, teacher, None, teacher.kind, 1)


def _onnx_source(path: Path, spec: str) -> ModelSource:
    from depthkd.models.teachers.onnx import read_sidecar

    if not path.is_file():
        raise ModelError(f"ONNX model not found: {path}")
    settings = read_sidecar(path)
    return ModelSource(spec, None, path, settings.get("kind", "metric_depth"), int(settings.get("size_multiple") or 1))


def load_model_spec(spec: str | Path | nn.Module, device: str | torch.device = "cpu") -> ModelSource:
    """Resolve a spec (see module docs) or a module into a :class:`ModelSource` on ``device``."""
    if isinstance(spec, nn.Module):
        return _from_module(spec, type(spec).__name__)
    text = str(spec)
    if text.startswith(STUDENT_PREFIX):
        from depthkd.config import student_config_from_spec

        return _from_module(DepthStudent(student_config_from_spec(text)).to(device), text)
    if text.startswith(ARCH_PREFIX):
        from depthkd.reference_models import build_reference

        return _from_module(build_reference(text[len(ARCH_PREFIX) :]).to(device), text)
    if text.startswith("onnx:"):
        return _onnx_source(Path(text[len("onnx:") :]).expanduser(), text)
    if text.endswith(".onnx"):
        return _onnx_source(Path(text).expanduser(), text)
    if text.endswith(".safetensors") and text.partition(":")[0] not in TEACHER_PREFIXES:
        from depthkd.models import load_student

        return _from_module(load_student(text, map_location=device), text)
    from depthkd.models.teachers import load_teacher

    return _from_teacher(load_teacher(text, device=device), text)
