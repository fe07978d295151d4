"""The published teacher architectures, built offline with random weights, for cost comparisons.

A latency, parameter or MAC comparison needs the teacher's *architecture*, not its weights: the
models here are the transformers classes with the hyperparameters of the released checkpoints
(their ``config.json`` and ``preprocessor_config.json`` on the Hugging Face Hub), initialised with a
seeded random generator, so no download is needed. Each is wrapped with the preprocessing its users
run, so the timed graph is the whole deployed function ``[0,1] image -> depth at the input size``:

- ``depth-anything-v2-small`` / ``-base`` (``depth-anything/Depth-Anything-V2-{Small,Base}-hf``):
  DINOv2 ViT-S/14 or ViT-B/14 backbone, DPT neck and head. The processor resizes keeping the aspect
  ratio so the side closest to its target becomes ~518, each side rounded to a multiple of 14
  (bicubic, antialiased), normalises with ImageNet mean/std; the relative disparity map is resized
  back to the input size.
- ``dpt-hybrid`` (``Intel/dpt-hybrid-midas``): BiT-R50 stem (3 stages, depths 3/4/9) + ViT-B/16,
  DPT neck and head; input resized to 384x384 (bilinear), normalised with mean = std = 0.5.

Outputs are relative disparity (the ``kind`` attribute), like the released models. The preprocessing
is :class:`~depthkd.models.teachers.hf_preprocessing.HFPreprocessing`, the same code the ``hf:``
teacher adapter runs.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from depthkd.errors import ModelError
from depthkd.models.teachers.hf_preprocessing import HFPreprocessing

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# PIL resampling ids, as stored in preprocessor_config.json.
BILINEAR, BICUBIC = 2, 3


@dataclass(frozen=True)
class ReferenceSpec:
    """One released architecture: its model class, config values and processor settings.

    Attributes:
        name: the ``arch:NAME`` spec name.
        source: the Hugging Face repository whose config the values come from.
        model_class: transformers ``*ForDepthEstimation`` class name.
        config_class, backbone_config_class: transformers config class names.
        config: top-level config values of the release.
        backbone_config: backbone config values of the release.
        processor: ``DPTImageProcessor`` settings of the release.
        kind: output kind of the released model.
    """

    name: str
    source: str
    model_class: str
    config_class: str
    backbone_config_class: str
    config: Mapping[str, Any]
    backbone_config: Mapping[str, Any]
    processor: Mapping[str, Any] = field(default_factory=dict)
    kind: str = "relative_disparity"


def _depth_anything_v2(name: str, source: str, hidden: int, heads: int, neck: list[int], fusion: int) -> ReferenceSpec:
    return ReferenceSpec(
        name=name,
        source=source,
        model_class="DepthAnythingForDepthEstimation",
        config_class="DepthAnythingConfig",
        backbone_config_class="Dinov2Config",
        config={
            "reassemble_hidden_size": hidden,
            "patch_size": 14,
            "reassemble_factors": [4, 2, 1, 0.5],
            "neck_hidden_sizes": neck,
            "fusion_hidden_size": fusion,
            "head_in_index": -1,
            "head_hidden_size": 32,
            "depth_estimation_type": "relative",
        },
        backbone_config={
            "hidden_size": hidden,
            "num_attention_heads": heads,
            "num_hidden_layers": 12,
            "mlp_ratio": 4,
            "image_size": 518,
            "patch_size": 14,
            # V2 taps layers 3, 6, 9, 12 (V1 tapped the last four).
            "out_indices": [3, 6, 9, 12],
            "apply_layernorm": True,
            "reshape_hidden_states": False,
        },
        processor={
            "do_resize": True,
            "size": {"height": 518, "width": 518},
            "keep_aspect_ratio": True,
            "ensure_multiple_of": 14,
            "resample": BICUBIC,
            "do_rescale": True,
            "rescale_factor": 1 / 255,
            "do_normalize": True,
            "image_mean": list(IMAGENET_MEAN),
            "image_std": list(IMAGENET_STD),
            "do_pad": False,
        },
    )


REFERENCE_SPECS: dict[str, ReferenceSpec] = {
    spec.name: spec
    for spec in (
        _depth_anything_v2(
            "depth-anything-v2-small", "depth-anything/Depth-Anything-V2-Small-hf", 384, 6, [48, 96, 192, 384], 64
        ),
        _depth_anything_v2(
            "depth-anything-v2-base", "depth-anything/Depth-Anything-V2-Base-hf", 768, 12, [96, 192, 384, 768], 128
        ),
        ReferenceSpec(
            name="dpt-hybrid",
            source="Intel/dpt-hybrid-midas",
            model_class="DPTForDepthEstimation",
            config_class="DPTConfig",
            backbone_config_class="BitConfig",
            config={
                "is_hybrid": True,
                "hidden_size": 768,
                "num_hidden_layers": 12,
                "num_attention_heads": 12,
                "intermediate_size": 3072,
                "image_size": 384,
                "patch_size": 16,
                "backbone_out_indices": [2, 5, 8, 11],
                "readout_type": "project",
                "reassemble_factors": [1, 1, 1, 0.5],
                "neck_hidden_sizes": [256, 512, 768, 768],
                "fusion_hidden_size": 256,
                "backbone_featmap_shape": [1, 1024, 24, 24],
                "neck_ignore_stages": [0, 1],
                "use_batch_norm_in_fusion_residual": False,
                "head_in_index": -1,
            },
            backbone_config={
                "layer_type": "bottleneck",
                "depths": [3, 4, 9],
                "hidden_sizes": [256, 512, 1024, 2048],
                "embedding_size": 64,
                "global_padding": "same",
                "embedding_dynamic_padding": True,
                "out_features": ["stage1", "stage2", "stage3"],
            },
            processor={
                "do_resize": True,
                "size": {"height": 384, "width": 384},
                "keep_aspect_ratio": False,
                "ensure_multiple_of": 1,
                "resample": BILINEAR,
                "do_rescale": True,
                "rescale_factor": 1 / 255,
                "do_normalize": True,
                "image_mean": [0.5, 0.5, 0.5],
                "image_std": [0.5, 0.5, 0.5],
                "do_pad": False,
            },
        ),
    )
}


def reference_names() -> list[str]:
    """The architectures :func:`build_reference` knows, sorted."""
    return sorted(REFERENCE_SPECS)


def get_reference_spec(name: str) -> ReferenceSpec:
    """The :class:`ReferenceSpec` of ``name`` (a :class:`ModelError` listing the known names otherwise)."""
    try:
        return REFERENCE_SPECS[name]
    except KeyError:
        raise ModelError(f"unknown reference architecture {name!r}: expected one of {', '.join(reference_names())}") from None


def _merge(base: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    values = copy.deepcopy(dict(base))
    values.update(copy.deepcopy(dict(overrides or {})))
    return values


def reference_config(
    name: str,
    overrides: Mapping[str, Any] | None = None,
    backbone_overrides: Mapping[str, Any] | None = None,
) -> Any:
    """The transformers config of ``name`` with the released values (and optional overrides).

    Overrides exist to build scaled-down variants quickly (tests); a real comparison uses none.
    """
    import transformers

    spec = get_reference_spec(name)
    backbone_class = getattr(transformers, spec.backbone_config_class)
    config_class = getattr(transformers, spec.config_class)
    backbone = backbone_class(**_merge(spec.backbone_config, backbone_overrides))
    return config_class(backbone_config=backbone, **_merge(spec.config, overrides))


def reference_processor(name: str, overrides: Mapping[str, Any] | None = None) -> Any:
    """The released ``DPTImageProcessor`` settings of ``name`` as a processor object (no download)."""
    from transformers import DPTImageProcessor

    return DPTImageProcessor(**_merge(get_reference_spec(name).processor, overrides))


class ReferenceDepthModel(nn.Module):
    """A transformers depth model plus its users' preprocessing: ``[0,1]`` images -> ``(B,1,H,W)``.

    Attributes:
        name: the architecture name.
        kind: what the output means (``relative_disparity`` for the released models).
        model: the ``*ForDepthEstimation`` module (random weights).
        preprocessing: the processor's resize/normalise and the output resize back to the input.
    """

    def __init__(self, name: str, model: nn.Module, preprocessing: HFPreprocessing, kind: str) -> None:
        super().__init__()
        self.name = name
        self.kind = kind
        self.model = model
        self.preprocessing = preprocessing

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pixel_values, layout = self.preprocessing.prepare(images)
        prediction = self.model(pixel_values=pixel_values, return_dict=True).predicted_depth
        return self.preprocessing.restore(prediction.unsqueeze(1), layout)


def build_reference(
    name: str,
    seed: int = 0,
    overrides: Mapping[str, Any] | None = None,
    backbone_overrides: Mapping[str, Any] | None = None,
    processor_overrides: Mapping[str, Any] | None = None,
) -> ReferenceDepthModel:
    """Build architecture ``name`` with seeded random weights, in eval mode, on the CPU.

    Args:
        name: one of :func:`reference_names`.
        seed: seed of the weight initialisation (same seed, same weights).
        overrides, backbone_overrides: config values replacing the released ones (for tiny test
            variants; leave empty for real measurements).
        processor_overrides: processor settings replacing the released ones (e.g. a smaller ``size``).
    """
    import transformers

    spec = get_reference_spec(name)
    config = reference_config(name, overrides, backbone_overrides)
    model_class = getattr(transformers, spec.model_class)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
    preprocessing = HFPreprocessing.from_processor(reference_processor(name, processor_overrides))
    return ReferenceDepthModel(name, model, preprocessing, spec.kind).eval()
