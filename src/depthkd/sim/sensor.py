"""Image formation after shading: exposure, tone curve, white balance, vignetting, gamma, noise."""

from __future__ import annotations

from functools import lru_cache

import torch

from depthkd.sim.scene import SceneBatch

#: Rec. 709 luminance weights of linear RGB.
LUMINANCE = (0.2126, 0.7152, 0.0722)


def apply_sensor(batch: SceneBatch, linear: torch.Tensor, valid: torch.Tensor, radius2: torch.Tensor) -> torch.Tensor:
    """Linear radiance ``(3, B, N)`` to display RGB in ``[0, 1]`` (before noise).

    Auto exposure scales each image so that its mean luminance over ``valid`` pixels ``(N,)`` would
    display at about the sensor's ``exposure`` level (a display-space mean) after the soft shoulder
    ``1 - exp(-x)`` (highlights roll off instead of clipping) and gamma; then white balance and
    vignetting (``radius2`` ``(B, N)``: squared distance to the principal point, 1 at the corners).
    """
    # Three passes, each image summed on its own: a matrix-vector product would be cheaper, but its
    # summation order depends on how many images share the chunk.
    luminance = torch.add(linear[0] * LUMINANCE[0], linear[1], alpha=LUMINANCE[1])
    luminance.add_(linear[2], alpha=LUMINANCE[2])
    mean = luminance.mul_(valid).sum(1) / valid.sum().clamp_min(1)
    target = -torch.log1p(-batch.exposure.clamp(0.01, 0.95) ** batch.gamma)
    scale = (target / mean.clamp_min(1e-6)).clamp(0.02, 50.0)
    gain = batch.white_balance.t()[:, :, None] * (1.0 - batch.vignetting[:, None] * radius2)[None]
    # gain * (1 - exp(-scale * x)), written into gain as gain - gain * exp(...).
    exposed = gain.addcmul_(gain, torch.exp(linear * -scale[None, :, None]), value=-1.0).clamp_(1e-6, 1.0)
    # Gamma as exp(log(x) / gamma) in place: three vectorised passes cost a quarter of one pow on CPU.
    return exposed.log_().mul_(batch.gamma.reciprocal()[None, :, None]).exp_()


_NOISE_FIELD = 1024


@lru_cache(maxsize=4)
def _noise_field(device: torch.device) -> torch.Tensor:
    """A fixed field of unit Gaussian noise ``(3, 1024, 1024)``, generated once per device."""
    generator = torch.Generator().manual_seed(20240601)
    return torch.randn((3, _NOISE_FIELD, _NOISE_FIELD), generator=generator).to(device)


def add_sensor_noise_(batch: SceneBatch, image: torch.Tensor) -> torch.Tensor:
    """Add Gaussian sensor noise of each scene's strength to ``image`` ``(B, 3, H, W)`` in place and
    return it: a window of a fixed noise field at an offset drawn from the scene's ``noise_seed``
    (much cheaper than fresh noise per pixel)."""
    _, _, height, width = image.shape
    field = _noise_field(image.device)
    if height > _NOISE_FIELD or width > _NOISE_FIELD:
        field = field.repeat(1, height // _NOISE_FIELD + 1, width // _NOISE_FIELD + 1)
    for b, (seed, strength) in enumerate(zip(batch.noise_seeds, batch.noise.tolist())):
        if strength <= 0:
            continue
        generator = torch.Generator().manual_seed(seed)
        top = int(torch.randint(field.shape[1] - height + 1, (1,), generator=generator))
        left = int(torch.randint(field.shape[2] - width + 1, (1,), generator=generator))
        image[b].add_(field[:, top : top + height, left : left + width], alpha=strength)
    return image
