"""``indoor``: NYU-like rooms seen by a hand-held camera standing near one wall.

Layout: a box room (3-6.5 m wide, 3.5-7.5 m deep, 2.4-3.1 m high; sometimes an L-shaped corner block,
a pillar or a ceiling beam) with skirting boards, windows, a door and pictures on the walls, and
furniture of real-world sizes chosen by room type (living room, bedroom, office, kitchen, dining room,
storage room): tables with chairs, desks with monitors, shelves with books, cabinets, wardrobes,
beds, sofas, lamps, plants, boxes, rugs. Furniture stands on the floor against walls or in the open,
never overlapping, keeping clear of the camera.

Appearance: wooden, painted, fabric and metal materials with wood grain, planks, tiles, carpets,
wallpapers; one warm or neutral ceiling light with hard shadows, daylight fill from windows,
coloured ambient bounce from the floor. Camera 1.0-1.7 m high, pitched 0-20 degrees down on
average, slight roll, NYU field of view (fx = 0.81 * width, +-8%).

Depth: every pixel valid, z-depth in 0.2-10 m (typically 0.7-7 m).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from depthkd.sim.domains.common import (
    FABRICS,
    PAINTS,
    WOODS,
    Placement,
    fabric_material,
    footprint,
    hsv,
    jitter,
    metal_material,
    overlaps,
    paint_material,
    pick,
    scale,
    wood_material,
)
from depthkd.sim.scene import Lighting, SceneBuilder, Sensor

NYU_FOCAL_RATIO = 518.8579 / 640.0
MAX_DEPTH = 10.0

Item = tuple[float, float, Callable[[SceneBuilder, Placement], None]]  # width, depth, build


class Room:
    """Per-scene palette and bookkeeping shared by the item builders."""

    def __init__(self, b: SceneBuilder, rng: np.random.Generator, width: float, depth: float, height: float):
        self.b, self.rng = b, rng
        self.width, self.depth, self.height = width, depth, height
        family = pick(rng, WOODS)
        self.wood = wood_material(b, rng, family)
        self.wood_alt = wood_material(b, rng)
        self.white = paint_material(b, rng, (0.88, 0.88, 0.86), specular=0.1)
        self.metal = metal_material(b, rng)
        self.dark = b.material((0.05, 0.05, 0.06), (0.1, 0.1, 0.12), pattern="fine_noise", tile=0.3,
                               specular=0.6, shininess=80.0)
        self.rects: list[tuple[float, float, float, float]] = []

    def furniture_material(self) -> int:
        return int(pick(self.rng, (self.wood, self.wood, self.wood_alt, self.white, self.metal)))


# -- furniture items: each returns (width, depth, build) with the front facing local +z ----------


def table_item(room: Room, with_chairs: bool = True, coffee: bool = False) -> Item:
    rng = room.rng
    width = rng.uniform(0.8, 1.8) if not coffee else rng.uniform(0.7, 1.2)
    depth = rng.uniform(0.6, 1.0) if not coffee else rng.uniform(0.45, 0.7)
    height = rng.uniform(0.71, 0.77) if not coffee else rng.uniform(0.38, 0.46)
    top = rng.uniform(0.025, 0.05)
    round_legs = rng.random() < 0.4
    chairs = int(rng.integers(1, 5)) if with_chairs and not coffee else 0
    margin = 0.55 if chairs else 0.0

    def build(b: SceneBuilder, at: Placement) -> None:
        material = room.furniture_material()
        instance = b.new_instance()
        at.box(b, (0, height - top / 2, 0), (width, top, depth), material=material, cls="table", instance=instance)
        leg = rng.uniform(0.035, 0.06)
        for sx in (-1, 1):
            for sz in (-1, 1):
                local = (sx * (width / 2 - leg), (height - top) / 2, sz * (depth / 2 - leg))
                if round_legs:
                    at.cylinder(b, local, leg / 2, height - top, material=material, cls="table", instance=instance)
                else:
                    at.box(b, local, (leg, height - top, leg), material=material, cls="table", instance=instance)
        chair_material = room.furniture_material()
        sides = [(0, depth / 2 + 0.3, math.pi), (0, -depth / 2 - 0.3, 0.0),
                 (width / 2 + 0.3, 0, -math.pi / 2), (-width / 2 - 0.3, 0, math.pi / 2)]
        for index in rng.permutation(4)[:chairs]:
            lx, lz, turn = sides[int(index)]
            offset = rng.uniform(-0.15, 0.15) * width if lz != 0 else 0.0
            seat = Placement(*at.at(lx + offset, 0, lz)[::2], at.yaw + turn + rng.normal(0, 0.15))
            chair_parts(b, rng, seat, chair_material)

    return width + 2 * margin, depth + 2 * margin, build


def chair_parts(b: SceneBuilder, rng: np.random.Generator, at: Placement, material: int) -> None:
    """A chair facing local +z: seat, four legs, a backrest."""
    instance = b.new_instance()
    size = rng.uniform(0.4, 0.48)
    seat_h = rng.uniform(0.43, 0.48)
    leg = rng.uniform(0.025, 0.04)
    at.box(b, (0, seat_h, 0), (size, 0.04, size), material=material, cls="chair", instance=instance)
    for sx in (-1, 1):
        for sz in (-1, 1):
            at.box(b, (sx * (size / 2 - leg), (seat_h - 0.02) / 2, sz * (size / 2 - leg)),
                   (leg, seat_h - 0.02, leg), material=material, cls="chair", instance=instance)
    back_h = rng.uniform(0.35, 0.5)
    at.box(b, (0, seat_h + back_h / 2, -size / 2 + 0.015), (size, back_h, 0.03), material=material,
           cls="chair", instance=instance)


def chair_item(room: Room) -> Item:
    def build(b: SceneBuilder, at: Placement) -> None:
        chair_parts(b, room.rng, at, room.furniture_material())

    return 0.55, 0.55, build


def armchair_item(room: Room) -> Item:
    rng = room.rng
    width, depth = rng.uniform(0.75, 0.95), rng.uniform(0.75, 0.9)

    def build(b: SceneBuilder, at: Placement) -> None:
        fabric = fabric_material(b, rng)
        sofa_parts(b, rng, at, width, depth, fabric, "chair")

    return width, depth, build


def sofa_parts(b: SceneBuilder, rng: np.random.Generator, at: Placement, width: float, depth: float,
               fabric: int, cls: str) -> None:
    instance = b.new_instance()
    seat_h = rng.uniform(0.38, 0.45)
    back_t = rng.uniform(0.15, 0.22)
    arm_w = rng.uniform(0.12, 0.2)
    back_h = rng.uniform(0.35, 0.45)
    at.box(b, (0, seat_h / 2, 0), (width, seat_h, depth), material=fabric, cls=cls, instance=instance)
    at.box(b, (0, seat_h + back_h / 2, -depth / 2 + back_t / 2), (width, back_h, back_t), material=fabric,
           cls=cls, instance=instance)
    arm_h = rng.uniform(0.15, 0.25)
    for side in (-1, 1):
        at.box(b, (side * (width / 2 - arm_w / 2), seat_h + arm_h / 2, back_t / 2), (arm_w, arm_h, depth - back_t),
               material=fabric, cls=cls, instance=instance)


def sofa_item(room: Room) -> Item:
    rng = room.rng
    width, depth = rng.uniform(1.5, 2.4), rng.uniform(0.8, 0.95)

    def build(b: SceneBuilder, at: Placement) -> None:
        sofa_parts(b, rng, at, width, depth, fabric_material(b, rng), "sofa")

    return width, depth, build


def shelf_item(room: Room) -> Item:
    rng = room.rng
    width, depth, height = rng.uniform(0.6, 1.3), rng.uniform(0.28, 0.4), rng.uniform(0.9, 2.1)

    def build(b: SceneBuilder, at: Placement) -> None:
        material = room.furniture_material()
        instance = b.new_instance()
        board = rng.uniform(0.018, 0.03)
        for side in (-1, 1):
            at.box(b, (side * (width / 2 - board / 2), height / 2, 0), (board, height, depth), material=material,
                   cls="shelf", instance=instance)
        levels = max(2, int(height / rng.uniform(0.3, 0.42)))
        gap = (height - board) / levels
        books = b.material((0.05, 0.04, 0.03), hsv(rng.random(), 0.5, 0.55), hsv(rng.random(), 0.6, 0.45),
                           pattern="books", tile=(rng.uniform(0.4, 0.8), gap), variation=0.8,
                           offset=(rng.random(), 0.0))
        for level in range(levels + 1):
            y = board / 2 + level * gap
            at.box(b, (0, y, 0), (width - 2 * board, board, depth), material=material, cls="shelf", instance=instance)
            if level < levels and rng.random() < 0.8:
                fill = rng.uniform(0.4, 1.0) * (width - 2 * board)
                book_h = gap - board - 0.01
                shift = (width - 2 * board - fill) / 2 * rng.uniform(-1, 1)
                at.box(b, (shift, y + board / 2 + book_h / 2, -0.01), (fill, book_h, depth * 0.85),
                       material={"default": room.dark, "+z": books, "-z": books}, cls="shelf", instance=instance)

    return width, depth, build


def cabinet_item(room: Room, tall: bool = False) -> Item:
    rng = room.rng
    width = rng.uniform(0.8, 2.0) if tall else rng.uniform(0.5, 1.6)
    depth = rng.uniform(0.5, 0.62) if tall else rng.uniform(0.38, 0.6)
    height = rng.uniform(1.8, 2.2) if tall else rng.uniform(0.5, 1.2)
    cls = "cabinet"

    def build(b: SceneBuilder, at: Placement) -> None:
        room.furniture_material()  # draws from the scene RNG: keeps every later draw (and scene) unchanged
        instance = b.new_instance()
        base_colour = jitter(rng, pick(rng, WOODS + PAINTS))
        drawers = rng.random() < 0.5 and not tall
        front = b.material(scale(base_colour, 0.55), base_colour, pattern="tiles" if not drawers else "stripes",
                           tile=(width / max(1, round(width / 0.5)) * 2, height * (2 if not drawers else 0.5)),
                           angle=0.0, offset=(0.0, 0.25), grime=0.1, specular=0.1, shininess=30.0)
        plain = b.material(base_colour)
        at.box(b, (0, height / 2, 0), (width, height, depth), material={"default": plain, "+z": front},
               cls=cls, instance=instance)
        if not tall and rng.random() < 0.7:
            top_item(room, Placement(*at.at(rng.uniform(-0.3, 0.3) * width, 0, 0)[::2], at.yaw + rng.normal(0, 0.3),
                                     ground=height), width)

    return width, depth, build


def top_item(room: Room, at: Placement, space: float) -> None:
    """Something standing on a surface at ``at.ground``: lamp, box, plant, TV, vase."""
    rng, b = room.rng, room.b
    kind = pick(rng, ("lamp", "box", "plant", "tv", "vase", "books"))
    if kind == "lamp":
        lamp_parts(b, rng, at, small=True)
    elif kind == "plant":
        plant_parts(b, rng, at, small=True)
    elif kind == "tv" and space > 0.9:
        instance = b.new_instance()
        w = min(space, rng.uniform(0.8, 1.4))
        h = w * 0.58
        at.box(b, (0, 0.02, 0), (0.3, 0.04, 0.2), material=room.dark, cls="appliance", instance=instance)
        at.box(b, (0, 0.12, 0), (0.06, 0.16, 0.04), material=room.dark, cls="appliance", instance=instance)
        at.box(b, (0, 0.2 + h / 2, 0), (w, h, 0.04), material=room.dark, cls="appliance", instance=instance)
    elif kind == "vase":
        r = rng.uniform(0.05, 0.1)
        at.cylinder(b, (0, r * 2, 0), r, r * 4, material=b.material(hsv(rng.random(), 0.5, 0.6),
                    specular=0.5, shininess=60.0), cls="decor", instance=b.new_instance())
    else:
        s = rng.uniform(0.15, 0.35)
        box_colour = jitter(rng, (0.58, 0.44, 0.3)) if kind == "box" else hsv(rng.random(), 0.5, 0.5)
        at.box(b, (0, s * 0.35, 0), (s * 1.2, s * 0.7, s), material=b.material(box_colour, scale(box_colour, 0.85),
               pattern="fine_noise", tile=0.3), cls="box", instance=b.new_instance())


def lamp_parts(b: SceneBuilder, rng: np.random.Generator, at: Placement, small: bool) -> None:
    instance = b.new_instance()
    height = rng.uniform(0.3, 0.55) if small else rng.uniform(1.3, 1.75)
    shade_r = rng.uniform(0.1, 0.16) if small else rng.uniform(0.16, 0.25)
    metal = b.material(jitter(rng, (0.5, 0.48, 0.45)), specular=0.6, shininess=50.0)
    at.cylinder(b, (0, 0.015, 0), shade_r * 0.8, 0.03, material=metal, cls="lamp", instance=instance)
    at.cylinder(b, (0, height / 2, 0), 0.012, height, material=metal, cls="lamp", instance=instance)
    glow = jitter(rng, (0.95, 0.88, 0.7))
    shade = b.material(glow, scale(glow, 0.9), pattern="fine_noise", tile=0.2, emission=scale(glow, 0.35))
    at.cylinder(b, (0, height, 0), shade_r, shade_r * 1.2, material=shade, cls="lamp", instance=instance)


def lamp_item(room: Room) -> Item:
    def build(b: SceneBuilder, at: Placement) -> None:
        lamp_parts(b, room.rng, at, small=False)

    return 0.45, 0.45, build


def plant_parts(b: SceneBuilder, rng: np.random.Generator, at: Placement, small: bool) -> None:
    instance = b.new_instance()
    pot_r = rng.uniform(0.06, 0.1) if small else rng.uniform(0.12, 0.22)
    pot_h = pot_r * rng.uniform(1.2, 2.0)
    pot_colour = pick(rng, ((0.6, 0.35, 0.22), (0.85, 0.85, 0.82), (0.2, 0.2, 0.22), (0.45, 0.5, 0.55)))
    at.cylinder(b, (0, pot_h / 2, 0), pot_r, pot_h, material=b.material(jitter(rng, pot_colour), specular=0.2),
                cls="plant", instance=instance)
    green = hsv(rng.uniform(0.22, 0.36), rng.uniform(0.45, 0.75), rng.uniform(0.25, 0.5))
    leaves = b.material(scale(green, 0.35), green, scale(green, 1.3), pattern="foliage", tile=0.35,
                        variation=0.3, offset=(rng.random(), rng.random()))
    crown = pot_r * rng.uniform(1.1, 1.9)
    at.sphere(b, (0, pot_h + crown * 0.9, 0), crown, material=leaves, cls="plant", instance=instance)
    if not small and rng.random() < 0.6:
        at.sphere(b, (crown * 0.4, pot_h + crown * 1.8, 0), crown * 0.7, material=leaves, cls="plant",
                  instance=instance)


def plant_item(room: Room) -> Item:
    def build(b: SceneBuilder, at: Placement) -> None:
        plant_parts(b, room.rng, at, small=False)

    return 0.5, 0.5, build


def bed_item(room: Room) -> Item:
    rng = room.rng
    width, length = rng.uniform(0.95, 1.85), rng.uniform(1.95, 2.15)

    def build(b: SceneBuilder, at: Placement) -> None:
        instance = b.new_instance()
        frame = room.furniture_material()
        frame_h = rng.uniform(0.2, 0.35)
        at.box(b, (0, frame_h / 2, 0), (width, frame_h, length), material=frame, cls="bed", instance=instance)
        linen = b.material(jitter(rng, (0.9, 0.89, 0.86)), (0.82, 0.82, 0.8), pattern="fine_noise", tile=0.5)
        mattress_h = rng.uniform(0.18, 0.26)
        top = frame_h + mattress_h
        at.box(b, (0, frame_h + mattress_h / 2, 0.0), (width - 0.04, mattress_h, length - 0.06), material=linen,
               cls="bed", instance=instance)
        blanket = fabric_material(b, rng)
        cover = length * rng.uniform(0.55, 0.75)
        at.box(b, (0, top - mattress_h / 2 + 0.03, length / 2 - cover / 2 + 0.02), (width + 0.04, mattress_h + 0.06, cover),
               material=blanket, cls="bed", instance=instance)
        head_h = rng.uniform(0.5, 1.0)
        at.box(b, (0, head_h / 2 + frame_h / 2, -length / 2 + 0.03), (width + 0.06, head_h + frame_h, 0.06),
               material=frame, cls="bed", instance=instance)
        pillows = 2 if width > 1.3 else 1
        for p in range(pillows):
            x = (p - (pillows - 1) / 2) * width / 2
            at.box(b, (x, top + 0.06, -length / 2 + 0.3), (min(0.6, width / pillows - 0.08), 0.12, 0.38), material=linen,
                   cls="bed", instance=instance)

    return width, length, build


def desk_item(room: Room) -> Item:
    rng = room.rng
    width, depth = rng.uniform(1.0, 1.7), rng.uniform(0.6, 0.78)

    def build(b: SceneBuilder, at: Placement) -> None:
        material = room.furniture_material()
        instance = b.new_instance()
        height, top = rng.uniform(0.72, 0.76), 0.03
        at.box(b, (0, height - top / 2, 0), (width, top, depth), material=material, cls="table", instance=instance)
        drawer_w = rng.uniform(0.35, 0.45)
        side = pick(rng, (-1, 1))
        at.box(b, (side * (width / 2 - drawer_w / 2), (height - top) / 2, 0), (drawer_w, height - top, depth - 0.02),
               material=material, cls="table", instance=instance)
        at.box(b, (-side * (width / 2 - 0.02), (height - top) / 2, 0), (0.03, height - top, depth - 0.02),
               material=material, cls="table", instance=instance)
        monitor = b.new_instance()
        mw = rng.uniform(0.45, 0.65)
        at.box(b, (0, height + 0.06, -depth / 4), (0.05, 0.12, 0.05), material=room.dark, cls="appliance", instance=monitor)
        at.box(b, (0, height + 0.12 + mw * 0.3, -depth / 4), (mw, mw * 0.6, 0.03), material=room.dark,
               cls="appliance", instance=monitor)
        chair = Placement(*at.at(rng.uniform(-0.2, 0.2), 0, depth / 2 + 0.35)[::2], at.yaw + math.pi + rng.normal(0, 0.3))
        chair_parts(b, rng, chair, room.furniture_material())

    return width, depth + 0.7, build


def counter_item(room: Room) -> Item:
    rng = room.rng
    width = rng.uniform(1.2, min(3.5, room.width - 0.4))
    depth = 0.6

    def build(b: SceneBuilder, at: Placement) -> None:
        instance = b.new_instance()
        colour = jitter(rng, pick(rng, WOODS + PAINTS))
        doors = b.material(scale(colour, 0.5), colour, pattern="tiles", tile=(1.2, 1.8), offset=(0.0, 0.25),
                           specular=0.15)
        plain = b.material(colour)
        at.box(b, (0, 0.43, 0), (width, 0.86, depth), material={"default": plain, "+z": doors}, cls="cabinet",
               instance=instance)
        stone = b.material(jitter(rng, (0.35, 0.34, 0.33)), jitter(rng, (0.75, 0.74, 0.72)), pattern="marble",
                           tile=1.0, specular=0.5, shininess=60.0)
        at.box(b, (0, 0.88, 0.01), (width + 0.02, 0.04, depth + 0.03), material=stone, cls="table", instance=instance)
        if rng.random() < 0.7:
            upper = b.new_instance()
            at.box(b, (0, 1.85, -depth / 2 + 0.18), (width, 0.7, 0.35), material={"default": plain, "+z": doors},
                   cls="cabinet", instance=upper)
        if rng.random() < 0.6:
            top_item(room, Placement(*at.at(rng.uniform(-0.35, 0.35) * width, 0, 0)[::2], at.yaw, ground=0.9), width)

    return width, depth, build


def fridge_item(room: Room) -> Item:
    rng = room.rng
    width, depth, height = rng.uniform(0.6, 0.8), rng.uniform(0.6, 0.7), rng.uniform(1.7, 1.95)

    def build(b: SceneBuilder, at: Placement) -> None:
        colour = pick(rng, ((0.9, 0.9, 0.9), (0.7, 0.7, 0.72), (0.2, 0.2, 0.2)))
        body = b.material(colour, scale(colour, 0.5), pattern="stripes", tile=(1.0, height * 1.6),
                          offset=(0, 0.36), specular=0.5, shininess=60.0)
        at.box(b, (0, height / 2, 0), (width, height, depth), material=body, cls="appliance", instance=b.new_instance())

    return width, depth, build


def boxes_item(room: Room) -> Item:
    rng = room.rng
    size = rng.uniform(0.3, 0.6)

    def build(b: SceneBuilder, at: Placement) -> None:
        y = 0.0
        for _ in range(int(rng.integers(1, 4))):
            s = size * rng.uniform(0.6, 1.0)
            h = s * rng.uniform(0.5, 1.0)
            colour = jitter(rng, pick(rng, ((0.6, 0.46, 0.3), (0.55, 0.42, 0.28), (0.8, 0.8, 0.78), (0.3, 0.35, 0.5))))
            card = b.material(colour, scale(colour, 0.82), pattern=pick(rng, ("fine_noise", "stripes")), tile=s,
                              offset=(0.0, 0.45), grime=0.2)
            Placement(at.x + rng.normal(0, 0.04), at.z + rng.normal(0, 0.04), at.yaw + rng.normal(0, 0.2),
                      ground=y).box(b, (0, h / 2, 0), (s, h, s * rng.uniform(0.7, 1.0)), material=card, cls="box",
                                    instance=b.new_instance())
            y += h

    return size + 0.1, size + 0.1, build


def ball_item(room: Room) -> Item:
    rng = room.rng
    radius = rng.uniform(0.08, 0.2)

    def build(b: SceneBuilder, at: Placement) -> None:
        material = b.material(hsv(rng.random(), 0.7, 0.7), (0.9, 0.9, 0.9), pattern=pick(rng, ("flat", "stripes", "checker")),
                              tile=radius * 2, specular=0.4, shininess=40.0)
        b.sphere(at.at(0, radius, 0), radius, rotation=at.rotation, material=material, cls="decor",
                 instance=b.new_instance())

    return 2 * radius, 2 * radius, build


def pouf_item(room: Room) -> Item:
    rng = room.rng
    radius = rng.uniform(0.2, 0.3)

    def build(b: SceneBuilder, at: Placement) -> None:
        height = rng.uniform(0.35, 0.45)
        at.cylinder(b, (0, height / 2, 0), radius, height, material=fabric_material(b, rng), cls="chair",
                    instance=b.new_instance())

    return 2 * radius, 2 * radius, build


ROOM_TYPES: dict[str, tuple[dict[str, float], dict[str, float]]] = {
    # room type: (items against walls, items in the open) with relative weights
    "living": ({"sofa": 3, "shelf": 2, "cabinet": 2, "lamp": 1, "plant": 1, "armchair": 1},
               {"coffee_table": 3, "armchair": 1, "pouf": 1, "plant": 0.5, "ball": 0.3}),
    "bedroom": ({"bed": 4, "cabinet": 2, "wardrobe": 2, "shelf": 1, "desk": 1, "lamp": 1},
                {"boxes": 1, "chair": 1, "pouf": 0.5}),
    "office": ({"desk": 4, "shelf": 3, "cabinet": 2, "plant": 1},
               {"table": 2, "chair": 1, "boxes": 1}),
    "kitchen": ({"counter": 4, "fridge": 2, "cabinet": 1, "shelf": 0.5},
                {"table": 3, "chair": 1}),
    "dining": ({"cabinet": 2, "shelf": 2, "plant": 1, "lamp": 1},
               {"table": 4, "plant": 0.5}),
    "storage": ({"shelf": 3, "cabinet": 2, "boxes": 2, "wardrobe": 1},
                {"boxes": 3, "ball": 0.5, "chair": 0.5}),
}

ITEMS: dict[str, Callable[[Room], Item]] = {
    "sofa": sofa_item,
    "shelf": shelf_item,
    "cabinet": cabinet_item,
    "wardrobe": lambda room: cabinet_item(room, tall=True),
    "lamp": lamp_item,
    "plant": plant_item,
    "armchair": armchair_item,
    "bed": bed_item,
    "desk": desk_item,
    "counter": counter_item,
    "fridge": fridge_item,
    "boxes": boxes_item,
    "ball": ball_item,
    "pouf": pouf_item,
    "chair": chair_item,
    "table": table_item,
    "coffee_table": lambda room: table_item(room, with_chairs=False, coffee=True),
}


def _weighted(rng: np.random.Generator, weights: dict[str, float]) -> str:
    """A key of ``weights`` drawn with probability proportional to its weight."""
    target = rng.random() * sum(weights.values())
    for name, weight in weights.items():
        target -= weight
        if target < 0:
            return name
    return name


# -- walls ---------------------------------------------------------------------------------------


def _wall_frame(room: Room, wall: str, along: float, out: float) -> tuple[float, float, float]:
    """Floor position ``out`` metres in from ``wall`` at ``along`` on it, and the yaw facing the room."""
    half_w, half_d = room.width / 2, room.depth / 2
    if wall == "far":
        return along, half_d - out, math.pi
    if wall == "right":
        return half_w - out, along, -math.pi / 2
    if wall == "left":
        return -half_w + out, along, math.pi / 2
    return along, -half_d + out, 0.0


def _wall_length(room: Room, wall: str) -> float:
    return room.width if wall in ("far", "back") else room.depth


def _place_against_wall(room: Room, item: Item, walls: tuple[str, ...]) -> bool:
    width, depth, build = item
    rng = room.rng
    for _ in range(8):
        wall = pick(rng, walls)
        length = _wall_length(room, wall)
        if width > length - 0.1:
            continue
        along = rng.uniform(-(length - width) / 2, (length - width) / 2)
        x, z, yaw = _wall_frame(room, wall, along, depth / 2 + 0.02)
        rect = footprint(x, z, width, depth, yaw)
        if not overlaps(rect, room.rects):
            room.rects.append(rect)
            build(room.b, Placement(x, z, yaw + rng.normal(0, 0.015)))
            return True
    return False


def _place_in_open(room: Room, item: Item) -> bool:
    width, depth, build = item
    rng = room.rng
    for _ in range(8):
        yaw = pick(rng, (0.0, math.pi / 2, math.pi, -math.pi / 2)) + rng.normal(0, 0.12)
        x = rng.uniform(-room.width / 2 + 0.3, room.width / 2 - 0.3)
        z = rng.uniform(-room.depth / 2 + 0.3, room.depth / 2 - 0.3)
        rect = footprint(x, z, width, depth, yaw, margin=0.05)
        inside = rect[0] > -room.width / 2 and rect[1] < room.width / 2 and rect[2] > -room.depth / 2 and rect[3] < room.depth / 2
        if inside and not overlaps(rect, room.rects):
            room.rects.append(rect)
            build(room.b, Placement(x, z, yaw))
            return True
    return False


def _wall_panel(room: Room, wall: str, along: float, bottom: float, width: float, height: float,
                thickness: float, material, cls: str, instance: int) -> None:
    x, z, yaw = _wall_frame(room, wall, along, thickness / 2)
    room.b.box((x, bottom + height / 2, z), (width, height, thickness), yaw=yaw, material=material, cls=cls,
               instance=instance)


def _decorate_walls(room: Room, window_light: list) -> None:
    """Windows, a door, pictures and skirting boards; windows also set the daylight fill direction."""
    rng, b = room.rng, room.b
    used: dict[str, list[tuple[float, float]]] = {w: [] for w in ("far", "left", "right", "back")}

    def free_spot(wall: str, width: float) -> float | None:
        length = _wall_length(room, wall)
        for _ in range(6):
            if width > length - 0.4:
                return None
            along = rng.uniform(-(length - width) / 2 + 0.1, (length - width) / 2 - 0.1)
            if all(along + width / 2 < a or along - width / 2 > c for a, c in used[wall]):
                used[wall].append((along - width / 2 - 0.1, along + width / 2 + 0.1))
                return along
        return None

    frame_colour = pick(rng, ((0.9, 0.9, 0.9), (0.35, 0.25, 0.18), (0.15, 0.15, 0.15)))
    frame = b.material(frame_colour, specular=0.2)
    for _ in range(int(rng.integers(0, 3))):
        wall = pick(rng, ("far", "left", "right"))
        width, height, sill = rng.uniform(0.8, 1.8), rng.uniform(1.0, 1.5), rng.uniform(0.75, 1.0)
        along = free_spot(wall, width)
        if along is None:
            continue
        sky = hsv(rng.uniform(0.55, 0.62), rng.uniform(0.05, 0.3), 1.0)
        glass = b.material(scale(sky, 0.25), scale(frame_colour, 0.6), pattern="grid",
                           tile=(width * 2, height * 2), offset=(0.5, 0.5), emission=scale(sky, rng.uniform(1.0, 1.8)))
        _wall_panel(room, wall, along, sill, width, height, 0.03, {"default": frame, "+z": glass}, "window",
                    b.new_instance())
        x, z, _ = _wall_frame(room, wall, along, 0.0)
        window_light.append((x, z))
    if rng.random() < 0.6:
        wall = pick(rng, ("far", "left", "right"))
        along = free_spot(wall, 0.9)
        if along is not None:
            wood = wood_material(b, rng, tile=1.5)
            door_colour = jitter(rng, pick(rng, PAINTS))
            door = b.material(scale(door_colour, 0.8), door_colour, pattern="tiles", tile=(1.8, 4.1), offset=(0.5, 0.5))
            _wall_panel(room, wall, along, 0.0, 0.9, 2.05, 0.04,
                        {"default": wood, "+z": door if rng.random() < 0.5 else wood}, "door", b.new_instance())
            x, z, yaw = _wall_frame(room, wall, along, 0.45)
            room.rects.append(footprint(x, z, 0.9, 0.9, yaw))
    for _ in range(int(rng.integers(0, 4))):
        wall = pick(rng, ("far", "left", "right"))
        width, height = rng.uniform(0.3, 1.1), rng.uniform(0.3, 0.8)
        along = free_spot(wall, width)
        if along is None:
            continue
        art = b.material(hsv(rng.random(), rng.uniform(0.2, 0.8), rng.uniform(0.3, 0.9)),
                         hsv(rng.random(), rng.uniform(0.2, 0.8), rng.uniform(0.3, 0.9)),
                         hsv(rng.random(), 0.6, 0.7),
                         pattern=pick(rng, ("marble", "waves", "noise", "foliage", "stripes", "dots")),
                         tile=(width * rng.uniform(0.5, 2.0), height * rng.uniform(0.5, 2.0)),
                         offset=(rng.random(), rng.random()), variation=0.5)
        _wall_panel(room, wall, along, rng.uniform(1.2, 1.7), width, height, 0.025, {"default": frame, "+z": art},
                    "picture", b.new_instance())
    skirting = pick(rng, (room.white, room.wood))
    for wall in ("far", "left", "right", "back"):
        _wall_panel(room, wall, 0.0, 0.0, _wall_length(room, wall), 0.08, 0.015, skirting, "wall", 0)


def sample_indoor(rng: np.random.Generator, size: tuple[int, int]) -> SceneBuilder:
    """One random room (see the module docstring)."""
    height_px, width_px = size
    b = SceneBuilder(max_depth=MAX_DEPTH)
    width, depth, height = rng.uniform(3.0, 6.5), rng.uniform(3.5, 7.5), rng.uniform(2.4, 3.1)
    room = Room(b, rng, width, depth, height)

    wall_paint = paint_material(b, rng)
    if rng.random() < 0.25:
        paper = jitter(rng, pick(rng, PAINTS))
        wall_paint = b.material(paper, scale(paper, rng.uniform(0.8, 0.92)), pattern=pick(rng, ("stripes", "dots", "waves", "zigzag")),
                                tile=rng.uniform(0.15, 0.5), grime=0.15, grime_tile=2.0)
    elif rng.random() < 0.08:
        brick = jitter(rng, (0.55, 0.3, 0.22))
        wall_paint = b.material((0.7, 0.68, 0.64), brick, scale(brick, 0.7), pattern="brick", tile=(0.5, 0.3),
                                variation=0.5, grime=0.2)
    floor_kind = pick(rng, ("planks", "planks", "tiles", "carpet", "marble"))
    if floor_kind == "planks":
        wood = jitter(rng, pick(rng, WOODS))
        floor = b.material(scale(wood, 0.3), wood, scale(wood, 0.75), pattern="planks", tile=(2.4, rng.uniform(0.6, 0.9)),
                           variation=0.5, grime=0.2, grime_tile=3.0, specular=0.15, shininess=30.0,
                           angle=pick(rng, (0.0, math.pi / 2)))
    elif floor_kind == "tiles":
        stone = jitter(rng, pick(rng, PAINTS + ((0.5, 0.45, 0.4), (0.3, 0.3, 0.32))))
        floor = b.material(scale(stone, 0.55), stone, scale(stone, 0.85), pattern="tiles", tile=rng.uniform(0.6, 1.2),
                           variation=0.4, grime=0.15, specular=0.3, shininess=50.0)
    elif floor_kind == "carpet":
        carpet = jitter(rng, pick(rng, FABRICS))
        floor = b.material(carpet, scale(carpet, 0.8), pattern="fine_noise", tile=0.5, grime=0.3, grime_tile=2.0)
    else:
        stone = jitter(rng, (0.8, 0.78, 0.74))
        floor = b.material(scale(stone, 0.6), stone, pattern="marble", tile=1.5, specular=0.4, shininess=60.0)
    ceiling_colour = jitter(rng, (0.9, 0.9, 0.88), 0.03)
    ceiling = b.material(ceiling_colour, scale(ceiling_colour, 0.8),
                         pattern=pick(rng, ("flat", "flat", "grid")), tile=2.4, grime=0.1, grime_tile=3.0)
    b.box((0.0, height / 2, 0.0), (width, height, depth),
          material={"walls": wall_paint, "floor": floor, "ceiling": ceiling},
          cls={"walls": "wall", "floor": "floor", "ceiling": "ceiling"}, casts_shadow=False)

    # Camera near the back wall, looking into the room.
    cam_x = rng.uniform(-width / 2 + 0.6, width / 2 - 0.6)
    cam_z = -depth / 2 + rng.uniform(0.4, min(1.6, depth / 2 - 0.5))
    cam_y = rng.uniform(1.0, 1.7)
    aim = math.atan2(rng.uniform(-width / 3, width / 3) - cam_x, depth / 2 - cam_z)
    yaw = aim + rng.normal(0, 0.15)
    pitch = float(np.clip(rng.normal(0.17, 0.12), -0.1, 0.5))
    roll = rng.normal(0, 0.03)
    fx = width_px * NYU_FOCAL_RATIO * rng.uniform(0.92, 1.08)
    b.set_camera((cam_x, cam_y, cam_z), yaw, pitch, roll, fx, fx * 1.001,
                 (width_px - 1) / 2 + rng.normal(0, 0.01) * width_px, (height_px - 1) / 2 + rng.normal(0, 0.01) * height_px)
    room.rects.append((cam_x - 0.7, cam_x + 0.7, cam_z - 0.7, cam_z + 0.7))

    # Room shape: an L-shaped corner block, a pillar or a ceiling beam.
    if rng.random() < 0.3:
        block_w = rng.uniform(0.8, width / 2.5)
        block_d = rng.uniform(0.8, max(0.9, depth / 2 - 0.8))
        side = pick(rng, (-1, 1))
        x, z = side * (width / 2 - block_w / 2), depth / 2 - block_d / 2
        b.box((x, height / 2, z), (block_w, height, block_d), material=wall_paint, cls="wall")
        room.rects.append((x - block_w / 2, x + block_w / 2, z - block_d / 2, z + block_d / 2))
    if rng.random() < 0.2:
        x, z, s = rng.uniform(-width / 3, width / 3), rng.uniform(0.0, depth / 3), rng.uniform(0.25, 0.5)
        rect = (x - s / 2, x + s / 2, z - s / 2, z + s / 2)
        if not overlaps(rect, room.rects):
            b.box((x, height / 2, z), (s, height, s), material=wall_paint, cls="wall")
            room.rects.append(rect)
    if rng.random() < 0.25:
        beam_h = rng.uniform(0.2, 0.4)
        b.box((0.0, height - beam_h / 2, rng.uniform(-depth / 4, depth / 3)), (width, beam_h, rng.uniform(0.2, 0.35)),
              material=ceiling, cls="ceiling")

    window_light: list[tuple[float, float]] = []
    _decorate_walls(room, window_light)

    kind = pick(rng, tuple(ROOM_TYPES))
    against, open_items = ROOM_TYPES[kind]
    for _ in range(int(rng.integers(5, 10))):
        _place_against_wall(room, ITEMS[_weighted(rng, against)](room), ("far", "left", "right"))
    for _ in range(int(rng.integers(2, 5))):
        _place_in_open(room, ITEMS[_weighted(rng, open_items)](room))
    for _ in range(int(rng.integers(0, 4))):
        _place_in_open(room, ITEMS[pick(rng, ("boxes", "ball", "plant", "pouf", "chair"))](room))
    if rng.random() < 0.5:
        rug_colour = jitter(rng, pick(rng, FABRICS))
        rug = b.material(rug_colour, scale(rug_colour, rng.uniform(0.5, 0.85)), hsv(rng.random(), 0.5, 0.6),
                         pattern=pick(rng, ("stripes", "checker", "zigzag", "noise", "tiles")), tile=rng.uniform(0.3, 1.0),
                         variation=0.3)
        b.box((rng.uniform(-width / 4, width / 4), 0.005, rng.uniform(-depth / 5, depth / 4)),
              (rng.uniform(1.2, 2.4), 0.01, rng.uniform(0.9, 2.0)), yaw=rng.normal(0, 0.05), material=rug, cls="rug",
              instance=b.new_instance(), casts_shadow=False)

    # Lighting: a pendant or ceiling lamp (key light with shadows), daylight fill from a window.
    light_x, light_z = rng.uniform(-width / 4, width / 4), rng.uniform(-depth / 6, depth / 3)
    drop = rng.uniform(0.1, 0.7)
    warm = hsv(rng.uniform(0.07, 0.14), rng.uniform(0.05, 0.35), 1.0)
    lamp = b.new_instance()
    shade_r = rng.uniform(0.12, 0.3)
    b.cylinder((light_x, height - drop / 2, light_z), 0.006, drop, material=room.dark, cls="lamp", instance=lamp,
               casts_shadow=False)
    b.cylinder((light_x, height - drop, light_z), shade_r, 0.12, material=b.material(warm, emission=scale(warm, 1.5)),
               cls="lamp", instance=lamp, casts_shadow=False)
    floor_colour = b.material_colour(floor)
    power = rng.uniform(3.0, 6.0)
    if window_light:
        wx, wz = window_light[0]
        fill_direction = (wx - light_x, 0.4, wz - light_z)
        fill = scale(hsv(0.58, 0.15, 1.0), rng.uniform(0.2, 0.45))
    else:
        fill_direction = (rng.normal(), 1.0, rng.normal())
        fill = scale(warm, rng.uniform(0.1, 0.25))
    b.lighting = Lighting(
        kind="point",
        position=(light_x, height - drop - 0.12, light_z),
        colour=scale(warm, power),
        falloff=rng.uniform(2.5, 4.0),
        fill_direction=fill_direction,
        fill_colour=fill,
        ambient_sky=scale(warm, rng.uniform(0.15, 0.3)),
        ambient_ground=tuple(float(0.06 + 0.2 * c) for c in floor_colour),
    )
    b.sensor = Sensor(
        exposure=rng.uniform(0.36, 0.5),
        white_balance=jitter(rng, (1.0, 1.0, 1.0), 0.05),
        vignetting=rng.uniform(0.05, 0.35),
        noise=rng.uniform(0.003, 0.015),
        gamma=rng.uniform(2.0, 2.4),
    )
    return b
