"""Depth heads: turn the decoder's last feature map into metric depth.

All heads share one call, ``head(x, context, out_size) -> StudentOutput``:

- ``x`` is the decoder output ``(B,C,h,w)`` at the head resolution (stride 2 by default);
- ``context`` is the deepest encoder feature (only the ``bins`` head uses it, for its global bins);
- ``out_size`` is the input image size; ``depth`` is bilinearly upsampled to it.

For the ``bins`` and ``dpm`` heads, ``logits`` and ``probs`` stay at the head resolution ``(h,w)``:
methods that supervise them resize their targets to ``probs.shape[-2:]``. ``bin_centers`` is ``(B,K)``.
Every head's ``features`` list is left empty (the student fills it with the encoder maps).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from depthkd.errors import ConfigError
from depthkd.models.bins import AdaptiveBinWidths, check_depth_range, expected_depth, uniform_bins
from depthkd.models.outputs import StudentOutput

HEADS: tuple[str, ...] = ("regression", "bins", "dpm")

ADABINS_NUM_BINS = 256
"""Default bin count of the ``bins`` head (AdaBins, DisDepth: N = 256)."""


def default_num_bins(head: str, max_depth: float) -> int | None:
    """Bin count a head uses when none is given.

    ``dpm``: 49 for indoor ranges (``max_depth <= 10``), else 257 (TIE-KD's NYU / KITTI references);
    ``bins``: 256; ``regression``: ``None`` (no bins).
    """
    if head == "dpm":
        return 49 if max_depth <= 10.0 else 257
    if head == "bins":
        return ADABINS_NUM_BINS
    return None


def resize_depth(depth: Tensor, out_size: Sequence[int]) -> Tensor:
    """Bilinear resize (``align_corners=False``) of a ``(B,1,h,w)`` map to ``out_size``."""
    return F.interpolate(depth, size=tuple(out_size), mode="bilinear", align_corners=False)


class RegressionHead(nn.Module):
    """Direct regression: ``depth = min_depth + (max_depth - min_depth) * sigmoid(conv1x1(x))``.

    The sigmoid keeps every prediction in ``[min_depth, max_depth]``, hence strictly positive, and
    bilinear upsampling (a convex combination) keeps it there.
    """

    def __init__(self, in_channels: int, min_depth: float, max_depth: float) -> None:
        super().__init__()
        check_depth_range(min_depth, max_depth)
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self.proj = nn.Conv2d(in_channels, 1, kernel_size=1)

    def forward(self, x: Tensor, context: Tensor, out_size: Sequence[int]) -> StudentOutput:
        del context  # regression needs no global context
        depth = self.min_depth + (self.max_depth - self.min_depth) * torch.sigmoid(self.proj(x))
        return StudentOutput(depth=resize_depth(depth, out_size))


class BinsHead(nn.Module):
    """AdaBins-style head: per-image adaptive bins and per-pixel bin probabilities.

    Bin widths come from a global-pooled MLP on ``context`` (the deepest encoder feature); per-pixel
    logits over the N bins come from a 1x1 conv on the decoder output; depth = sum_k p_k c_k.
    """

    def __init__(
        self,
        in_channels: int,
        context_channels: int,
        min_depth: float,
        max_depth: float,
        num_bins: int = ADABINS_NUM_BINS,
        mlp_hidden: int = 256,
    ) -> None:
        super().__init__()
        self.num_bins = int(num_bins)
        self.bin_widths = AdaptiveBinWidths(
            context_channels, self.num_bins, min_depth, max_depth, hidden=mlp_hidden
        )
        self.logits = nn.Conv2d(in_channels, self.num_bins, kernel_size=1)

    def forward(self, x: Tensor, context: Tensor, out_size: Sequence[int]) -> StudentOutput:
        _, centers = self.bin_widths(context)
        logits = self.logits(x)
        probs = torch.softmax(logits, dim=1)
        depth = expected_depth(probs, centers)
        return StudentOutput(
            depth=resize_depth(depth, out_size), probs=probs, bin_centers=centers, logits=logits
        )


class DPMHead(nn.Module):
    """TIE-KD depth probability map: a softmax over K fixed uniform bins on [min_depth, max_depth]."""

    def __init__(self, in_channels: int, min_depth: float, max_depth: float, num_bins: int) -> None:
        super().__init__()
        self.num_bins = int(num_bins)
        edges, centers = uniform_bins(min_depth, max_depth, self.num_bins)
        # Derived from the config, so kept out of the state dict.
        self.register_buffer("bin_edges", edges, persistent=False)
        self.register_buffer("centers", centers, persistent=False)
        self.logits = nn.Conv2d(in_channels, self.num_bins, kernel_size=1)

    def forward(self, x: Tensor, context: Tensor, out_size: Sequence[int]) -> StudentOutput:
        del context  # the bins are fixed
        logits = self.logits(x)
        probs = torch.softmax(logits, dim=1)
        centers = self.centers.unsqueeze(0).expand(x.shape[0], -1)
        depth = expected_depth(probs, centers)
        return StudentOutput(
            depth=resize_depth(depth, out_size), probs=probs, bin_centers=centers, logits=logits
        )


def build_head(
    head: str,
    in_channels: int,
    context_channels: int,
    min_depth: float,
    max_depth: float,
    num_bins: int | None = None,
    bins_mlp_hidden: int = 256,
) -> nn.Module:
    """The head named ``head`` (one of :data:`HEADS`); ``num_bins=None`` takes the head's default."""
    if head not in HEADS:
        raise ConfigError(f"unknown head {head!r}: expected one of {', '.join(HEADS)}")
    if num_bins is None:
        num_bins = default_num_bins(head, max_depth)
    if head == "regression":
        return RegressionHead(in_channels, min_depth, max_depth)
    if head == "bins":
        return BinsHead(
            in_channels, context_channels, min_depth, max_depth, num_bins, mlp_hidden=bins_mlp_hidden
        )
    return DPMHead(in_channels, min_depth, max_depth, num_bins)
