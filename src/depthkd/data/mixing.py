"""Object-wise image mixing: paste object instances cut from other images of a batch onto each image.

Data-free distillation learns from simulated images the teacher never saw; mixing objects between
them creates object arrangements (and occlusions) that no single simulated scene holds. For each
image of the batch (the *background*), with probability ``p_mix``:

1. draw ``K ~ U{1..k_max}``;
2. for each of the K pastes, pick another image of the batch and one of its object instances
   (instance id > 0; id 0 is "stuff": floor, walls, ground);
3. cut the instance with its mask, at its original position (optionally scaled about its centroid
   and shifted: ``scale_jitter``, ``shift_jitter``);
4. composite it: where per-pixel depth is known for both the object and the canvas, the nearer
   surface wins (a z-buffer); elsewhere the later paste covers the earlier (paste order);
5. feather the mask edge *inwards* (a ``feather``-pixel ramp inside the mask), so pasted borders do
   not give the teacher artificial step edges while pixels outside the mask stay untouched.

Everything is vectorised over the batch; the only Python loop runs over the ``k_max`` paste slots.
Random draws come from a ``torch.Generator`` on the CPU, so a seed gives the same mix on any device.
Depth and instance maps are composited along with the image, so the result stays aligned: a pasted
pixel carries the source's colour, depth and a new instance id ``id + (slot + 1) * id_stride``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from depthkd.errors import ConfigError, DataError


@dataclass
class MixConfig:
    """Options of object-wise mixing (docs/METHODS.md ``data-free`` step 2).

    Attributes:
        k_max: most instances pasted per image; K is uniform in ``1..k_max`` (our default 4).
        p_mix: probability that an image is mixed at all (our default 0.8).
        scale_jitter: pasted objects are scaled about their centroid by a factor uniform in
            ``[1 - s, 1 + s]`` (0 = original size, our default); their depth is divided by the factor,
            as an object that looks larger is nearer.
        shift_jitter: pasted objects move by up to this fraction of the image width/height (0 = the
            original position, our default).
        feather: width in pixels of the inward alpha ramp at mask edges (our default 2; 0 = hard).
        zbuffer: composite by depth where both depths are known (nearest wins); ``False`` always
            uses paste order.
    """

    k_max: int = 4
    p_mix: float = 0.8
    scale_jitter: float = 0.0
    shift_jitter: float = 0.0
    feather: int = 2
    zbuffer: bool = True

    def __post_init__(self) -> None:
        if self.k_max < 1:
            raise ConfigError(f"mixing: k_max={self.k_max} must be >= 1")
        if not 0.0 <= self.p_mix <= 1.0:
            raise ConfigError(f"mixing: p_mix={self.p_mix} must be in [0, 1]")
        if not 0.0 <= self.scale_jitter < 1.0:
            raise ConfigError(f"mixing: scale_jitter={self.scale_jitter} must be in [0, 1)")
        if self.shift_jitter < 0.0 or self.feather < 0:
            raise ConfigError(
                f"mixing: shift_jitter={self.shift_jitter} and feather={self.feather} must be >= 0"
            )


@dataclass
class MixResult:
    """A mixed batch, aligned pixel for pixel.

    Attributes:
        image: ``(B,3,H,W)`` mixed images.
        instances: ``(B,1,H,W)`` int64 ids; pasted pixels carry ``id + (slot + 1) * id_stride``.
        depth: ``(B,1,H,W)`` composited depth (``None`` when no depth was given).
        source: ``(B,1,H,W)`` int64 batch index of the image a pixel was pasted from, ``-1`` if kept.
        alpha: ``(B,1,H,W)`` weight of the last paste that reached each pixel (0 where kept).
        mixed: ``(B,)`` bool, whether each image received at least one paste.
        id_stride: the instance-id offset between paste slots (one more than the largest input id).
    """

    image: torch.Tensor
    instances: torch.Tensor
    depth: torch.Tensor | None
    source: torch.Tensor
    alpha: torch.Tensor
    mixed: torch.Tensor
    id_stride: int


def feather_mask(mask: torch.Tensor, width: int) -> torch.Tensor:
    """Alpha in ``[0, 1]``: 1 deep inside ``mask``, ramping down to ``1/width`` on its edge, 0 outside.

    The ramp is the mean of ``width`` successive erosions (min-pooling), so no pixel outside the
    mask is ever touched; the image border does not count as an edge.
    """
    mask = mask.float()
    if width <= 0:
        return mask
    total = torch.zeros_like(mask)
    for radius in range(width):
        if radius == 0:
            eroded = mask
        else:
            eroded = -F.max_pool2d(-mask, kernel_size=2 * radius + 1, stride=1, padding=radius)
        total = total + eroded
    return total / width


def _draw_instances(
    instances: torch.Tensor, source: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """For each paste ``(b, k)``: a random instance id present in image ``source[b, k]`` (CPU tensors).

    Returns ``(ids, has_instance, id_stride)``; ``has_instance`` is ``False`` where the source image
    holds no instance at all.
    """
    batch, slots = source.shape
    ids = instances.reshape(instances.shape[0], -1)
    stride = int(ids.max().item()) + 1 if ids.numel() else 1
    present = torch.zeros(instances.shape[0], stride, dtype=torch.bool, device=ids.device)
    present.scatter_(1, ids.clamp_min(0), True)
    present[:, 0] = False  # "stuff" is never pasted
    weights = present.cpu()[source].float().reshape(batch * slots, stride)
    has_instance = weights.sum(1) > 0
    weights[~has_instance, 0] = 1.0  # a placeholder draw, masked out below
    chosen = torch.multinomial(weights, 1, generator=generator).view(batch, slots)
    return chosen, has_instance.view(batch, slots), stride


def _warp(
    tensors: list[torch.Tensor], modes: list[str], mask: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor
) -> list[torch.Tensor]:
    """Scale ``tensors`` about the centroid of ``mask`` by ``scale`` (B,) and shift by ``shift`` (B,2) px."""
    batch, _, height, width = mask.shape
    ys = torch.arange(height, device=mask.device, dtype=torch.float32).view(1, height, 1)
    xs = torch.arange(width, device=mask.device, dtype=torch.float32).view(1, 1, width)
    weight = mask[:, 0].float()
    area = weight.flatten(1).sum(1).clamp_min(1.0)
    cy = (weight * ys).flatten(1).sum(1) / area
    cx = (weight * xs).flatten(1).sum(1) / area
    # normalised coordinates (align_corners=False): u = (2x + 1) / W - 1
    cu, cv = (2 * cx + 1) / width - 1, (2 * cy + 1) / height - 1
    tu, tv = 2 * shift[:, 0] / width, 2 * shift[:, 1] / height
    inv = 1.0 / scale
    theta = torch.zeros(batch, 2, 3, device=mask.device)
    theta[:, 0, 0] = inv
    theta[:, 1, 1] = inv
    theta[:, 0, 2] = cu * (1 - inv) - tu
    theta[:, 1, 2] = cv * (1 - inv) - tv
    grid = F.affine_grid(theta, [batch, 1, height, width], align_corners=False)
    out = []
    for tensor, mode in zip(tensors, modes):
        out.append(F.grid_sample(tensor.float(), grid, mode=mode, padding_mode="zeros", align_corners=False))
    return out


def mix_objects(
    images: torch.Tensor,
    instances: torch.Tensor,
    depth: torch.Tensor | None = None,
    config: MixConfig | None = None,
    generator: torch.Generator | None = None,
) -> MixResult:
    """Object-wise mixing of a batch (see the module docstring).

    Args:
        images: ``(B,3,H,W)`` float in ``[0,1]``.
        instances: ``(B,1,H,W)`` (or ``(B,H,W)``) integer instance ids, 0 = no object.
        depth: ``(B,1,H,W)`` metres, 0 = unknown; ``None`` composites in paste order.
        config: the mixing options (defaults: :class:`MixConfig`).
        generator: CPU generator for every random draw (the global RNG when ``None``).
    """
    cfg = config or MixConfig()
    if instances.ndim == 3:
        instances = instances.unsqueeze(1)
    if images.ndim != 4 or images.shape[1] != 3:
        raise DataError(f"mixing expects images (B,3,H,W), got {tuple(images.shape)}")
    batch, _, height, width = images.shape
    if instances.shape != (batch, 1, height, width) or instances.is_floating_point():
        raise DataError(
            f"mixing expects integer instance maps {(batch, 1, height, width)} aligned with the images, got "
            f"{tuple(instances.shape)} {instances.dtype}"
        )
    if depth is not None and depth.shape != (batch, 1, height, width):
        raise DataError(f"mixing: depth {tuple(depth.shape)} is not aligned with images {tuple(images.shape)}")
    instances = instances.long()
    device = images.device
    slots = cfg.k_max

    # --- random draws (CPU generator) ---------------------------------------------------------
    apply = torch.rand(batch, generator=generator) < cfg.p_mix
    counts = torch.randint(1, slots + 1, (batch,), generator=generator)
    active = (torch.arange(slots).view(1, slots) < counts.view(batch, 1)) & apply.view(batch, 1)
    if batch > 1:
        offset = torch.randint(1, batch, (batch, slots), generator=generator)
        source = (torch.arange(batch).view(batch, 1) + offset) % batch  # never the background itself
    else:
        source = torch.zeros(batch, slots, dtype=torch.long)
        active[:] = False  # nothing to paste from
    chosen, has_instance, stride = _draw_instances(instances, source, generator)
    active &= has_instance
    jitter = cfg.scale_jitter > 0 or cfg.shift_jitter > 0
    scale = 1.0 + cfg.scale_jitter * (2 * torch.rand(batch, slots, generator=generator) - 1)
    shift = cfg.shift_jitter * (2 * torch.rand(batch, slots, 2, generator=generator) - 1)
    shift = shift * torch.tensor([width, height], dtype=torch.float32)

    # --- compositing, one paste slot at a time -------------------------------------------------
    out_image = images.clone()
    out_instances = instances.clone()
    out_depth = depth.clone() if depth is not None else None
    out_source = torch.full_like(instances, -1)
    out_alpha = torch.zeros(batch, 1, height, width, device=device, dtype=images.dtype)
    for slot in range(slots):
        if not bool(active[:, slot].any()):
            continue
        src = source[:, slot].to(device)
        on = active[:, slot].to(device).view(batch, 1, 1, 1)
        ids = chosen[:, slot].to(device).view(batch, 1, 1, 1)
        src_image, src_instances = images[src], instances[src]
        src_depth = depth[src] if depth is not None else None
        mask = (src_instances == ids) & on
        if jitter:
            tensors, modes = [src_image, mask.float()], ["bilinear", "nearest"]
            if src_depth is not None:
                tensors.append(src_depth)
                modes.append("nearest")
            warped = _warp(tensors, modes, mask, scale[:, slot].to(device), shift[:, slot].to(device))
            src_image, mask = warped[0], warped[1] > 0.5
            if src_depth is not None:
                src_depth = warped[2] / scale[:, slot].to(device).view(batch, 1, 1, 1)
        alpha = feather_mask(mask, cfg.feather).to(images.dtype)
        if cfg.zbuffer and src_depth is not None and out_depth is not None:
            unknown = (src_depth <= 0) | (out_depth <= 0)
            alpha = alpha * (unknown | (src_depth < out_depth)).to(alpha.dtype)
        hit = alpha > 0
        out_image = out_image * (1 - alpha) + src_image * alpha
        out_instances = torch.where(hit, ids + (slot + 1) * stride, out_instances)
        if out_depth is not None and src_depth is not None:
            out_depth = torch.where(hit, src_depth.to(out_depth.dtype), out_depth)
        out_source = torch.where(hit, src.view(batch, 1, 1, 1), out_source)
        out_alpha = torch.where(hit, alpha, out_alpha)
    mixed = (out_source >= 0).flatten(1).any(1)
    return MixResult(
        image=out_image,
        instances=out_instances,
        depth=out_depth,
        source=out_source,
        alpha=out_alpha,
        mixed=mixed,
        id_stride=stride,
    )


def mix_batch(
    batch: dict[str, Any], config: MixConfig | None = None, generator: torch.Generator | None = None
) -> MixResult:
    """:func:`mix_objects` on a collated batch: ``image``, ``instances`` and (when present) ``depth``.

    A batch without ``instances`` is a :class:`DataError`: mixing needs instance masks (simulator
    data, or :class:`~depthkd.data.instances.InstanceFolder` for a folder of images).
    """
    if "instances" not in batch:
        raise DataError(
            "object-wise mixing needs instance masks, but the batch has no 'instances' (keys: "
            f"{', '.join(sorted(batch))}); use simulator data (sim:...) or an image folder with instance "
            "PNGs, or switch mixing off"
        )
    return mix_objects(batch["image"], batch["instances"], batch.get("depth"), config, generator)


__all__ = ["MixConfig", "MixResult", "feather_mask", "mix_batch", "mix_objects"]
