"""One way to run any depth model on a batch: a trained student or any teacher spec.

`evaluate` and `predict` accept either a student checkpoint (``.safetensors`` written by depthkd), an
exported ``.onnx`` file (read with its sidecar, as ``onnx:FILE``) or a teacher spec (``hf:``, ``onnx:``,
``torch:``, ``preds:`` or a built-in name), so a student, its export, a teacher and another toolkit's saved
predictions are all scored by the same code path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from depthkd.metrics import flip_tta

TEACHER_PREFIXES = ("hf:", "onnx:", "torch:", "preds:")


@dataclass
class DepthPredictor:
    """A loaded model and what its output means.

    Attributes:
        model: the student or teacher module.
        kind: ``metric_depth``, ``relative_depth`` or ``relative_disparity``.
        is_student: whether ``model`` is a depthkd student (its forward takes images only).
        spec: what the user passed, for reports.
    """

    model: nn.Module
    kind: str
    is_student: bool
    spec: str

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor, names: list[str] | None = None, flip: bool = False) -> torch.Tensor:
        """Depth (or disparity, per ``kind``) ``(B,1,H,W)`` at the input size, optionally flip-averaged."""

        def run(batch: torch.Tensor) -> torch.Tensor:
            if self.is_student:
                return self.model(batch).depth
            return self.model(batch, names=names).depth

        if flip:
            if not self.is_student and self.spec.startswith("preds:"):
                raise ValueError("flip test-time augmentation needs a model, not saved predictions")
            return flip_tta(run, images)
        return run(images)


def is_student_checkpoint(spec: str) -> bool:
    """A path to a depthkd student file (``.safetensors``) rather than a teacher spec."""
    return not spec.startswith(TEACHER_PREFIXES) and Path(spec).suffix == ".safetensors"


def load_predictor(spec: str, device: str | torch.device = "cpu", align_corners: bool = False) -> DepthPredictor:
    """Load a student checkpoint or a teacher spec for inference on ``device``; ``align_corners`` is how
    saved predictions (``preds:``) of another size than the images are resized to them."""
    from depthkd.models.devices import check_device

    device = check_device(device)
    if is_student_checkpoint(spec):
        from depthkd.models import load_student

        student = load_student(spec, map_location=device).to(device).eval()
        return DepthPredictor(model=student, kind="metric_depth", is_student=True, spec=spec)
    from depthkd.models.teachers import load_teacher

    if not spec.startswith(TEACHER_PREFIXES) and Path(spec).suffix == ".onnx":
        spec = f"onnx:{spec}"  # an exported student: its sidecar says how to feed it
    options = {"align_corners": True} if align_corners and spec.startswith("preds:") else {}
    teacher = load_teacher(spec, device=device, **options)
    return DepthPredictor(model=teacher, kind=teacher.kind, is_student=False, spec=spec)
