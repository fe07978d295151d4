"""Closest hits of arbitrary rays (any origin, any direction) against a scene batch.

The camera renderer (:mod:`depthkd.sim.trace`) is built around pinhole tiles; depth *sensors* cast
rays from elsewhere: a LiDAR's beams from the scanner, a structured-light projector's from beside the
camera. This module serves them: per image, each ray is tested only against the primitives whose
bounding sphere it can reach, tested per block of neighbouring rays (the cone of the block's rays
must meet the cone the sphere subtends; planes and spheres around the origin always pass), then the closest
hit comes from the same packed-key ``scatter_reduce(amin)`` as the camera rays, so the result does not
depend on the order in which primitives are tested.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from depthkd.sim.kernels import intersect
from depthkd.sim.primitives import INTERSECT, SURFACE
from depthkd.sim.scene import SceneBatch
from depthkd.sim.trace import MISS_KEY, contains, pack_hits, unpack_hits

#: Consecutive rays culled together (a ray block); callers order coherent rays next to each other.
BLOCK_RAYS = 32
#: Ray-block-primitive pairs tested per intersection call (keeps the temporaries small).
CHUNK_PAIRS = 1 << 13


@dataclass
class RayHits:
    """Closest hit per ray: ``t`` ``(N,)`` in units of the ray direction (``inf`` on a miss), ``prim``
    the hit primitive's index in its image (``-1`` on a miss), and at the hit the unit world normal
    ``(N, 3)`` (facing the ray's origin) and the face id (for the face's material)."""

    t: torch.Tensor
    prim: torch.Tensor
    normal: torch.Tensor
    face: torch.Tensor

    @property
    def hit(self) -> torch.Tensor:
        return self.prim >= 0


def _block_pairs(batch: SceneBatch, image: int, origin: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
    """``(n, 2)`` pairs ``(ray block, primitive)`` of one image whose rays may reach the primitive.

    ``blocks`` ``(nb, K, 3)``: unit directions. A block's rays lie in a cone (axis, half-angle); a
    primitive's bounding sphere subtends a cone from the origin; the pair survives if the cones meet.
    """
    axis = blocks.mean(1)
    axis = axis / axis.norm(dim=1, keepdim=True).clamp_min(1e-12)
    half = torch.acos((blocks * axis[:, None, :]).sum(-1).amin(1).clamp(-1.0, 1.0))
    rel = batch.prim_centre[image] - origin  # (P, 3)
    dist = rel.norm(dim=1).clamp_min(1e-9)
    radius = batch.prim_bound[image]
    # Angular radius of the bounding sphere; pi (always) for planes (inf bound) and spheres around the origin.
    spread = torch.where(radius < dist, torch.asin((radius / dist).clamp(max=1.0)), math.pi)
    angle = torch.acos((axis @ (rel / dist[:, None]).t()).clamp(-1.0, 1.0))  # (nb, P)
    reach = angle <= half[:, None] + spread[None, :] + 1e-4
    reach &= (batch.prim_kind[image] >= 0)[None, :]
    return reach.nonzero()


def cast_rays(batch: SceneBatch, image: int, origin: torch.Tensor, directions: torch.Tensor,
              t_min: float = 1e-4) -> RayHits:
    """Closest hits of rays ``origin + t * directions`` ``(N, 3)`` (world frame) in image ``image``.

    ``origin`` ``(3,)`` is shared by all rays (a scanner, a projector). Primitives containing the
    origin (a room around the sensor) are hit from inside (their exit point). Rays are culled in
    blocks of :data:`BLOCK_RAYS` consecutive ones: order them so that neighbours point alike.
    """
    count = directions.shape[0]
    device = directions.device
    padded = -(-count // BLOCK_RAYS) * BLOCK_RAYS
    rays = torch.cat([directions, directions[-1:].expand(padded - count, 3)]) if padded > count else directions
    unit = rays / rays.norm(dim=1, keepdim=True).clamp_min(1e-12)
    blocks = rays.view(-1, BLOCK_RAYS, 3)
    planar = blocks.permute(2, 0, 1).contiguous()  # (3, nb, K): one gather per chunk, components apart
    pairs = _block_pairs(batch, image, origin, unit.view(-1, BLOCK_RAYS, 3))
    keys = torch.full(blocks.shape[:2], MISS_KEY, dtype=torch.int64, device=device)
    kinds = batch.prim_kind[image]
    rotation = batch.prim_rotation[image]  # (P, 3, 3), columns = local axes in world
    origin_local = torch.einsum("pj,pjk->pk", origin[None, :] - batch.prim_centre[image], rotation)  # (P, 3)
    params = batch.prim_params[image]
    inside = contains(kinds, params, origin_local)
    block, prim = pairs.unbind(1)
    pair_kind = kinds.index_select(0, prim)
    group = torch.where(inside.index_select(0, prim), pair_kind, pair_kind + len(INTERSECT))
    for code in range(2 * len(INTERSECT)):
        selected = (group == code).nonzero().squeeze(1)
        for start in range(0, selected.numel(), CHUNK_PAIRS):
            part = selected[start : start + CHUNK_PAIRS]
            b, p = block.index_select(0, part), prim.index_select(0, part)
            o = origin_local.index_select(0, p).unsqueeze(-1).unbind(1)  # (n, 1) each
            world = planar.index_select(1, b)  # (3, n, K)
            rot = rotation.index_select(0, p)  # (n, 3, 3): d_local[k] = sum_j world[j] * rot[:, j, k]
            # Three multiply-adds per local axis: far cheaper than n tiny (K x 3) @ (3 x 3) products.
            d = tuple(torch.addcmul(torch.addcmul(world[0] * rot[:, 0, k, None], world[1], rot[:, 1, k, None]),
                                    world[2], rot[:, 2, k, None]) for k in range(3))
            t = intersect(code % len(INTERSECT))(o, d, params.index_select(0, p).unsqueeze(-1).unbind(1), t_min,
                                                 inside=code < len(INTERSECT))
            key = pack_hits(t, (p + 1)[:, None])
            keys.scatter_reduce_(0, b[:, None].expand_as(key), key, reduce="amin")
    t, ids = unpack_hits(keys.view(-1)[:count])
    hit_prim = ids - 1
    normal, face = _surface(batch, image, origin_local, directions, t, hit_prim)
    return RayHits(t=t, prim=hit_prim, normal=normal, face=face)


def _surface(batch: SceneBatch, image: int, origin_local: torch.Tensor, directions: torch.Tensor,
             t: torch.Tensor, prim: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """World normals ``(N, 3)`` turned towards the ray origin and face ids ``(N,)`` of the hits."""
    normal = torch.zeros_like(directions)
    face = torch.zeros_like(prim)
    kinds = batch.prim_kind[image]
    rotation = batch.prim_rotation[image]
    params = batch.prim_params[image]
    hit = prim >= 0
    for kind, surface in enumerate(SURFACE):
        rows = (hit & (kinds.index_select(0, prim.clamp_min(0)) == kind)).nonzero().squeeze(1)
        if rows.numel() == 0:
            continue
        p = prim.index_select(0, rows)
        rot = rotation.index_select(0, p)
        d_local = torch.einsum("nj,njk->nk", directions.index_select(0, rows), rot)
        point = origin_local.index_select(0, p) + t.index_select(0, rows)[:, None] * d_local
        n_local, f, _ = surface(tuple(point.unbind(1)), tuple(params.index_select(0, p).unbind(1)))
        n_world = torch.einsum("njk,nk->nj", rot, torch.stack(n_local, dim=1))
        facing = torch.where((n_world * directions.index_select(0, rows)).sum(1, keepdim=True) > 0, -1.0, 1.0)
        normal.index_copy_(0, rows, n_world * facing)
        face.index_copy_(0, rows, f.view(-1).long())
    return normal, face
