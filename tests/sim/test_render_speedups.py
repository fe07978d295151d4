"""The shortcuts that make rendering fast give the same pictures as the plain computation."""

from __future__ import annotations

import torch

import depthkd.sim.render as render_module
from depthkd.sim import render_batch
from depthkd.sim.trace import _cone_hits_box

SIZE = (32, 48)


def test_chunked_rendering_matches_one_pass(monkeypatch):
    whole = render_batch("indoor", 3, SIZE, seed=7)
    monkeypatch.setattr(render_module, "CHUNK_PIXELS", SIZE[0] * SIZE[1])  # one image per chunk
    chunked = render_batch("indoor", 3, SIZE, seed=7)
    for key in whole:
        assert torch.equal(whole[key], chunked[key]), key


def test_cone_culling_keeps_every_occluder_a_shadow_ray_meets():
    """Random boxes, tiles (sphere of shading points) and lights: whenever a shadow segment from a
    point of the sphere to the light crosses the box, the cone test must keep the pair."""
    gen = torch.Generator().manual_seed(0)
    n = 4000
    half = 0.2 + torch.rand(n, 3, generator=gen)
    start = (torch.rand(n, 3, generator=gen) - 0.5) * 6.0
    light = (torch.rand(n, 3, generator=gen) - 0.5) * 6.0
    radius = torch.rand(n, generator=gen) * 0.8
    keep = _cone_hits_box(start.unbind(1), (light - start).unbind(1), half.unbind(1), radius)
    # Sample points in each sphere and along each shadow segment.
    offsets = torch.randn(n, 64, 3, generator=gen)
    offsets = offsets / offsets.norm(dim=-1, keepdim=True) * radius[:, None, None] * torch.rand(n, 64, 1, generator=gen)
    points = start[:, None, :] + offsets  # (n, 64, 3)
    s = torch.linspace(0.0, 1.0, 65)[None, None, :, None]
    along = points[:, :, None, :] + s * (light[:, None, None, :] - points[:, :, None, :])  # (n, 64, 65, 3)
    blocked = (along.abs() <= half[:, None, None, :]).all(-1).flatten(1).any(1)
    assert blocked.sum() > 100 and (~keep).sum() > 100  # both cases occur
    assert not (blocked & ~keep).any()
