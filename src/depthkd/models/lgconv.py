"""LG-Conv (DisDepth's local-global convolution): a global-context branch beside a 3x3 conv.

For input X and the wrapped 3x3 conv (weights untouched):

    U   = ReLU(conv1x1(X))                      hidden width h, computed with the conv's stride
    G   = AdaptiveAvgPool(U) to P x P           global context (P = 1 by default)
    G_b = G broadcast (P = 1) or bilinearly upsampled (P > 1) to U's size
    A   = sigmoid(MLP([U ; G_b]))               per-pixel attention, 1x1 convs 2h -> h -> h
    Y   = conv3x3(X) + W_o(A * G_b)             W_o: 1x1 conv h -> C_out, zero-initialised

Stride: the 1x1 conv computing U uses the wrapped conv's stride and no padding, so U already has
the output's spatial size (``ceil(H/s)``, the same as a 3x3 conv padded by its dilation, by
``padding='same'``, or by timm's dynamic "same" padding). The global branch therefore pools U and
the attention sees U at the output resolution; nothing is resized to match the output.

P = 1 exports to ONNX with dynamic image sizes (a global average pool); P > 1 needs an adaptive
pool, which ONNX exporters only handle for fixed input sizes.

Because W_o starts at zero, a network with LG-Conv inserted computes exactly what it computed
before, and training grows the global branch from there.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from depthkd.errors import ConfigError

log = logging.getLogger(__name__)


def default_hidden(out_channels: int) -> int:
    """Hidden width of the global branch: ``max(8, C_out // 4)`` (our default)."""
    return max(8, out_channels // 4)


class LGConv(nn.Module):
    """A 3x3 conv plus a zero-initialised local-global attention branch (see the module docstring).

    Args:
        conv: the 3x3 convolution to wrap; kept as ``self.conv`` with its weights unchanged.
        pool: side P of the pooled global context grid.
        hidden: width h of the branch; ``None`` takes :func:`default_hidden`.
    """

    def __init__(self, conv: nn.Conv2d, pool: int = 1, hidden: int | None = None) -> None:
        super().__init__()
        if pool < 1:
            raise ConfigError(f"lgconv_pool={pool} is invalid: expected a positive integer")
        hidden = default_hidden(conv.out_channels) if hidden is None else int(hidden)
        if hidden < 1:
            raise ConfigError(f"lgconv_hidden={hidden} is invalid: expected a positive integer")
        self.conv = conv
        self.pool = int(pool)
        factory = {"device": conv.weight.device, "dtype": conv.weight.dtype}
        self.local = nn.Conv2d(conv.in_channels, hidden, 1, stride=conv.stride, **factory)
        self.attention = nn.Sequential(
            nn.Conv2d(2 * hidden, hidden, 1, **factory),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 1, **factory),
            nn.Sigmoid(),
        )
        self.out_proj = nn.Conv2d(hidden, conv.out_channels, 1, **factory)
        nn.init.zeros_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        u = F.relu(self.local(x))
        g = F.adaptive_avg_pool2d(u, self.pool)
        if self.pool == 1:
            g = g.expand_as(u)
        else:
            g = F.interpolate(g, size=u.shape[-2:], mode="bilinear", align_corners=False)
        a = self.attention(torch.cat([u, g], dim=1))
        return self.conv(x) + self.out_proj(a * g)


def _keeps_output_size(conv: nn.Conv2d) -> bool:
    """Whether a 3x3 conv's output is ``ceil(H/stride)``, the size the strided 1x1 branch produces."""
    if conv.padding == "same":
        return True
    if conv.padding == "valid":
        return False
    if tuple(conv.padding) == tuple(conv.dilation):
        return True
    # timm pads dynamically ("same", TF style) in Conv2dSame and keeps padding=0 on the module.
    return type(conv).__name__ == "Conv2dSame"


def is_lgconv_target(conv: nn.Module, depthwise: bool = False) -> bool:
    """Whether ``conv`` gets an LG-Conv: a 3x3 ``nn.Conv2d`` that keeps the ``ceil(H/s)`` output size,
    either dense (``groups == 1``) or, when ``depthwise``, depthwise (``groups == in == out``)."""
    if not isinstance(conv, nn.Conv2d) or tuple(conv.kernel_size) != (3, 3):
        return False
    dense = conv.groups == 1
    is_depthwise = conv.groups == conv.in_channels == conv.out_channels and conv.groups > 1
    return (dense or (depthwise and is_depthwise)) and _keeps_output_size(conv)


def insert_lgconv(
    module: nn.Module, depthwise: bool = False, pool: int = 1, hidden: int | None = None
) -> int:
    """Wrap every matching 3x3 conv inside ``module`` in an :class:`LGConv`, in place.

    Walks all submodules (timm nests convs in blocks of many kinds), replaces each target conv by an
    LG-Conv holding the original conv object (weights untouched), and skips convs already wrapped.
    On MobileNet-style backbones, whose 3x3 convs are depthwise except the stem, ``depthwise=False``
    wraps the stem only.

    Returns:
        The number of LG-Conv modules inserted.
    """
    targets: list[tuple[nn.Module, str]] = []
    for parent_name, parent in module.named_modules():
        if isinstance(parent, LGConv):
            continue
        for child_name, child in parent.named_children():
            if is_lgconv_target(child, depthwise):
                targets.append((parent, child_name))
                log.debug("LG-Conv on %s", f"{parent_name}.{child_name}".lstrip("."))
    for parent, child_name in targets:
        setattr(parent, child_name, LGConv(getattr(parent, child_name), pool=pool, hidden=hidden))
    return len(targets)
