"""``outdoor``: KITTI-like streets seen from a car's roof camera.

Layout: a straight road of 2-4 lanes (3.1-3.6 m each) with lane markings, raised sidewalks, then
either city blocks (facades 6-25 m high with window grids), residential houses with hedges and
trees, or a rural verge with trees and fences. Parked cars line the curbs, other cars drive in the
lanes ahead, with street lamps, sign posts and trees on the sidewalks. Objects have real-world sizes
(cars about 4.3 x 1.8 x 1.5 m, lamps 6-8 m).

Appearance: sun with hard shadows (elevation 15-65 degrees), blue sky with clouds, distance haze,
asphalt, paving, plaster/brick facades, glossy car paint.

Camera: 1.55-1.8 m above the road in a lane, looking down the road; focal length from the image
*height* like a KITTI image scaled to that height (fx = 1.92 * H, +-5%), so a 375-row image has
KITTI's focal length and narrower images act like crops.

Depth: z-depth in 1-80 m; sky and anything beyond 80 m (LiDAR range) is 0 = invalid.
"""

from __future__ import annotations

import math

import numpy as np

from depthkd.sim.domains.common import (
    CAR_PAINTS,
    Placement,
    hsv,
    jitter,
    pick,
    scale,
)
from depthkd.sim.scene import Lighting, SceneBuilder, Sensor, rotation_matrix

KITTI_FOCAL_PER_ROW = 721.5377 / 375.0
MAX_DEPTH = 80.0
# The road and sidewalks are split along their length (short near the camera) so that per-tile
# culling keeps them out of tiles above the horizon.
ROAD_SEGMENTS = (-60.0, -10.0, 10.0, 25.0, 45.0, 70.0, 110.0, 170.0, 260.0, 400.0)

FACADE_COLOURS = (
    (0.75, 0.7, 0.6), (0.62, 0.6, 0.58), (0.82, 0.8, 0.76), (0.55, 0.32, 0.24), (0.7, 0.55, 0.42),
    (0.5, 0.52, 0.55), (0.85, 0.78, 0.62), (0.42, 0.4, 0.38),
)


def _car(b: SceneBuilder, rng: np.random.Generator, x: float, z: float, yaw: float) -> None:
    """Body, cabin and four wheels; one instance."""
    instance = b.new_instance()
    at = Placement(x, z, yaw)
    length, width = rng.uniform(3.8, 4.9), rng.uniform(1.68, 1.9)
    body_h, clearance = rng.uniform(0.55, 0.75), rng.uniform(0.22, 0.32)
    van = rng.random() < 0.12
    paint_colour = jitter(rng, pick(rng, CAR_PAINTS), 0.05)
    paint = b.material(paint_colour, scale(paint_colour, 0.9), pattern="fine_noise", tile=2.0, specular=0.8,
                       shininess=80.0, grime=0.2, grime_tile=1.0)
    glass = b.material((0.05, 0.06, 0.07), (0.2, 0.23, 0.26), pattern="noise", tile=1.5, specular=1.0, shininess=120.0)
    at.box(b, (0, clearance + body_h / 2, 0), (width, body_h, length), material=paint, cls="car", instance=instance)
    cabin_h = rng.uniform(0.45, 0.6) if not van else rng.uniform(0.9, 1.2)
    cabin_l = length * (rng.uniform(0.45, 0.58) if not van else 0.75)
    at.box(b, (0, clearance + body_h + cabin_h / 2, -length * (0.06 if not van else 0.1)), (width * 0.9, cabin_h, cabin_l),
           material={"default": glass, "+y": paint}, cls="car", instance=instance)
    tyre = b.material((0.04, 0.04, 0.04), (0.25, 0.25, 0.26), pattern="dots", tile=0.65, offset=(0.5, 0.5))
    radius = rng.uniform(0.3, 0.36)
    wheel_turn = rotation_matrix(yaw) @ rotation_matrix(roll=math.pi / 2)
    for side in (-1, 1):
        for end in (-1, 1):
            b.cylinder(at.at(side * (width / 2 - 0.1), radius, end * length * 0.32), radius, 0.22, rotation=wheel_turn,
                       material=tyre, cls="car", instance=instance, casts_shadow=False)  # inside the body's shadow


def _tree(b: SceneBuilder, rng: np.random.Generator, x: float, z: float, ground: float) -> None:
    instance = b.new_instance()
    trunk_h, trunk_r = rng.uniform(1.8, 3.5), rng.uniform(0.1, 0.25)
    bark = b.material((0.2, 0.15, 0.1), (0.35, 0.28, 0.2), pattern="wood", tile=(0.5, 0.25), angle=math.pi / 2)
    b.cylinder((x, ground + trunk_h / 2, z), trunk_r, trunk_h, material=bark, cls="tree", instance=instance)
    green = hsv(rng.uniform(0.18, 0.32), rng.uniform(0.4, 0.7), rng.uniform(0.2, 0.45))
    leaves = b.material(scale(green, 0.3), green, scale(green, 1.4), pattern="foliage", tile=rng.uniform(0.8, 1.6),
                        variation=0.4, offset=(rng.random(), rng.random()))
    crown = rng.uniform(1.2, 3.0)
    b.sphere((x, ground + trunk_h + crown * 0.7, z), crown, rotation=rotation_matrix(rng.uniform(0, 6.3)),
             material=leaves, cls="tree", instance=instance)
    if rng.random() < 0.5:
        b.sphere((x + rng.normal(0, 0.6), ground + trunk_h + crown * 1.4, z + rng.normal(0, 0.6)), crown * 0.7,
                 material=leaves, cls="tree", instance=instance)


def _street_lamp(b: SceneBuilder, rng: np.random.Generator, x: float, z: float, ground: float, towards: float) -> None:
    instance = b.new_instance()
    height = rng.uniform(5.5, 8.0)
    metal = b.material(jitter(rng, (0.35, 0.36, 0.38)), specular=0.4, shininess=40.0)
    b.cylinder((x, ground + height / 2, z), rng.uniform(0.06, 0.1), height, material=metal, cls="pole",
               instance=instance)
    arm = rng.uniform(1.0, 2.0)
    b.box((x + towards * arm / 2, ground + height - 0.1, z), (arm, 0.08, 0.08), material=metal, cls="pole",
          instance=instance)
    b.box((x + towards * arm, ground + height - 0.2, z), (0.5, 0.15, 0.25), material=metal, cls="pole",
          instance=instance)


def _sign(b: SceneBuilder, rng: np.random.Generator, x: float, z: float, ground: float) -> None:
    instance = b.new_instance()
    height = rng.uniform(2.2, 3.0)
    metal = b.material((0.5, 0.5, 0.52), specular=0.3)
    b.cylinder((x, ground + height / 2, z), 0.035, height, material=metal, cls="pole", instance=instance)
    face = b.material(pick(rng, ((0.7, 0.05, 0.05), (0.05, 0.2, 0.6), (0.9, 0.75, 0.1), (0.9, 0.9, 0.9))),
                      (0.9, 0.9, 0.9), pattern=pick(rng, ("flat", "dots", "stripes")), tile=0.6, offset=(0.5, 0.5),
                      specular=0.3)
    if rng.random() < 0.5:
        b.cylinder((x, ground + height + 0.3, z - 0.04), 0.3, 0.03, rotation=rotation_matrix(pitch=math.pi / 2),
                   material=face, cls="sign", instance=instance)
    else:
        b.box((x, ground + height + 0.3, z - 0.04), (0.6, 0.6, 0.03), material=face, cls="sign", instance=instance)


def _building(b: SceneBuilder, rng: np.random.Generator, x: float, z: float, width: float, depth: float,
              height: float) -> None:
    wall = jitter(rng, pick(rng, FACADE_COLOURS))
    bay, storey = rng.uniform(2.5, 4.0), rng.uniform(2.8, 3.4)
    facade = b.material(wall, (0.08, 0.1, 0.12), (0.35, 0.42, 0.5), pattern="facade", tile=(2 * bay, 2 * storey),
                        offset=(rng.random(), 0.0), variation=0.6, grime=0.3, grime_tile=4.0, specular=0.2)
    roof = b.material((0.25, 0.24, 0.24), (0.35, 0.33, 0.32), pattern="noise", tile=3.0)
    b.box((x, height / 2, z), (depth, height, width), material={"default": facade, "+y": roof}, cls="building")


def sample_outdoor(rng: np.random.Generator, size: tuple[int, int]) -> SceneBuilder:
    """One random street (see the module docstring)."""
    height_px, width_px = size
    b = SceneBuilder(max_depth=MAX_DEPTH)
    lanes = int(rng.integers(2, 5))
    lane_w = rng.uniform(3.1, 3.6)
    road_w = lanes * lane_w
    setting = pick(rng, ("city", "city", "residential", "rural"))

    grass = hsv(rng.uniform(0.15, 0.28), rng.uniform(0.3, 0.6), rng.uniform(0.25, 0.45))
    terrain = b.material(scale(grass, 0.6), grass, jitter(rng, (0.45, 0.4, 0.3)), pattern="noise", tile=4.0,
                         variation=0.4, grime=0.3, grime_tile=6.0)
    b.plane((0.0, -0.02, 0.0), material=terrain, cls="terrain")
    asphalt = jitter(rng, (0.2, 0.2, 0.21), 0.15)
    road = b.material(scale(asphalt, 0.7), asphalt, pattern="fine_noise", tile=(road_w, 9.0), offset=(0.5, rng.random()),
                      lanes=lanes, grime=0.35, grime_tile=5.0)
    segments = list(zip(ROAD_SEGMENTS[:-1], ROAD_SEGMENTS[1:]))
    for start, end in segments:
        b.box((0.0, -0.05, (start + end) / 2), (road_w, 0.1, end - start), material=road, cls="road",
              casts_shadow=False)
    walk_w = [rng.uniform(1.5, 4.0), rng.uniform(1.5, 4.0)]
    paving_colour = jitter(rng, pick(rng, ((0.55, 0.54, 0.52), (0.62, 0.58, 0.52), (0.45, 0.45, 0.46))))
    paving = b.material(scale(paving_colour, 0.75), paving_colour, pattern="tiles", tile=rng.uniform(0.6, 1.2),
                        variation=0.2, grime=0.3, grime_tile=3.0)
    for side, w in zip((-1, 1), walk_w):
        for start, end in segments:
            b.box((side * (road_w / 2 + w / 2), 0.075, (start + end) / 2), (w, 0.15, end - start), material=paving,
                  cls="sidewalk", casts_shadow=False)

    # Roadside: buildings, houses or an open verge, per side.
    for side, w in zip((-1, 1), walk_w):
        edge = road_w / 2 + w
        z = ROAD_SEGMENTS[0] + rng.uniform(0, 10)
        while z < 160.0:
            if setting == "rural":
                if rng.random() < 0.5:
                    _tree(b, rng, side * (edge + rng.uniform(1.0, 6.0)), z, 0.0)
                z += rng.uniform(6.0, 18.0)
                continue
            along = rng.uniform(8.0, 25.0) if setting == "city" else rng.uniform(8.0, 14.0)
            deep = rng.uniform(8.0, 16.0)
            tall = rng.uniform(6.0, 25.0) if setting == "city" else rng.uniform(4.5, 8.0)
            setback = rng.uniform(0.0, 2.0) if setting == "city" else rng.uniform(3.0, 8.0)
            _building(b, rng, side * (edge + setback + deep / 2), z + along / 2, along, deep, tall)
            if setting == "residential" and rng.random() < 0.6:
                hedge = hsv(rng.uniform(0.2, 0.3), 0.5, 0.3)
                b.box((side * (edge + 0.5), 0.6, z + along / 2), (0.8, rng.uniform(0.8, 1.6), along * 0.9),
                      material=b.material(scale(hedge, 0.4), hedge, pattern="foliage", tile=1.0), cls="tree",
                      instance=b.new_instance())
            z += along + (rng.uniform(0.0, 2.0) if setting == "city" else rng.uniform(3.0, 10.0))
        if setting == "rural" and rng.random() < 0.7:
            fence = b.material((0.45, 0.38, 0.3), (0.3, 0.25, 0.2), pattern="stripes", tile=(0.3, 1.0), angle=math.pi / 2)
            for start, end in zip(ROAD_SEGMENTS[:-1], ROAD_SEGMENTS[1:]):
                b.box((side * (edge + 0.3), 0.5, (start + end) / 2), (0.05, 1.0, end - start), material=fence,
                      cls="building")

    # Street furniture on the sidewalks.
    for side, w in zip((-1, 1), walk_w):
        z = rng.uniform(4.0, 20.0)
        while z < 120.0:
            x = side * (road_w / 2 + w - 0.5)
            roll = rng.random()
            if roll < 0.35:
                _street_lamp(b, rng, side * (road_w / 2 + 0.4), z, 0.15, -side)
            elif roll < 0.55:
                _sign(b, rng, side * (road_w / 2 + 0.4), z, 0.15)
            elif roll < 0.9 and w > 2.0:
                _tree(b, rng, x, z, 0.15)
            z += rng.uniform(8.0, 25.0)

    # Camera in a lane; parked and moving cars.
    lane = int(rng.integers(lanes))
    cam_x = -road_w / 2 + (lane + 0.5) * lane_w + rng.normal(0, 0.2)
    for side in (-1, 1):
        if rng.random() < 0.25:
            continue
        z = rng.uniform(3.0, 12.0)
        while z < 90.0:
            if rng.random() < 0.6:
                _car(b, rng, side * (road_w / 2 - 1.1), z, pick(rng, (0.0, math.pi)) + rng.normal(0, 0.03))
            z += rng.uniform(5.0, 9.0)
    for _ in range(int(rng.integers(0, 4))):
        other = int(rng.integers(lanes))
        x = -road_w / 2 + (other + 0.5) * lane_w + rng.normal(0, 0.2)
        z = rng.uniform(9.0, 60.0) if abs(x - cam_x) < 1.5 else rng.uniform(5.0, 60.0)
        # Keep driving cars off the curbside parking strip.
        x = float(np.clip(x, -road_w / 2 + 2.3, road_w / 2 - 2.3)) if lanes > 2 else x
        _car(b, rng, x, z, (0.0 if other >= lanes // 2 else math.pi) + rng.normal(0, 0.03))

    fx = height_px * KITTI_FOCAL_PER_ROW * rng.uniform(0.95, 1.05)
    b.set_camera((cam_x, rng.uniform(1.55, 1.8), 0.0), rng.normal(0, 0.04), rng.normal(0.01, 0.02), rng.normal(0, 0.01),
                 fx, fx, (width_px - 1) / 2 + rng.normal(0, 0.01) * width_px, 0.47 * (height_px - 1) + rng.normal(0, 0.01) * height_px)

    elevation, azimuth = rng.uniform(0.26, 1.13), rng.uniform(0, 2 * math.pi)
    sun = (math.cos(elevation) * math.sin(azimuth), math.sin(elevation), math.cos(elevation) * math.cos(azimuth))
    zenith = hsv(rng.uniform(0.56, 0.62), rng.uniform(0.45, 0.75), rng.uniform(0.7, 0.95))
    horizon = hsv(rng.uniform(0.55, 0.6), rng.uniform(0.05, 0.2), rng.uniform(0.85, 1.0))
    b.lighting = Lighting(
        kind="sun",
        position=sun,
        colour=scale(hsv(rng.uniform(0.08, 0.13), rng.uniform(0.05, 0.25), 1.0), rng.uniform(3.0, 4.5)),
        fill_direction=(-sun[0], 0.3, -sun[2]),
        fill_colour=scale(horizon, 0.1),
        ambient_sky=scale(zenith, rng.uniform(0.35, 0.6)),
        ambient_ground=jitter(rng, (0.25, 0.24, 0.22)),
        sky_zenith=zenith,
        sky_horizon=horizon,
        clouds=rng.uniform(0.0, 0.8),
        haze_colour=horizon,
        haze_density=rng.uniform(0.0005, 0.005),
    )
    b.sensor = Sensor(
        exposure=rng.uniform(0.4, 0.52),
        white_balance=jitter(rng, (1.0, 1.0, 1.0), 0.04),
        vignetting=rng.uniform(0.0, 0.25),
        noise=rng.uniform(0.002, 0.01),
        gamma=rng.uniform(2.0, 2.4),
    )
    return b
