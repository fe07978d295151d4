"""Ray-primitive intersections and surface attributes on hand-computed cases."""

from __future__ import annotations

import math

import torch

from depthkd.sim.primitives import (
    intersect_box,
    intersect_cylinder,
    intersect_plane,
    intersect_sphere,
    surface_box,
    surface_cylinder,
)

INF = float("inf")


def vec(*rows):
    """Components of a batch of 3-vectors given as rows."""
    t = torch.tensor(rows, dtype=torch.float32)
    return t[:, 0], t[:, 1], t[:, 2]


def params(*values, n=1):
    return tuple(torch.full((n,), float(v)) for v in values)


def test_box_entry_exit_and_miss():
    o = vec((0, 0, -5), (0, 0, -5), (0, 0, 0), (0, 3, -5))
    d = vec((0, 0, 1), (0, 0, 2), (0, 0, 1), (0, 0, 1))  # unnormalised second ray: t halves
    t = intersect_box(o, d, params(1, 1, 1, 0, n=4), 1e-4)
    assert t[0].item() == 4.0 and t[1].item() == 2.0
    assert t[2] == INF  # starts inside: no entry ahead (use inside=True for rooms)
    assert t[3] == INF
    behind = intersect_box(vec((0, 0, 5)), vec((0, 0, 1)), params(1, 1, 1, 0), 1e-4)
    assert behind[0] == INF
    inside = intersect_box(vec((0.5, 0, 0)), vec((1, 0, 0)), params(1, 1, 1, 0), 1e-4, inside=True)
    assert inside[0].item() == 0.5


def test_sphere_and_plane():
    t = intersect_sphere(vec((0, 0, -5), (0, 2, -5), (0, 0, 0)), vec((0, 0, 1), (0, 0, 1), (0, 0, 1)),
                         params(1.5, n=3), 1e-4)
    assert t[0].item() == 3.5 and t[1] == INF and t[2] == INF  # the third starts inside
    inside = intersect_sphere(vec((0, 0, 0)), vec((0, 0, 1)), params(1.5), 1e-4, inside=True)
    assert inside[0].item() == 1.5  # the far side
    tangent_miss = intersect_sphere(vec((0, 1.01, -5)), vec((0, 0, 1)), params(1.0), 1e-4)
    assert tangent_miss[0] == INF
    t = intersect_plane(vec((0, 2, 0), (0, 2, 0)), vec((0, -1, 1), (0, 1, 1)), params(0), 1e-4)
    assert t[0].item() == 2.0 and t[1] == INF


def test_cylinder_side_cap_and_miss():
    # Radius 1, half-height 2, axis y.
    o = vec((0, 0, -5), (0, 5, 0), (0, 3, -5), (0, 0, 0))
    d = vec((0, 0, 1), (0, -1, 0), (0, 0, 1), (1, 0, 0))
    t = intersect_cylinder(o, d, params(1, 2, n=4), 1e-4)
    assert t[0].item() == 4.0  # side
    assert t[1].item() == 3.0  # top cap at y = 2
    assert t[2] == INF  # passes above
    assert t[3] == INF  # starts inside: no entry in front (outside variant)
    inside = intersect_cylinder(vec((0, 0, 0)), vec((1, 0, 0)), params(1, 2), 1e-4, inside=True)
    assert inside[0].item() == 1.0
    diagonal = intersect_cylinder(vec((-5, 2.5, 0)), vec((1, -0.5, 0)), params(1, 2), 1e-4)
    # Enters the slab y <= 2 at x = -4, the side at x = -1: the later of the two entries.
    assert math.isclose(diagonal[0].item(), 4.0, rel_tol=1e-6)


def test_box_surface_faces_normals_and_uv():
    p = vec((1.0, 0.2, -0.3), (0.1, -0.5, 0.2), (0.3, 0.1, 2.0))
    normal, face, uv = surface_box(p, params(1.0, 0.5, 2.0, 0, n=3))
    assert torch.equal(torch.stack(normal, 1), torch.tensor([[1.0, 0, 0], [0, -1.0, 0], [0, 0, 1.0]]))
    assert face.tolist() == [1, 2, 5]  # +x, -y, +z
    assert torch.allclose(torch.stack(uv, 1), torch.tensor([[-0.3, 0.2], [0.1, 0.2], [0.3, 0.1]]))


def test_box_surface_on_every_face_of_random_boxes():
    """Points drawn on a known face of random boxes get that face's id, its outward unit normal and
    the two coordinates along the face (the z coordinate across the x and y faces)."""
    gen = torch.Generator().manual_seed(7)
    n = 600
    half = torch.rand(3, n, generator=gen) * 2 + 0.1
    face = torch.arange(n) % 6
    axis, outward = face // 2, (face % 2) * 2.0 - 1.0
    points = (torch.rand(3, n, generator=gen) * 2 - 1) * half * 0.999  # strictly inside the other slabs
    points[axis, torch.arange(n)] = outward * half[axis, torch.arange(n)]
    normal, got_face, (u, v) = surface_box(tuple(points), tuple(half))
    assert torch.equal(got_face, face)
    expected_normal = torch.zeros(3, n)
    expected_normal[axis, torch.arange(n)] = outward
    assert torch.equal(torch.stack(normal), expected_normal)
    x, y, z = points
    assert torch.equal(u, torch.where(axis == 0, z, x))
    assert torch.equal(v, torch.where(axis == 1, z, y))


def test_cylinder_surface_side_and_caps():
    p = vec((1.0, 0.0, 0.0), (0.2, 2.0, 0.1), (0.0, -2.0, 0.5))
    normal, face, _ = surface_cylinder(p, params(1.0, 2.0, n=3))
    assert torch.allclose(torch.stack(normal, 1), torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0]]))
    assert face.tolist() == [0, 3, 2]
