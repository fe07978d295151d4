"""NYU-like Kinect ground truth: structured-light depth with its holes, range limit and quantisation.

NYU Depth V2's raw depth comes from a Kinect v1: an infrared projector casts a dot pattern, a camera
7.5 cm beside it sees the pattern, and depth follows from the dots' disparity. Its failures follow
from that geometry and are modelled the same way (the renderer supplies the per-pixel inputs):

- **Projector shadows.** A surface the projector cannot see carries no pattern: beside every depth edge
  (on the side away from the projector: the projector sits to the camera's right, so holes open on the
  left of foreground objects, as in NYU's raw maps) and on surfaces facing away from it. The renderer
  traces these with its shadow rays, the projector standing in for the light.
- **Range.** Nothing closer than 0.5 m; beyond 4 m returns fade out and none come past 5 m (ours:
  a linear fade of the return probability).
- **Patches.** Weak and distant returns are lost in patches (the draws are spatially correlated noise).
- **Weak returns.** Very dark surfaces absorb the infrared pattern and mirror-like ones reflect it away:
  the return is ``albedo x (1 - 0.7 specular) x cos(incidence from the projector)``; below 0.01 it is
  lost, above 0.04 it is kept, in between lost with a linearly falling probability (ours).
- **Quantisation and noise.** Depth is ``f b / d`` from a disparity ``d`` measured in 1/8 pixel steps
  of the sensor's own 580-pixel focal length (at 640x480), whatever the size rendered, with Gaussian
  disparity noise of 0.1 pixel (ours): the error grows with the square of the depth (about 3 mm at 1 m,
  5 cm at 4 m), as measured for the Kinect (Khoshelham and Elberink 2012).

:func:`fill_holes` is the ``kinect_filled`` variant: holes filled by an edge-aware push-pull guided by
the colour image, standing in for the colourisation NYU's labelled set was filled with (ours, not
Levin's solver: it is vectorised and good enough for test sets).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class KinectModel:
    """Parameters of the simulated structured-light sensor (see the module docstring; defaults: Kinect v1).

    ``baseline``: projector offset along the camera's x axis (metres, + = right); ``focal``: the
    sensor's focal length in pixels, used for disparity quantisation; ``disparity_step`` and
    ``disparity_noise`` in pixels of that focal length. ``blotch``: the size of the lost patches as a
    fraction of the image height (ours: dropouts come in patches, as the sensor's correlation windows fail
    together, not as single pixels).
    """

    baseline: float = 0.075
    focal: float = 580.0
    disparity_step: float = 1.0 / 8.0
    disparity_noise: float = 0.1
    min_range: float = 0.5
    fade_start: float = 4.0
    max_range: float = 5.0
    weak_return: float = 0.01
    strong_return: float = 0.04
    specular_loss: float = 0.7
    blotch: float = 1.0 / 60.0


#: Tag mixed into each scene's noise seed so the Kinect's random draws are their own stream.
_SEED_TAG = 0x4B494E45  # "KINE"


def return_strength(albedo_luminance: torch.Tensor, specular: torch.Tensor, cos_incidence: torch.Tensor,
                    model: KinectModel) -> torch.Tensor:
    """How much of the pattern comes back from a surface point (any shape; 0 = nothing)."""
    return albedo_luminance * (1.0 - model.specular_loss * specular.clamp(0.0, 1.0)) * cos_incidence.clamp_min(0.0)


def kinect_depth(dense: torch.Tensor, lit: torch.Tensor, strength: torch.Tensor, noise_seeds: list[int],
                 model: KinectModel | None = None) -> torch.Tensor:
    """Kinect depth ``(B, 1, H, W)`` from the exact z-depth ``dense`` (0 = nothing), ``lit`` (whether the
    projector reaches the point) and the return ``strength`` (:func:`return_strength`), all
    ``(B, 1, H, W)``; each image draws its own noise from its ``noise_seeds`` entry."""
    model = model or KinectModel()
    out = torch.empty_like(dense)
    fb = model.focal * abs(model.baseline)  # the side of the projector does not change the geometry of depth
    for b, seed in enumerate(noise_seeds):
        generator = torch.Generator().manual_seed((seed ^ _SEED_TAG) % 2**63)
        draw = _blotches(dense.shape[-2:], model.blotch, generator).to(dense.device)
        noise = torch.randn(dense.shape[1:], generator=generator).to(dense.device)
        z = dense[b]
        fade = ((model.max_range - z) / (model.max_range - model.fade_start)).clamp(0.0, 1.0)
        weak = ((strength[b] - model.weak_return) / (model.strong_return - model.weak_return)).clamp(0.0, 1.0)
        keep = (z >= model.min_range) & lit[b].bool() & (draw < fade * weak)
        disparity = fb / z.clamp_min(1e-3) + model.disparity_noise * noise
        disparity = torch.round(disparity / model.disparity_step).clamp_min(1.0) * model.disparity_step
        out[b] = torch.where(keep, fb / disparity, 0.0)
    return out


def _blotches(size: tuple[int, int], blotch: float, generator: torch.Generator) -> torch.Tensor:
    """Spatially correlated draws in [0, 1] ``(1, H, W)``: uniform noise on a grid of ``blotch * H``
    cells, bilinearly interpolated (so a return probability p loses patches, not lone pixels)."""
    height, width = size
    cell = max(1.0, blotch * height)
    coarse = torch.rand((1, 1, int(height / cell) + 2, int(width / cell) + 2), generator=generator)
    return F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=True)[0]


def _pool(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 2, ceil_mode=True)


def fill_holes(depth: torch.Tensor, image: torch.Tensor, sigma: float = 0.1, max_depth: float | None = None
               ) -> torch.Tensor:
    """Fill the zeros of ``depth`` ``(B, 1, H, W)`` edge-aware, guided by ``image`` ``(B, 3, H, W)``.

    Push: a pyramid of valid-weighted means (a coarse level is valid where any of its pixels is).
    Pull: from the coarsest level down, each hole takes the mean of the 3x3 coarser neighbours, each
    weighted by its colour similarity to the hole's pixel (``exp(-|dRGB|^2 / sigma^2)``), so depth
    does not bleed across colour edges. Measured pixels are never changed.
    """
    if depth.ndim != 4 or depth.shape[1] != 1:
        raise ValueError(f"fill_holes expects depth (B, 1, H, W), got {tuple(depth.shape)}")
    levels = [(depth, (depth > 0).float(), image)]
    while min(levels[-1][0].shape[-2:]) > 1 and bool((levels[-1][1] == 0).any()):
        d, w, img = levels[-1]
        weight = _pool(w)
        levels.append((_pool(d * w) / weight.clamp_min(1e-12), (weight > 0).float(), _pool(img)))
    filled = levels[-1][0]
    for (d, w, img), (_, _, coarse_img) in zip(reversed(levels[:-1]), reversed(levels[1:])):
        filled = _pull(d, w, img, filled, coarse_img, sigma)
    if max_depth is not None:
        filled = filled.clamp(max=max_depth)
    return torch.where(depth > 0, depth, filled)


def _pull(depth: torch.Tensor, valid: torch.Tensor, image: torch.Tensor, coarse: torch.Tensor,
          coarse_image: torch.Tensor, sigma: float) -> torch.Tensor:
    """One pull step: the holes of ``depth`` from the 3x3 neighbours of the next coarser level
    (``coarse`` depth, ``coarse_image`` colours), upsampled to this level's size."""
    size = depth.shape[-2:]
    up = F.interpolate(coarse, size=size, mode="nearest")
    up_img = F.interpolate(coarse_image, size=size, mode="nearest")
    patches = F.unfold(F.pad(up, (1, 1, 1, 1), mode="replicate"), 3)  # (B, 9, H*W)
    img_patches = F.unfold(F.pad(up_img, (1, 1, 1, 1), mode="replicate"), 3).view(image.shape[0], 3, 9, -1)
    diff = (img_patches - image.flatten(2)[:, :, None, :]).square().sum(1)  # (B, 9, H*W)
    known = (patches > 0).float()
    weight = torch.exp(-diff / sigma**2) * known + 1e-6 * known
    guided = (weight * patches).sum(1) / weight.sum(1).clamp_min(1e-12)
    guided = guided.view_as(depth)
    return torch.where(valid > 0, depth, guided)
