"""The built-in simulator teachers, shipped inside the package: ``sim-vit``, ``sim-resnet``, ``sim-vit-outdoor``.

All were trained by depthkd on its simulator (``sim-vit`` and ``sim-resnet`` on the ``indoor`` domain,
``sim-vit-outdoor`` on ``outdoor`` streets; recipes ``configs/teacher-<name>.yaml``) and ship as
float16 student checkpoints in
``depthkd/weights/`` beside a card (``<name>.json``: recipe, steps, hardware, test set and the
metrics of the shipped weights; ``MODEL_CARD.md`` is the same for people). They load offline:

>>> teacher = load_teacher("sim-vit")          # doctest: +SKIP

- ``sim-vit``: the Hugging Face Depth Anything architecture in DPT-Hybrid layout (a ResNet stem, a
  DINOv2 ViT on its stride-8 map, DPT neck, metric head): the transformer teacher of TIE-KD, DisDepth
  and ``depthkd demo``.
- ``sim-resnet``: ResNet-10-T + U-Net decoder with BatchNorm throughout: the teacher of data-free
  distillation, whose BatchNorm statistics the synthesised images must match.
- ``sim-vit-outdoor``: ``sim-vit``'s architecture with a metric head to 80 m, fine-tuned from it on
  exact depth of street scenes at a KITTI aspect ratio: the dense teacher of the KITTI-like setting,
  where the students' own labels are a simulated LiDAR scan.

They know simulated scenes only: on photographs their depth means little.

Weights are stored in float16 to keep the package small and run in float32 (``dtype=`` changes it).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from depthkd.errors import ModelError
from depthkd.models.teachers.base import Teacher, path_fingerprint, settings_hash

BUILTIN_TEACHERS: dict[str, str] = {
    "sim-vit": "Depth Anything architecture, DPT-Hybrid layout (ResNet-18-D stem to stride 8, DINOv2 ViT-192x8 "
               "on its map, DPT neck, metric head to 10 m)",
    "sim-resnet": "ResNet-10-T encoder + U-Net decoder, BatchNorm throughout, regression head to 10 m",
    "sim-vit-outdoor": "Depth Anything architecture, DPT-Hybrid layout (ResNet-18-D stem to stride 8, DINOv2 "
                       "ViT-192x8 on its map, DPT neck, metric head to 80 m), fine-tuned from sim-vit on street scenes",
}
"""Name -> one-line description of every built-in teacher."""

CARD_FILE = "MODEL_CARD.md"
CARD_TEST_SETS: dict[str, str] = {
    "sim_indoor": "sim:indoor?num=64&size=128x160&seed=200000",
    "sim_outdoor": "sim:outdoor?num=64&size=128x416&seed=200000",
}
"""Per protocol, the fixed test set the cards' metrics are measured on (exact depth; seeds apart from
every training and validation set)."""
CARD_PROTOCOL = "sim_indoor"
CARD_TEST_SET = CARD_TEST_SETS[CARD_PROTOCOL]
"""The indoor card test set and its protocol (the indoor teachers', the demo's and the benchmark's)."""


def weights_dir() -> Path:
    """The package folder holding the shipped weights and cards."""
    return Path(str(resources.files("depthkd") / "weights"))


def weights_path(name: str) -> Path:
    """The shipped ``.safetensors`` of built-in teacher ``name`` (a :class:`ModelError` when missing)."""
    if name not in BUILTIN_TEACHERS:
        raise ModelError(f"unknown built-in teacher {name!r}: expected one of {', '.join(BUILTIN_TEACHERS)}")
    path = weights_dir() / f"{name}.safetensors"
    if not path.is_file():
        raise ModelError(
            f"built-in teacher {name!r}: weights not found at {path} (is depthkd installed with its "
            "package data? reinstall with pip install -e .)"
        )
    return path


def read_card(name: str) -> dict[str, Any]:
    """The card of built-in teacher ``name``: recipe, training, test set, metrics (``<name>.json``)."""
    path = weights_path(name).with_suffix(".json")
    if not path.is_file():
        raise ModelError(f"built-in teacher {name!r}: card not found at {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ModelError(f"built-in teacher card {path} is not valid JSON: {err}") from err


def load_builtin_teacher(
    name: str,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    precision: str = "fp32",
) -> Teacher:
    """Load built-in teacher ``name`` (frozen, eval mode) on ``device``."""
    from depthkd.models.checkpoint import load_student
    from depthkd.models.teachers.torchfile import StudentTeacher

    path = weights_path(name)
    device = torch.device(device)
    student = load_student(path, map_location=device)  # float16 file -> float32 model
    if dtype is not None:
        student = student.to(dtype)
    identity = {"file": path_fingerprint(path, content=True), "dtype": str(dtype or torch.float32), "precision": precision}
    return StudentTeacher(student, f"{name}#{settings_hash(identity)}", name, precision=precision, device=device)
