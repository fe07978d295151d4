"""A light U-Net decoder built only from export-friendly ops.

From the deepest encoder map: a 1x1 bottleneck, then per stage *bilinear upsample -> concat the skip
-> 3x3 conv + BN + ReLU*, shallower and shallower, until the output stride (2 by default, i.e. half
the input resolution). Conv, BatchNorm, ReLU, bilinear resize with ``align_corners=False`` and concat
export to ONNX and run on every mobile runtime.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.ops import Conv2dNormActivation

from depthkd.errors import ConfigError


def default_stage_channels(stride: int) -> int:
    """Default width of a decoder stage whose output has ``stride``: ``8 * stride`` within [16, 256].

    Our default (the papers give none): 128, 64, 32, 16 channels at strides 16, 8, 4, 2. Halving the
    width each time the resolution doubles keeps every stage's cost about the same and the whole
    decoder around the cost of a MobileNetV2 encoder.
    """
    return int(min(256, max(16, 8 * stride)))


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Module:
    """Conv (no bias) + BatchNorm + ReLU, padded to keep the spatial size."""
    return Conv2dNormActivation(
        in_channels,
        out_channels,
        kernel_size=kernel_size,
        norm_layer=nn.BatchNorm2d,
        activation_layer=nn.ReLU,
    )


class UNetDecoder(nn.Module):
    """Fuse encoder maps deep to shallow and return one map at ``output_stride``.

    Skips with a stride finer than ``output_stride`` are not used. If the shallowest used skip is
    coarser than ``output_stride`` (e.g. a backbone whose first map is at stride 4), extra stages
    upsample x2 and convolve without a skip.

    Args:
        in_channels: encoder channels, shallow to deep.
        reductions: encoder strides, shallow to deep (increasing).
        channels: width of each stage, from the deepest stage to the output; ``None`` takes
            :func:`default_stage_channels`. Its length must equal :attr:`num_stages`.
        output_stride: stride of the output map (a power of two; 2 by default).

    Attributes:
        stage_strides: output stride of each stage.
        out_channels: channels of the returned map.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        reductions: Sequence[int],
        channels: Sequence[int] | None = None,
        output_stride: int = 2,
    ) -> None:
        super().__init__()
        if output_stride < 1 or output_stride & (output_stride - 1):
            raise ConfigError(f"output_stride={output_stride} is invalid: expected a power of two")
        deepest = reductions[-1]
        if output_stride > deepest:
            raise ConfigError(
                f"output_stride={output_stride} is coarser than the deepest encoder map "
                f"(stride {deepest}): expected at most {deepest}"
            )
        # Skip levels: every map except the deepest whose stride is at least the output stride.
        self.skip_indices = [
            i for i, r in enumerate(reductions[:-1]) if r >= output_stride
        ]
        finest = reductions[self.skip_indices[0]] if self.skip_indices else deepest
        num_extra = (finest // output_stride).bit_length() - 1
        self.stage_strides = [reductions[i] for i in reversed(self.skip_indices)]
        self.stage_strides += [finest // 2**k for k in range(1, num_extra + 1)]
        self.num_stages = len(self.stage_strides)

        if channels is None:
            channels = [default_stage_channels(s) for s in self.stage_strides]
        channels = [int(c) for c in channels]
        if len(channels) != self.num_stages:
            raise ConfigError(
                f"decoder_channels={channels} has {len(channels)} entries: expected "
                f"{self.num_stages}, one per decoder stage (strides {self.stage_strides})"
            )
        if any(c < 1 for c in channels):
            raise ConfigError(f"decoder_channels={channels} is invalid: expected positive widths")
        self.channels = channels

        # The bottleneck matches the first stage's width (or, with no stage at all because the
        # deepest map already is at the output stride, that stride's default width).
        width = channels[0] if channels else default_stage_channels(deepest)
        self.bottleneck = conv_bn_relu(in_channels[-1], width, kernel_size=1)
        self.skip_stages = nn.ModuleList()
        skips_deep_to_shallow = list(reversed(self.skip_indices))
        for stage, out_width in enumerate(channels[: len(skips_deep_to_shallow)]):
            skip_width = in_channels[skips_deep_to_shallow[stage]]
            self.skip_stages.append(conv_bn_relu(width + skip_width, out_width, kernel_size=3))
            width = out_width
        self.extra_stages = nn.ModuleList()
        for out_width in channels[len(skips_deep_to_shallow) : self.num_stages]:
            self.extra_stages.append(conv_bn_relu(width, out_width, kernel_size=3))
            width = out_width
        self.out_channels = width

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """Encoder maps (shallow to deep) -> ``(B, out_channels, ~H/output_stride, ~W/output_stride)``."""
        x = self.bottleneck(features[-1])
        for stage, index in zip(self.skip_stages, reversed(self.skip_indices)):
            skip = features[index]
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = stage(torch.cat([x, skip], dim=1))
        for stage in self.extra_stages:
            x = stage(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))
        return x

