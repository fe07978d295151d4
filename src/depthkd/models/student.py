"""The CNN student: timm encoder -> light U-Net decoder -> depth head (optionally with LG-Conv).

``DepthStudent`` is built from a :class:`StudentConfig`, a plain JSON-serialisable record of every
build option, so a checkpoint can store it and rebuild the same network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from depthkd.errors import ConfigError
from depthkd.models.bins import check_depth_range
from depthkd.models.decoder import UNetDecoder
from depthkd.models.encoder import Encoder
from depthkd.models.heads import HEADS, build_head, default_num_bins
from depthkd.models.lgconv import insert_lgconv
from depthkd.models.outputs import StudentOutput

ARCHS: tuple[str, ...] = ("unet", "depth-anything")


@dataclass
class StudentConfig:
    """Every option of :func:`build_student`; ``build_student(**asdict(cfg))`` rebuilds the model.

    Attributes:
        backbone: timm model name of the encoder.
        head: ``regression``, ``bins`` (AdaBins-style adaptive bins) or ``dpm`` (uniform bins).
        max_depth: largest predictable depth in metres.
        lgconv: insert LG-Conv beside the encoder's 3x3 convs.
        min_depth: smallest predictable depth (> 0, keeps predictions strictly positive).
        num_bins: bins of the ``bins``/``dpm`` head; ``None`` resolves to the head's default
            (``bins``: 256; ``dpm``: 49 if ``max_depth <= 10`` else 257). Stored resolved.
        decoder_channels: width of each decoder stage, deepest first; ``None`` = decoder default.
        pretrained_path: local ImageNet weights for the encoder (used at build time only).
        lgconv_depthwise: also wrap depthwise 3x3 convs in LG-Conv.
        lgconv_pool: side P of LG-Conv's pooled context grid.
        lgconv_hidden: LG-Conv branch width; ``None`` = ``max(8, C_out // 4)`` per conv.
        output_stride: stride of the decoder output, where ``probs``/``logits`` live (our default 2).
        out_indices: encoder levels (timm ``out_indices``); ``None`` = timm's default (all levels).
        bins_mlp_hidden: hidden width of the ``bins`` head's width MLP (our default 256).
        arch: ``unet`` (timm encoder, U-Net decoder, any head) or ``depth-anything`` (the transformers
            Depth Anything network: DINOv2 ViT, DPT neck, metric head; regression only, ``backbone``
            is ``dinov2``). See :mod:`depthkd.models.depth_anything`.
        arch_options: ``depth-anything`` sizes (hidden_size, num_layers, num_heads, patch_size,
            mlp_ratio, neck_hidden_sizes, fusion_hidden_size, head_hidden_size) and ``stem`` (a timm
            CNN that makes it a DPT-Hybrid-style CNN + ViT); stored resolved.
        init_weights: start from the weights of a student checkpoint written by depthkd (a path) or of
            a built-in teacher (its name), e.g. to fine-tune ``sim-vit`` on another domain; every
            weight must fit this architecture (``max_depth`` may differ). Used at build time only.
        init_encoder: start the encoder alone from pretrained weights, the decoder and head from
            random ones, as with an ImageNet encoder: a built-in pretrained encoder (``sim-pool``, see
            :mod:`depthkd.models.pretrained`), a file written by ``benchmarks/package_encoder.py``, or a
            student checkpoint (its ``encoder.`` weights). Loaded before LG-Conv wraps the convs, so
            they keep the weights. Used at build time only.
    """

    backbone: str = "mobilenetv2_100"
    head: str = "regression"
    max_depth: float = 10.0
    lgconv: bool = False
    min_depth: float = 1e-3
    num_bins: int | None = None
    decoder_channels: tuple[int, ...] | None = None
    pretrained_path: str | None = None
    lgconv_depthwise: bool = False
    lgconv_pool: int = 1
    lgconv_hidden: int | None = None
    output_stride: int = 2
    out_indices: tuple[int, ...] | None = None
    bins_mlp_hidden: int = 256
    arch: str = "unet"
    arch_options: dict[str, Any] | None = None
    init_weights: str | None = None
    init_encoder: str | None = None

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ConfigError(f"unknown student arch {self.arch!r}: expected one of {', '.join(ARCHS)}")
        if self.arch == "depth-anything":
            self._check_depth_anything()
        elif self.arch_options:
            raise ConfigError(f"arch_options given for arch {self.arch!r}: only 'depth-anything' takes them")
        if self.head not in HEADS:
            raise ConfigError(f"unknown head {self.head!r}: expected one of {', '.join(HEADS)}")
        self.max_depth = float(self.max_depth)
        self.min_depth = float(self.min_depth)
        check_depth_range(self.min_depth, self.max_depth)
        if self.head == "regression":
            if self.num_bins is not None:
                raise ConfigError(
                    f"num_bins={self.num_bins} given for the 'regression' head: "
                    "expected None (only the 'bins' and 'dpm' heads use bins)"
                )
        else:
            if self.num_bins is None:
                self.num_bins = default_num_bins(self.head, self.max_depth)
            if int(self.num_bins) < 2:
                raise ConfigError(f"num_bins={self.num_bins} is invalid: expected at least 2")
            self.num_bins = int(self.num_bins)
        if self.decoder_channels is not None:
            self.decoder_channels = tuple(int(c) for c in self.decoder_channels)
        if self.out_indices is not None:
            self.out_indices = tuple(int(i) for i in self.out_indices)
        if self.pretrained_path is not None:
            self.pretrained_path = str(Path(self.pretrained_path))

    def _check_depth_anything(self) -> None:
        from depthkd.models.depth_anything import resolve_options

        if self.backbone == StudentConfig.backbone:
            self.backbone = "dinov2"
        problems = {
            "backbone": (self.backbone, "dinov2"),
            "head": (self.head, "regression"),
            "lgconv": (self.lgconv, False),
            "pretrained_path": (self.pretrained_path, None),
            "init_encoder": (self.init_encoder, None),
        }
        for key, (value, expected) in problems.items():
            if value != expected:
                raise ConfigError(f"student {key}={value!r} does not fit arch 'depth-anything': expected {expected!r}")
        self.arch_options = resolve_options(self.arch_options)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples become lists in JSON)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> StudentConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown student option(s) {', '.join(unknown)}: expected any of {', '.join(sorted(known))}"
            )
        return cls(**values)


class DepthStudent(nn.Module):
    """Encoder + decoder + head; ``forward(images)`` returns a :class:`StudentOutput`.

    ``probs``/``logits`` (``bins``, ``dpm`` heads) are at the decoder resolution (input / 2 by
    default); ``depth`` is at the input size; ``features`` are the encoder maps, shallow to deep.

    Attributes:
        config: the :class:`StudentConfig` this network was built from.
        encoder, decoder, head: the three parts (``decode`` can run a frozen copy of the last two
            on other features of the same shapes, as DisDepth's ghost decoder does).
        num_lgconv: number of LG-Conv modules inserted in the encoder (0 without ``lgconv``).
    """

    def __init__(self, config: StudentConfig) -> None:
        super().__init__()
        self.config = config
        self.num_lgconv = 0
        if config.arch == "depth-anything":
            from depthkd.models.depth_anything import build_depth_anything_parts

            assert config.arch_options is not None  # resolved by StudentConfig
            self.encoder, self.decoder, self.head = build_depth_anything_parts(
                config.arch_options, config.min_depth, config.max_depth
            )
        else:
            self._build_unet(config)
        if config.init_weights is not None:
            from depthkd.models.checkpoint import load_initial_weights

            load_initial_weights(self, config.init_weights)

    def _build_unet(self, config: StudentConfig) -> None:
        """Encoder (timm), LG-Conv if asked, U-Net decoder and head."""
        self.encoder = Encoder(config.backbone, config.out_indices, config.pretrained_path)
        if config.init_encoder is not None:
            from depthkd.models.pretrained import load_pretrained_encoder

            load_pretrained_encoder(self.encoder, config.backbone, config.init_encoder)
        if config.lgconv:
            # After loading ImageNet weights, so the wrapped convs keep them.
            self.num_lgconv = insert_lgconv(
                self.encoder.backbone,
                depthwise=config.lgconv_depthwise,
                pool=config.lgconv_pool,
                hidden=config.lgconv_hidden,
            )
        self.decoder = UNetDecoder(
            self.encoder.channels,
            self.encoder.reductions,
            config.decoder_channels,
            config.output_stride,
        )
        self.head = build_head(
            config.head,
            in_channels=self.decoder.out_channels,
            context_channels=self.encoder.channels[-1],
            min_depth=config.min_depth,
            max_depth=config.max_depth,
            num_bins=config.num_bins,
            bins_mlp_hidden=config.bins_mlp_hidden,
        )

    def encode(self, images: Tensor) -> list[Tensor]:
        """``(B,3,H,W)`` images in ``[0,1]`` -> encoder maps (normalisation happens inside)."""
        return self.encoder(images)

    def decode(self, features: Sequence[Tensor], out_size: Sequence[int]) -> StudentOutput:
        """Decoder + head on encoder-shaped ``features``; ``depth`` at ``out_size``, ``features`` empty."""
        return self.head(self.decoder(features), features[-1], out_size)

    def forward(self, images: Tensor) -> StudentOutput:
        features = self.encode(images)
        out = self.decode(features, images.shape[-2:])
        out.features = features
        return out


def build_student(
    backbone: str = "mobilenetv2_100",
    head: str = "regression",
    max_depth: float = 10.0,
    lgconv: bool = False,
    *,
    min_depth: float = 1e-3,
    num_bins: int | None = None,
    decoder_channels: Sequence[int] | None = None,
    pretrained_path: str | Path | None = None,
    lgconv_depthwise: bool = False,
    lgconv_pool: int = 1,
    lgconv_hidden: int | None = None,
    output_stride: int = 2,
    out_indices: Sequence[int] | None = None,
    bins_mlp_hidden: int = 256,
    arch: str = "unet",
    arch_options: dict[str, Any] | None = None,
    init_weights: str | None = None,
    init_encoder: str | None = None,
) -> DepthStudent:
    """Build a :class:`DepthStudent`; the options are documented on :class:`StudentConfig`."""
    config = StudentConfig(
        backbone=backbone,
        head=head,
        max_depth=max_depth,
        lgconv=lgconv,
        min_depth=min_depth,
        num_bins=num_bins,
        decoder_channels=decoder_channels,  # type: ignore[arg-type]
        pretrained_path=pretrained_path,  # type: ignore[arg-type]
        lgconv_depthwise=lgconv_depthwise,
        lgconv_pool=lgconv_pool,
        lgconv_hidden=lgconv_hidden,
        output_stride=output_stride,
        out_indices=out_indices,  # type: ignore[arg-type]
        bins_mlp_hidden=bins_mlp_hidden,
        arch=arch,
        arch_options=arch_options,
        init_weights=init_weights,
        init_encoder=init_encoder,
    )
    return DepthStudent(config)
