"""Helpers shared by the scene samplers: colours, materials, placement of multi-part objects."""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np

from depthkd.sim.scene import SceneBuilder, rotation_matrix, yaw_rotation

Colour = tuple[float, float, float]


class SceneRandom(np.random.Generator):
    """The random generator of one scene: a numpy ``Generator`` whose scalar ``uniform`` is cheaper.

    A sampler draws a few hundred scalars per scene, and numpy's argument handling costs ``uniform``
    about three times what the draw itself costs. ``Generator.uniform`` returns
    ``low + (high - low) * random()``; this computes the same expression from the same stream, so the
    numbers (and every scene) are identical. Arrays, ``size=`` and invalid ranges (``high < low``,
    infinite, NaN) go to numpy, which draws or raises as usual.
    """

    def uniform(self, low=0.0, high=1.0, size=None):
        if size is None and isinstance(low, (int, float)) and isinstance(high, (int, float)):
            span = float(high) - float(low)
            if 0.0 <= span < math.inf:
                return low + span * self.random()
        return super().uniform(low, high, size)


def hsv(h: float, s: float, v: float) -> Colour:
    """HSV (all in [0, 1], hue wraps) to RGB."""
    return colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))


def jitter(rng: np.random.Generator, colour: Colour, amount: float = 0.06) -> Colour:
    """A colour with small independent per-channel changes (clipped to [0, 1])."""
    r, g, b = rng.random(3).tolist()  # Python floats: cheaper arithmetic than numpy scalars
    return (min(max(colour[0] * (1.0 + amount * (2 * r - 1)), 0.0), 1.0),
            min(max(colour[1] * (1.0 + amount * (2 * g - 1)), 0.0), 1.0),
            min(max(colour[2] * (1.0 + amount * (2 * b - 1)), 0.0), 1.0))


def scale(colour: Colour, factor: float) -> Colour:
    return tuple(float(min(max(c * factor, 0.0), 1.0)) for c in colour)


def pick(rng: np.random.Generator, items):
    """One element of a sequence, uniformly."""
    return items[min(int(rng.random() * len(items)), len(items) - 1)]


# Natural palettes (linear-ish albedo values, not saturated).
WOODS: tuple[Colour, ...] = (
    (0.62, 0.45, 0.28), (0.45, 0.29, 0.16), (0.30, 0.18, 0.10), (0.55, 0.33, 0.18), (0.72, 0.58, 0.40),
    (0.50, 0.40, 0.30),
)
PAINTS: tuple[Colour, ...] = (
    (0.85, 0.84, 0.80), (0.80, 0.76, 0.68), (0.72, 0.74, 0.74), (0.70, 0.76, 0.80), (0.75, 0.80, 0.70),
    (0.86, 0.80, 0.62), (0.80, 0.70, 0.66), (0.60, 0.62, 0.64), (0.90, 0.90, 0.88),
)
FABRICS: tuple[Colour, ...] = (
    (0.45, 0.45, 0.47), (0.62, 0.56, 0.46), (0.25, 0.32, 0.45), (0.32, 0.42, 0.30), (0.55, 0.22, 0.18),
    (0.20, 0.20, 0.22), (0.70, 0.66, 0.58), (0.42, 0.30, 0.22), (0.50, 0.42, 0.55),
)
METALS: tuple[Colour, ...] = ((0.6, 0.6, 0.62), (0.15, 0.15, 0.16), (0.75, 0.72, 0.65), (0.4, 0.4, 0.42))
CAR_PAINTS: tuple[Colour, ...] = (
    (0.75, 0.75, 0.76), (0.08, 0.08, 0.09), (0.45, 0.46, 0.48), (0.55, 0.08, 0.06), (0.10, 0.18, 0.40),
    (0.85, 0.85, 0.82), (0.30, 0.32, 0.30), (0.55, 0.50, 0.42), (0.12, 0.28, 0.18),
)


def wood_material(b: SceneBuilder, rng: np.random.Generator, base: Colour | None = None, tile: float = 0.8) -> int:
    colour = jitter(rng, base or pick(rng, WOODS))
    return b.material(scale(colour, 0.62), colour, pattern="wood", tile=(tile, tile * 0.5),
                      angle=float(pick(rng, (0.0, math.pi / 2))), offset=(rng.random(), rng.random()),
                      grime=0.15, grime_tile=1.5)


def fabric_material(b: SceneBuilder, rng: np.random.Generator, base: Colour | None = None) -> int:
    colour = jitter(rng, base or pick(rng, FABRICS))
    pattern = pick(rng, ("fine_noise", "fine_noise", "noise", "stripes", "checker"))
    tile = 0.12 if pattern in ("stripes", "checker") else 0.4
    second = scale(colour, 0.8 if pattern in ("stripes", "checker") else 0.88)
    return b.material(colour, second, pattern=pattern, tile=tile, grime=0.2, grime_tile=0.8)


def paint_material(b: SceneBuilder, rng: np.random.Generator, base: Colour | None = None,
                   specular: float = 0.0) -> int:
    colour = jitter(rng, base or pick(rng, PAINTS), 0.04)
    return b.material(colour, scale(colour, 0.94), pattern="noise", tile=2.0, grime=0.25, grime_tile=2.5,
                      specular=specular, shininess=40.0)


def metal_material(b: SceneBuilder, rng: np.random.Generator) -> int:
    colour = jitter(rng, pick(rng, METALS))
    return b.material(colour, scale(colour, 0.9), pattern="fine_noise", tile=0.3, specular=0.5, shininess=60.0)


@dataclass
class Placement:
    """A local frame on the ground: object parts are given in local coordinates (x right,
    y up, z towards the object's front) and turned by ``yaw`` about the vertical."""

    x: float
    z: float
    yaw: float
    ground: float = 0.0

    def __post_init__(self) -> None:
        self._cos, self._sin = math.cos(self.yaw), math.sin(self.yaw)
        self._rotation = yaw_rotation(self.yaw)  # computed once, shared by every box part

    @property
    def rotation(self) -> np.ndarray:
        return rotation_matrix(self.yaw)

    def at(self, lx: float, ly: float, lz: float) -> tuple[float, float, float]:
        """World position of a local point."""
        return (self.x + self._cos * lx + self._sin * lz, self.ground + ly, self.z - self._sin * lx + self._cos * lz)

    def box(self, b: SceneBuilder, local: tuple[float, float, float], size: tuple[float, float, float], **kw) -> int:
        """A box part whose centre is ``local`` and which turns with the object."""
        return b.box(self.at(*local), size, rotation=self._rotation, **kw)

    def cylinder(self, b: SceneBuilder, local: tuple[float, float, float], radius: float, height: float, **kw) -> int:
        return b.cylinder(self.at(*local), radius, height, **kw)

    def sphere(self, b: SceneBuilder, local: tuple[float, float, float], radius: float, **kw) -> int:
        return b.sphere(self.at(*local), radius, **kw)


def footprint(x: float, z: float, width: float, depth: float, yaw: float, margin: float = 0.0):
    """Axis-aligned floor rectangle ``(x0, x1, z0, z1)`` covering a turned ``width x depth`` object."""
    c, s = abs(math.cos(yaw)), abs(math.sin(yaw))
    half_x = 0.5 * (c * width + s * depth) + margin
    half_z = 0.5 * (s * width + c * depth) + margin
    return (x - half_x, x + half_x, z - half_z, z + half_z)


def overlaps(rect, others) -> bool:
    """Whether a floor rectangle overlaps any of ``others``."""
    x0, x1, z0, z1 = rect
    return any(x0 < o[1] and o[0] < x1 and z0 < o[3] and o[2] < z1 for o in others)
