"""Pretrained student encoders: the stand-ins for ImageNet weights (``StudentConfig.init_encoder``).

The papers distilled here all start their students from an ImageNet-pretrained encoder. None can be
downloaded offline, so depthkd ships one of its own: ``sim-pool``, a MobileNetV2 encoder trained on
exact depth of the simulator's out-of-distribution domains (recipe ``pretrain-sim-pool``), which no
setting trains or tests on. A user with real ImageNet weights uses ``pretrained_path`` instead.

An encoder file is one ``.safetensors`` holding the :class:`~depthkd.models.encoder.Encoder` state dict
(keys ``backbone.…``) and metadata ``depthkd_format: encoder/1``, ``backbone`` and a JSON ``card``
(where the weights came from). A student checkpoint works as well: its ``encoder.`` weights are used.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from depthkd.errors import ModelError

log = logging.getLogger(__name__)

ENCODER_FORMAT = "encoder/1"
BUILTIN_ENCODERS: dict[str, tuple[str, ...]] = {"sim-pool": ("mobilenetv2_100",)}
"""Built-in pretrained encoder name -> the backbones it exists for (file ``<name>-<backbone>.safetensors``)."""


def builtin_encoder_path(name: str, backbone: str) -> Path:
    """The shipped file of built-in encoder ``name`` for ``backbone`` (a :class:`ModelError` when absent)."""
    from depthkd.models.teachers.builtin import weights_dir

    if backbone not in BUILTIN_ENCODERS[name]:
        raise ModelError(f"built-in encoder {name!r} exists for backbone(s) {', '.join(BUILTIN_ENCODERS[name])}, "
                         f"not {backbone!r}: train one with configs/pretrain-sim-pool.yaml "
                         f"(--set student.backbone={backbone}) and give its file as init_encoder")
    path = weights_dir() / f"{name}-{backbone}.safetensors"
    if not path.is_file():
        raise ModelError(f"built-in encoder {name!r}: weights not found at {path} (is depthkd installed with its "
                         "package data? reinstall with pip install -e .)")
    return path


def save_encoder(encoder: nn.Module, backbone: str, path: str | Path, card: dict[str, Any]) -> Path:
    """Write ``encoder``'s weights (as they are: cast them first to ship float16) with its card."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in encoder.state_dict().items()}
    metadata = {"depthkd_format": ENCODER_FORMAT, "backbone": backbone, "card": json.dumps(card)}
    save_file(tensors, str(path), metadata=metadata)
    return path


def read_encoder_state(source: str, backbone: str) -> tuple[Path, dict]:
    """The encoder weights of ``source`` (built-in name, encoder file or student checkpoint) for a
    ``backbone`` encoder, with the file they came from."""
    path = builtin_encoder_path(source, backbone) if source in BUILTIN_ENCODERS else Path(source)
    if not path.is_file():
        raise ModelError(f"student init_encoder {source!r}: no such file {path} (expected an encoder file, a "
                         f"student checkpoint or one of {', '.join(BUILTIN_ENCODERS)})")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelError(f"student init_encoder {path} is not a safetensors file ({err})") from err
    if metadata.get("depthkd_format") == ENCODER_FORMAT:
        stored = metadata.get("backbone")
        state = load_file(str(path))
    else:
        from depthkd.models.checkpoint import read_student_config

        stored = read_student_config(path).backbone  # a clear error for any other file
        state = {k.removeprefix("encoder."): v for k, v in load_file(str(path)).items() if k.startswith("encoder.")}
    if stored != backbone:
        raise ModelError(f"student init_encoder {path} holds a {stored!r} encoder; this student's backbone is "
                         f"{backbone!r}")
    return path, state


def load_pretrained_encoder(encoder: nn.Module, backbone: str, source: str) -> None:
    """Copy the pretrained weights of ``source`` into ``encoder`` (every weight must fit)."""
    path, state = read_encoder_state(source, backbone)
    try:
        encoder.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ModelError(f"student init_encoder {path} does not fit this {backbone!r} encoder: {err}") from err
    log.info("student encoder starts from the weights of %s", path)
