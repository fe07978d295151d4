"""Pinhole rays in a tile-major pixel layout, and the bounding cone of each tile.

Rays are stored as ``(B, T, S)``: image, tile of ``tile x tile`` pixels, pixel within the tile. A
primitive that may be visible in a tile is then tested against one contiguous block of rays, which is
what makes per-tile culling cheap. The image is padded up to whole tiles; padding rays are traced
like the others and cropped away by :func:`tiles_to_image`.

Ray directions are *not* normalised: their camera-frame z component is 1, so the ray parameter of a
hit is its z-depth (distance along the optical axis), which is what depth maps store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch


@dataclass(frozen=True)
class TileGrid:
    """Pixel coordinates of a ``height x width`` image in tile-major order."""

    height: int
    width: int
    tile: int
    tiles_y: int
    tiles_x: int
    u: torch.Tensor  # (T, S) column of each pixel (float)
    v: torch.Tensor  # (T, S) row of each pixel (float)
    tile_u: torch.Tensor  # (T, 2) first and last column of each tile
    tile_v: torch.Tensor  # (T, 2) first and last row of each tile
    ray_basis: torch.Tensor  # (3, S) rows 1, column and row of each pixel within its tile

    @property
    def num_tiles(self) -> int:
        return self.tiles_y * self.tiles_x

    @property
    def tile_pixels(self) -> int:
        return self.tile * self.tile


@lru_cache(maxsize=32)
def tile_grid(height: int, width: int, tile: int, device: torch.device) -> TileGrid:
    """The (cached) tile-major pixel grid for an image size and tile size."""
    tiles_y, tiles_x = math.ceil(height / tile), math.ceil(width / tile)
    ty, tx = torch.meshgrid(torch.arange(tiles_y), torch.arange(tiles_x), indexing="ij")
    py, px = torch.meshgrid(torch.arange(tile), torch.arange(tile), indexing="ij")
    v = (ty.reshape(-1, 1) * tile + py.reshape(1, -1)).float()
    u = (tx.reshape(-1, 1) * tile + px.reshape(1, -1)).float()
    first_u, first_v = tx.reshape(-1).float() * tile, ty.reshape(-1).float() * tile
    return TileGrid(
        height=height,
        width=width,
        tile=tile,
        tiles_y=tiles_y,
        tiles_x=tiles_x,
        u=u.to(device),
        v=v.to(device),
        tile_u=torch.stack([first_u, first_u + tile - 1], dim=1).to(device),
        tile_v=torch.stack([first_v, first_v + tile - 1], dim=1).to(device),
        ray_basis=torch.stack([torch.ones(tile * tile), px.reshape(-1).float(), py.reshape(-1).float()]).to(device),
    )


def world_directions(grid: TileGrid, intrinsics: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """World-frame ray directions, planar ``(3, B, T*S)``; their camera-frame z component is 1.

    Each component is affine in the pixel coordinates, ``a * u + b * v + c`` with per-image
    coefficients: two passes per component over the pixels.
    """
    fx, fy, cx, cy = (intrinsics[:, i].view(-1, 1) for i in range(4))
    u, v = grid.u.reshape(1, -1), grid.v.reshape(1, -1)
    per_u, per_v = rotation[:, :, 0:1] / fx[:, None], rotation[:, :, 1:2] / fy[:, None]  # (B, 3, 1)
    constant = rotation[:, :, 2:3] - per_u * cx[:, None] - per_v * cy[:, None]
    out = torch.empty((3, intrinsics.shape[0], u.shape[1]), device=u.device, dtype=u.dtype)
    for k in range(3):
        torch.addcmul(torch.addcmul(constant[:, k], per_u[:, k], u), per_v[:, k], v, out=out[k])
    return out


def tile_cones(grid: TileGrid, intrinsics: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per tile, a cone from the camera centre containing all its pixels' rays (camera frame).

    Returns unit axes ``(B, T, 3)`` and half-angles ``(B, T)``; corners are taken half a pixel
    outside the outermost pixel centres.
    """
    fx, fy, cx, cy = (intrinsics[:, i].view(-1, 1) for i in range(4))
    x0 = (grid.tile_u[:, 0] - 0.5 - cx) / fx
    x1 = (grid.tile_u[:, 1] + 0.5 - cx) / fx
    y0 = (grid.tile_v[:, 0] - 0.5 - cy) / fy
    y1 = (grid.tile_v[:, 1] + 0.5 - cy) / fy
    axis = torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, torch.ones_like(x0)], dim=-1)
    axis = axis / axis.norm(dim=-1, keepdim=True)
    corners = torch.stack([
        torch.stack([xs, ys, torch.ones_like(xs)], dim=-1)
        for xs in (x0, x1) for ys in (y0, y1)
    ], dim=-2)  # (B, T, 4, 3)
    corners = corners / corners.norm(dim=-1, keepdim=True)
    cos_half = (corners * axis.unsqueeze(-2)).sum(-1).amin(-1).clamp(-1.0, 1.0)
    return axis, torch.acos(cos_half)


def tiles_to_image(values: torch.Tensor, grid: TileGrid) -> torch.Tensor:
    """Planar tile-major values ``(C, B, T*S)`` to a contiguous image batch ``(B, C, H, W)``, cropping the
    padding (one copy; it may share memory with ``values`` when no reordering is needed)."""
    channels, batch = values.shape[0], values.shape[1]
    image = values.reshape(channels, batch, grid.tiles_y, grid.tiles_x, grid.tile, grid.tile)
    image = image.permute(1, 0, 2, 4, 3, 5).reshape(
        batch, channels, grid.tiles_y * grid.tile, grid.tiles_x * grid.tile
    )
    return image[:, :, : grid.height, : grid.width].contiguous()  # no second copy when nothing is cropped
