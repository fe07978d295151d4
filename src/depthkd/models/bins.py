"""Depth bins: a depth range cut into K intervals, with depth read out as a probability-weighted mean.

Two flavours (docs/METHODS.md, "Bins"):

- ``uniform``: K fixed, equal-width bins on ``[d_min, d_max]`` (TIE-KD's depth probability map).
- ``adaptive``: per-image widths predicted by a pooled MLP, AdaBins style (DisDepth's student),
  so the bins crowd where the scene's depths are.

In both, bin centres sit at the middle of their edges and the depth is ``sum_k p_k * c_k``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from depthkd.errors import ConfigError

ADAPTIVE_WIDTH_FLOOR = 0.1
"""Added to the ReLU'd raw widths before normalising (AdaBins), so that no bin collapses to zero."""


def check_depth_range(d_min: float, d_max: float) -> None:
    """Raise :class:`ConfigError` unless ``0 < d_min < d_max`` (predictions must stay positive)."""
    if not (d_min > 0 and d_max > d_min):
        raise ConfigError(
            f"depth range [{d_min}, {d_max}] is invalid: expected 0 < min_depth < max_depth"
        )


def uniform_bins(d_min: float, d_max: float, num_bins: int) -> tuple[Tensor, Tensor]:
    """Equal-width bins on ``[d_min, d_max]``.

    Returns:
        ``edges`` of shape ``(K+1,)`` from ``d_min`` to ``d_max`` and ``centers`` of shape ``(K,)``
        at the middle of each bin, both float32.
    """
    check_depth_range(d_min, d_max)
    if num_bins < 1:
        raise ConfigError(f"num_bins={num_bins} is invalid: expected a positive integer")
    # Computed in float64 so that the float32 edges are the correctly rounded values.
    edges = torch.linspace(d_min, d_max, num_bins + 1, dtype=torch.float64)
    centers = 0.5 * (edges[:-1] + edges[1:])
    return edges.float(), centers.float()


def adaptive_bins(raw_widths: Tensor, d_min: float, d_max: float) -> tuple[Tensor, Tensor]:
    """AdaBins bin layout from unconstrained per-image scores.

    Widths are ``ReLU(raw) + 0.1``, normalised to sum to 1 and scaled to ``d_max - d_min``; edges are
    their cumulative sum starting at ``d_min``; centres are the bin middles.

    Args:
        raw_widths: ``(B,K)`` unconstrained scores (e.g. the output of :class:`AdaptiveBinWidths`).

    Returns:
        ``edges`` ``(B,K+1)`` (increasing, ``d_min`` to ``d_max``) and ``centers`` ``(B,K)``.
    """
    widths = F.relu(raw_widths) + ADAPTIVE_WIDTH_FLOOR
    widths = widths / widths.sum(dim=1, keepdim=True) * (d_max - d_min)
    edges = F.pad(torch.cumsum(widths, dim=1), (1, 0), value=0.0) + d_min
    centers = 0.5 * (edges[:, :-1] + edges[:, 1:])
    return edges, centers


def expected_depth(probs: Tensor, centers: Tensor) -> Tensor:
    """Per-pixel expectation ``sum_k p_k c_k``.

    Args:
        probs: ``(B,K,H,W)`` probabilities summing to 1 over K.
        centers: ``(B,K)`` bin centres (or ``(K,)``, shared by the batch).

    Returns:
        ``(B,1,H,W)`` depth.
    """
    if centers.dim() == 1:
        centers = centers.unsqueeze(0)
    return (probs * centers[:, :, None, None]).sum(dim=1, keepdim=True)


class AdaptiveBinWidths(nn.Module):
    """Global-average-pooled MLP that predicts one set of adaptive bins per image.

    A plain MLP on pooled features stands in for AdaBins' mini-ViT: it keeps the student light and
    exportable while still letting each image choose its own bin layout.
    """

    def __init__(
        self, in_channels: int, num_bins: int, d_min: float, d_max: float, hidden: int = 256
    ) -> None:
        super().__init__()
        check_depth_range(d_min, d_max)
        self.d_min = float(d_min)
        self.d_max = float(d_max)
        self.mlp = nn.Sequential(
            nn.Linear(in_channels, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_bins),
        )

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """``(B,C,h,w)`` features -> ``edges`` ``(B,K+1)`` and ``centers`` ``(B,K)``."""
        pooled = features.mean(dim=(2, 3))
        return adaptive_bins(self.mlp(pooled), self.d_min, self.d_max)
