"""Out-of-distribution domains: geometry and appearance chosen to differ from rooms and streets.

``ood_shapes``: 6-16 free-floating primitives (spheres, boxes and cylinders of 0.2-1.5 m in random
3-D orientations, hovering 0-2.5 m above the ground) over an infinite ground plane, inside a textured
dome (radius 12-18 m). Palettes are saturated random hues with bold patterns (checker, zigzag,
dots, waves, stripes, grid) on every surface; a coloured key light (point or sun) and a tinted
ambient. The camera has any height in 0.4-2.5 m, pitch -10..35 degrees, roll up to +-17 degrees and a
field of view of 45-95 degrees. No object has a familiar size, nothing stands on the floor, there are
no walls, furniture, roads or sky.

``ood_clutter``: a heap of 25-60 small objects (3-35 cm, random kinds, orientations, textures and
colours, interpenetrating) on a patterned surface, seen from 0.4-2.2 m looking steeply down (35-75
degrees) with any roll; a close, strongly coloured point light gives harsh shadows; dim ambient.
Depth is close-range and dense with occlusion boundaries everywhere.

Both give every pixel valid depth (``ood_shapes`` 0.2-18 m, ``ood_clutter`` 0.1-8 m) and one instance
id per object, which the data-free method needs for object-wise mixing.
"""

from __future__ import annotations

import math

import numpy as np

from depthkd.sim.domains.common import hsv, pick, scale
from depthkd.sim.scene import Lighting, SceneBuilder, Sensor, random_rotation
from depthkd.sim.textures import PATTERN_NAMES

BOLD_PATTERNS = ("checker", "zigzag", "dots", "waves", "stripes", "grid", "marble", "flat")


def _bold_material(b: SceneBuilder, rng: np.random.Generator, tile: float, patterns=BOLD_PATTERNS) -> int:
    hue = rng.random()
    first = hsv(hue, rng.uniform(0.6, 1.0), rng.uniform(0.45, 1.0))
    second = hsv(hue + rng.uniform(0.25, 0.75), rng.uniform(0.5, 1.0), rng.uniform(0.3, 1.0))
    return b.material(first, second, hsv(rng.random(), 0.8, 0.8), pattern=pick(rng, patterns),
                      tile=tile * rng.uniform(0.5, 2.0), angle=rng.uniform(0, math.pi), offset=(rng.random(), rng.random()),
                      variation=rng.uniform(0.0, 0.6), specular=rng.uniform(0.0, 0.8), shininess=rng.uniform(8, 120))


def _random_object(b: SceneBuilder, rng: np.random.Generator, centre, size: float, material: int) -> None:
    kind = pick(rng, ("sphere", "box", "box", "cylinder"))
    instance = b.new_instance()
    rotation = random_rotation(rng)
    if kind == "sphere":
        b.sphere(centre, size / 2, rotation=rotation, material=material, cls="shape", instance=instance)
    elif kind == "box":
        dims = tuple(size * rng.uniform(0.3, 1.0) for _ in range(3))
        b.box(centre, dims, rotation=rotation, material=material, cls="shape", instance=instance)
    else:
        b.cylinder(centre, size * rng.uniform(0.15, 0.5), size * rng.uniform(0.4, 1.0), rotation=rotation,
                   material=material, cls="shape", instance=instance)


def _camera_fov(rng: np.random.Generator, size: tuple[int, int], low: float, high: float) -> tuple[float, float, float]:
    height_px, width_px = size
    hfov = math.radians(rng.uniform(low, high))
    fx = (width_px / 2) / math.tan(hfov / 2)
    return fx, (width_px - 1) / 2, (height_px - 1) / 2


def _ood_light(b: SceneBuilder, rng: np.random.Generator, point, strength: float) -> None:
    hue = rng.random()
    key = scale(hsv(hue, rng.uniform(0.2, 0.7), 1.0), strength)
    ambient = hsv(hue + 0.5, rng.uniform(0.2, 0.6), rng.uniform(0.15, 0.35))
    if point is None:
        elevation, azimuth = rng.uniform(0.3, 1.3), rng.uniform(0, 2 * math.pi)
        position = (math.cos(elevation) * math.sin(azimuth), math.sin(elevation), math.cos(elevation) * math.cos(azimuth))
        kind = "sun"
    else:
        position, kind = point, "point"
    b.lighting = Lighting(
        kind=kind, position=position, colour=key, falloff=rng.uniform(2.0, 6.0),
        fill_direction=(rng.normal(), rng.normal(), rng.normal()),
        fill_colour=hsv(rng.random(), 0.6, rng.uniform(0.0, 0.3)),
        ambient_sky=ambient, ambient_ground=scale(ambient, 0.5),
    )
    b.sensor = Sensor(exposure=rng.uniform(0.35, 0.55), white_balance=(1.0, 1.0, 1.0),
                      vignetting=rng.uniform(0.0, 0.3), noise=rng.uniform(0.0, 0.02), gamma=rng.uniform(1.8, 2.6))


def sample_ood_shapes(rng: np.random.Generator, size: tuple[int, int]) -> SceneBuilder:
    """Floating primitives over a ground plane inside a dome (see the module docstring)."""
    height_px, width_px = size
    b = SceneBuilder(max_depth=20.0)
    cam_y = rng.uniform(0.4, 2.5)
    cam = (0.0, cam_y, 0.0)
    dome = rng.uniform(12.0, 18.0)
    b.plane((0.0, 0.0, 0.0), material=_bold_material(b, rng, 2.0), cls="floor")
    b.sphere(cam, dome, material=_bold_material(b, rng, 6.0, ("waves", "noise", "marble", "zigzag", "flat")), cls="wall",
             casts_shadow=False)
    fx, cx, cy = _camera_fov(rng, size, 45.0, 95.0)
    camera = b.set_camera(cam, rng.uniform(-math.pi, math.pi), rng.uniform(-0.17, 0.6), rng.uniform(-0.3, 0.3),
                          fx, fx, cx, cy)
    # Objects along random pixels' rays, so that most of them are in view.
    for _ in range(int(rng.integers(6, 17))):
        object_size = rng.uniform(0.2, 1.5)
        ray = camera.rotation @ np.array([(rng.uniform(0, width_px) - cx) / fx, (rng.uniform(0, height_px) - cy) / fx, 1.0])
        ray /= np.linalg.norm(ray)
        distance = rng.uniform(1.5, 9.0)
        centre = np.asarray(cam) + distance * ray
        centre[1] = min(max(centre[1], object_size * 0.6), cam_y + 3.0)
        if np.linalg.norm(centre - np.asarray(cam)) < 1.4:
            continue
        _random_object(b, rng, tuple(centre), object_size, _bold_material(b, rng, object_size))
    point = (rng.uniform(-3, 3), rng.uniform(3.0, 6.0), rng.uniform(-3, 3)) if rng.random() < 0.5 else None
    _ood_light(b, rng, point, rng.uniform(1.5, 3.0))
    return b


def sample_ood_clutter(rng: np.random.Generator, size: tuple[int, int]) -> SceneBuilder:
    """A heap of small objects seen from above (see the module docstring)."""
    b = SceneBuilder(max_depth=10.0)
    cam_y = rng.uniform(0.4, 2.2)
    pitch = rng.uniform(0.6, 1.3)
    yaw = rng.uniform(-math.pi, math.pi)
    cam = (0.0, cam_y, 0.0)
    b.plane((0.0, 0.0, 0.0), material=_bold_material(b, rng, 0.5, PATTERN_NAMES), cls="floor")
    b.sphere(cam, 6.0, material=_bold_material(b, rng, 2.0), cls="wall", casts_shadow=False)
    # Centre of the heap: where the optical axis meets the ground.
    reach = cam_y / math.tan(pitch)
    focus = (reach * math.sin(yaw), reach * math.cos(yaw))
    spread = 0.25 + 0.5 * cam_y
    for _ in range(int(rng.integers(25, 61))):
        object_size = rng.uniform(0.03, 0.35)
        x = focus[0] + rng.normal(0, spread)
        z = focus[1] + rng.normal(0, spread)
        if math.hypot(x, z) < 0.35:
            continue
        y = rng.uniform(0.0, 1.2) * object_size + rng.exponential(0.05)
        y = min(y, cam_y - 0.3)
        material = _bold_material(b, rng, object_size * 2, PATTERN_NAMES)
        _random_object(b, rng, (x, y, z), object_size, material)
    fx, cx, cy = _camera_fov(rng, size, 50.0, 90.0)
    b.set_camera(cam, yaw, pitch, rng.uniform(-math.pi, math.pi), fx, fx, cx, cy)
    light = (focus[0] + rng.normal(0, 0.8), cam_y + rng.uniform(0.3, 1.5), focus[1] + rng.normal(0, 0.8))
    _ood_light(b, rng, light, rng.uniform(2.0, 4.0))
    b.lighting.ambient_sky = scale(b.lighting.ambient_sky, 0.6)
    return b
