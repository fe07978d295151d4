"""``torch:FILE``: a saved depthkd student (``.safetensors``) or a TorchScript / ``torch.export`` file.

A student trained by depthkd can teach the next one (metric depth, encoder features). Other PyTorch
models come as TorchScript (``torch.jit.save``) or as a ``torch.export`` program (``.pt2``): both load
without unpickling arbitrary objects. Their output kind defaults to ``metric_depth``; say otherwise
with ``kind=``; their input preparation comes from ``mean``/``std``/``size``/``size_multiple``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.export.pt2_archive.constants import OPAQUE_OBJ_FILENAME_PREFIX

from depthkd.errors import ModelError
from depthkd.models.outputs import TeacherOutput
from depthkd.models.teachers.base import Teacher, path_fingerprint, require_path, resize_maps, settings_hash
from depthkd.models.teachers.preprocessing import ImagePreprocessing

log = logging.getLogger(__name__)

EXPORT_SUFFIX = ".pt2"
STUDENT_SUFFIX = ".safetensors"
FORCE_WEIGHTS_ONLY = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"


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


@contextlib.contextmanager
def _weights_only_torch_load() -> Iterator[None]:
    """Make every ``torch.load`` inside the block weights-only, even one that asks for full unpickling.

    ``torch.export.load`` reads pickled weights, constants and sample inputs with ``weights_only=False``
    (sample inputs after a safe attempt fails), so a crafted ``.pt2`` runs code. torch honours
    ``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` over the call's own argument; the previous value is restored."""
    previous = os.environ.get(FORCE_WEIGHTS_ONLY)
    os.environ[FORCE_WEIGHTS_ONLY] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(FORCE_WEIGHTS_ONLY, None)
        else:
            os.environ[FORCE_WEIGHTS_ONLY] = previous


def _refuse_python_objects(path: Path) -> None:
    """Refuse a ``.pt2`` archive that holds opaque Python objects: torch reads them with plain
    ``pickle.loads``, which no setting makes safe."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as err:
        raise ModelError(f"{path} is not a torch.export program (.pt2 is a zip archive): {err}") from err
    opaque = [name for name in names if Path(name).name.startswith(OPAQUE_OBJ_FILENAME_PREFIX)]
    if opaque:
        raise ModelError(
            f"{path} holds pickled Python objects ({', '.join(opaque[:3])}); depthkd does not unpickle files "
            "it is handed (unpickling can run code): export the model without opaque objects"
        )


def _load_exported_program(path: Path, device: torch.device) -> nn.Module:
    """Load a ``.pt2`` exported program without unpickling anything but tensors and plain containers."""
    _refuse_python_objects(path)
    try:
        with _weights_only_torch_load():
            program = torch.export.load(str(path))
    except pickle.UnpicklingError as err:
        raise ModelError(
            f"{path} holds pickled data beyond tensors and plain containers, which depthkd does not load "
            f"(unpickling can run code): {str(err).splitlines()[0]}"
        ) from err
    return program.module().to(device)


def _load_module(path: Path, device: torch.device) -> nn.Module:
    """Load a ``.pt2`` exported program or a TorchScript file onto ``device``."""
    try:
        if path.suffix == EXPORT_SUFFIX:
            return _load_exported_program(path, device)
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
