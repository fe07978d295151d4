"""Students (timm encoder, U-Net decoder, depth heads, LG-Conv) and their checkpoints.

Teacher adapters live in :mod:`depthkd.models.teachers`.
"""

from depthkd.models.checkpoint import load_student, read_student_config, save_student
from depthkd.models.encoder import DEFAULT_BACKBONES
from depthkd.models.lgconv import LGConv, insert_lgconv
from depthkd.models.outputs import OUTPUT_KINDS, StudentOutput, TeacherOutput
from depthkd.models.student import DepthStudent, StudentConfig, build_student

from depthkd.models.teachers import Teacher, load_teacher  # after the students: torch: teachers load them

__all__ = [
    "DEFAULT_BACKBONES",
    "OUTPUT_KINDS",
    "DepthStudent",
    "LGConv",
    "StudentConfig",
    "StudentOutput",
    "Teacher",
    "TeacherOutput",
    "build_student",
    "insert_lgconv",
    "load_teacher",
    "load_student",
    "read_student_config",
    "save_student",
]
