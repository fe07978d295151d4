"""A Depth Anything network (transformers) split into depthkd's encoder / decoder / head parts.

The built-in ``sim-vit`` teacher is the Hugging Face ``DepthAnythingForDepthEstimation`` architecture
(DINOv2 ViT backbone, DPT reassemble + fusion neck, metric head) at a small size. depthkd trains it
like any student, so the network is split into the three parts :class:`DepthStudent` composes:

- :class:`ViTEncoder`: ``Dinov2Backbone``; returns the tapped layers' patch tokens as ``(B,C,h,w)``
  maps (what DisDepth and feature KD distil from a transformer teacher). With the ``stem`` option it is
  a hybrid, laid out as DPT-Hybrid is: a timm CNN (:class:`HybridStem`) replaces the patch embedding,
  the ViT reads its stride-``patch_size`` map one token per pixel, and the CNN's map at half that
  stride feeds the neck's finest level (a conv stem learns local structure far faster from scratch
  than a linear patch embedding does);
- :class:`DPTNeckDecoder`: ``DepthAnythingNeck`` (reassemble to strides patch/4 .. patch*2, fusion);
- :class:`DepthAnythingMetricHead`: ``DepthAnythingDepthEstimationHead`` (``sigmoid * max_depth``).

The modules are the transformers classes themselves, built from one ``DepthAnythingConfig``, so
:func:`to_huggingface` reassembles a ``DepthAnythingForDepthEstimation`` with the same weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from depthkd.errors import ConfigError
from depthkd.models.outputs import StudentOutput

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

DEFAULT_OPTIONS: dict[str, Any] = {
    "hidden_size": 192,
    "num_layers": 8,
    "num_heads": 3,
    "patch_size": 8,
    "mlp_ratio": 4,
    "neck_hidden_sizes": [48, 96, 192, 192],
    "fusion_hidden_size": 64,
    "head_hidden_size": 32,
    "stem": None,
}
"""Our small defaults (the released ViT-S uses 384 / 12 / 6 / patch 14 / neck [48, 96, 192, 384] /
fusion 64). Patch 8 instead of 14 keeps low-resolution inputs (96x128) at a useful token grid (12x16).
``stem`` (a timm model name, default none) makes the encoder a CNN + ViT hybrid (see the module doc)."""


def resolve_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``options`` over :data:`DEFAULT_OPTIONS`, checked; unknown keys raise :class:`ConfigError`."""
    values = dict(DEFAULT_OPTIONS)
    unknown = sorted(set(options or {}) - set(DEFAULT_OPTIONS))
    if unknown:
        raise ConfigError(
            f"unknown depth-anything option(s) {', '.join(unknown)}: expected any of {', '.join(DEFAULT_OPTIONS)}"
        )
    values.update(options or {})
    for key in ("hidden_size", "num_layers", "num_heads", "patch_size", "mlp_ratio", "fusion_hidden_size"):
        values[key] = int(values[key])
        if values[key] < 1:
            raise ConfigError(f"depth-anything option {key}={values[key]}: expected a positive integer")
    values["head_hidden_size"] = int(values["head_hidden_size"])
    values["neck_hidden_sizes"] = [int(c) for c in values["neck_hidden_sizes"]]
    if len(values["neck_hidden_sizes"]) != 4:
        raise ConfigError(f"depth-anything neck_hidden_sizes={values['neck_hidden_sizes']}: expected 4 widths")
    if values["hidden_size"] % values["num_heads"]:
        raise ConfigError(
            f"depth-anything hidden_size={values['hidden_size']} is not divisible by num_heads={values['num_heads']}"
        )
    if values["num_layers"] < 4:
        raise ConfigError(f"depth-anything num_layers={values['num_layers']}: expected at least 4 (four taps)")
    stem = values["stem"]
    if stem is not None and not (isinstance(stem, str) and stem):
        raise ConfigError(f"depth-anything stem={stem!r}: expected a timm model name or null")
    if stem is not None and values["patch_size"] % 2:
        raise ConfigError(f"depth-anything patch_size={values['patch_size']} with a stem: expected an even stride")
    return values


def tapped_layers(num_layers: int) -> list[int]:
    """The four evenly spaced layers the neck reads (3, 6, 9, 12 for 12 layers, as V2 does)."""
    return [round(num_layers * k / 4) for k in range(1, 5)]


PURE_FACTORS = [4, 2, 1, 0.5]
"""Neck resampling of the four token maps: strides patch/4 .. patch*2 (Depth Anything's layout)."""
HYBRID_FACTORS = [1, 1, 0.5, 0.25]
"""Hybrid neck: the stem's map (stride patch/2) as it is, then the last three taps at strides patch .. patch*4."""


def depth_anything_config(options: Mapping[str, Any], max_depth: float, stem_channels: int | None = None) -> Any:
    """The transformers ``DepthAnythingConfig`` (metric head) for resolved ``options``.

    ``stem_channels`` (hybrids only): channels of the stem map the ViT reads, one token per pixel.
    """
    from transformers import DepthAnythingConfig, Dinov2Config

    if float(max_depth) != int(max_depth):
        raise ConfigError(f"max_depth={max_depth}: the depth-anything metric head takes a whole number of metres")
    hybrid = stem_channels is not None
    taps = tapped_layers(options["num_layers"])
    backbone = Dinov2Config(
        hidden_size=options["hidden_size"],
        num_hidden_layers=options["num_layers"],
        num_attention_heads=options["num_heads"],
        mlp_ratio=options["mlp_ratio"],
        num_channels=stem_channels if hybrid else 3,
        patch_size=1 if hybrid else options["patch_size"],
        image_size=16 if hybrid else options["patch_size"] * 16,
        out_indices=taps[1:] if hybrid else taps,
        apply_layernorm=True,
        reshape_hidden_states=False,
    )
    return DepthAnythingConfig(
        backbone_config=backbone,
        patch_size=options["patch_size"],
        reassemble_hidden_size=options["hidden_size"],
        reassemble_factors=HYBRID_FACTORS if hybrid else PURE_FACTORS,
        neck_hidden_sizes=options["neck_hidden_sizes"],
        fusion_hidden_size=options["fusion_hidden_size"],
        head_in_index=-1,
        head_hidden_size=options["head_hidden_size"],
        depth_estimation_type="metric",
        max_depth=int(max_depth),
    )


class HybridStem(nn.Module):
    """A timm CNN's maps at strides ``patch/2`` and ``patch``: the first feeds the neck, the second the ViT.

    Attributes:
        cnn: the timm ``features_only`` model (random init: the teacher is trained from scratch).
        projection: 1x1 conv of the fine map to the ViT width, so the neck reads four equally wide maps.
        channels: channels of the coarse map (the ViT's input).
    """

    def __init__(self, name: str, patch_size: int, hidden_size: int) -> None:
        super().__init__()
        from depthkd.models.encoder import create_backbone

        reductions = list(create_backbone(name).feature_info.reduction())
        wanted = [patch_size // 2, patch_size]
        missing = [r for r in wanted if r not in reductions]
        if missing:
            raise ConfigError(
                f"depth-anything stem {name!r} has no feature map at stride {missing[0]}: its strides are "
                f"{reductions}; expected maps at patch_size/2 and patch_size ({wanted})"
            )
        self.cnn = create_backbone(name, [reductions.index(r) for r in wanted])
        fine, coarse = self.cnn.feature_info.channels()
        self.projection = nn.Conv2d(fine, hidden_size, kernel_size=1)
        self.channels = int(coarse)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        fine, coarse = self.cnn(images)
        return self.projection(fine), coarse


class ViTEncoder(nn.Module):
    """ImageNet-normalise ``[0,1]`` images, run the DINOv2 backbone, return tapped tokens as maps.

    Inputs whose sides are not multiples of the patch size are resized to the nearest multiples (the
    head's output is resized back to the input size). With a :class:`HybridStem` the first map is the
    stem's (stride ``patch/2``) and the other three are the last three taps.

    Attributes:
        backbone: the transformers ``Dinov2Backbone``.
        stem: the hybrid's CNN stem, or ``None`` (a linear patch embedding, as released).
        patch_size: side of a patch in pixels.
        channels, reductions: per returned map, as the timm encoder reports them.
    """

    def __init__(self, backbone: nn.Module, patch_size: int, hidden_size: int, stem: HybridStem | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.stem = stem
        self.patch_size = int(patch_size)
        self.channels = [int(hidden_size)] * 4
        self.reductions = [self.patch_size] * 4 if stem is None else [self.patch_size // 2] + [self.patch_size] * 3
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> list[Tensor]:
        height, width = images.shape[-2:]
        grid_h = max(1, round(height / self.patch_size))
        grid_w = max(1, round(width / self.patch_size))
        size = (grid_h * self.patch_size, grid_w * self.patch_size)
        if (height, width) != size:
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        images = (images - self.mean) / self.std
        first: list[Tensor] = []
        if self.stem is not None:
            fine, images = self.stem(images)
            first = [fine]
        tokens = self.backbone(images).feature_maps
        # Drop the class token; patch tokens row-major -> (B, C, h, w).
        return first + [t[:, 1:].transpose(1, 2).reshape(t.shape[0], t.shape[-1], grid_h, grid_w) for t in tokens]


class DPTNeckDecoder(nn.Module):
    """The Depth Anything neck on encoder maps: reassemble (resample + project), 3x3 convs, fusion."""

    def __init__(self, neck: nn.Module, fusion_hidden_size: int) -> None:
        super().__init__()
        self.neck = neck
        self.out_channels = int(fusion_hidden_size)

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        # The neck's reassemble stage starts from tokens; encoder maps skip its reshape step.
        maps = [layer(f) for layer, f in zip(self.neck.reassemble_stage.layers, features)]
        return self.neck.fusion_stage([conv(m) for conv, m in zip(self.neck.convs, maps)])


class DepthAnythingMetricHead(nn.Module):
    """The metric head (``sigmoid * max_depth``), floored at ``min_depth`` so depth stays positive."""

    def __init__(self, head: nn.Module, min_depth: float) -> None:
        super().__init__()
        self.head = head
        self.min_depth = float(min_depth)

    def forward(self, decoded: Sequence[Tensor], context: Tensor, out_size: Sequence[int]) -> StudentOutput:
        grid_h, grid_w = context.shape[-2:]  # the encoder's token grid fixes the head's output size
        depth = self.head(list(decoded), grid_h, grid_w).unsqueeze(1)
        if tuple(depth.shape[-2:]) != tuple(out_size):
            depth = F.interpolate(depth, size=tuple(out_size), mode="bilinear", align_corners=False)
        return StudentOutput(depth=depth.clamp_min(self.min_depth))


def build_depth_anything_parts(
    options: Mapping[str, Any], min_depth: float, max_depth: float
) -> tuple[ViTEncoder, DPTNeckDecoder, DepthAnythingMetricHead]:
    """Encoder, decoder and head of a randomly initialised metric Depth Anything (hybrid with ``stem``)."""
    from transformers import DepthAnythingForDepthEstimation

    stem = None
    if options.get("stem"):
        stem = HybridStem(options["stem"], options["patch_size"], options["hidden_size"])
    model = DepthAnythingForDepthEstimation(
        depth_anything_config(options, max_depth, stem.channels if stem is not None else None)
    )
    return (
        ViTEncoder(model.backbone, options["patch_size"], options["hidden_size"], stem),
        DPTNeckDecoder(model.neck, options["fusion_hidden_size"]),
        DepthAnythingMetricHead(model.head, min_depth),
    )


def to_huggingface(student: nn.Module) -> Any:
    """A ``DepthAnythingForDepthEstimation`` holding a depth-anything student's weights.

    ``save_pretrained`` on the result writes a folder the ``hf:`` teacher adapter loads (add a
    ``preprocessor_config.json`` with ImageNet mean/std and sides a multiple of the patch size).
    """
    from transformers import DepthAnythingForDepthEstimation

    config = student.config
    if config.arch != "depth-anything":
        raise ConfigError(f"to_huggingface needs a depth-anything student, got arch {config.arch!r}")
    if config.arch_options.get("stem"):
        raise ConfigError(
            f"to_huggingface: a hybrid (stem {config.arch_options['stem']!r}) has no transformers class; "
            "only students without a stem convert"
        )
    model = DepthAnythingForDepthEstimation(depth_anything_config(config.arch_options, config.max_depth))
    model.backbone.load_state_dict(student.encoder.backbone.state_dict())
    model.neck.load_state_dict(student.decoder.neck.state_dict())
    model.head.load_state_dict(student.head.head.state_dict())
    return model.eval()

