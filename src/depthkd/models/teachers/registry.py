"""``load_teacher(spec)``: one entry point for every teacher source, and the built-in teacher registry.

Specs: ``hf:DIR``, ``onnx:FILE``, ``torch:FILE``, ``preds:DIR``, or the name of a built-in teacher
registered with :func:`register_builtin_teacher`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import torch

from depthkd.errors import ModelError
from depthkd.models.teachers.base import Teacher

TeacherFactory = Callable[..., Teacher]

SPEC_FORMS = ("hf:DIR", "onnx:FILE", "torch:FILE", "preds:DIR")
_LOADERS = {
    "hf": ("depthkd.models.teachers.huggingface", "load_hf_teacher"),
    "onnx": ("depthkd.models.teachers.onnx", "load_onnx_teacher"),
    "torch": ("depthkd.models.teachers.torchfile", "load_torch_teacher"),
    "preds": ("depthkd.models.teachers.predictions", "load_predictions_teacher"),
}
_BUILTINS: dict[str, TeacherFactory] = {}


def register_builtin_teacher(name: str, factory: TeacherFactory, overwrite: bool = False) -> None:
    """Make ``load_teacher(name)`` call ``factory(device=..., dtype=..., **kwargs)``.

    Names must not contain ``:`` (reserved for the file specs).
    """
    if not name or ":" in name:
        raise ModelError(f"built-in teacher name {name!r} must be non-empty and contain no ':'")
    if name in _BUILTINS and not overwrite:
        raise ModelError(f"built-in teacher {name!r} is already registered")
    _BUILTINS[name] = factory


def builtin_teacher_names() -> list[str]:
    """The registered built-in teacher names, sorted."""
    return sorted(_BUILTINS)


def _loader(prefix: str) -> Callable[..., Teacher]:
    """The ``load_*_teacher`` function of a spec prefix, imported on first use.

    Imported lazily because transformers and onnxruntime are slow to import and optional.
    """
    module, function = _LOADERS[prefix]
    return getattr(importlib.import_module(module), function)


def load_teacher(
    spec: str,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    **kwargs: Any,
) -> Teacher:
    """Load a frozen teacher from a spec.

    Args:
        spec: ``hf:DIR`` (transformers depth model, offline), ``onnx:FILE`` (+ sidecar JSON),
            ``torch:FILE`` (depthkd student ``.safetensors``, TorchScript or ``.pt2``), ``preds:DIR``
            (saved predictions matched by item name) or a built-in teacher name.
        device: where the teacher runs.
        dtype: weight dtype for torch-based teachers (default float32).
        **kwargs: adapter options, e.g. ``precision="bf16"``, ``kind=...``,
            ``trust_remote_code=True`` (hf), ``scale=256`` (preds); see each ``load_*_teacher``.
    """
    prefix, sep, target = spec.partition(":")
    if sep and prefix in _LOADERS:
        if not target:
            raise ModelError(f"teacher spec {spec!r} names no path; expected {prefix}:PATH")
        return _loader(prefix)(target, spec=spec, device=device, dtype=dtype, **kwargs)
    if spec in _BUILTINS:
        return _BUILTINS[spec](device=device, dtype=dtype, **kwargs)
    builtins = ", ".join(builtin_teacher_names()) or "none registered"
    raise ModelError(
        f"unknown teacher spec {spec!r}: expected one of {', '.join(SPEC_FORMS)} or a built-in teacher "
        f"({builtins})"
    )


def _register_shipped_teachers() -> None:
    """Register the teachers whose weights ship in the package (``sim-vit``, ``sim-resnet``, ``sim-vit-outdoor``)."""
    from functools import partial

    from depthkd.models.teachers.builtin import BUILTIN_TEACHERS, load_builtin_teacher

    for name in BUILTIN_TEACHERS:
        register_builtin_teacher(name, partial(load_builtin_teacher, name), overwrite=True)


_register_shipped_teachers()
