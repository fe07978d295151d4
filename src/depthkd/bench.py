"""Model cost: parameter count and multiply-accumulates (MACs) per forward pass; the CPU it ran on.

MACs come from PyTorch's own operator counter (``torch.utils.flop_counter.FlopCounterMode``), which
counts the matrix-multiply-like operators (convolutions, linear layers, matmuls, attention) and
reports FLOPs = 2 x MACs. Element-wise work (activations, BatchNorm in eval, resizing, softmax,
additions) is not counted, as in most papers' MAC tables.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (each shared tensor once); ``trainable_only`` counts those with grad."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(
    model: nn.Module,
    input_size: Sequence[int] = (480, 640),
    batch: int = 1,
    in_channels: int = 3,
    device: str | torch.device = "cpu",
) -> int:
    """Multiply-accumulates of one forward pass on a ``(batch, in_channels, H, W)`` input.

    The model runs in eval mode under ``torch.no_grad`` on ``device`` (it must already live there;
    CPU by default, the count does not depend on the device) and its training flag is restored after.
    """
    height, width = (int(s) for s in input_size)
    images = torch.rand(batch, in_channels, height, width, device=device)
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(images)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo``'s ``model name``; ``platform`` elsewhere), for benchmark reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
