"""Sensor ground truth (LiDAR, Kinect) against constructed scenes and the exact depth."""

from __future__ import annotations

import math

import pytest
import torch

from depthkd.errors import ConfigError
from depthkd.sim import render_batch, render_scenes
from depthkd.sim.kinect import KinectModel, fill_holes
from depthkd.sim.lidar import LidarModel, hdl64e_elevations, project, scan
from depthkd.sim.scene import Lighting, SceneBuilder, stack_scenes

STREET = (128, 416)
CAMERA_HEIGHT = 1.65
WALL_Z = 20.0
BOX_CENTRE, BOX_HALF = (0.0, 0.6, 8.0), (1.0, 0.6, 0.5)  # a car-sized box in front of the wall


def street(box_z: float = BOX_CENTRE[2], wall_z: float = WALL_Z) -> SceneBuilder:
    """Ground plane, a wall 20 m ahead and a box at 8 m, camera 1.65 m up looking along +z."""
    b = SceneBuilder(max_depth=80.0)
    b.material((0.6, 0.6, 0.6))
    height, width = STREET
    focal = 1.92 * height
    b.set_camera((0.0, CAMERA_HEIGHT, 0.0), 0.0, 0.0, 0.0, focal, focal, (width - 1) / 2, 0.47 * (height - 1))
    b.lighting = Lighting(kind="point", position=(0.0, 10.0, 0.0), colour=(2.0, 2.0, 2.0))
    b.plane((0.0, 0.0, 0.0), material=0, cls="road")
    b.box((0.0, 0.0, wall_z + 0.5), (400.0, 400.0, 1.0), material=0, cls="wall")
    centre = (BOX_CENTRE[0], BOX_CENTRE[1], box_z)
    b.box(centre, tuple(2 * h for h in BOX_HALF), material=0, cls="car", instance=b.new_instance())
    return b


def street_scan(model: LidarModel | None = None):
    batch = stack_scenes([street().build()])
    model = model or LidarModel()
    return batch, model, scan(model, batch, 0, STREET)


def box_distance(points: torch.Tensor) -> torch.Tensor:
    """Distance of points to the box's surface (the box's signed-distance function, absolute)."""
    q = (points - torch.tensor(BOX_CENTRE)).abs() - torch.tensor(BOX_HALF)
    outside = q.clamp_min(0).norm(dim=1)
    inside = q.amax(1).clamp_max(0)
    return (outside + inside).abs()


def test_lidar_points_lie_on_the_true_surfaces_within_the_noise():
    _, model, result = street_scan()
    points = result.points
    assert points.shape[0] > 1000
    distance = torch.stack([points[:, 1].abs(), (points[:, 2] - WALL_Z).abs(), box_distance(points)]).amin(0)
    assert float(distance.max()) < 5 * model.range_noise
    exact = scan(LidarModel(range_noise=0.0), stack_scenes([street().build()]), 0, STREET).points
    distance = torch.stack([exact[:, 1].abs(), (exact[:, 2] - WALL_Z).abs(), box_distance(exact)]).amin(0)
    assert float(distance.max()) < 1e-3


def segment_enters_box(origin: torch.Tensor, points: torch.Tensor, shrink: float = 0.02) -> torch.Tensor:
    """Whether the segment origin -> point passes through the (slightly shrunk) box."""
    centre, half = torch.tensor(BOX_CENTRE), torch.tensor(BOX_HALF) - shrink
    direction = points - origin
    t0 = ((centre - half) - origin) / direction
    t1 = ((centre + half) - origin) / direction
    near = torch.minimum(t0, t1).amax(1)
    far = torch.maximum(t0, t1).amin(1)
    return (near <= far) & (far > 0) & (near < 1)


def test_lidar_never_returns_where_the_scanners_ray_is_blocked():
    _, _, result = street_scan()
    behind = result.points[box_distance(result.points) > 0.1]  # wall and ground points
    assert behind.shape[0] > 1000
    assert not bool(segment_enters_box(result.origin, behind).any())
    # The box does hide part of the wall and road: without it the scanner finds points there.
    empty = SceneBuilder(max_depth=80.0)
    empty.material((0.6, 0.6, 0.6))
    reference = street()
    empty.camera, empty.lighting = reference.camera, reference.lighting
    empty.plane((0.0, 0.0, 0.0), material=0, cls="road")
    empty.box((0.0, 0.0, WALL_Z + 0.5), (400.0, 400.0, 1.0), material=0, cls="wall")
    open_scan = scan(LidarModel(), stack_scenes([empty.build()]), 0, STREET)
    assert int(segment_enters_box(open_scan.origin, open_scan.points).sum()) > 50


def test_lidar_returns_only_inside_the_beams_vertical_field():
    _, model, result = street_scan()
    relative = result.points - result.origin
    elevation = torch.rad2deg(torch.atan2(relative[:, 1], relative[:, [0, 2]].norm(dim=1)))
    beams = torch.tensor(hdl64e_elevations())
    assert float(elevation.max()) <= 2.0 + 1e-3
    assert float(elevation.min()) >= -24.9 - 1e-3
    # every point comes from one of the 64 beams, and the top beam does hit the (tall) wall
    assert float((elevation[:, None] - beams[None, :]).abs().amin(1).max()) < 1e-3
    assert float(elevation.max()) > 2.0 - 1e-3


@pytest.mark.parametrize("native_rows", [None, 375])
def test_lidar_parallax_puts_background_points_on_the_foreground(native_rows):
    """The scanner sits 6 cm right of, 8 cm above and 27 cm behind the camera, so it sees background
    just above and right of a box where the camera sees the box: those points project onto the box,
    inside its outline (not merely mixed pixels on its border, which a scanner at the camera gives too)."""
    size = (256, 832)
    scene = street(box_z=4.0, wall_z=40.0).build()
    scene.camera.fx = scene.camera.fy = 1.92 * size[0]
    scene.camera.cx, scene.camera.cy = (size[1] - 1) / 2, 0.47 * (size[0] - 1)
    exact = render_scenes([scene], size)["depth"][0, 0]
    on_box = exact < 4.6
    inside = -torch.nn.functional.max_pool2d(-on_box.float()[None, None], 5, 1, 2)[0, 0] > 0  # 2 px in
    top, right = int(on_box.any(1).nonzero().min()), int(on_box.any(0).nonzero().max())
    found = {}
    for name, offset in (("kitti", LidarModel().offset), ("at camera", (0.0, 0.0, 0.0))):
        model = LidarModel(offset=offset, native_rows=native_rows, range_noise=0.0, dropout=0.0)
        lidar = render_scenes([scene], size, gt="lidar", sensor=model)["depth"][0, 0]
        found[name] = (lidar > exact + 1.0) & inside  # background measured where the camera sees the box
    assert int(found["at camera"].sum()) == 0
    rows, cols = found["kitti"].nonzero().unbind(1)
    assert rows.numel() >= 5
    assert bool(((rows <= top + 25) | (cols >= right - 40)).all())  # along the top and right edges


def test_lidar_density_at_street_sizes_is_a_few_percent():
    for size in (STREET, (375, 1242)):
        out = render_batch("outdoor", 2, size, seed=5, gt="lidar")
        density = float((out["depth"] > 0).float().mean())
        assert 0.01 < density < 0.08, (size, density)
        valid = (out["depth"] > 0) & (out["dense_depth"] > 0)
        assert float((out["depth"] - out["dense_depth"]).abs()[valid].median()) < 0.05


def test_annotated_lidar_is_denser_and_agrees_with_the_exact_depth():
    raw = render_batch("outdoor", 2, STREET, seed=5, gt="lidar")
    annotated = render_batch("outdoor", 2, STREET, seed=5, gt="lidar_annotated")
    assert torch.equal(raw["image"], annotated["image"])
    density = {name: float((out["depth"] > 0).float().mean()) for name, out in (("raw", raw), ("annotated", annotated))}
    assert density["annotated"] > 2.5 * density["raw"]
    measured = annotated["depth"] > 0
    exact = annotated["dense_depth"]
    assert bool((exact[measured] > 0).all())
    assert bool(((annotated["depth"] - exact).abs()[measured] <= 0.05 * exact[measured] + 1e-5).all())
    raw_error = (raw["depth"] - raw["dense_depth"]).abs()[(raw["depth"] > 0) & (raw["dense_depth"] > 0)]
    assert float(raw_error.max()) > 1.0  # one raw sweep does see through edges; the check removes that


def test_project_keeps_the_nearest_point_per_pixel():
    batch = stack_scenes([street().build()])
    fx, fy, cx, cy = (float(v) for v in batch.intrinsics[0])
    camera = torch.tensor([[0.0, CAMERA_HEIGHT, 5.0], [0.0, CAMERA_HEIGHT, 9.0]])  # same pixel, two depths
    depth = project(camera, batch, 0, STREET)
    assert float(depth.max()) == pytest.approx(5.0)
    assert int((depth > 0).sum()) == 1


def room(colour=(0.6, 0.6, 0.6), wall_z: float = 3.0, box: bool = True) -> SceneBuilder:
    """A wall ``wall_z`` ahead and a small box at 1.5 m, camera at the origin (focal 200 px)."""
    b = SceneBuilder(max_depth=10.0)
    b.material(colour)
    b.set_camera((0.0, 0.0, 0.0), 0.0, 0.0, 0.0, 200.0, 200.0, 69.5, 49.5)
    b.lighting = Lighting(kind="point", position=(0.0, 1.0, 0.0), colour=(2.0, 2.0, 2.0))
    b.box((0.0, 0.0, wall_z + 0.5), (40.0, 40.0, 1.0), material=0, cls="wall")
    if box:
        b.box((0.0, 0.0, 1.5), (0.4, 0.4, 0.2), material=0, cls="box", instance=b.new_instance())
    return b


ROOM = (100, 140)


def kinect(scene: SceneBuilder, **model) -> dict[str, torch.Tensor]:
    return render_scenes([scene.build()], ROOM, gt="kinect", sensor=KinectModel(**model))


@pytest.mark.parametrize("baseline", [0.075, -0.075])
def test_kinect_holes_open_beside_depth_edges_away_from_the_projector(baseline):
    out = kinect(room(), baseline=baseline)
    exact, measured = out["dense_depth"][0, 0], out["depth"][0, 0]
    row = ROOM[0] // 2
    on_box = (exact[row] < 2.0).nonzero().squeeze(1)
    left, right = int(on_box.min()), int(on_box.max())
    holes = (measured[row] == 0) & (exact[row] > 0)
    shadow_width = 200.0 * abs(baseline) * (1 / 1.4 - 1 / 3.0)  # f b (1/z_front - 1/z_back), ~5.7 px
    left_holes, right_holes = int(holes[left - 8 : left].sum()), int(holes[right + 1 : right + 9].sum())
    away, towards = (left_holes, right_holes) if baseline > 0 else (right_holes, left_holes)
    assert away >= math.floor(shadow_width) - 1
    assert towards == 0
    # the holes are projector shadows: the same wall is measured without the box
    clear = kinect(room(box=False), baseline=baseline)["depth"][0, 0]
    assert bool((clear[row, left - 8 : right + 9] > 0).all())


def test_kinect_range_limits():
    assert int((kinect(room(wall_z=6.0, box=False))["depth"] > 0).sum()) == 0
    assert int((kinect(room(wall_z=0.3, box=False))["depth"] > 0).sum()) == 0
    half = float((kinect(room(wall_z=4.5, box=False))["depth"] > 0).float().mean())
    assert 0.2 < half < 0.8  # returns fade out between 4 and 5 m
    assert float((kinect(room(wall_z=2.0, box=False))["depth"] > 0).float().mean()) == 1.0


def test_kinect_loses_very_dark_surfaces():
    assert int((kinect(room(colour=(0.01, 0.01, 0.01), box=False))["depth"] > 0).sum()) == 0


def test_kinect_error_grows_with_the_square_of_depth():
    errors = {}
    for z in (1.0, 3.5):
        out = kinect(room(wall_z=z, box=False))
        errors[z] = float((out["depth"] - out["dense_depth"]).abs().median())
    assert errors[1.0] < 0.006
    assert errors[3.5] > 5 * errors[1.0]
    step = 3.5**2 / (580.0 * 0.075) / 8  # one disparity step at 3.5 m, ~3.5 cm
    assert errors[3.5] < 2 * step


@pytest.mark.parametrize("domain,gt", [("outdoor", "lidar"), ("indoor", "kinect"), ("indoor", "kinect_filled")])
def test_sensor_changes_only_depth_and_is_deterministic(domain, gt):
    dense = render_batch(domain, 2, (48, 96), seed=3)
    first = render_batch(domain, 2, (48, 96), seed=3, gt=gt)
    again = render_batch(domain, 2, (48, 96), seed=3, gt=gt)
    for key in ("image", "instances", "classes", "intrinsics"):
        assert torch.equal(first[key], dense[key]), key
    assert torch.equal(first["dense_depth"], dense["depth"])
    assert torch.equal(first["depth"], again["depth"])
    assert not torch.equal(first["depth"], dense["depth"])
    measured = first["depth"] > 0
    assert bool(measured.any())
    if gt == "kinect_filled":
        assert bool((measured == (dense["depth"] > 0)).all())  # every pixel with a surface has a value


def test_fill_holes_respects_colour_edges_and_keeps_measurements():
    depth = torch.ones(1, 1, 40, 40)
    depth[..., 20:] = 3.0
    image = torch.zeros(1, 3, 40, 40)
    image[..., 20:] = 1.0
    holed = depth.clone()
    holed[..., 10:30, 12:28] = 0.0  # a hole across the depth (and colour) edge
    filled = fill_holes(holed, image)
    assert bool((filled > 0).all())
    assert torch.equal(filled[holed > 0], holed[holed > 0])
    assert float((filled - depth).abs()[..., 10:30, 12:28].max()) < 0.2


def test_bad_ground_truth_choices_are_clear_errors():
    with pytest.raises(ConfigError, match="gt='lidar' does not fit the indoor domain; indoor takes gt=dense, kinect"):
        render_batch("indoor", 1, (16, 20), gt="lidar")
    with pytest.raises(ConfigError, match="unknown ground truth gt='sonar'; expected one of dense, lidar"):
        render_batch("outdoor", 1, (16, 20), gt="sonar")
    with pytest.raises(ConfigError, match="do not fit gt='lidar'"):
        render_scenes([room().build()], (16, 20), gt="lidar", sensor=KinectModel())


@pytest.mark.parametrize("domain,gt,size", [("outdoor", "lidar", (48, 160)), ("indoor", "kinect", (48, 64))])
def test_sensor_depth_does_not_depend_on_which_scenes_share_the_batch(domain, gt, size):
    from depthkd.sim import sample_scene

    scenes = [sample_scene(domain, 9, i, size) for i in range(3)]
    together = render_scenes(scenes, size, gt=gt)["depth"]
    alone = torch.cat([render_scenes([scene], size, gt=gt)["depth"] for scene in scenes])
    assert torch.equal(together, alone)
