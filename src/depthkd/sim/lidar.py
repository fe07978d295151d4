"""KITTI-like LiDAR ground truth: a Velodyne HDL-64E scan cast from the scanner, projected into the camera.

KITTI's depth labels are LiDAR points seen from the scanner, not from the camera, and that is where
their artefacts come from; casting the beams from the scanner reproduces them instead of faking them:

- **Beams.** 64 lasers from +2.0 to -24.9 degrees (upper block of 32 at about 1/3 degree spacing down
  to -8.33, lower block of 32 at about 1/2 degree from -8.83), one firing every 0.1728 degrees of
  azimuth (the HDL-64E at 10 Hz, about 2083 points per beam and turn, as in KITTI's ~120k-point
  scans). Nothing above the top beam or on the sky returns.
- **Mount.** The scanner sits 0.27 m behind, 0.08 m above and 0.06 m to the right of the left colour
  camera (KITTI's ``Tr_velo_to_cam`` and ``P2``), rigidly, so near object edges it sees background the
  camera does not: projected into the image those points land beside the foreground (parallax).
- **Returns.** The return strength falls with range squared and grows with the surface's reflectance
  (its albedo, less the mirror-like part of glossy materials) and the cosine of incidence; a 10%
  reflective target is found at 50 m with probability 0.95 (the HDL-64E's rated range for pavement),
  plus 2% random dropouts (ours). Range noise is Gaussian, 2 cm (the HDL-64E's rated accuracy).
- **Projection.** Points are projected with the camera's intrinsics; where several land in one pixel
  the nearest is kept (as KITTI's devkit and monodepth2 do). By default the projection happens at
  KITTI's native resolution (375 rows) and each pixel of a smaller image reads the native pixel at
  its centre, which is what a user gets from real KITTI labels resized by nearest neighbour.

Density (one sweep, the default ``native_rows=375``, street scenes of the ``outdoor`` domain; measured
by ``benchmarks/sensor_stats.py``): 3.9% of the pixels carry a value at KITTI's 375x1242, and the same
3.9% at 128x416 or any other size, because the sampling is done at the native size. Why so few: about
40 of the 64 beams fall inside the camera's vertical field (the lower ones hit the road below it), one
point every ~2.2 pixels along a beam, beams 4-6 pixels apart, and none on the sky. With
``native_rows=None`` points are projected straight into the requested image instead: small images are
then much denser (at 128x416 a beam's points are 0.7 pixels apart, so every pixel along a beam's row is
hit: about 27%), which is what the sensor would give a camera of that resolution.

``gt=lidar_annotated`` (:data:`ANNOTATED`) is KITTI's *annotated* depth instead of one raw sweep:
several sweeps accumulated along the road and checked against the exact depth, so denser (about 16% of
the pixels) and without the points seen through foreground edges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from depthkd.errors import ConfigError
from depthkd.sim import scene as S
from depthkd.sim.rays import cast_rays
from depthkd.sim.sensor import LUMINANCE


def hdl64e_elevations() -> tuple[float, ...]:
    """The 64 beam elevations (degrees) of a Velodyne HDL-64E, top first."""
    upper = torch.linspace(2.0, -8.33, 32)
    lower = torch.linspace(-8.83, -24.9, 32)
    return tuple(float(e) for e in torch.cat([upper, lower]))


@dataclass(frozen=True)
class LidarModel:
    """Parameters of the simulated scanner (defaults: KITTI's HDL-64E; see the module docstring).

    ``offset`` is the scanner's origin in the camera frame (x right, y down, z forward, metres).
    ``detect_at_reference`` is the detection probability of a ``reference_reflectance`` target at
    ``reference_range``; ``dropout`` the random loss of any return (ours). ``native_rows``: the image
    height at which points are projected before nearest-neighbour sampling (None: the image's own).
    ``margin_deg`` widens the cast azimuth range beyond the camera's field (parallax near the borders).
    ``sweeps`` scans are accumulated from scanner positions ``sweep_spacing`` metres apart along the
    camera's level forward axis, centred on the current one; ``consistency`` (a relative tolerance)
    keeps only points that agree with the exact depth of the pixel they land in (see :data:`ANNOTATED`).
    """

    elevations_deg: tuple[float, ...] = hdl64e_elevations()
    azimuth_step_deg: float = 0.1728
    offset: tuple[float, float, float] = (0.06, -0.08, -0.27)
    max_range: float = 120.0
    range_noise: float = 0.02
    reference_reflectance: float = 0.1
    reference_range: float = 50.0
    detect_at_reference: float = 0.95
    dropout: float = 0.02
    native_rows: int | None = 375
    margin_deg: float = 3.0
    sweeps: int = 1
    sweep_spacing: float = 1.0
    consistency: float | None = None

    def __post_init__(self) -> None:
        if int(self.sweeps) < 1:
            raise ConfigError(f"LidarModel sweeps={self.sweeps}: expected at least 1")
        if self.consistency is not None and not self.consistency > 0:
            raise ConfigError(f"LidarModel consistency={self.consistency}: expected a positive tolerance or None")


#: KITTI's annotated depth maps (``gt=lidar_annotated``): sweeps accumulated along the road (the car
#: moving 1 m per sweep, about 10 m/s at 10 Hz) and every point off the exact depth of its pixel by more
#: than 5% removed, standing in for KITTI's check against stereo depth (Uhrig et al. 2017). KITTI
#: accumulates 11 scans; here 5 (ours): in the simulator's static streets 11 scans 1 m apart filled 26%
#: of a 375x1242 image, 5 fill about 16%, four times one sweep.
ANNOTATED = LidarModel(sweeps=5, consistency=0.05)


#: Tag mixed into each scene's noise seed so the LiDAR's random draws are their own stream.
_SEED_TAG = 0x4C494441  # "LIDA"


@dataclass
class LidarScan:
    """One image's returns: world points ``(N, 3)``, their range ``(N,)`` and the scanner origin ``(3,)``
    (points of rays that found nothing, or were dropped, are not included)."""

    points: torch.Tensor
    ranges: torch.Tensor
    origin: torch.Tensor


def beam_directions(model: LidarModel, batch: S.SceneBatch, image: int, size: tuple[int, int]) -> torch.Tensor:
    """Unit world directions ``(beams * A, 3)`` of the beams that can reach the field of view of the
    camera image of ``size = (H, W)`` (plus the model's margin), over its azimuth range (beam-major:
    neighbouring rays point alike, as :func:`~depthkd.sim.rays.cast_rays` wants)."""
    height, width = size
    fx, fy, cx, cy = (float(v) for v in batch.intrinsics[image])
    device = batch.device
    margin = math.radians(model.margin_deg)
    half = math.atan(max(cx, width - 1.0 - cx) / fx) + margin
    steps = int(half / math.radians(model.azimuth_step_deg))
    azimuth = torch.arange(-steps, steps + 1, device=device, dtype=torch.float32) * math.radians(model.azimuth_step_deg)
    top, bottom = math.atan(cy / fy) + margin, math.atan((height - 1.0 - cy) / fy) + margin
    elevation = torch.tensor(model.elevations_deg, device=device).deg2rad()
    elevation = elevation[(elevation <= top) & (elevation >= -bottom)][:, None]
    camera = torch.stack([
        torch.cos(elevation) * torch.sin(azimuth),
        -torch.sin(elevation).expand(-1, azimuth.numel()),
        torch.cos(elevation) * torch.cos(azimuth),
    ], dim=-1).view(-1, 3)
    return camera @ batch.cam_rotation[image].t()


def scan(model: LidarModel, batch: S.SceneBatch, image: int, size: tuple[int, int], sweep: int = 0) -> LidarScan:
    """Cast the scanner's beams over the field of the camera image ``image`` of ``size`` and keep the
    returns it would detect (beams that cannot reach the image are not cast). ``sweep`` moves the
    scanner ``sweep * sweep_spacing`` metres along the camera's level forward axis (its own noise)."""
    rotation = batch.cam_rotation[image]
    origin = batch.cam_position[image] + rotation @ torch.tensor(model.offset, device=batch.device)
    if sweep:
        forward = rotation[:, 2] * torch.tensor([1.0, 0.0, 1.0], device=batch.device)
        origin = origin + sweep * model.sweep_spacing * forward / forward.norm().clamp_min(1e-9)
    directions = beam_directions(model, batch, image, size)
    hits = cast_rays(batch, image, origin, directions)
    seed = ((batch.noise_seeds[image] ^ _SEED_TAG) + sweep * 0x9E3779B97F4A7C15) % 2**63
    generator = torch.Generator().manual_seed(seed)
    draw = torch.rand(directions.shape[0], generator=generator).to(batch.device)
    noise = torch.randn(directions.shape[0], generator=generator).to(batch.device)

    prim = hits.prim.clamp_min(0)
    material = batch.materials.index_select(0, batch.prim_face_material[image, prim, hits.face.clamp(0, 5)])
    albedo = (material[:, S.MAT_COLOUR_A] + material[:, S.MAT_COLOUR_B]) @ torch.tensor(
        LUMINANCE, device=batch.device) / 2.0
    reflectance = albedo * (1.0 - 0.5 * material[:, S.MAT_SPECULAR].clamp(0.0, 1.0))
    incidence = (hits.normal * directions).sum(1).abs()
    ranges = hits.t
    # Detection probability 1 - exp(-k * signal), with k set so the reference target meets its rate.
    k = -math.log(1.0 - model.detect_at_reference)
    signal = (reflectance * incidence / model.reference_reflectance) * (model.reference_range / ranges.clamp_min(0.1)) ** 2
    detect = (1.0 - model.dropout) * -torch.expm1(-k * signal)
    keep = hits.hit & (ranges <= model.max_range) & (draw < detect)
    measured = ranges + model.range_noise * noise
    rows = keep.nonzero().squeeze(1)
    measured = measured.index_select(0, rows)
    points = origin + measured[:, None] * directions.index_select(0, rows)
    return LidarScan(points=points, ranges=measured, origin=origin)


def _native_lookup(size: int, scale: float, device: torch.device) -> torch.Tensor:
    """For each native pixel index, the image pixel that reads it by nearest neighbour (else -1)."""
    native = int(math.ceil(size * scale))
    lookup = torch.full((native,), -1, dtype=torch.int64, device=device)
    sampled = torch.floor((torch.arange(size, device=device) + 0.5) * scale).long().clamp_max(native - 1)
    lookup[sampled] = torch.arange(size, device=device)
    return lookup


def project(points: torch.Tensor, batch: S.SceneBatch, image: int, size: tuple[int, int],
            native_rows: int | None = None, max_depth: float | None = None, exact: torch.Tensor | None = None,
            consistency: float | None = None) -> torch.Tensor:
    """Z-buffered depth map ``(1, H, W)`` of world points seen by the camera of image ``image`` (0 = none).

    With ``native_rows`` larger than ``H`` the points are projected at that resolution (same field of
    view) and each pixel reads the native pixel at its centre (nearest-neighbour resizing). Given the
    ``exact`` depth ``(1, H, W)`` and a ``consistency`` tolerance, points whose depth is off their
    pixel's exact depth by more than that share of it are dropped.
    """
    height, width = size
    device = points.device
    camera = (points - batch.cam_position[image]) @ batch.cam_rotation[image]
    z = camera[:, 2]
    fx, fy, cx, cy = (float(v) for v in batch.intrinsics[image])
    safe_z = z.clamp_min(1e-6)
    u = fx * camera[:, 0] / safe_z + cx
    v = fy * camera[:, 1] / safe_z + cy
    scale = native_rows / height if native_rows and native_rows > height else 1.0
    col = torch.round((u + 0.5) * scale - 0.5).long()
    row = torch.round((v + 0.5) * scale - 0.5).long()
    cols, rows = _native_lookup(width, scale, device), _native_lookup(height, scale, device)
    inside = (z > 1e-3) & (col >= 0) & (col < cols.numel()) & (row >= 0) & (row < rows.numel())
    if max_depth is not None:
        inside &= z <= max_depth
    col, row, z = col[inside], row[inside], z[inside]
    x, y = cols[col], rows[row]
    sampled = (x >= 0) & (y >= 0)
    flat = (y * width + x)[sampled]
    z = z[sampled]
    if exact is not None and consistency is not None:
        truth = exact.reshape(-1).index_select(0, flat)
        agree = (truth > 0) & ((z - truth).abs() <= consistency * truth)
        flat, z = flat[agree], z[agree]
    depth = torch.full((height * width,), float("inf"), device=device)
    depth.scatter_reduce_(0, flat, z, reduce="amin")
    depth = torch.where(torch.isinf(depth), 0.0, depth)
    return depth.view(1, height, width)


def lidar_depth(batch: S.SceneBatch, size: tuple[int, int], model: LidarModel | None = None,
                exact: torch.Tensor | None = None) -> torch.Tensor:
    """LiDAR ground truth ``(B, 1, H, W)`` for a scene batch (0 = no measurement); a model with a
    ``consistency`` tolerance needs the ``exact`` depth ``(B, 1, H, W)``."""
    model = model or LidarModel()
    if model.consistency is not None and exact is None:
        raise ConfigError("a LidarModel with a consistency tolerance needs the exact depth to check against")
    first = -(model.sweeps // 2)
    maps = []
    for image in range(batch.batch_size):
        points = torch.cat([scan(model, batch, image, size, sweep).points for sweep in range(first, first + model.sweeps)])
        maps.append(project(points, batch, image, size, model.native_rows, float(batch.max_depth[image]),
                            None if exact is None else exact[image], model.consistency))
    return torch.stack(maps)
