"""Teacher adapters: any depth model (Hugging Face, ONNX, PyTorch, saved predictions) as a frozen
``Teacher`` returning :class:`~depthkd.models.outputs.TeacherOutput`, plus explicit kind conversions.

>>> teacher = load_teacher("hf:/models/depth-anything-v2-small")   # doctest: +SKIP
>>> out = teacher(images)                       # out.kind == "relative_disparity"
>>> metric = align_to_ground_truth(out, gt, method="lstsq_disparity")
"""

from depthkd.models.teachers.base import Teacher
from depthkd.models.teachers.conversions import (
    align_to_ground_truth,
    alignment_for_kind,
    invert,
    to_depth,
    to_disparity,
)
from depthkd.models.teachers.registry import builtin_teacher_names, load_teacher, register_builtin_teacher

__all__ = [
    "Teacher",
    "align_to_ground_truth",
    "alignment_for_kind",
    "builtin_teacher_names",
    "invert",
    "load_teacher",
    "register_builtin_teacher",
    "to_depth",
    "to_disparity",
]
