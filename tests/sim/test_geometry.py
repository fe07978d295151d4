"""Rendered depth and ids against closed-form geometry."""

from __future__ import annotations

import math

import pytest
import torch
from sim_helpers import builder, wall

from depthkd.sim import render_scenes
from depthkd.sim.scene import rotation_matrix

SIZE = (33, 45)  # odd sizes: the central pixel looks exactly along the optical axis
CY, CX = 16, 22


def render(b, size=SIZE, **kw):
    return render_scenes([b.build()], size, **kw)


def test_fronto_parallel_wall_gives_constant_depth():
    b = builder(SIZE)
    wall(b, 3.0)
    out = render(b)
    assert torch.allclose(out["depth"], torch.full_like(out["depth"], 3.0), atol=1e-5)
    assert (out["instances"] == 0).all()
    assert (out["classes"] == 2).all()  # "wall"


def test_inclined_floor_matches_formula_per_row():
    height, pitch, focal = 1.5, 0.3, 20.0
    b = builder(SIZE, focal=focal, position=(0.0, height, 0.0), pitch=pitch)
    b.plane((0.0, 0.0, 0.0), material=0, cls="floor")
    depth = render(b)["depth"][0, 0]
    rows = torch.arange(SIZE[0], dtype=torch.float64)
    down = math.cos(pitch) * (rows - CY) / focal + math.sin(pitch)  # ray's downward slope
    expected = torch.where(down > 0, height / down, torch.zeros_like(down)).float()
    assert torch.allclose(depth, expected[:, None].expand_as(depth), rtol=1e-5, atol=1e-5)
    assert (depth[: CY - 10] == 0).all()  # above the horizon: nothing hit


def test_sphere_nearest_point_is_centre_distance_minus_radius():
    b = builder(SIZE)
    b.sphere((0.0, 0.0, 5.0), 1.0, material=0, instance=1)
    out = render(b)
    depth = out["depth"][0, 0]
    assert depth[CY, CX].item() == pytest.approx(4.0, abs=1e-5)
    visible = depth > 0
    assert depth[visible].min().item() == pytest.approx(4.0, abs=1e-5)
    assert ((out["instances"][0, 0] == 1) == visible).all()
    # Silhouette: pixel rays within the tangent cone asin(r / d) hit, those outside miss.
    ys, xs = torch.meshgrid(torch.arange(SIZE[0]), torch.arange(SIZE[1]), indexing="ij")
    angle = torch.atan(torch.sqrt(((xs - CX) / 20.0) ** 2 + ((ys - CY) / 20.0) ** 2))
    inside, outside = angle < math.asin(1 / 5) - 0.01, angle > math.asin(1 / 5) + 0.01
    assert visible[inside].all() and not visible[outside].any()


def test_box_in_front_hides_sphere_and_ids_agree_with_depth():
    b = builder(SIZE)
    wall(b, 10.0)
    b.sphere((0.0, 0.0, 6.0), 1.5, material=0, instance=b.new_instance())  # id 1
    b.box((0.0, 0.0, 3.0), (1.0, 1.0, 1.0), material=0, instance=b.new_instance())  # id 2, near face z = 2.5
    out = render(b)
    depth, ids = out["depth"][0, 0], out["instances"][0, 0]
    assert ids[CY, CX] == 2 and depth[CY, CX].item() == pytest.approx(2.5, abs=1e-5)
    assert torch.allclose(depth[ids == 2], torch.tensor(2.5), atol=1e-5)
    assert ((depth[ids == 1] >= 4.5 - 1e-4) & (depth[ids == 1] <= 6.0)).all()
    assert torch.allclose(depth[ids == 0], torch.tensor(10.0), atol=1e-4)
    assert (ids == 1).sum() > 0 and (ids == 2).sum() > 0  # the sphere peeks out around the box


def test_rotated_box_and_cylinders():
    b = builder(SIZE)
    b.box((0.0, 0.0, 4.0), (1.0, 1.0, 1.0), yaw=math.pi / 4, material=0, instance=1)
    assert render(b)["depth"][0, 0, CY, CX].item() == pytest.approx(4.0 - math.sqrt(0.5), abs=1e-5)

    b = builder(SIZE)
    b.cylinder((0.0, 0.0, 4.0), 0.5, 2.0, material=0, instance=1)  # vertical: side at z = 3.5
    assert render(b)["depth"][0, 0, CY, CX].item() == pytest.approx(3.5, abs=1e-5)

    b = builder(SIZE)
    b.cylinder((0.0, 0.0, 4.0), 0.5, 2.0, rotation=rotation_matrix(pitch=math.pi / 2), material=0,
               instance=1)  # axis along z: the cap faces the camera at z = 3
    out = render(b)
    assert out["depth"][0, 0, CY, CX].item() == pytest.approx(3.0, abs=1e-5)
    cap = out["depth"][0, 0][out["instances"][0, 0] == 1]
    assert torch.allclose(cap, torch.tensor(3.0), atol=1e-5)  # only the flat cap is visible


def test_camera_inside_room_sees_the_walls():
    b = builder(SIZE, focal=10.0)  # wide: the top and bottom rows reach the ceiling and the floor
    b.box((0.0, 0.0, 0.0), (4.0, 3.0, 6.0), material=0, cls={"walls": "wall", "floor": "floor", "ceiling": "ceiling"})
    out = render(b)
    assert out["depth"][0, 0, CY, CX].item() == pytest.approx(3.0, abs=1e-5)
    assert (out["depth"] > 0).all()
    classes = out["classes"][0, 0]
    assert classes[0, CX] == 3 and classes[-1, CX] == 1 and classes[CY, CX] == 2  # ceiling, floor, wall


def test_instances_are_exactly_the_nearest_hit():
    """Reference: render every object alone; the nearest of them must own each pixel."""
    objects = [
        ("sphere", ((0.3, 0.2, 5.0), 1.2)),
        ("box", ((-0.5, -0.3, 4.0), (1.0, 1.5, 1.0), 0.6)),
        ("cylinder", ((0.8, -0.4, 3.5), 0.4, 1.5)),
        ("sphere", ((-1.0, 0.8, 6.0), 1.0)),
    ]

    def add(b, index):
        kind, args = objects[index]
        if kind == "sphere":
            b.sphere(args[0], args[1], material=0, instance=index + 1)
        elif kind == "box":
            b.box(args[0], args[1], yaw=args[2], material=0, instance=index + 1)
        else:
            b.cylinder(args[0], args[1], args[2], material=0, instance=index + 1)

    full = builder(SIZE)
    for i in range(len(objects)):
        add(full, i)
    out = render(full)
    alone = []
    for i in range(len(objects)):
        b = builder(SIZE)
        add(b, i)
        depth = render(b)["depth"][0, 0]
        alone.append(torch.where(depth > 0, depth, torch.tensor(float("inf"))))
    alone = torch.stack(alone)
    nearest, owner = alone.min(0)
    hit = torch.isfinite(nearest)
    assert torch.equal(out["instances"][0, 0], torch.where(hit, owner + 1, 0))
    assert torch.allclose(out["depth"][0, 0], torch.where(hit, nearest, torch.tensor(0.0)), atol=1e-6)
    assert len(out["instances"].unique()) == len(objects) + 1


def test_tile_size_does_not_change_geometry():
    b = builder(SIZE)
    wall(b, 8.0)
    b.sphere((0.4, 0.1, 4.0), 1.0, material=0, instance=1)
    b.box((-0.6, 0.0, 3.0), (0.5, 2.0, 0.5), yaw=0.3, material=0, instance=2)
    scene = b.build()
    first = render_scenes([scene], SIZE, tile=4)
    second = render_scenes([scene], SIZE, tile=16)
    assert torch.equal(first["instances"], second["instances"])
    assert torch.allclose(first["depth"], second["depth"], atol=1e-6)


def test_shadow_darkens_the_floor_under_an_object():
    b = builder((48, 48), focal=30.0, position=(0.0, 2.0, 0.0), pitch=0.9)
    b.plane((0.0, 0.0, 0.0), material=0, cls="floor")
    b.lighting.position = (0.0, 4.0, 1.6)
    centre_z = 2.0 / math.tan(0.9)  # where the optical axis meets the floor
    b.box((0.0, 1.0, centre_z), (0.6, 0.05, 0.6), material=0, instance=1)  # a floating slab over the floor
    scene = b.build()
    lit = render_scenes([scene], (48, 48), shadows=False)["image"]
    shaded = render_scenes([scene], (48, 48), shadows=True)["image"]
    floor = render_scenes([scene], (48, 48))["instances"][0, 0] == 0
    # Auto exposure rescales the whole image, so compare each floor pixel's ratio to the typical one.
    ratio = (shaded / lit)[0, 0][floor]
    typical = ratio.median()
    shadow = ratio < 0.8 * typical
    assert shadow.sum() > 20  # the slab's shadow on the floor
    assert (ratio[~shadow] - typical).abs().max() < 0.05 * typical


def test_camera_near_a_sphere_and_inside_a_cylinder():
    # The camera is inside the sphere's bounding cube but outside the sphere: its near side is seen.
    b = builder(SIZE)
    b.sphere((0.0, -0.7, 0.7), 0.9, material=0, instance=1)
    b.cylinder((0.0, 0.0, 0.0), 2.0, 4.0, material=0, cls="wall")  # a round room around the camera
    out = render(b)
    ids, depth = out["instances"][0, 0], out["depth"][0, 0]
    # Optical axis: (t - 0.7)^2 + 0.7^2 = 0.9^2 -> t = 0.7 - sqrt(0.32).
    assert ids[CY, CX] == 1 and depth[CY, CX].item() == pytest.approx(0.7 - math.sqrt(0.32), abs=1e-5)
    assert ids[0, CX] == 0 and depth[0, CX].item() == pytest.approx(2.0, abs=1e-5)  # the cylinder wall


def test_culling_changes_nothing(monkeypatch):
    """Rendering with every (image, tile, primitive) pair, i.e. without culling, gives the same maps."""
    from depthkd.sim import render as render_module
    from depthkd.sim.domains import sample_scene

    scenes = [sample_scene(domain, 0, 0, (40, 56)) for domain in ("indoor", "outdoor", "ood_clutter")]
    culled = render_scenes(scenes, (40, 56))

    def every_pair(batch, grid, *args):
        valid = (batch.prim_kind >= 0)[:, None, :].expand(batch.batch_size, grid.num_tiles, -1)
        return valid.nonzero()

    def every_occluder(batch, centre, radius, active, light):
        casters = (batch.prim_shadow & (batch.prim_kind >= 0))[:, None, :] & active[..., None]
        return casters.nonzero()

    monkeypatch.setattr(render_module, "primary_pairs", every_pair)
    monkeypatch.setattr(render_module, "shadow_pairs", every_occluder)
    brute = render_scenes(scenes, (40, 56))
    assert torch.equal(culled["instances"], brute["instances"])
    assert torch.equal(culled["classes"], brute["classes"])
    assert torch.allclose(culled["depth"], brute["depth"], atol=1e-6)
    assert torch.allclose(culled["image"], brute["image"], atol=1e-5)
