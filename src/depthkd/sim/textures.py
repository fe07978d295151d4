"""Procedural texture patterns, generated once into a small tileable bank and sampled bilinearly.

Each pattern is a seamless ``S x S`` tile with two channels: the pattern value in ``[0, 1]``
(mortar vs brick, grain, checker square, ...) and a per-cell random value in ``[0, 1]`` (one per
brick, board, book, window) that materials use for colour variation. Generating the patterns once
(fixed internal seed) and sampling them with ``grid_sample`` costs one gather per visible pixel,
instead of evaluating several noise octaves per pixel per frame; variety comes from per-material
colours, scale, rotation and offset.

Distant surfaces would alias (one texel per many pixels), so the sampled value is blended towards
the pattern's mean as the pixel footprint grows: a cheap stand-in for mip-mapping.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import torch
import torch.nn.functional as F

TILE_SIZE = 128
_BANK_SEED = 1234


def _coords(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Texel centres ``(x, y)`` in ``[0, 1)``, x along columns."""
    t = (torch.arange(size, dtype=torch.float64) + 0.5) / size
    y, x = torch.meshgrid(t, t, indexing="ij")
    return x, y


def _periodic_noise(size: int, cells_x: int, cells_y: int, gen: torch.Generator) -> torch.Tensor:
    """Seamless value noise: random lattice values, smoothstep-interpolated with wrap-around."""
    lattice = torch.rand(cells_y, cells_x, generator=gen, dtype=torch.float64)
    x, y = _coords(size)
    gx, gy = x * cells_x, y * cells_y
    ix, iy = gx.floor().long(), gy.floor().long()
    fx, fy = gx - ix, gy - iy
    sx, sy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    ix0, iy0 = ix % cells_x, iy % cells_y
    ix1, iy1 = (ix + 1) % cells_x, (iy + 1) % cells_y
    top = lattice[iy0, ix0] * (1 - sx) + lattice[iy0, ix1] * sx
    bottom = lattice[iy1, ix0] * (1 - sx) + lattice[iy1, ix1] * sx
    return top * (1 - sy) + bottom * sy


def _fbm(size: int, gen: torch.Generator, base: int = 4, octaves: int = 5, aspect: int = 1) -> torch.Tensor:
    """Fractal sum of periodic value noise, normalised to ``[0, 1]``; ``aspect`` stretches along x."""
    total = torch.zeros(size, size, dtype=torch.float64)
    for octave in range(octaves):
        cells = base * 2**octave
        if cells > size:
            break
        total += 0.5**octave * _periodic_noise(size, max(1, cells // aspect), cells, gen)
    return _normalise(total)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - x.min()) / (x.max() - x.min()).clamp_min(1e-9)


def _cells(n_x: int, n_y: int, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n_y, n_x, generator=gen, dtype=torch.float64)


def _flat(size, gen):
    zero = torch.zeros(size, size, dtype=torch.float64)
    return zero, zero


def _checker(size, gen):
    x, y = _coords(size)
    value = ((x * 2).floor() + (y * 2).floor()) % 2
    return value, value


def _stripes(size, gen):
    x, y = _coords(size)
    value = ((y * 2).floor() % 2).to(torch.float64)
    return value, value


def _noise(size, gen):
    return _fbm(size, gen, base=4), _fbm(size, gen, base=2, octaves=2)


def _fine_noise(size, gen):
    return _fbm(size, gen, base=16, octaves=3), _fbm(size, gen, base=4, octaves=2)


def _wood(size, gen):
    x, y = _coords(size)
    warp = _fbm(size, gen, base=2, octaves=3, aspect=2)
    rings = y * 5 + 1.2 * warp
    grain = _fbm(size, gen, base=32, octaves=2, aspect=16)
    value = 0.75 * (0.5 + 0.5 * torch.cos(2 * math.pi * rings)) ** 2 + 0.25 * grain
    return _normalise(value), warp


def _planks(size, gen):
    """Floorboards: 4 boards across, staggered joints, grain along each board."""
    x, y = _coords(size)
    rows = 4
    row = (y * rows).floor()
    shift = _cells(1, rows, gen)[row.long(), 0]
    along = (x + shift) % 1.0
    board = (along * 2).floor()
    cell_id = (row * 2 + board).long()
    cell = _cells(2 * rows, 1, gen)[0, cell_id]
    grain = _fbm(size, gen, base=32, octaves=2, aspect=16)
    rings = _fbm(size, gen, base=4, octaves=3, aspect=4)
    wood = 0.55 + 0.3 * (0.5 + 0.5 * torch.cos(2 * math.pi * (y * rows * 3 + 2 * rings + cell * 4))) + 0.15 * grain
    gap = torch.minimum((y * rows) % 1.0, 1 - (y * rows) % 1.0) < 0.03
    joint = torch.minimum((along * 2) % 1.0, 1 - (along * 2) % 1.0) < 0.008
    value = torch.where(gap | joint, torch.zeros_like(wood), wood)
    return value, cell


def _brick(size, gen):
    """Running bond: 4 courses, 2 bricks per course, mortar = 0."""
    x, y = _coords(size)
    rows, per_row, mortar = 4, 2, 0.06
    row = (y * rows).floor()
    along = (x * per_row + 0.5 * (row % 2)) % per_row
    brick = along.floor()
    cell = _cells(per_row * rows, 1, gen)[0, (row * per_row + brick).long()]
    in_row = (y * rows) % 1.0
    in_brick = along % 1.0
    is_mortar = (torch.minimum(in_row, 1 - in_row) < mortar) | (torch.minimum(in_brick, 1 - in_brick) < mortar / 2)
    body = 0.75 + 0.25 * _fbm(size, gen, base=16, octaves=3)
    return torch.where(is_mortar, torch.zeros_like(body), body), cell


def _tiles(size, gen):
    """2 x 2 square tiles with grout lines (grout = 0)."""
    x, y = _coords(size)
    n = 2
    cell = _cells(n, n, gen)[(y * n).floor().long(), (x * n).floor().long()]
    fx, fy = (x * n) % 1.0, (y * n) % 1.0
    grout = (torch.minimum(fx, 1 - fx) < 0.025) | (torch.minimum(fy, 1 - fy) < 0.025)
    body = 0.85 + 0.15 * _fbm(size, gen, base=8, octaves=3)
    return torch.where(grout, torch.zeros_like(body), body), cell


def _marble(size, gen):
    x, y = _coords(size)
    warp = _fbm(size, gen, base=2, octaves=5)
    value = (0.5 + 0.5 * torch.sin(2 * math.pi * (x + y + 2.5 * warp))) ** 0.5
    return _normalise(value), warp


def _facade(size, gen):
    """Building facade: 2 x 2 windows (value 1), frames (0.5), wall (0); cell = per-window random."""
    x, y = _coords(size)
    n = 2
    fx, fy = (x * n) % 1.0, (y * n) % 1.0
    cell = _cells(n, n, gen)[(y * n).floor().long(), (x * n).floor().long()]
    window = (fx > 0.25) & (fx < 0.75) & (fy > 0.25) & (fy < 0.8)
    frame = (fx > 0.22) & (fx < 0.78) & (fy > 0.22) & (fy < 0.83)
    wall = 0.1 * _fbm(size, gen, base=8, octaves=3)
    value = torch.where(window, 0.85 + 0.15 * (fy - 0.25) / 0.55, torch.where(frame, torch.full_like(x, 0.5), wall))
    return value, cell


def _books(size, gen):
    """Book spines: random widths across, random heights; gap above a book = 0."""
    x, y = _coords(size)
    widths = 0.04 + 0.06 * torch.rand(40, generator=gen, dtype=torch.float64)
    edges = torch.cumsum(widths, 0)
    edges = edges[edges < 1.0]
    edges[-1] = 1.0
    book = torch.bucketize(x.contiguous(), edges)
    book = book.clamp_max(len(edges) - 1)
    heights = 0.65 + 0.35 * torch.rand(len(edges), generator=gen, dtype=torch.float64)
    shade = 0.6 + 0.4 * torch.rand(len(edges), generator=gen, dtype=torch.float64)
    cell = torch.rand(len(edges), generator=gen, dtype=torch.float64)[book]
    inside = y > (1 - heights[book])
    value = torch.where(inside, shade[book], torch.zeros_like(x))
    return value, cell


def _dots(size, gen):
    x, y = _coords(size)
    fx, fy = (x * 2) % 1.0 - 0.5, (y * 2) % 1.0 - 0.5
    value = ((fx * fx + fy * fy) < 0.09).to(torch.float64)
    return value, value


def _waves(size, gen):
    x, y = _coords(size)
    value = 0.5 + 0.5 * torch.sin(2 * math.pi * (2 * y + 0.15 * torch.sin(2 * math.pi * 2 * x)))
    return value, x


def _grid(size, gen):
    x, y = _coords(size)
    fx, fy = (x * 4) % 1.0, (y * 4) % 1.0
    line = (torch.minimum(fx, 1 - fx) < 0.04) | (torch.minimum(fy, 1 - fy) < 0.04)
    return line.to(torch.float64), line.to(torch.float64)


def _foliage(size, gen):
    blobs = _fbm(size, gen, base=8, octaves=4)
    value = ((blobs - 0.35) * 3).clamp(0, 1) * (0.7 + 0.3 * _fbm(size, gen, base=32, octaves=2))
    return value, blobs


def _zigzag(size, gen):
    x, y = _coords(size)
    tri = (2 * ((x * 4) % 1.0) - 1).abs()
    value = (((y * 4 + 0.5 * tri) % 1.0) < 0.5).to(torch.float64)
    return value, tri


PATTERNS: dict[str, Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]] = {
    "flat": _flat,
    "checker": _checker,
    "stripes": _stripes,
    "noise": _noise,
    "fine_noise": _fine_noise,
    "wood": _wood,
    "planks": _planks,
    "brick": _brick,
    "tiles": _tiles,
    "marble": _marble,
    "facade": _facade,
    "books": _books,
    "dots": _dots,
    "waves": _waves,
    "grid": _grid,
    "foliage": _foliage,
    "zigzag": _zigzag,
}
PATTERN_NAMES: tuple[str, ...] = tuple(PATTERNS)
PATTERN_ID = {name: i for i, name in enumerate(PATTERN_NAMES)}
NOISE_LAYER = PATTERN_ID["noise"]
POSITIVE = 4096.0  # added to texture coordinates so that frac() wraps them (see TextureBank._grid)


class TextureBank:
    """All patterns as two wrap-padded single-channel atlases ``(1, 1, S+2, L*(S+2))`` on a device.

    One channel per atlas because ``grid_sample`` on CPU is several times faster for one channel
    than for two; the pattern is sampled bilinearly, the per-cell value (constant over a cell) and
    the grime noise (smooth) with the cheaper nearest lookup.
    """

    def __init__(self, device: torch.device, size: int = TILE_SIZE) -> None:
        gen = torch.Generator().manual_seed(_BANK_SEED)
        layers = []
        for name in PATTERN_NAMES:
            value, cell = PATTERNS[name](size, gen)
            layers.append(torch.stack([value, cell]).float())
        stack = torch.stack(layers)  # (L, 2, S, S)
        padded = F.pad(stack, (1, 1, 1, 1), mode="circular")  # seamless bilinear at tile edges
        atlas = padded.permute(1, 2, 0, 3).reshape(2, 1, 1, size + 2, -1)
        self.size = size
        self.layers = len(layers)
        self.pattern_atlas = atlas[0].contiguous().to(device)
        self.cell_atlas = atlas[1].contiguous().to(device)
        self.pattern_mean = stack[:, 0].mean(dim=(1, 2)).to(device)  # (L,)

    def atlas_x(self, layer: torch.Tensor) -> torch.Tensor:
        """Normalised atlas x coordinate of the start of each layer's tile (after its padding)."""
        padded = self.size + 2
        return (layer.float() * padded + 1) * (2.0 / (padded * self.layers)) - 1.0

    def _grid(self, atlas_x: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Sampling grid for texture coordinates, wrapped to one tile.

        ``frac`` (cheaper than ``remainder``) wraps correctly for positive coordinates; callers keep
        them positive by adding :data:`POSITIVE` (far beyond any scene's extent in tiles).
        """
        padded = self.size + 2
        grid = torch.empty((1, 1, u.numel(), 2), device=u.device, dtype=u.dtype)
        torch.add(atlas_x, torch.frac(u), alpha=2.0 * self.size / (padded * self.layers), out=grid[0, 0, :, 0])
        top = torch.tensor(2.0 / padded - 1.0, device=u.device, dtype=u.dtype)  # a 0-d start: one pass
        torch.add(top, torch.frac(v), alpha=2.0 * self.size / padded, out=grid[0, 0, :, 1])
        return grid

    def pattern(self, atlas_x: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Pattern values ``(N,)`` at texture coordinates ``u, v`` (N,) in tiles (bilinear, wrapping);
        ``atlas_x`` (N,) selects the pattern (see :meth:`atlas_x`)."""
        return F.grid_sample(self.pattern_atlas, self._grid(atlas_x, u, v), mode="bilinear",
                             align_corners=False).view(-1)

    def cell(self, atlas_x: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Per-cell random values ``(N,)`` (one per brick, board, book, window...)."""
        return F.grid_sample(self.cell_atlas, self._grid(atlas_x, u, v), mode="nearest",
                             align_corners=False).view(-1)

    def noise(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Smooth fractal noise ``(N,)`` in [0, 1] with a period of one unit of ``u, v``."""
        start = self.atlas_x(torch.tensor(NOISE_LAYER, device=u.device))  # 0-d, broadcast in _grid
        return F.grid_sample(self.pattern_atlas, self._grid(start, u, v), mode="nearest",
                             align_corners=False).view(-1)


@lru_cache(maxsize=8)
def texture_bank(device: torch.device) -> TextureBank:
    """The shared (cached) texture bank for ``device``."""
    return TextureBank(device)
