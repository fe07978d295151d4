"""The shortcuts that make rendering fast give the same pictures as the plain computation."""

from __future__ import annotations

import torch

import depthkd.sim.render as render_module
from depthkd.sim import render_batch
from depthkd.sim.domains import sample_scene
from depthkd.sim.render import default_tile
from depthkd.sim.scene import stack_scenes
from depthkd.sim.trace import _cone_hits_box, primitive_table

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


def test_primitive_table_holds_camera_and_light_in_each_local_frame():
    """The table every pair gathers from: camera centre, camera-to-local rotation, shape parameters
    and light position, each as the plain per-primitive matrix product gives it."""
    batch = stack_scenes([sample_scene("indoor", 3, i, SIZE) for i in range(2)], "cpu")
    light = torch.tensor([[0.5, 2.0, 1.0], [-1.0, 2.5, 3.0]])
    table = primitive_table(batch, light)
    assert table.shape == (2 * batch.num_primitives, 19)
    for b in range(2):
        for p in range(batch.num_primitives):
            to_local = batch.prim_rotation[b, p].t()
            row = table[b * batch.num_primitives + p]
            centre = batch.prim_centre[b, p]
            torch.testing.assert_close(row[0:3], to_local @ (batch.cam_position[b] - centre))
            torch.testing.assert_close(row[3:12].view(3, 3), to_local @ batch.cam_rotation[b])
            assert torch.equal(row[12:16], batch.prim_params[b, p])
            torch.testing.assert_close(row[16:19], to_local @ (light[b] - centre))
    assert primitive_table(batch).shape == (2 * batch.num_primitives, 16)


def test_default_tile_gives_about_three_hundred_tiles():
    assert default_tile(120, 160) == 8 and default_tile(128, 160) == 8 and default_tile(32, 48) == 8
    assert default_tile(240, 320) == 16 and default_tile(192, 256) == 16
    assert default_tile(480, 640) == 32 and default_tile(2000, 3000) == 32
