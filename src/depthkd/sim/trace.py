"""Batched ray casting: per-tile culling, closest hits of camera rays, shadow (any-hit) rays.

Work is organised as *pairs* ``(image, tile, primitive)`` that survive cheap bounding tests; a pair
tests the ``S`` rays of one tile against one primitive. Pairs are grouped by primitive kind so each
kind runs as a few tensor ops over all its pairs at once, in chunks that stay in cache.

- Camera rays: the tile must overlap the screen rectangle of the primitive's projected bounding box
  (or, for primitives straddling the camera plane, the tile's view cone must meet the bounding
  sphere).
- Shadow rays: the tile's shading points lie in a sphere ``(m, rho)``; every shadow segment then lies
  within ``rho`` of the segment from ``m`` to the light, so an occluder is tested only if that thick
  segment reaches its bounding sphere, and if the cone around it (``rho`` at ``m``, narrowing to the
  light) reaches its local bounding box. Pairs whose tile sees only the occluder itself are skipped
  (a convex primitive never shadows its own points).

Camera rays are never stored per pair: in a primitive's local frame the direction of pixel
``(px, py)`` of a tile is affine, ``base + px * step_u + py * step_v``, so each pair only needs
four 3-vectors, derived from its primitive's row of one table built per batch (camera and light in
the primitive's frame). Shadow rays start at ``camera + t * direction`` with the primary hit distance ``t``.

The closest hit per ray comes from one ``scatter_reduce(amin)`` over 64-bit keys that pack the hit
distance (its float bits, monotonic for non-negative floats) above the primitive's global id, so
depth and id come from the same order-independent, deterministic reduction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from depthkd.errors import DataError
from depthkd.sim.camera import TileGrid, tile_cones
from depthkd.sim.kernels import intersect
from depthkd.sim.primitives import INTERSECT, Vec, local_bounds
from depthkd.sim.scene import SceneBatch

ID_BITS = 24
ID_MASK = (1 << ID_BITS) - 1
CHUNK_RAYS = 1 << 18  # rays per intersection call: keeps temporaries in cache
NEAR = 1e-3  # camera-space depth below which a corner counts as behind the camera
_MARGIN = 1e-3
# Slack (metres) of the shadow culling tests; covers the float32 error of the expanded dot-product
# form of the point-segment distance at street scale (coordinates ~100 m).
_SHADOW_MARGIN = 0.05


@dataclass
class PairFrames:
    """Camera rays of each pair's tile in the pair's primitive frame (components ``(n, 1)``)."""

    origin: Vec
    rays: torch.Tensor  # (3, n, 3): per local axis, the direction's (base, step_u, step_v) coefficients
    params: tuple[torch.Tensor, ...]
    light: Vec | None = None  # the key light in the local frame, when the table has it

    def directions(self, grid: TileGrid) -> Vec:
        """Per-ray local directions ``(n, S)``: ``base + px * step_u + py * step_v`` for all rays at
        once as one small matrix product (two broadcast multiply-adds per axis cost about 3x more)."""
        axes, count, _ = self.rays.shape
        return torch.mm(self.rays.view(-1, 3), grid.ray_basis).view(axes, count, -1).unbind(0)

    def centre_directions(self, grid: TileGrid) -> Vec:
        """The local direction of each pair's tile centre ``(n, 1)``."""
        middle = (grid.tile - 1) / 2.0
        base, step_u, step_v = self.rays.unbind(2)
        return tuple((base + middle * (step_u + step_v)).unsqueeze(-1).unbind(0))


def _columns(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``(n, k)`` to ``k`` contiguous ``(n, 1)`` columns (three tensor calls whatever ``k``: call
    overhead matters here, pair tables are small)."""
    return x.t().contiguous().unsqueeze(-1).unbind(0)


def _in_frames(batch: SceneBatch, points: torch.Tensor) -> torch.Tensor:
    """Points ``(B, 3)`` of each image in the frame of each of its primitives: ``(B, P, 3)``."""
    return torch.einsum("bpj,bpjk->bpk", points[:, None, :] - batch.prim_centre, batch.prim_rotation)


# Columns of the primitive table.
TABLE_CAMERA = slice(0, 3)
TABLE_TO_LOCAL = slice(3, 12)
TABLE_PARAMS = slice(12, 16)
TABLE_LIGHT = slice(16, 19)


def primitive_table(batch: SceneBatch, light: torch.Tensor | None = None) -> torch.Tensor:
    """Per global primitive (``image * P + primitive``) what its pairs need, ``(B*P, 16)`` or ``(B*P, 19)``.

    Columns (``TABLE_*``): the camera centre in the primitive's frame (3), the camera-to-local rotation
    (9, row-major), the shape parameters (4) and, given the key ``light`` ``(B, 3)``, the light in the
    local frame (3).
    Built once per batch, so each group of pairs gathers its rows with one ``index_select`` instead of
    per-pair matrix products and many small gathers.
    """
    to_local = torch.matmul(batch.prim_rotation.transpose(2, 3), batch.cam_rotation[:, None])
    columns = [_in_frames(batch, batch.cam_position), to_local.flatten(2), batch.prim_params]
    if light is not None:
        columns.append(_in_frames(batch, light))
    return torch.cat(columns, dim=2).view(batch.batch_size * batch.num_primitives, -1)


def pair_frames(batch: SceneBatch, grid: TileGrid, table: torch.Tensor, image: torch.Tensor, tile: torch.Tensor,
                gids: torch.Tensor) -> PairFrames:
    """Local camera-ray frames for pairs (image, tile, global primitive id); ``table`` is
    :func:`primitive_table`."""
    rows = table.index_select(0, gids)
    to_local = rows[:, TABLE_TO_LOCAL].view(-1, 3, 3)
    fx, fy, cx, cy = batch.intrinsics.index_select(0, image).unbind(1)
    x0 = (grid.tile_u[:, 0].index_select(0, tile) - cx) / fx
    y0 = (grid.tile_v[:, 0].index_select(0, tile) - cy) / fy
    base = to_local[:, :, 0] * x0[:, None] + to_local[:, :, 1] * y0[:, None] + to_local[:, :, 2]
    step_u = to_local[:, :, 0] / fx[:, None]
    step_v = to_local[:, :, 1] / fy[:, None]
    rays = torch.stack([base.t(), step_u.t(), step_v.t()], dim=2)
    columns = _columns(torch.cat([rows[:, TABLE_CAMERA], rows[:, TABLE_PARAMS], rows[:, TABLE_LIGHT]], dim=1))
    light = columns[7:10] if len(columns) > 7 else None  # empty TABLE_LIGHT slice: no light columns
    return PairFrames(columns[0:3], rays, columns[3:7], light)


# -- culling -------------------------------------------------------------------------------------


def _screen_rects(batch: SceneBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixel bounds ``(B, P, 4)`` of each primitive's projected box, plus masks (in front, behind)."""
    half = local_bounds(batch.prim_kind, batch.prim_params)  # (B, P, 3)
    signs = torch.tensor([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)],
                         dtype=half.dtype, device=half.device)
    local = signs[None, None] * half[:, :, None, :]  # (B, P, 8, 3)
    world = batch.prim_centre[:, :, None, :] + torch.einsum("bpij,bpcj->bpci", batch.prim_rotation, local)
    cam = torch.einsum("bpcj,bjk->bpck", world - batch.cam_position[:, None, None, :], batch.cam_rotation)
    z = cam[..., 2]
    fx, fy, cx, cy = (batch.intrinsics[:, i].view(-1, 1, 1) for i in range(4))
    u = fx * cam[..., 0] / z + cx
    v = fy * cam[..., 1] / z + cy
    rect = torch.stack([u.amin(-1), u.amax(-1), v.amin(-1), v.amax(-1)], dim=-1)
    finite = torch.isfinite(half).all(-1)
    in_front = (z.amin(-1) > NEAR) & finite
    behind = (z.amax(-1) <= 0) & finite
    return rect, in_front, behind


def primary_pairs(batch: SceneBatch, grid: TileGrid, table: torch.Tensor) -> torch.Tensor:
    """``(n, 3)`` long ``(image, tile, primitive)`` pairs whose primitive may be seen in the tile
    (``table``: the :func:`primitive_table` without light)."""
    rect, in_front, behind = _screen_rects(batch)
    u0, u1 = grid.tile_u[:, 0].view(1, -1, 1), grid.tile_u[:, 1].view(1, -1, 1)
    v0, v1 = grid.tile_v[:, 0].view(1, -1, 1), grid.tile_v[:, 1].view(1, -1, 1)
    overlap = ((u0 <= rect[:, None, :, 1] + _MARGIN) & (u1 >= rect[:, None, :, 0] - _MARGIN)
               & (v0 <= rect[:, None, :, 3] + _MARGIN) & (v1 >= rect[:, None, :, 2] - _MARGIN))
    visible = overlap & (in_front & (batch.prim_kind >= 0))[:, None, :]
    # Primitives straddling the camera plane (rooms, roads, planes; a few per image): the tile cone
    # against the bounding sphere, for those primitives only.
    axes, half_angles = tile_cones(grid, batch.intrinsics)
    image, prim = (~in_front & ~behind & (batch.prim_kind >= 0)).nonzero().unbind(1)
    if image.numel():
        centre = torch.einsum("nj,njk->nk", batch.prim_centre[image, prim] - batch.cam_position[image],
                              batch.cam_rotation[image])
        dist = centre.norm(dim=-1).clamp_min(1e-9)
        radius = batch.prim_bound[image, prim]
        spread = torch.asin((radius / dist).clamp(max=1.0))
        cosine = torch.einsum("ntj,nj->nt", axes[image], centre) / dist[:, None]
        angle = torch.acos(cosine.clamp(-1.0, 1.0))
        cone = (angle <= half_angles[image] + spread[:, None] + _MARGIN) | (dist <= radius)[:, None]
        visible[image, :, prim] = cone
    pairs = visible.nonzero()
    return pairs[_centre_ray_reaches(batch, grid, table, pairs, half_angles)]


def _centre_ray_reaches(batch: SceneBatch, grid: TileGrid, table: torch.Tensor, pairs: torch.Tensor,
                        half_angles: torch.Tensor) -> torch.Tensor:
    """Finer test per pair: the tile's centre ray against the primitive's local box grown by the
    tile's cone radius at the primitive's far distance (conservative: every ray of the tile lies
    within that radius of the centre ray there). Planes always pass."""
    image, tile, prim_index = pairs.unbind(1)
    gids = image * batch.num_primitives + prim_index
    frames = pair_frames(batch, grid, table, image, tile, gids)
    kinds = batch.prim_kind.view(-1).index_select(0, gids)
    direction = frames.centre_directions(grid)
    length = torch.sqrt(sum(d * d for d in direction))
    half = local_bounds(kinds, torch.cat(frames.params, dim=1))
    distance = torch.sqrt(sum(o * o for o in frames.origin)) + batch.prim_bound.view(-1, 1).index_select(0, gids)
    grow = distance * torch.sin(half_angles.view(-1, 1).index_select(0, image * grid.num_tiles + tile)) + _MARGIN
    # Unit-speed ray (t in metres) from the camera, t >= 0.
    start = tuple(o for o in frames.origin)
    ray = tuple(d / length for d in direction)
    s_near = torch.zeros_like(length)
    s_far = torch.full_like(length, float("inf"))
    for a, d, h in zip(start, ray, half.unbind(1)):
        h = h[:, None] + grow
        t_a = (-h - a) / d
        t_b = (h - a) / d
        s_near = torch.maximum(s_near, torch.minimum(t_a, t_b))
        s_far = torch.minimum(s_far, torch.maximum(t_a, t_b))
    reaches = (s_near <= s_far).squeeze(1)
    return reaches | (kinds == 0)


def _cone_hits_box(start: Vec, segment: Vec, half: Vec, radius: torch.Tensor) -> torch.Tensor:
    """Whether a cone meets boxes ``|x| <= half`` (local frame): the cone around the segment
    ``start + s * segment``, ``s`` in [0, 1], whose radius shrinks from ``radius`` at ``s = 0`` to 0.

    Shadow rays from points within ``radius`` of ``start`` to the light at ``start + segment`` stay
    inside it (at ``s`` they are within ``radius * (1 - s)`` of the axis), so it is a tighter bound
    than the uniformly thick segment near the light. Per axis, ``|a + s d| <= h + radius (1 - s)``
    is two linear inequalities ``s k <= c`` in ``s``.
    """
    s_near = torch.zeros_like(start[0])
    s_far = torch.ones_like(start[0])
    for a, d, h in zip(start, segment, half):
        grown = h + radius
        for k, c in ((d + radius, grown - a), (radius - d, grown + a)):
            bound = c / k
            s_far = torch.where(k > 0, torch.minimum(s_far, bound), s_far)
            s_near = torch.where(k < 0, torch.maximum(s_near, bound), s_near)
            s_far = torch.where((k == 0) & (c < 0), -1.0, s_far)
    return s_near <= s_far


def shadow_pairs(batch: SceneBatch, centre: torch.Tensor, radius: torch.Tensor, active: torch.Tensor,
                 light: torch.Tensor) -> torch.Tensor:
    """Pairs ``(image, tile, primitive)`` of shadow-casting primitives that may block a tile's light.

    ``centre`` ``(B, T, 3)`` and ``radius`` ``(B, T)`` bound the tile's shading points, ``active``
    ``(B, T)`` marks tiles that need shadow rays, ``light`` ``(B, 3)`` is the light position.
    """
    # Squared distance from each primitive centre p to each tile's segment c + s * seg, s in [0, 1]:
    # with q = (p - c).seg, L = |seg|^2 and s = clamp(q / L): gap2 = |p - c|^2 - s * (2q - s L).
    # Every (B, T, P) pass counts here, so the two matrix products take their additive terms in.
    segment = light[:, None, :] - centre  # (B, T, 3)
    prim = batch.prim_centre
    seg_len2 = (segment * segment).sum(-1, keepdim=True).clamp_min(1e-12)  # (B, T, 1)
    q = torch.baddbmm(-(centre * segment).sum(-1, keepdim=True).expand(-1, -1, prim.shape[1]),
                      segment, prim.transpose(1, 2))
    rel_len2 = torch.baddbmm((prim * prim).sum(-1)[:, None, :] + (centre * centre).sum(-1, keepdim=True),
                             centre, prim.transpose(1, 2), alpha=-2.0)
    s = (q / seg_len2).clamp_(0.0, 1.0)
    gap2 = torch.addcmul(rel_len2, s, torch.add(s * seg_len2, q, alpha=-2.0))
    # NaN reach (a primitive that casts no shadow, a tile without shading points) compares False.
    prim_reach = torch.where(batch.prim_shadow & (batch.prim_kind >= 0), batch.prim_bound + _SHADOW_MARGIN, math.nan)
    tile_reach = torch.where(active, radius, math.nan)
    reach2 = (tile_reach[..., None] + prim_reach[:, None, :]).square_()
    pairs = (gap2 <= reach2).nonzero()
    if pairs.numel() == 0:
        return pairs
    # Refine: the thick segment against the occluder's local bounding box.
    image, tile, prim_index = pairs.unbind(1)
    gids = image * batch.num_primitives + prim_index
    rows = image * centre.shape[1] + tile
    rotation = batch.prim_rotation.view(-1, 3, 3).index_select(0, gids)
    rel = centre.view(-1, 3).index_select(0, rows) - batch.prim_centre.view(-1, 3).index_select(0, gids)
    start = torch.einsum("nj,njk->nk", rel, rotation)
    seg_local = torch.einsum("nj,njk->nk", segment.view(-1, 3).index_select(0, rows), rotation)
    kinds = batch.prim_kind.view(-1).index_select(0, gids)
    half = local_bounds(kinds, batch.prim_params.view(-1, 4).index_select(0, gids))
    keep = _cone_hits_box(start.unbind(1), seg_local.unbind(1), (half + _SHADOW_MARGIN).unbind(1),
                          radius.view(-1).index_select(0, rows))
    return pairs[keep]


def tile_hit_bounds(batch: SceneBatch, grid: TileGrid, depth: torch.Tensor, active: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bounding sphere ``(B, T, 3)``, ``(B, T)`` of each tile's active hit points, and which tiles
    have any: the part of the tile's frustum between the nearest and farthest active depth."""
    inf = torch.tensor(float("inf"), device=depth.device)
    z_min = torch.where(active, depth, inf).amin(1)
    z_max = torch.where(active, depth, -inf).amax(1)
    any_active = active.any(1)
    z_min = torch.where(any_active, z_min, 1.0).view(batch.batch_size, -1, 1, 1)
    z_max = torch.where(any_active, z_max, 1.0).view(batch.batch_size, -1, 1, 1)
    fx, fy, cx, cy = (batch.intrinsics[:, i].view(-1, 1) for i in range(4))
    xs = torch.stack([(grid.tile_u[:, 0] - 0.5 - cx) / fx, (grid.tile_u[:, 1] + 0.5 - cx) / fx], -1)
    ys = torch.stack([(grid.tile_v[:, 0] - 0.5 - cy) / fy, (grid.tile_v[:, 1] + 0.5 - cy) / fy], -1)
    corners = torch.stack([
        torch.stack([xs[..., i], ys[..., j], torch.ones_like(xs[..., 0])], -1) for i in (0, 1) for j in (0, 1)
    ], dim=2)  # (B, T, 4, 3) camera frame, z = 1
    points = torch.cat([corners * z_min, corners * z_max], dim=2)
    centre = points.mean(2)
    radius = (points - centre[:, :, None, :]).norm(dim=-1).amax(2)
    world = batch.cam_position[:, None, :] + torch.einsum("bij,btj->bti", batch.cam_rotation, centre)
    return world, radius, any_active.view(batch.batch_size, -1)


# -- tracing ---------------------------------------------------------------------------------------


def contains(kinds: torch.Tensor, params: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    """Whether local points ``(n, 3)`` lie strictly inside primitives of ``kinds`` (planes: never)."""
    box = (local.abs() < params[:, :3]).all(1)
    radius2 = params[:, 0] ** 2
    sphere = (local * local).sum(1) < radius2
    cylinder = (local[:, 0] ** 2 + local[:, 2] ** 2 < radius2) & (local[:, 1].abs() < params[:, 1])
    return torch.where(kinds == 1, box, torch.where(kinds == 2, sphere, (kinds == 3) & cylinder))


def _kind_chunks(batch: SceneBatch, pairs: torch.Tensor, grid: TileGrid, table: torch.Tensor | None = None):
    """Yield ``(kind, inside, image, tile, gids)`` groups of pairs with one primitive kind, in chunks
    of at most CHUNK_RAYS rays. Given the :func:`primitive_table`, pairs whose primitive contains the
    camera (rooms) come first, as their own groups."""
    image, tile, prim_index = pairs.unbind(1)
    gids = image * batch.num_primitives + prim_index
    kinds = batch.prim_kind.view(-1).index_select(0, gids)
    group = kinds.clone()
    if table is not None:
        camera_inside = contains(batch.prim_kind.view(-1), table[:, TABLE_PARAMS], table[:, TABLE_CAMERA])
        group = torch.where(camera_inside.index_select(0, gids), kinds, kinds + len(INTERSECT))
    step = max(1, CHUNK_RAYS // grid.tile_pixels)
    for code in range(2 * len(INTERSECT)):
        selected = (group == code).nonzero().squeeze(1)
        for start in range(0, selected.numel(), step):
            part = selected[start : start + step]
            yield (code % len(INTERSECT), code < len(INTERSECT), image.index_select(0, part),
                   tile.index_select(0, part), gids.index_select(0, part))


#: The packed key of "nothing hit": an infinite distance above id 0.
MISS_KEY = int(torch.tensor(float("inf")).view(torch.int32).item()) << ID_BITS


def pack_hits(t: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """64-bit keys ordering hits by distance ``t`` (float bits, monotonic for t >= 0), then by ``ids``:
    the closest hit of a ray is the ``amin`` of its keys, whatever order they are reduced in."""
    return (t.view(torch.int32).long() << ID_BITS) | ids


def unpack_hits(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(t, ids)`` of packed keys (``inf`` and 0 for :data:`MISS_KEY`)."""
    return (keys >> ID_BITS).int().view(torch.float32), keys & ID_MASK


def closest_hits(batch: SceneBatch, grid: TileGrid, pairs: torch.Tensor, table: torch.Tensor, t_min: float = 1e-4
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest hit of every camera ray: ``t`` ``(B*T, S)`` (z-depth, inf on a miss) and global
    primitive id + 1 (0 = nothing hit); ``table`` is the :func:`primitive_table` without light."""
    if batch.batch_size * batch.num_primitives >= ID_MASK:
        raise DataError(f"too many primitives in one batch ({batch.batch_size} images x {batch.num_primitives}); "
                        f"at most {ID_MASK - 1} per batch: render fewer images at once")
    rows, per_row = batch.batch_size * grid.num_tiles, grid.tile_pixels
    keys = torch.full((rows, per_row), MISS_KEY, dtype=torch.int64, device=batch.device)
    untouched = True  # while no row has a hit yet, a group with distinct rows can be written directly
    for kind, inside, image, tile, gids in _kind_chunks(batch, pairs, grid, table):
        frames = pair_frames(batch, grid, table, image, tile, gids)
        t = intersect(kind)(frames.origin, frames.directions(grid), frames.params, t_min, inside=inside)
        key = pack_hits(t, (gids + 1)[:, None])
        row = image * grid.num_tiles + tile
        if untouched and inside and row.unique().numel() == row.numel():
            keys.index_copy_(0, row, key)
        else:
            keys.scatter_reduce_(0, row[:, None].expand_as(key), key, reduce="amin")
        untouched = False
    return unpack_hits(keys)


def _only_own_points(batch: SceneBatch, grid: TileGrid, pairs: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    """Pairs whose tile sees nothing but the pair's own primitive: a convex primitive never shadows
    its own points, so these pairs can skip their shadow rays."""
    row = pairs[:, 0] * grid.num_tiles + pairs[:, 1]
    gid = (pairs[:, 0] * batch.num_primitives + pairs[:, 2] + 1).int()
    return (own.amin(1).index_select(0, row) == gid) & (own.amax(1).index_select(0, row) == gid)


def shadowed(batch: SceneBatch, grid: TileGrid, pairs: torch.Tensor, depth: torch.Tensor, ids: torch.Tensor,
             light: torch.Tensor, t_min: float = 1e-6) -> torch.Tensor:
    """Whether the segment from each camera ray's hit point to ``light`` (B, 3) is blocked: ``(B*T, S)``.

    ``depth`` and ``ids`` are the outputs of :func:`closest_hits`; a primitive never shadows its own
    points (all primitives are convex), which avoids self-shadowing without offsets.
    """
    rows, per_row = batch.batch_size * grid.num_tiles, grid.tile_pixels
    blocked = torch.zeros((rows, per_row), dtype=torch.float32, device=depth.device)
    own = ids.int()  # half the bytes of int64 for the per-ray gather below
    pairs = pairs[~_only_own_points(batch, grid, pairs, own)]
    table = primitive_table(batch, light)
    for kind, _, image, tile, gids in _kind_chunks(batch, pairs, grid):
        frames = pair_frames(batch, grid, table, image, tile, gids)
        row = image * grid.num_tiles + tile
        t_hit = depth.index_select(0, row)
        directions = frames.directions(grid)
        start = tuple(torch.addcmul(o, t_hit, d) for o, d in zip(frames.origin, directions))
        towards = tuple(l - s for l, s in zip(frames.light, start))
        t = intersect(kind)(start, towards, frames.params, t_min)
        hit = (t < 1.0) & (own.index_select(0, row) != (gids + 1).int()[:, None])
        blocked.index_add_(0, row, hit.float())
    return blocked > 0
