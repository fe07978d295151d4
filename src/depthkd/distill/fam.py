"""DisDepth's Feature Acclimation Module (FAM) and ghost decoder.

A transformer teacher's features live in a space a CNN student's decoder cannot read. DisDepth first
*acclimates* them: a FAM per distilled stage maps a teacher map into the student's feature space, and
it is trained so that a frozen copy of the warmed-up student's decoder and head (the *ghost decoder*)
turns the FAM outputs into good depth. The FAM outputs then become the targets the student imitates.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from depthkd.errors import ModelError
from depthkd.models.outputs import StudentOutput


class FeatureAcclimation(nn.Module):
    """One stage's FAM: 1x1 conv + BN + ReLU + 3x3 conv, resized to the student's map (docs/METHODS.md).

    Args:
        in_channels: channels of the teacher map.
        out_channels: channels of the student map it must imitate (also the hidden width, our default).
        resize_first: resize the teacher map to the student's size before the convolutions (the 3x3
            conv then smooths the upsampling) instead of after them (our default: the convolutions
            run on the usually smaller teacher grid, and the paper lists the resize last).
    """

    def __init__(self, in_channels: int, out_channels: int, resize_first: bool = False) -> None:
        super().__init__()
        self.resize_first = resize_first
        self.reduce = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
        self.refine = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)

    @staticmethod
    def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        if tuple(x.shape[-2:]) == tuple(size):
            return x
        return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)

    def forward(self, teacher_map: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """``(B,C_t,h,w)`` teacher map -> ``(B,C_s,*size)`` map in the student's feature space."""
        x = self._resize(teacher_map, size) if self.resize_first else teacher_map
        x = self.refine(self.reduce(x))
        return x if self.resize_first else self._resize(x, size)


class GhostDecoder(nn.Module):
    """A copy of a student's decoder and head that decodes encoder-shaped features into depth.

    Built from the student at set-up (so its parameters exist before a checkpoint is restored) and
    refreshed with :meth:`copy_from` once the student is warmed up; it is never trained.
    """

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        for part in ("decoder", "head"):
            if not isinstance(getattr(student, part, None), nn.Module):
                raise ModelError(
                    f"DisDepth needs a depthkd student with a decoder and a head; {type(student).__name__} "
                    f"has no {part!r}"
                )
        self.decoder = copy.deepcopy(student.decoder)
        self.head = copy.deepcopy(student.head)

    @torch.no_grad()
    def copy_from(self, student: nn.Module) -> None:
        """Take the student's current decoder and head weights (and BatchNorm statistics)."""
        self.decoder.load_state_dict(student.decoder.state_dict())
        self.head.load_state_dict(student.head.state_dict())

    def forward(self, features: Sequence[torch.Tensor], out_size: Sequence[int]) -> StudentOutput:
        """The computation of ``DepthStudent.decode``: decoder, then head on the deepest map's context."""
        return self.head(self.decoder(features), features[-1], out_size)


__all__ = ["FeatureAcclimation", "GhostDecoder"]
