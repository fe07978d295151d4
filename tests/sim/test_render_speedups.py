"""The shortcuts that make rendering fast give the same pictures as the plain computation."""

from __future__ import annotations

import math
import os
import shutil

import numpy as np
import pytest
import torch

import depthkd.sim.render as render_module
from depthkd.sim import render_batch
from depthkd.sim.camera import tile_grid, world_directions
from depthkd.sim import kernels
from depthkd.sim.domains import sample_scene, scene_generator
from depthkd.sim.primitives import INTERSECT, intersect_box, intersect_sphere
from depthkd.sim.render import default_tile
from depthkd.sim.scene import look_rotation, stack_scenes
from depthkd.sim.trace import _cone_hits_box, pair_frames, primitive_table

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


def test_pair_rays_are_the_camera_rays_of_the_tile_in_the_local_frame():
    """Each pair's per-pixel directions (one small matrix product) equal the camera ray of every pixel
    of its tile, ``((u - cx) / fx, (v - cy) / fy, 1)``, turned into the primitive's frame."""
    batch = stack_scenes([sample_scene("indoor", 4, i, SIZE) for i in range(2)], "cpu")
    grid = tile_grid(*SIZE, 8, torch.device("cpu"))
    image = torch.tensor([0, 0, 1, 1, 1])
    tile = torch.tensor([0, 7, 3, grid.num_tiles - 1, 11])
    prim = torch.tensor([0, 5, 1, 2, 9])
    gids = image * batch.num_primitives + prim
    directions = torch.stack(pair_frames(batch, grid, primitive_table(batch), image, tile, gids).directions(grid))
    for k in range(len(image)):
        b, t, p = int(image[k]), int(tile[k]), int(prim[k])
        fx, fy, cx, cy = batch.intrinsics[b]
        camera = torch.stack([(grid.u[t] - cx) / fx, (grid.v[t] - cy) / fy, torch.ones_like(grid.u[t])])
        expected = batch.prim_rotation[b, p].t() @ batch.cam_rotation[b] @ camera
        torch.testing.assert_close(directions[:, k], expected)


def test_world_directions_are_the_camera_rays_turned_into_the_world():
    """Per-image affine coefficients give each pixel's ray ``R ((u - cx) / fx, (v - cy) / fy, 1)``."""
    batch = stack_scenes([sample_scene("outdoor", 2, i, SIZE) for i in range(3)], "cpu")
    grid = tile_grid(*SIZE, 8, torch.device("cpu"))
    view = world_directions(grid, batch.intrinsics, batch.cam_rotation)
    assert view.shape == (3, 3, grid.num_tiles * grid.tile_pixels)
    for b in range(3):
        fx, fy, cx, cy = batch.intrinsics[b]
        camera = torch.stack([(grid.u - cx) / fx, (grid.v - cy) / fy, torch.ones_like(grid.u)]).view(3, -1)
        torch.testing.assert_close(view[:, b], batch.cam_rotation[b] @ camera)


def test_scene_random_draws_what_numpy_draws():
    """The scene generator's scalar ``uniform`` returns numpy's numbers for the same stream, so
    scenes do not depend on the shortcut; arrays still come from numpy."""
    ours = scene_generator("indoor", 5, 9)
    numpy_generator = np.random.Generator(np.random.PCG64())
    numpy_generator.bit_generator.state = ours.bit_generator.state
    bounds = [(0.2, 0.5), (-3.0, 7.5), (0, 10), (1e-3, 80.0), (1.0, 1.0), (np.float64(0.1), 4)]
    for low, high in bounds * 50:
        assert ours.uniform(low, high) == numpy_generator.uniform(low, high)
        assert ours.random() == numpy_generator.random()  # the streams stay in step
    with pytest.raises(ValueError, match="high - low"):
        ours.uniform(2.0, 1.0)
    assert np.array_equal(ours.uniform(0.0, 1.0, size=4), numpy_generator.uniform(0.0, 1.0, size=4))
    assert np.array_equal(ours.uniform([0.0, 1.0], 2.0), numpy_generator.uniform([0.0, 1.0], 2.0))


def test_look_rotation_matches_the_cross_product_construction():
    rng = np.random.default_rng(0)
    for yaw, pitch, roll in rng.uniform(-1.5, 1.5, size=(200, 3)):
        forward = np.array([math.sin(yaw) * math.cos(pitch), -math.sin(pitch), math.cos(yaw) * math.cos(pitch)])
        right = np.cross(forward, [0.0, 1.0, 0.0])
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        right, down = math.cos(roll) * right + math.sin(roll) * down, -math.sin(roll) * right + math.cos(roll) * down
        np.testing.assert_allclose(look_rotation(yaw, pitch, roll), np.stack([right, down, forward], axis=1),
                                   rtol=0, atol=1e-15)


def _random_rays(per_ray_origin: bool, n: int = 300, rays: int = 64):
    gen = torch.Generator().manual_seed(11)
    shape = (n, rays) if per_ray_origin else (n, 1)
    origin = tuple(torch.randn(shape, generator=gen) * 3.0 for _ in range(3))
    direction = tuple(torch.randn(n, rays, generator=gen) for _ in range(3))
    params = tuple(torch.rand(n, 1, generator=gen) + 0.2 for _ in range(4))
    return origin, direction, params


@pytest.mark.skipif(not shutil.which(os.environ.get("CXX", "g++")), reason="compiling needs a C++ compiler; "
                    "the fallback is tested below")
def test_compiled_intersection_tests_match_the_eager_ones():
    """Each kind's compiled test (camera rays from one origin per pair; shadow rays from per-ray origins)
    hits what the eager test hits, at the same distances to float rounding."""
    for kind, per_ray_origin in ((1, False), (1, True), (2, False), (3, False)):
        kernel = kernels.CompiledKernel(INTERSECT[kind])
        origin, direction, params = _random_rays(per_ray_origin)
        eager = INTERSECT[kind](origin, direction, params, 1e-4)
        compiled = kernel(origin, direction, params, 1e-4)
        assert not kernel.failed, INTERSECT[kind].__name__
        assert torch.isfinite(eager).sum() > 100  # the rays hit something
        assert torch.equal(torch.isfinite(compiled), torch.isfinite(eager))
        torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)


def test_a_kernel_that_cannot_compile_warns_once_and_runs_eager(monkeypatch):
    def no_compiler(fn, **options):
        def run(*args, **kwargs):
            raise RuntimeError("no C++ compiler found")
        return run

    monkeypatch.setattr(torch, "compile", no_compiler)
    kernel = kernels.CompiledKernel(intersect_sphere)
    origin, direction, params = _random_rays(False)
    with pytest.warns(RuntimeWarning, match="intersect_sphere failed.*no C\\+\\+ compiler found"):
        first = kernel(origin, direction, params, 1e-4)
    assert kernel.failed and torch.equal(first, intersect_sphere(origin, direction, params, 1e-4))
    assert torch.equal(kernel(origin, direction, params, 1e-4), first)  # eager from now on, no new warning


def test_compile_switch_picks_the_kernels_the_tracer_calls(monkeypatch):
    monkeypatch.setattr(kernels, "_enabled", False)
    assert kernels.intersect(1) is intersect_box and not kernels.kernels_compiled()
    kernels.compile_kernels(True)
    assert kernels.intersect(1) is kernels.COMPILED_INTERSECT[1] and kernels.kernels_compiled()
    kernels.compile_kernels(False)
    assert kernels.intersect(1) is intersect_box
