"""Output dataclasses of students and teachers: one shape contract for every method.

Depth is float32 ``(B,1,H,W)`` at the input resolution. Features are lists ordered from shallow
(high resolution) to deep (low resolution).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

OutputKind = Literal["metric_depth", "relative_depth", "relative_disparity"]
OUTPUT_KINDS: tuple[str, ...] = ("metric_depth", "relative_depth", "relative_disparity")


@dataclass
class StudentOutput:
    """What a student returns.

    Attributes:
        depth: ``(B,1,H,W)`` strictly positive metric depth at the input size.
        features: encoder feature maps, shallow to deep (what feature/DisDepth KD distils).
        probs: ``(B,K,H,W)`` per-pixel bin probabilities (``bins`` and ``dpm`` heads), else ``None``.
        bin_centers: ``(B,K)`` bin centres in metres (``bins``, ``dpm`` heads), else ``None``.
        logits: ``(B,K,H,W)`` pre-softmax bin scores, for numerically stable log-probabilities.
    """

    depth: torch.Tensor
    features: list[torch.Tensor] = field(default_factory=list)
    probs: torch.Tensor | None = None
    bin_centers: torch.Tensor | None = None
    logits: torch.Tensor | None = None


@dataclass
class TeacherOutput:
    """What a teacher adapter returns.

    Attributes:
        depth: ``(B,1,H,W)`` at the input size, in the unit ``kind`` says (metres only for
            ``metric_depth``; ``relative_disparity`` is inverse depth up to scale and shift).
        kind: one of ``metric_depth``, ``relative_depth``, ``relative_disparity``.
        features: intermediate feature maps ``(B,C,h,w)``, shallow to deep (empty unless asked for).
    """

    depth: torch.Tensor
    kind: OutputKind
    features: list[torch.Tensor] = field(default_factory=list)
