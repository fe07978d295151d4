"""``torch:FILE``: a saved depthkd student (``.safetensors``) or a TorchScript / ``torch.export`` file.

A student trained by depthkd can teach the next one (metric depth, encoder features). Other PyTorch
models come as TorchScript (``torch.jit.save``) or as a ``torch.export`` program (``.pt2``): both load
without unpickling arbitrary objects. Their output kind defaults to ``metric_depth``; say otherwise
with ``kind=``; their input preparation comes from ``mean``/``std``/``size``/``size_multiple``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from depthkd.errors import ModelError
from depthkd.models.outputs import TeacherOutput
from depthkd.models.teachers.base import Teacher, path_fingerprint, require_path, resize_maps, settings_hash
from depthkd.models.teachers.preprocessing import ImagePreprocessing

log = logging.getLogger(__name__)

EXPORT_SUFFIX = ".pt2"
STUDENT_SUFFIX = ".safetensors"


class StudentTeacher(Teacher):
    """A depthkd student used as a teacher: it normalises its own input and returns encoder features."""

    def __init__(
        self,
        student: nn.Module,
        teacher_id: str,
        spec: str,
        kind: str = "metric_depth",
        precision: str = "fp32",
        device: str | torch.device = "cpu",
    ) -> None:
        config = getattr(student, "config", None)
        super().__init__(
            kind=kind,
            teacher_id=teacher_id,
            preprocess_id=settings_hash({"student": "own normalisation, input size"}),
            spec=spec,
            precision=precision,
            device=device,
            max_depth=getattr(config, "max_depth", None),
        )
        self.model = student.to(self.device)
        self.freeze()

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Students take ``[0,1]`` images as they are."""
        return images.to(self.device, next(self.model.parameters()).dtype)

    def _predict(
        self, images: torch.Tensor, names: Sequence[str] | None, return_features: bool
    ) -> TeacherOutput:
        out = self.model(self.preprocess(images))
        features = list(out.features) if return_features else []
        return TeacherOutput(depth=out.depth, kind=self.kind, features=features)  # type: ignore[arg-type]


def _first_tensor(output: Any, spec: str) -> torch.Tensor:
    """The depth tensor in a module's output: the tensor, the first of a tuple, or a dict's depth key."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    if isinstance(output, dict):
        for key in ("depth", "predicted_depth", "disparity"):
            if isinstance(output.get(key), torch.Tensor):
                return output[key]
    raise ModelError(
        f"teacher {spec} returned {type(output).__name__}; expected a depth tensor, a tuple starting with "
        "one, or a dict with 'depth' or 'predicted_depth'"
    )


class ScriptedTeacher(Teacher):
    """A TorchScript or ``torch.export`` module: ``preprocessing(images)`` in, depth map out."""

    def __init__(
        self,
        module: nn.Module,
        preprocessing: ImagePreprocessing,
        kind: str,
        teacher_id: str,
        spec: str,
        precision: str = "fp32",
        device: str | torch.device = "cpu",
        input_dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__(
            kind=kind,
            teacher_id=teacher_id,
            preprocess_id=settings_hash({"torch": preprocessing.settings()}),
            spec=spec,
            precision=precision,
            device=device,
        )
        self.exported = isinstance(module, torch.fx.GraphModule)
        self.model = module.to(self.device)
        self.preprocessing = preprocessing
        self.input_dtype = input_dtype
        self.freeze()

    def train(self, mode: bool = True) -> ScriptedTeacher:
        """Eval mode; a ``torch.export`` program cannot switch modes (it runs as it was exported)."""
        if self.exported:
            self.training = False
            return self
        return super().train(False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """The module's input for ``[0,1]`` images (resized, normalised)."""
        return self.preprocessing(images.to(self.device, self.input_dtype))

    def _predict(
        self, images: torch.Tensor, names: Sequence[str] | None, return_features: bool
    ) -> TeacherOutput:
        if return_features:
            raise self.no_features_error()
        inputs = self.preprocess(images)
        try:
            raw = _first_tensor(self.model(inputs), self.spec)
        except (RuntimeError, AssertionError) as err:
            raise ModelError(f"teacher {self.spec} failed on input {tuple(inputs.shape)}: {err}") from err
        depth = raw.unsqueeze(1) if raw.ndim == 3 else raw
        if depth.ndim == 4 and depth.shape[1] == 1:
            depth = resize_maps(depth.float(), images.shape[-2:], "bilinear")
        return TeacherOutput(depth=depth, kind=self.kind)  # type: ignore[arg-type]


def _load_module(path: Path, device: torch.device) -> nn.Module:
    """Load a ``.pt2`` exported program or a TorchScript file onto ``device``."""
    try:
        if path.suffix == EXPORT_SUFFIX:
            return torch.export.load(str(path)).module().to(device)
        with warnings.catch_warnings():  # TorchScript is deprecated upstream but still the common format
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(path), map_location=device)
    except (RuntimeError, ValueError, OSError) as err:
        raise ModelError(
            f"{path} is neither a depthkd student (.safetensors), a TorchScript file nor a torch.export "
            f"program (.pt2): {err}"
        ) from err


def load_torch_teacher(
    path: str | Path,
    spec: str,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    kind: str = "metric_depth",
    precision: str = "fp32",
    content_hash: bool = False,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    size: Sequence[int] | None = None,
    size_multiple: int | None = None,
    interpolation: str | None = None,
) -> Teacher:
    """Load a student checkpoint or a TorchScript/exported module as a frozen teacher.

    ``mean``, ``std``, ``size``, ``size_multiple``, ``interpolation`` describe a scripted module's
    input (see :class:`~.preprocessing.ImagePreprocessing`); a student needs none of them.
    """
    file = require_path(path, spec)
    device = torch.device(device)
    identity = {
        "file": path_fingerprint(file, content=content_hash),
        "dtype": str(dtype or torch.float32),
        "precision": precision,
        "kind": kind,
    }
    teacher_id = f"torch:{file.name}#{settings_hash(identity)}"
    if file.suffix == STUDENT_SUFFIX:
        from depthkd.models import load_student

        student = load_student(file, map_location=device)
        if dtype is not None:
            student = student.to(dtype)
        return StudentTeacher(student, teacher_id, spec, kind=kind, precision=precision, device=device)
    module = _load_module(file, device)
    if dtype is not None:
        module = module.to(dtype)
    preprocessing = ImagePreprocessing.from_options(
        mean=mean, std=std, size=size, size_multiple=size_multiple, interpolation=interpolation
    )
    return ScriptedTeacher(
        module,
        preprocessing,
        kind=kind,
        teacher_id=teacher_id,
        spec=spec,
        precision=precision,
        device=device,
        input_dtype=dtype or torch.float32,
    )
