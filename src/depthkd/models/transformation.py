"""The transformation network G of data-free distillation: a light residual image-to-image network.

G nudges out-of-distribution images towards what the teacher saw in training: ``x_hat = x + G(x)``.
It is trained (by :mod:`depthkd.distill.datafree`) so that the teacher's BatchNorm layers see their
stored running statistics on ``x_hat``, with a content term keeping ``x_hat`` close to ``x``.

Design choices (ours, as options where they are numbers):

- Fully convolutional, so any image size works: a full-resolution stem, one stride-2 stage with
  residual blocks (a wider receptive field at a quarter of the cost), and a bilinear upsampling back
  to the input's exact size, fused with the stem's features.
- No BatchNorm inside: G's own batch statistics would couple the images of a batch, and the
  objective is about the *teacher's* BatchNorm statistics. Plain convolutions with LeakyReLU.
- The last convolution is zero-initialised, so G is exactly the identity when training starts and
  the student first learns from the (mixed) simulated images themselves.
- The output is clamped to ``[0, 1]`` (the image convention of every model here); the residual
  itself is returned by :meth:`TransformationNet.residual` for the content term, whose gradient
  therefore never vanishes at the clamp.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from depthkd.errors import ConfigError


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with LeakyReLU and a skip connection (no normalisation)."""

    def __init__(self, channels: int, slope: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.LeakyReLU(slope, inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


class TransformationNet(nn.Module):
    """``x_hat = clamp(x + G(x), 0, 1)`` for images ``(B,3,H,W)`` in ``[0,1]``; the identity at init.

    Args:
        width: channels at full resolution (``2 * width`` in the half-resolution stage); our default 32.
        blocks: residual blocks at half resolution; our default 2.
        slope: LeakyReLU negative slope (0.2, the usual value for image-to-image generators).
        clamp: clamp ``x_hat`` to ``[0, 1]`` (default); ``False`` returns ``x + G(x)`` as is.
    """

    def __init__(self, width: int = 32, blocks: int = 2, slope: float = 0.2, clamp: bool = True) -> None:
        super().__init__()
        if width < 1 or blocks < 0:
            raise ConfigError(f"transformation network: width={width} must be >= 1 and blocks={blocks} >= 0")
        self.clamp = clamp
        self.act = nn.LeakyReLU(slope, inplace=False)
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.down = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.blocks = nn.Sequential(*(ResidualBlock(2 * width, slope) for _ in range(blocks)))
        self.fuse = nn.Conv2d(3 * width, width, 3, padding=1)
        self.out = nn.Conv2d(width, 3, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def residual(self, images: torch.Tensor) -> torch.Tensor:
        """``G(x)``: the change G makes to each pixel (zero at initialisation)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ConfigError(f"transformation network expects images (B,3,H,W), got {tuple(images.shape)}")
        stem = self.act(self.stem(images))
        low = self.blocks(self.act(self.down(stem)))
        up = F.interpolate(low, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return self.out(self.act(self.fuse(torch.cat([stem, up], dim=1))))

    def apply_residual(self, images: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """``x + G(x)``, clamped to ``[0, 1]`` unless ``clamp`` is off."""
        out = images + residual
        return out.clamp(0.0, 1.0) if self.clamp else out

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.apply_residual(images, self.residual(images))


__all__ = ["ResidualBlock", "TransformationNet"]
