"""Student checkpoints: one ``.safetensors`` file, the build config as JSON in its metadata.

safetensors holds tensors only (no pickle, safe to open from anywhere); the metadata entry
``depthkd_student_config`` carries the :class:`StudentConfig`, so ``load_student`` needs nothing but
the file. ``pretrained_path`` is dropped on load: the file already holds the trained weights.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from depthkd.errors import ConfigError, ModelError
from depthkd.models.student import DepthStudent, StudentConfig

log = logging.getLogger(__name__)

FORMAT_KEY = "depthkd_format"
FORMAT_VALUE = "student/1"
CONFIG_KEY = "depthkd_student_config"


def save_student(model: DepthStudent, path: str | Path) -> Path:
    """Write ``model``'s weights and config to one ``.safetensors`` file; returns the path."""
    if not isinstance(model, DepthStudent):
        raise ModelError(f"save_student expects a DepthStudent, got {type(model).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = {FORMAT_KEY: FORMAT_VALUE, CONFIG_KEY: json.dumps(model.config.to_dict())}
    save_file(tensors, str(path), metadata=metadata)
    path.chmod(0o666 & ~_umask())  # safetensors writes 0600; a student is shared like any other output
    log.info("saved student (%s, %s head) to %s", model.config.backbone, model.config.head, path)
    return path


def _umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_student_config(path: str | Path) -> StudentConfig:
    """The :class:`StudentConfig` stored in a student checkpoint, without loading the weights."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"student checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelError(f"{path} is not a safetensors file ({err}): expected a depthkd student") from err
    if CONFIG_KEY not in metadata:
        raise ModelError(
            f"{path} is a safetensors file without '{CONFIG_KEY}' metadata: "
            "expected a student checkpoint written by save_student"
        )
    try:
        values = json.loads(metadata[CONFIG_KEY])
        return StudentConfig.from_dict(values)
    except (json.JSONDecodeError, TypeError, ConfigError) as err:
        raise ModelError(f"{path} holds an invalid student config: {err}") from err


def load_student(path: str | Path, map_location: str | torch.device = "cpu") -> DepthStudent:
    """Rebuild the student saved at ``path`` and load its weights onto ``map_location``.

    The model is returned in eval mode. Raises :class:`ModelError` for a missing file, a file that is
    not a student checkpoint, weights that do not match the stored config, or NaN/infinite weights (a
    diverged run: every prediction would be NaN or garbage, silently).
    """
    path = Path(path)
    config = read_student_config(path)
    # The checkpoint already holds every weight.
    config.pretrained_path = config.init_weights = config.init_encoder = None
    model = DepthStudent(config)
    state = load_file(str(path), device=str(torch.device(map_location)))
    broken = [key for key, tensor in state.items() if tensor.is_floating_point() and not tensor.isfinite().all()]
    if broken:
        raise ModelError(f"{path} holds NaN or infinite weights in {len(broken)} tensor(s), e.g. {broken[0]!r}: "
                         "the run that wrote it diverged; use an earlier checkpoint")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ModelError(f"weights in {path} do not match its student config: {err}") from err
    return model.to(map_location).eval()


def load_initial_weights(model: DepthStudent, source: str) -> None:
    """Copy the weights of ``source`` (a student checkpoint path or a built-in teacher name) into
    ``model`` (:attr:`StudentConfig.init_weights`); a :class:`ModelError` names the file when they
    do not fit."""
    from depthkd.models.teachers.builtin import BUILTIN_TEACHERS, weights_path

    path = weights_path(source) if source in BUILTIN_TEACHERS else Path(source)
    if not path.is_file():
        raise ModelError(f"student init_weights {source!r}: no such file {path} (expected a student "
                         f"checkpoint or one of {', '.join(BUILTIN_TEACHERS)})")
    read_student_config(path)  # a clear error for a file that is not a student checkpoint
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as err:
        raise ModelError(f"student init_weights {path} do not fit this student's architecture: {err}") from err
    log.info("student starts from the weights of %s", path)
