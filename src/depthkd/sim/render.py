"""The renderer: scenes in, RGB, z-depth, instance and class maps out, in one batched pass.

Steps (all tensor ops over the whole batch; no per-pixel Python):

1. camera rays in tile-major layout (``camera.py``), culled per tile (``trace.py``);
2. closest hit per ray -> z-depth and primitive id;
3. surface frame, textured albedo, key-light shadow rays, shading, haze, sky (``shading.py``);
4. sensor: auto exposure, white balance, vignetting, gamma, Gaussian noise (a window of a fixed
   noise field at an offset drawn from the scene's seed).

:func:`render_scenes` renders hand-built scenes (see ``SceneBuilder``), which is also how the tests
check the geometry against closed-form answers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import torch

from depthkd.errors import ConfigError
from depthkd.sim import scene as S
from depthkd.sim.camera import TileGrid, tile_grid, tiles_to_image, world_directions
from depthkd.sim.groundtruth import check_ground_truth
from depthkd.sim.kinect import KinectModel, fill_holes, kinect_depth, return_strength
from depthkd.sim.lidar import ANNOTATED, LidarModel, lidar_depth
from depthkd.sim.sensor import LUMINANCE, add_sensor_noise_, apply_sensor
from depthkd.sim.shading import (
    I_CAMERA,
    I_FX,
    I_LIGHT,
    PIXEL_ROWS,
    apply_haze,
    dot,
    image_table,
    light_positions,
    material_table,
    pixel_flags,
    shade,
    sky_colour,
    surface_frames,
    textured_albedo,
)
from depthkd.sim.textures import texture_bank
from depthkd.sim.trace import closest_hits, primary_pairs, primitive_table, shadow_pairs, shadowed, tile_hit_bounds


#: Tiles per image the default tile side aims at (our default): smaller tiles cull tighter, larger
#: ones cost less per-pair bookkeeping. Measured on CPU, 8-pixel tiles are best at 120x160 (12 costs
#: 1% more work, 16 about 13% more time) and 16-pixel tiles at 240x320 (9% less work than 8, 2% less
#: than 12): about 300 tiles per image at both sizes.
TILES_PER_IMAGE = 300


def default_tile(height: int, width: int) -> int:
    """The tile side (8, 16 or 32 pixels) giving about :data:`TILES_PER_IMAGE` tiles."""
    side = math.sqrt(height * width / TILES_PER_IMAGE)
    return 8 if side < 8 * math.sqrt(2) else 16 if side < 16 * math.sqrt(2) else 32


def _visibility(batch: S.SceneBatch, grid: TileGrid, depth: torch.Tensor, ids: torch.Tensor,
                n_dot_to_light: torch.Tensor, lights: torch.Tensor) -> torch.Tensor:
    """1 where the point light ``lights`` ``(B, 3)`` reaches a pixel's point, 0 where its shadow ray is
    blocked ``(B, P)``; only points facing the light (``n_dot_to_light > 0``) bound the tiles' shadow rays."""
    active = (n_dot_to_light.view_as(ids) > 0) & (ids > 0)
    centre, radius, any_active = tile_hit_bounds(batch, grid, depth, active)
    pairs = shadow_pairs(batch, centre, radius, any_active, lights)
    blocked = shadowed(batch, grid, pairs, depth, ids, lights)
    return 1.0 - blocked.float().view(batch.batch_size, -1)


#: Pixels rendered at once (our default): a batch is rendered in chunks of whole images of at most
#: this many pixels (at least one image), which bounds the memory of the per-pixel temporaries of
#: large batches. Measured on 2 CPU threads, smaller chunks cost more per-call overhead than they
#: gain in cache locality. Each image renders the same whichever chunk it falls in.
CHUNK_PIXELS = 320_000


@torch.inference_mode()
def render_scenes(
    scenes: Sequence[S.Scene] | S.SceneBatch,
    size: tuple[int, int],
    device: torch.device | str = "cpu",
    *,
    tile: int | None = None,
    shadows: bool = True,
    gt: str = "dense",
    sensor: LidarModel | KinectModel | None = None,
) -> dict[str, torch.Tensor]:
    """Render scenes at ``size = (H, W)``, in tiles of ``tile`` pixels (default: :func:`default_tile`).

    Returns ``image`` (B,3,H,W) float32 in [0,1], ``depth`` (B,1,H,W) float32 z-depth in metres (0
    where nothing is hit or beyond the scene's ``max_depth``), ``instances`` and ``classes``
    (B,1,H,W) int64, ``intrinsics`` (B,4) float32 ``fx, fy, cx, cy``.

    ``gt`` picks the ground truth in ``depth`` (see :mod:`depthkd.sim.groundtruth`): ``dense`` (the
    exact depth), ``lidar`` or ``lidar_annotated`` (:mod:`depthkd.sim.lidar`), ``kinect`` or ``kinect_filled``
    (:mod:`depthkd.sim.kinect`). A sensor's ``depth`` is 0 where it measured nothing, and the exact
    depth comes along as ``dense_depth``; every other output is the same bytes whatever ``gt`` is.
    ``sensor`` overrides the sensor's parameters (a :class:`LidarModel` for the LiDAR kinds, a
    :class:`KinectModel` for the Kinect kinds; None = the defaults).
    """
    check_ground_truth(gt)
    expected = LidarModel if gt.startswith("lidar") else KinectModel if gt.startswith("kinect") else type(None)
    if sensor is not None and not isinstance(sensor, expected):
        raise ConfigError(f"sensor parameters {type(sensor).__name__} do not fit gt={gt!r}")
    device = torch.device(device)
    batch = scenes if isinstance(scenes, S.SceneBatch) else S.stack_scenes(scenes, device)
    height, width = size
    grid = tile_grid(height, width, tile or default_tile(height, width), device)
    per_chunk = max(1, CHUNK_PIXELS // (grid.num_tiles * grid.tile_pixels))
    if batch.batch_size <= per_chunk:
        out = _render_chunk(batch, grid, shadows, gt, sensor)
    else:
        chunks = [_render_chunk(batch.images(start, start + per_chunk), grid, shadows, gt, sensor)
                  for start in range(0, batch.batch_size, per_chunk)]
        out = {key: torch.cat([chunk[key] for chunk in chunks]) for key in chunks[0]}
    if gt.startswith("lidar"):
        out["dense_depth"] = out["depth"]
        model = sensor or (ANNOTATED if gt == "lidar_annotated" else LidarModel())
        out["depth"] = lidar_depth(batch, (height, width), model, out["dense_depth"])
    return out


def _projector_inputs(batch: S.SceneBatch, grid: TileGrid, depth: torch.Tensor, ids: torch.Tensor,
                      t: torch.Tensor, view: torch.Tensor, normal: torch.Tensor, albedo: torch.Tensor,
                      mat_ids: torch.Tensor, model: KinectModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pixel, planar ``(1, B, P)``: whether the structured-light projector reaches the point (its
    ray unblocked by any primitive, the surface facing it) and the pattern's return strength."""
    offset = batch.cam_rotation[:, :, 0] * model.baseline  # (B, 3): the projector beside the camera
    to_projector = torch.addcmul(offset.t()[:, :, None], view, t, value=-1.0)
    n_dot_p = dot(normal, to_projector)
    every_occluder = replace(batch, prim_shadow=batch.prim_kind >= 0)
    lit = _visibility(every_occluder, grid, depth, ids, n_dot_p, batch.cam_position + offset)
    lit = lit * (n_dot_p > 0).float()
    cos_incidence = n_dot_p / dot(to_projector, to_projector).sqrt().clamp_min(1e-9)
    luminance = dot(albedo, torch.tensor(LUMINANCE, device=albedo.device)).view_as(t)
    specular = batch.materials[:, S.MAT_SPECULAR].index_select(0, mat_ids).view_as(t)
    strength = return_strength(luminance, specular, cos_incidence, model)
    return lit[None], strength[None]


def _render_chunk(batch: S.SceneBatch, grid: TileGrid, shadows: bool, gt: str = "dense",
                  sensor: KinectModel | LidarModel | None = None) -> dict[str, torch.Tensor]:
    """:func:`render_scenes` for one chunk of images."""
    device = batch.device
    height, width = grid.height, grid.width
    batch_size, per_image = batch.batch_size, grid.num_tiles * grid.tile_pixels

    prim_table = primitive_table(batch)  # culling and tracing both read it
    depth, ids = closest_hits(batch, grid, primary_pairs(batch, grid, prim_table), prim_table)  # (B*T, S)
    # Shading runs densely over all pixels, shaped (channels, B, pixels per image), so per-image
    # constants broadcast; pixels that hit nothing are shaded with a stand-in and replaced by sky.
    flat_ids = ids.view(-1)
    hit = flat_ids > 0
    gids = (flat_ids - 1).clamp_min(0)
    t = torch.where(hit, depth.view(-1), 1.0).view(batch_size, per_image)
    images = image_table(batch)
    view = world_directions(grid, batch.intrinsics, batch.cam_rotation)  # (3, B, P)
    # Hit points are never formed in world coordinates: relative to the primitive (camera minus
    # centre, per primitive, plus t * view) and relative to the light (light minus camera, per image,
    # minus t * view) each take one pass per axis.
    # Only the first three shape parameters are ever used; each gathered row is a pass over all pixels.
    camera_rel = batch.cam_position[:, None, :] - batch.prim_centre
    prims = torch.cat([camera_rel, batch.prim_rotation.flatten(2), batch.prim_params[..., :3]], dim=2)
    prims = prims.view(-1, 15).t().contiguous().index_select(1, gids)
    normal, face, uv, n_dot_v = surface_frames(prims, batch.prim_kind.view(-1).index_select(0, gids),
                                               view.view(3, -1), t.view(-1))
    normal = normal.view(3, batch_size, per_image)
    face_index = gids * 6 + face
    mat_ids = batch.prim_face_material.view(-1).index_select(0, face_index)
    bank = texture_bank(device)
    table = material_table(batch.materials, bank)
    mats = table[:PIXEL_ROWS].index_select(1, mat_ids)
    ray_length = dot(view, view).sqrt()
    grazing = (n_dot_v.view_as(t) / ray_length).clamp_min(0.2)
    pixel_size = t / (images[I_FX] * grazing)
    flags = pixel_flags(mats)
    albedo = textured_albedo(bank, batch.materials, table, mat_ids, mats, flags, uv, pixel_size.view(-1))
    to_light = torch.addcmul(images[I_LIGHT] - images[I_CAMERA], view, t, value=-1.0)
    n_dot_to_light = dot(normal, to_light)
    if gt.startswith("kinect"):  # before shading, which may work in place on its inputs
        kinect = sensor or KinectModel()
        projector = _projector_inputs(batch, grid, depth, ids, t, view, normal, albedo, mat_ids, kinect)
    if shadows:
        visible = _visibility(batch, grid, depth, ids, n_dot_to_light, light_positions(batch))
    else:
        visible = torch.ones_like(t)
    colour = shade(images, batch.materials, mat_ids, flags, albedo.view(3, batch_size, per_image), to_light,
                   n_dot_to_light, normal, view, visible)
    if bool((batch.haze_density > 0).any()):  # indoor scenes have none: no passes for nothing
        colour = apply_haze(images, colour, t * ray_length)
    linear = colour.reshape(3, -1)
    sky = (~hit).nonzero().squeeze(1)
    if sky.numel():
        linear.index_copy_(1, sky, sky_colour(bank, batch, sky // per_image,
                                              view.reshape(3, -1).index_select(1, sky)))
    fx, fy, cx, cy = (batch.intrinsics[:, i].view(-1, 1) for i in range(4))
    u, v = grid.u.view(1, -1), grid.v.view(1, -1)
    inside = ((u < width) & (v < height)).float().view(-1)
    radius2 = ((u - cx) ** 2 + (v - cy) ** 2) / (0.25 * (width**2 + height**2))
    display = apply_sensor(batch, linear.view(3, batch_size, per_image), inside, radius2)
    image = add_sensor_noise_(batch, tiles_to_image(display, grid))

    beyond = depth.view(batch_size, -1) > batch.max_depth[:, None]
    metric = torch.where(beyond | (ids.view(batch_size, -1) == 0), 0.0, depth.view(batch_size, -1))
    instance_of = torch.cat([batch.prim_instance.new_zeros(1), batch.prim_instance.view(-1)])
    classes = torch.where(hit, batch.prim_face_class.view(-1).index_select(0, face_index), S.CLASS_ID["sky"])
    image = image.clamp_(0.0, 1.0)
    dense = tiles_to_image(metric.view(1, batch_size, -1), grid)
    # The Kinect is modelled here, from the shading's per-pixel inputs; the LiDAR, which needs only the
    # scene, in render_scenes.
    measurements = {}
    if gt.startswith("kinect"):
        lit, strength = (tiles_to_image(x, grid) for x in projector)
        measured = kinect_depth(dense, lit, strength, batch.noise_seeds, kinect)
        if gt == "kinect_filled":
            measured = torch.where(dense > 0, fill_holes(measured, image), 0.0)
        measurements = {"depth": measured, "dense_depth": dense}
    return {
        "image": image,
        "depth": dense,
        "instances": tiles_to_image(instance_of.index_select(0, flat_ids).view(1, batch_size, -1), grid),
        "classes": tiles_to_image(classes.view(1, batch_size, -1), grid),
        "intrinsics": batch.intrinsics.clone(),
        **measurements,
    }


DEFAULT_SIZE: tuple[int, int] = (240, 320)
"""Image size ``(H, W)`` when none is given (a ``sim:`` spec without ``size=``, the datasets, previews)."""


def render_batch(
    domain: str = "indoor",
    batch_size: int = 8,
    size: tuple[int, int] = DEFAULT_SIZE,
    seed: int = 0,
    device: torch.device | str = "cpu",
    *,
    start: int = 0,
    tile: int | None = None,
    shadows: bool = True,
    gt: str = "dense",
) -> dict[str, torch.Tensor]:
    """Render scenes ``start .. start + batch_size - 1`` of ``seed`` in ``domain``.

    Same arguments, same device -> same bytes. Each scene depends only on ``(domain, seed, index)``,
    so ``render_batch(seed=s, batch_size=8)`` holds the same scenes as the first items of
    ``SimDataset(seed=s)``. Returns the dict of :func:`render_scenes`; ``gt`` must fit the domain
    (:func:`~depthkd.sim.domains.check_ground_truth`).
    """
    from depthkd.sim.domains import check_ground_truth, sample_scene

    check_ground_truth(gt, domain)
    height, width = check_size(size)
    if int(batch_size) < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    scenes = [sample_scene(domain, seed, start + i, (height, width)) for i in range(int(batch_size))]
    return render_scenes(scenes, (height, width), device, tile=tile, shadows=shadows, gt=gt)


def check_size(size: tuple[int, int]) -> tuple[int, int]:
    """``(height, width)`` as positive ints; :class:`ConfigError` naming the value otherwise."""
    try:
        height, width = (int(s) for s in size)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"image size must be (height, width), got {size!r}") from exc
    if height < 1 or width < 1:
        raise ConfigError(f"image size must be positive, got {size!r}")
    return height, width
