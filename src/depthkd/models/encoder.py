"""Student encoder: any timm backbone as a multi-scale feature extractor.

The encoder takes images in ``[0,1]`` and applies the backbone's own ImageNet mean/std (from timm's
``pretrained_cfg``), so callers never normalise. ImageNet weights come only from a local file.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import timm
import torch
from torch import Tensor, nn

from depthkd.errors import ModelError

log = logging.getLogger(__name__)

DEFAULT_BACKBONES: tuple[str, ...] = (
    "mobilenetv2_100",
    "mobilenetv3_large_100",
    "efficientnet_b0",
    "resnet18",
    "ghostnet_100",
)
"""Backbones documented and tested as students; any timm model with ``features_only`` works."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def create_backbone(
    name: str,
    out_indices: Sequence[int] | None = None,
    pretrained_path: str | Path | None = None,
) -> nn.Module:
    """A timm ``features_only`` backbone, randomly initialised or loaded from a local weight file.

    Args:
        name: timm model name, e.g. ``mobilenetv2_100``.
        out_indices: feature levels to return; ``None`` keeps timm's default (all levels, usually
            strides 2 to 32).
        pretrained_path: ``.safetensors`` or a torch state dict (``.pth``/``.bin``, loaded with
            ``weights_only=True``) holding the full classification model's weights.

    Raises:
        ModelError: unknown backbone, missing weight file, or weights that do not fit the backbone.
    """
    kwargs: dict = {"features_only": True}
    if out_indices is not None:
        kwargs["out_indices"] = tuple(out_indices)
    if pretrained_path is not None:
        path = Path(pretrained_path)
        if not path.is_file():
            raise ModelError(f"pretrained weights for backbone {name!r} not found: {path}")
        # timm reads a local file through this overlay (torch files with weights_only=True).
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(path)})
    else:
        kwargs["pretrained"] = False
    if not timm.is_model(name):
        raise ModelError(f"unknown backbone {name!r}: expected a timm model name (timm.list_models())")
    try:
        backbone = timm.create_model(name, **kwargs)
    except (RuntimeError, KeyError, ValueError, TypeError) as err:
        where = f" with weights from {pretrained_path}" if pretrained_path is not None else ""
        raise ModelError(f"cannot build backbone {name!r}{where}: {err}") from err
    if pretrained_path is not None:
        log.info("loaded %s weights from %s", name, pretrained_path)
    return backbone


class Encoder(nn.Module):
    """Normalise ``[0,1]`` images with the backbone's mean/std, then return its feature maps.

    Attributes:
        backbone: the timm ``features_only`` model (LG-Conv surgery happens on it).
        channels: channels of each returned map, shallow to deep.
        reductions: stride of each returned map relative to the input.
    """

    def __init__(
        self,
        name: str,
        out_indices: Sequence[int] | None = None,
        pretrained_path: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.backbone = create_backbone(name, out_indices, pretrained_path)
        info = self.backbone.feature_info
        self.channels: list[int] = list(info.channels())
        self.reductions: list[int] = list(info.reduction())
        cfg = getattr(self.backbone, "pretrained_cfg", None) or {}
        mean = cfg.get("mean", IMAGENET_MEAN)
        std = cfg.get("std", IMAGENET_STD)
        # Fixed by the backbone name, so kept out of the state dict.
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> list[Tensor]:
        """``(B,3,H,W)`` images in ``[0,1]`` -> feature maps, shallow (high resolution) to deep."""
        return list(self.backbone((images - self.mean) / self.std))
