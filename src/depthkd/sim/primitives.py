"""Ray intersection and surface attributes of each primitive kind, in the primitive's local frame.

Vectors are passed as *components* ``(x, y, z)``, each a tensor that broadcasts to the ray batch
(e.g. ``(n, 1)`` per pair of tile and primitive, ``(n, S)`` per ray): component-wise arithmetic on
contiguous tensors is much faster on CPU than ``(..., 3)`` layouts and avoids gathers. Parameters
are columns broadcastable the same way (``params[k]``).

Directions need not be unit length; ``t`` is in units of the direction (z-depth for camera rays
whose camera-frame z is 1). A miss is ``inf``; only hits with ``t > t_min`` count. The default
returns where a ray *enters* the (convex) primitive; ``inside=True`` is for rays starting inside it,
e.g. the camera in a room, and returns the exit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

INF = float("inf")
Vec = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _keep(t: torch.Tensor, hit: torch.Tensor) -> torch.Tensor:
    return torch.where(hit, t, INF)


def intersect_plane(o: Vec, d: Vec, params: Sequence[torch.Tensor], t_min: float, inside: bool = False) -> torch.Tensor:
    """The local ``y = 0`` plane, seen from either side."""
    t = -o[1] / d[1]
    return _keep(t, t > t_min)


def intersect_box(o: Vec, d: Vec, params: Sequence[torch.Tensor], t_min: float, inside: bool = False) -> torch.Tensor:
    """Slab test against ``|x| <= hx, |y| <= hy, |z| <= hz`` (``params[0:3]`` are the half extents)."""
    # One reciprocal and two products per axis (cheaper than two divisions); results are written into
    # the temporaries they replace: fewer fresh per-ray buffers, fewer page faults.
    t_near = t_far = None
    for axis in range(3):
        half, origin = params[axis], o[axis]
        t_b = d[axis].reciprocal()
        t_a = torch.mul(t_b, -half - origin)
        t_b.mul_(half - origin)
        high = torch.maximum(t_a, t_b)
        if inside:  # the exit: per axis the wall the ray heads for (no miss possible from inside)
            t_far = high if t_far is None else torch.minimum(t_far, high, out=t_far)
            continue
        low = torch.minimum(t_a, t_b, out=t_a)
        if t_near is None:
            t_near, t_far = low, high
        else:
            torch.maximum(t_near, low, out=t_near)
            torch.minimum(t_far, high, out=t_far)
    if inside:
        return t_far
    miss = torch.gt(t_near, t_far).logical_or_(t_near <= t_min)
    return t_near.masked_fill_(miss, INF)


def intersect_sphere(o: Vec, d: Vec, params: Sequence[torch.Tensor], t_min: float, inside: bool = False) -> torch.Tensor:
    """Sphere of radius ``params[0]`` about the local origin."""
    radius = params[0]
    a = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
    # minus_b = -(o . d), negated through the per-pair origin (n, 1): no pass over the rays to negate.
    minus_b = -o[0] * d[0] - o[1] * d[1] - o[2] * d[2]
    c = o[0] * o[0] + o[1] * o[1] + o[2] * o[2] - radius * radius
    root = (minus_b * minus_b - a * c).sqrt()  # NaN on a miss; NaN > t_min is False
    t = (minus_b + root) / a if inside else (minus_b - root) / a
    return _keep(t, t > t_min)


def intersect_cylinder(o: Vec, d: Vec, params: Sequence[torch.Tensor], t_min: float, inside: bool = False) -> torch.Tensor:
    """Capped cylinder along local y: radius ``params[0]``, half-height ``params[1]``.

    The interval inside the infinite cylinder intersected with the slab ``|y| <= h``.
    """
    radius, half = params[0], params[1]
    # A ray parallel to the axis has a = b = 0: the clamp turns its side interval into (-huge, huge)
    # inside the cylinder's radius and NaN (a miss) outside.
    a = (d[0] * d[0] + d[2] * d[2]).clamp_min(1e-20)
    minus_b = -o[0] * d[0] - o[2] * d[2]  # as in intersect_sphere
    c = o[0] * o[0] + o[2] * o[2] - radius * radius
    root = (minus_b * minus_b - a * c).sqrt()
    side_near, side_far = (minus_b - root) / a, (minus_b + root) / a
    y_a = (-half - o[1]) / d[1]
    y_b = (half - o[1]) / d[1]
    t_near = torch.maximum(side_near, torch.minimum(y_a, y_b))
    t_far = torch.minimum(side_far, torch.maximum(y_a, y_b))
    if inside:
        return _keep(t_far, (t_far >= t_near) & (t_far > t_min))
    return _keep(t_near, (t_near <= t_far) & (t_near > t_min))


#: Intersection function per kind id (order of ``scene.PRIMITIVE_KINDS``).
INTERSECT = (intersect_plane, intersect_box, intersect_sphere, intersect_cylinder)


def local_bounds(kind: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Half extents ``(..., 3)`` of each primitive's local bounding box (inf for planes)."""
    box = params[..., :3]
    sphere = params[..., :1].expand_as(box)
    cylinder = torch.stack([params[..., 0], params[..., 1], params[..., 0]], dim=-1)
    bounds = torch.where((kind == 2)[..., None], sphere, torch.where((kind == 3)[..., None], cylinder, box))
    return torch.where((kind == 0)[..., None], torch.full_like(box, INF), bounds)


# -- surface attributes of hit points (one entry per visible pixel) ---------------------------------
# Each returns the local normal (3 components), the face id and texture coordinates (u, v) in metres.

Surface = tuple[Vec, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]


def surface_plane(p: Vec, params: Sequence[torch.Tensor]) -> Surface:
    zero = torch.zeros_like(p[0])
    return (zero, torch.ones_like(zero), zero), torch.full_like(p[0], 3, dtype=torch.int64), (p[0], p[2])


def surface_box(p: Vec, params: Sequence[torch.Tensor]) -> Surface:
    """The face whose axis has the largest ``|p| / half``; texture axes keep v vertical on walls.

    Selections are written as arithmetic on 0/1 float masks (``copysign``, ``addcmul``), not as
    ``torch.where`` or bool-float products: on CPU those take several times longer per element, and for
    points on the surface the results are the same bits.
    """
    qx, qy, qz = (p[i].abs().div_(params[i]) for i in range(3))
    on_x = (qx >= qy) & (qx >= qz)
    on_y = (qy >= qz) & ~on_x
    on_x, on_y, on_z = on_x.float(), on_y.float(), (~(on_x | on_y)).float()
    normal = (torch.copysign(on_x, p[0]), torch.copysign(on_y, p[1]), torch.copysign(on_z, p[2]))
    # Face 2 * axis + 1 where the normal points along +axis (its components sum to +-1).
    positive = (normal[0] + normal[1]).add_(normal[2]).clamp_min_(0.0)
    face = torch.add(on_y, on_z, alpha=2.0).mul_(2.0).add_(positive).long()
    u = torch.addcmul(p[0] * (1.0 - on_x), p[2], on_x)  # p[2] on the x faces, else p[0]
    v = torch.addcmul(p[1] * (1.0 - on_y), p[2], on_y)  # p[2] on the y faces, else p[1]
    return normal, face, (u, v)


def surface_sphere(p: Vec, params: Sequence[torch.Tensor]) -> Surface:
    """Radial normal; longitude and latitude arc lengths as texture coordinates."""
    radius = params[0]
    normal = (p[0] / radius, p[1] / radius, p[2] / radius)
    uv = (torch.atan2(p[2], p[0]) * radius, torch.asin(normal[1].clamp(-1.0, 1.0)) * radius)
    return normal, torch.zeros_like(p[0], dtype=torch.int64), uv


def surface_cylinder(p: Vec, params: Sequence[torch.Tensor]) -> Surface:
    """Side (face 0) or a cap (faces 2 and 3), whichever surface the point is closer to."""
    radius, half = params[0], params[1]
    rho = (p[0] * p[0] + p[2] * p[2]).sqrt().clamp_min(1e-12)
    on_cap = (half - p[1].abs()) < (radius - rho)
    side = ~on_cap
    cap_sign = torch.sign(p[1]) * on_cap
    normal = (p[0] / rho * side, cap_sign, p[2] / rho * side)
    face = on_cap.long() * (2 + (p[1] > 0).long())
    u = torch.where(on_cap, p[0], torch.atan2(p[2], p[0]) * radius)
    v = torch.where(on_cap, p[2], p[1])
    return normal, face, (u, v)


#: Surface attribute function per kind id.
SURFACE = (surface_plane, surface_box, surface_sphere, surface_cylinder)
