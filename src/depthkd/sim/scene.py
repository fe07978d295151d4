"""Scene description: primitives, materials, camera, lights and sensor, stacked into tensors.

A scene is built in plain Python with :class:`SceneBuilder` (cheap: rows appended to lists) and frozen
into a :class:`Scene` of numpy arrays. :func:`stack_scenes` pads a list of scenes into one
:class:`SceneBatch` of tensors on the render device, which is all the renderer sees.

Geometry conventions: world frame right-handed with ``+y`` up, metres. Every primitive has a local
frame (centre + rotation whose columns are the local axes in world coordinates):

- ``plane``: the local ``y = 0`` plane (normal ``+y``), infinite.
- ``box``: ``|x|<=hx, |y|<=hy, |z|<=hz``; seen from inside (a room) it renders its inner faces.
- ``sphere``: radius ``r`` about the centre.
- ``cylinder``: axis along local ``y``, radius ``r``, half-height ``h``, capped.

Faces (for per-face materials and classes) follow :data:`FACE_NAMES`; a cylinder's side is ``-x``
(index 0), its caps ``-y``/``+y``; spheres and planes use one material for all faces.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields

import numpy as np
import torch

from depthkd.errors import DataError

PRIMITIVE_KINDS: tuple[str, ...] = ("plane", "box", "sphere", "cylinder")
KIND_ID = {name: i for i, name in enumerate(PRIMITIVE_KINDS)}
FACE_NAMES: tuple[str, ...] = ("-x", "+x", "-y", "+y", "-z", "+z")
FACE_ALIASES = {"side": (0, 1, 4, 5), "top": (3,), "bottom": (2,), "walls": (0, 1, 4, 5),
                "floor": (2,), "ceiling": (3,)}

#: Semantic classes of the simulator (index = class id written to ``classes`` maps).
CLASS_NAMES: tuple[str, ...] = (
    "sky", "floor", "wall", "ceiling", "table", "chair", "shelf", "cabinet", "bed", "sofa",
    "lamp", "box", "door", "window", "picture", "rug", "plant", "appliance", "decor",
    "road", "sidewalk", "building", "car", "pole", "sign", "tree", "terrain", "shape",
)
CLASS_ID = {name: i for i, name in enumerate(CLASS_NAMES)}

# Column layout of the material table (one float row per material).
MAT_COLOUR_A = slice(0, 3)
MAT_COLOUR_B = slice(3, 6)
MAT_COLOUR_C = slice(6, 9)
MAT_PATTERN = 9
MAT_TILE = slice(10, 12)
MAT_OFFSET = slice(12, 14)
MAT_ANGLE = 14
MAT_VARIATION = 15
MAT_GRIME = 16
MAT_GRIME_TILE = 17
MAT_SPECULAR = 18
MAT_SHININESS = 19
MAT_EMISSION = slice(20, 23)
MAT_LANES = 23
MAT_FIELDS = 24

# Column layout of the float primitive table.
PRIM_CENTRE = slice(0, 3)
PRIM_ROTATION = slice(3, 12)
PRIM_PARAMS = slice(12, 16)
PRIM_BOUND = 16
PRIM_FLOAT_FIELDS = 17

Vec3 = Sequence[float]


def rotation_matrix(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """Rotation ``R = Ry(yaw) @ Rx(pitch) @ Rz(roll)`` (radians); columns are the rotated axes."""
    cy, sy = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cr, sr = math.cos(roll), math.sin(roll)
    ry = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
    rz = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])
    return ry @ rx @ rz


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rotation (from a random unit quaternion)."""
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def look_rotation(yaw: float, pitch: float, roll: float = 0.0) -> np.ndarray:
    """Camera-to-world rotation, columns = camera right, down, forward (OpenCV camera axes).

    ``yaw`` turns about world up (0 looks along ``+z``), positive ``pitch`` tilts the view down,
    ``roll`` turns the image about the optical axis.
    """
    # Scalar arithmetic: numpy's cross products cost more than the whole formula on three floats.
    forward = (math.sin(yaw) * math.cos(pitch), -math.sin(pitch), math.cos(yaw) * math.cos(pitch))
    right = _cross(forward, (0.0, 1.0, 0.0))
    length = math.sqrt(right[0] * right[0] + right[1] * right[1] + right[2] * right[2])
    right = tuple(c / length for c in right)
    down = _cross(forward, right)
    cr, sr = math.cos(roll), math.sin(roll)
    rolled_right = [cr * r + sr * d for r, d in zip(right, down)]
    rolled_down = [-sr * r + cr * d for r, d in zip(right, down)]
    return np.array([rolled_right, rolled_down, forward]).T


def _cross(a: Vec3, b: Vec3) -> tuple[float, float, float]:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


@dataclass
class Camera:
    """Pinhole camera: position (m), camera-to-world rotation, intrinsics in pixels.

    Pixel ``(u, v)`` (column, row; pixel centres at integers) sees the camera-frame direction
    ``((u - cx)/fx, (v - cy)/fy, 1)``.
    """

    position: Vec3
    rotation: np.ndarray
    fx: float
    fy: float
    cx: float
    cy: float


@dataclass
class Lighting:
    """One key light with hard shadows, a shadowless fill light, hemispheric ambient, sky and haze.

    ``kind`` is ``"point"`` (``position`` in metres, intensity falls off as ``1/(1 + d^2/falloff^2)``)
    or ``"sun"`` (``position`` is the direction *towards* the sun).
    """

    kind: str = "sun"
    position: Vec3 = (0.3, 1.0, -0.4)
    colour: Vec3 = (1.0, 1.0, 1.0)
    falloff: float = 3.0
    fill_direction: Vec3 = (0.0, 1.0, 0.0)
    fill_colour: Vec3 = (0.0, 0.0, 0.0)
    ambient_sky: Vec3 = (0.3, 0.3, 0.3)
    ambient_ground: Vec3 = (0.15, 0.15, 0.15)
    sky_zenith: Vec3 = (0.25, 0.45, 0.85)
    sky_horizon: Vec3 = (0.75, 0.85, 0.95)
    clouds: float = 0.0
    haze_colour: Vec3 = (0.8, 0.85, 0.9)
    haze_density: float = 0.0


@dataclass
class Sensor:
    """Image formation after shading: auto exposure (``exposure`` is the target mean of the displayed
    image), white balance, vignetting (darkening at the corners), Gaussian noise (std), gamma."""

    exposure: float = 0.45
    white_balance: Vec3 = (1.0, 1.0, 1.0)
    vignetting: float = 0.0
    noise: float = 0.0
    gamma: float = 2.2


@dataclass
class Scene:
    """One frozen scene: primitive and material tables plus camera, lighting and sensor."""

    prim_kind: np.ndarray  # (P,) int64
    prim_float: np.ndarray  # (P, PRIM_FLOAT_FIELDS) float32
    prim_instance: np.ndarray  # (P,) int64
    prim_shadow: np.ndarray  # (P,) bool, casts shadows
    prim_face_material: np.ndarray  # (P, 6) int64, index into materials
    prim_face_class: np.ndarray  # (P, 6) int64
    materials: np.ndarray  # (M, MAT_FIELDS) float32
    camera: Camera
    lighting: Lighting
    sensor: Sensor
    max_depth: float = math.inf
    noise_seed: int = 0

    @property
    def num_primitives(self) -> int:
        return int(self.prim_kind.shape[0])


@dataclass
class SceneBuilder:
    """Collects primitives and materials for one scene; :meth:`build` freezes them.

    Objects made of several primitives share one instance id from :meth:`new_instance`; id 0 is
    "stuff" (walls, floor, road, ...).
    """

    camera: Camera | None = None
    lighting: Lighting = field(default_factory=Lighting)
    sensor: Sensor = field(default_factory=Sensor)
    max_depth: float = math.inf
    noise_seed: int = 0
    _kinds: list[int] = field(default_factory=list)
    _floats: list[list[float]] = field(default_factory=list)
    _instances: list[int] = field(default_factory=list)
    _shadows: list[bool] = field(default_factory=list)
    _face_materials: list[list[int]] = field(default_factory=list)
    _face_classes: list[list[int]] = field(default_factory=list)
    _materials: list[list[float]] = field(default_factory=list)
    _next_instance: int = 1

    # -- materials -------------------------------------------------------------------------
    def material(
        self,
        colour: Vec3,
        colour2: Vec3 | None = None,
        colour3: Vec3 | None = None,
        pattern: str = "flat",
        tile: float | tuple[float, float] = 1.0,
        offset: tuple[float, float] = (0.0, 0.0),
        angle: float = 0.0,
        variation: float = 0.0,
        grime: float = 0.0,
        grime_tile: float = 1.0,
        specular: float = 0.0,
        shininess: float = 32.0,
        emission: Vec3 = (0.0, 0.0, 0.0),
        lanes: int = 0,
    ) -> int:
        """Add a material and return its index.

        Albedo = ``colour + (colour2 - colour) * pattern + (colour3 - colour) * variation * cell``
        (``pattern`` in [0, 1] from the named texture, ``cell`` its per-cell random value: one per
        brick, board, book), darkened by ``grime`` times a smooth noise of period ``grime_tile``
        metres. ``tile`` is the size in metres of one repeat of the pattern (u, v), ``angle``
        rotates it, ``offset`` shifts it (in repeats). ``specular``/``shininess`` give a
        Blinn-Phong highlight of the key light, ``emission`` adds light (lamps, windows).
        ``lanes > 0`` paints road markings for that many lanes across one ``tile`` width.
        """
        from depthkd.sim.textures import PATTERN_ID

        if pattern not in PATTERN_ID:
            raise DataError(f"unknown texture pattern {pattern!r}; expected one of {sorted(PATTERN_ID)}")
        tile_uv = (tile, tile) if isinstance(tile, (int, float)) else tile
        colour2 = colour if colour2 is None else colour2
        colour3 = colour2 if colour3 is None else colour3
        # Field order: see the MAT_* column constants.
        row = [*colour, *colour2, *colour3, PATTERN_ID[pattern], *tile_uv, *offset, angle, variation, grime,
               grime_tile, specular, shininess, *emission, lanes]
        if len(row) != MAT_FIELDS:
            raise DataError(f"material colours, tile, offset and emission must have 3, 2, 2 and 3 values; got {row}")
        self._materials.append(row)
        return len(self._materials) - 1

    def material_colour(self, index: int) -> tuple[float, float, float]:
        """The first colour of material ``index`` (e.g. to tint ambient bounce light)."""
        return tuple(float(c) for c in self._materials[index][MAT_COLOUR_A])  # type: ignore[return-value]

    def new_instance(self) -> int:
        """A fresh object id (1, 2, ...) shared by the primitives of one object."""
        self._next_instance += 1
        return self._next_instance - 1

    # -- primitives ------------------------------------------------------------------------
    def _add(
        self,
        kind: str,
        centre: Vec3,
        rotation: np.ndarray | None,
        params: Sequence[float],
        bound: float,
        material: int | Mapping[str, int],
        cls: str | Mapping[str, str],
        instance: int,
        casts_shadow: bool,
    ) -> int:
        if rotation is None:
            flat_rotation = _IDENTITY
        elif isinstance(rotation, list) and len(rotation) == 9:
            flat_rotation = rotation
        else:
            flat_rotation = np.asarray(rotation, dtype=float).reshape(-1).tolist()
        # Field order: see the PRIM_* column constants.
        row = [*centre, *flat_rotation, *params, *_ZEROS[len(params):], bound]
        self._kinds.append(KIND_ID[kind])
        self._floats.append(row)
        self._instances.append(instance)
        self._shadows.append(casts_shadow)
        # Most parts use one material and one class for all faces: that case skips _per_face.
        self._face_materials.append([material] * 6 if isinstance(material, int)
                                    else _per_face(material, lambda m: m, "material"))
        self._face_classes.append([CLASS_ID[cls]] * 6 if isinstance(cls, str) and cls in CLASS_ID
                                  else _per_face(cls, _class_id, "class"))
        return len(self._kinds) - 1

    def plane(self, point: Vec3, rotation: np.ndarray | None = None, *, material, cls="floor",
              instance: int = 0) -> int:
        """Infinite plane through ``point``; its normal is the rotation's second column (default +y)."""
        return self._add("plane", point, rotation, (), math.inf, material, cls, instance, False)

    def box(self, centre: Vec3, size: Vec3, yaw: float = 0.0, rotation: np.ndarray | None = None, *,
            material, cls="box", instance: int = 0, casts_shadow: bool = True) -> int:
        """Box of full extents ``size`` (x, y, z) turned by ``yaw`` about the vertical (or ``rotation``)."""
        half = [0.5 * size[0], 0.5 * size[1], 0.5 * size[2]]
        rot = rotation if rotation is not None else yaw_rotation(yaw)
        bound = math.sqrt(half[0] * half[0] + half[1] * half[1] + half[2] * half[2])
        return self._add("box", centre, rot, half, bound, material, cls, instance, casts_shadow)

    def sphere(self, centre: Vec3, radius: float, rotation: np.ndarray | None = None, *, material,
               cls="decor", instance: int = 0, casts_shadow: bool = True) -> int:
        """Sphere; ``rotation`` only turns its texture."""
        return self._add("sphere", centre, rotation, (radius,), radius, material, cls, instance, casts_shadow)

    def cylinder(self, centre: Vec3, radius: float, height: float, rotation: np.ndarray | None = None, *,
                 material, cls="decor", instance: int = 0, casts_shadow: bool = True) -> int:
        """Capped cylinder of full ``height`` whose axis is local y (vertical unless ``rotation``)."""
        half = 0.5 * height
        bound = math.sqrt(radius * radius + half * half)
        return self._add("cylinder", centre, rotation, (radius, half), bound, material, cls, instance,
                         casts_shadow)

    def set_camera(self, position: Vec3, yaw: float, pitch: float, roll: float, fx: float, fy: float,
                   cx: float, cy: float) -> Camera:
        """Place the pinhole camera (angles in radians, see :func:`look_rotation`)."""
        self.camera = Camera(tuple(position), look_rotation(yaw, pitch, roll), fx, fy, cx, cy)
        return self.camera

    def build(self) -> Scene:
        """Freeze into a :class:`Scene`; raises :class:`DataError` if something is missing."""
        if self.camera is None:
            raise DataError("scene has no camera; call SceneBuilder.set_camera(...) before build()")
        if not self._kinds:
            raise DataError("scene has no primitives; add at least one plane, box, sphere or cylinder")
        if not self._materials:
            raise DataError("scene has no materials; create one with SceneBuilder.material(...)")
        face_materials = np.asarray(self._face_materials, dtype=np.int64)
        materials = np.asarray(self._materials, dtype=np.float32)
        if face_materials.min() < 0 or face_materials.max() >= len(self._materials):
            raise DataError(
                f"a primitive names material {int(face_materials.max())}; only {len(self._materials)} exist"
            )
        return Scene(
            prim_kind=np.asarray(self._kinds, dtype=np.int64),
            prim_float=np.asarray(self._floats, dtype=np.float32),
            prim_instance=np.asarray(self._instances, dtype=np.int64),
            prim_shadow=np.asarray(self._shadows, dtype=bool),
            prim_face_material=face_materials,
            prim_face_class=np.asarray(self._face_classes, dtype=np.int64),
            materials=materials,
            camera=self.camera,
            lighting=self.lighting,
            sensor=self.sensor,
            max_depth=self.max_depth,
            noise_seed=self.noise_seed,
        )


_IDENTITY = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
_ZEROS = [0.0, 0.0, 0.0, 0.0]


def yaw_rotation(yaw: float) -> list[float] | None:
    """Row-major rotation about the vertical, the same as ``rotation_matrix(yaw)`` (fast path for
    :meth:`SceneBuilder.box`); ``None`` (the builder's identity) for no turn."""
    if not yaw:
        return None
    c, s = math.cos(yaw), math.sin(yaw)
    return [c, 0.0, s, 0.0, 1.0, 0.0, -s, 0.0, c]


def _class_id(name: str) -> int:
    if name not in CLASS_ID:
        raise DataError(f"unknown class {name!r}; expected one of {CLASS_NAMES}")
    return CLASS_ID[name]


def _per_face(value, convert, what: str) -> list[int]:
    """Expand one value or a ``{face name: value}`` mapping (with a ``"default"``) to 6 faces."""
    if not isinstance(value, dict):
        return [convert(value)] * 6
    faces = [convert(value["default"])] * 6 if "default" in value else [None] * 6
    for name, item in value.items():
        if name == "default":
            continue
        indices = FACE_ALIASES.get(name) or ((FACE_NAMES.index(name),) if name in FACE_NAMES else None)
        if indices is None:
            raise DataError(f"unknown face {name!r} in {what} mapping; expected {FACE_NAMES} or {sorted(FACE_ALIASES)}")
        for index in indices:
            faces[index] = convert(item)
    if any(face is None for face in faces):
        raise DataError(f"{what} mapping {dict(value)} leaves faces unset; add a 'default' entry")
    return faces  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------
# Batching


@dataclass
class SceneBatch:
    """Scenes padded to a common primitive count, as tensors on one device.

    Primitive ``p`` of image ``b`` has global id ``b * P + p + 1`` (0 means "nothing hit").
    ``prim_face_material`` holds indices into the concatenated ``materials`` table.
    """

    prim_kind: torch.Tensor  # (B, P) int64, -1 = padding
    prim_centre: torch.Tensor  # (B, P, 3)
    prim_rotation: torch.Tensor  # (B, P, 3, 3), columns = local axes in world
    prim_params: torch.Tensor  # (B, P, 4)
    prim_bound: torch.Tensor  # (B, P) bounding-sphere radius (inf for planes)
    prim_instance: torch.Tensor  # (B, P)
    prim_shadow: torch.Tensor  # (B, P) bool
    prim_face_material: torch.Tensor  # (B, P, 6)
    prim_face_class: torch.Tensor  # (B, P, 6)
    materials: torch.Tensor  # (M_total, MAT_FIELDS)
    cam_position: torch.Tensor  # (B, 3)
    cam_rotation: torch.Tensor  # (B, 3, 3) camera-to-world
    intrinsics: torch.Tensor  # (B, 4) fx, fy, cx, cy
    light_is_point: torch.Tensor  # (B,) bool
    light_position: torch.Tensor  # (B, 3) position or direction to the sun (unit)
    light_colour: torch.Tensor  # (B, 3)
    light_falloff: torch.Tensor  # (B,)
    fill_direction: torch.Tensor  # (B, 3) unit
    fill_colour: torch.Tensor  # (B, 3)
    ambient_sky: torch.Tensor  # (B, 3)
    ambient_ground: torch.Tensor  # (B, 3)
    sky_zenith: torch.Tensor  # (B, 3)
    sky_horizon: torch.Tensor  # (B, 3)
    clouds: torch.Tensor  # (B,)
    haze_colour: torch.Tensor  # (B, 3)
    haze_density: torch.Tensor  # (B,)
    exposure: torch.Tensor  # (B,)
    white_balance: torch.Tensor  # (B, 3)
    vignetting: torch.Tensor  # (B,)
    noise: torch.Tensor  # (B,)
    gamma: torch.Tensor  # (B,)
    max_depth: torch.Tensor  # (B,)
    noise_seeds: list[int]

    @property
    def batch_size(self) -> int:
        return int(self.prim_kind.shape[0])

    @property
    def num_primitives(self) -> int:
        return int(self.prim_kind.shape[1])

    @property
    def device(self) -> torch.device:
        return self.prim_kind.device

    def images(self, start: int, stop: int) -> SceneBatch:
        """Images ``start .. stop - 1`` as a batch of their own (views, no copies).

        The material table stays whole, since ``prim_face_material`` indexes into it.
        """
        parts = {}
        for item in fields(self):
            value = getattr(self, item.name)
            parts[item.name] = value if item.name == "materials" else value[start:stop]
        return SceneBatch(**parts)


def stack_scenes(scenes: Sequence[Scene], device: torch.device | str = "cpu") -> SceneBatch:
    """Pad and stack scenes into one :class:`SceneBatch` on ``device`` (one host-to-device copy each)."""
    if not scenes:
        raise DataError("stack_scenes needs at least one scene")
    count = len(scenes)
    width = max(s.num_primitives for s in scenes)
    kind = np.full((count, width), -1, dtype=np.int64)
    floats = np.zeros((count, width, PRIM_FLOAT_FIELDS), dtype=np.float32)
    floats[:, :, PRIM_ROTATION] = np.eye(3, dtype=np.float32).reshape(-1)
    instance = np.zeros((count, width), dtype=np.int64)
    shadow = np.zeros((count, width), dtype=bool)
    face_material = np.zeros((count, width, 6), dtype=np.int64)
    face_class = np.zeros((count, width, 6), dtype=np.int64)
    material_offset = 0
    for b, scene in enumerate(scenes):
        n = scene.num_primitives
        kind[b, :n] = scene.prim_kind
        floats[b, :n] = scene.prim_float
        instance[b, :n] = scene.prim_instance
        shadow[b, :n] = scene.prim_shadow
        face_material[b, :n] = scene.prim_face_material + material_offset
        face_class[b, :n] = scene.prim_face_class
        material_offset += scene.materials.shape[0]
    materials = np.concatenate([s.materials for s in scenes])

    def tensor(array, dtype=torch.float32) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array), dtype=dtype).to(device)

    def per_scene(get) -> np.ndarray:
        return np.asarray([get(s) for s in scenes], dtype=np.float32)

    def unit(vectors: np.ndarray) -> np.ndarray:
        return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)

    light_is_point = np.asarray([s.lighting.kind == "point" for s in scenes])
    for s in scenes:
        if s.lighting.kind not in ("point", "sun"):
            raise DataError(f"unknown light kind {s.lighting.kind!r}; expected 'point' or 'sun'")
    light_position = per_scene(lambda s: s.lighting.position)
    light_position[~light_is_point] = unit(light_position[~light_is_point])
    return SceneBatch(
        prim_kind=tensor(kind, torch.int64),
        prim_centre=tensor(floats[:, :, PRIM_CENTRE]),
        prim_rotation=tensor(floats[:, :, PRIM_ROTATION].reshape(count, width, 3, 3)),
        prim_params=tensor(floats[:, :, PRIM_PARAMS]),
        prim_bound=tensor(floats[:, :, PRIM_BOUND]),
        prim_instance=tensor(instance, torch.int64),
        prim_shadow=tensor(shadow, torch.bool),
        prim_face_material=tensor(face_material, torch.int64),
        prim_face_class=tensor(face_class, torch.int64),
        materials=tensor(materials),
        cam_position=tensor(per_scene(lambda s: s.camera.position)),
        cam_rotation=tensor(np.stack([s.camera.rotation for s in scenes]).astype(np.float32)),
        intrinsics=tensor(per_scene(lambda s: (s.camera.fx, s.camera.fy, s.camera.cx, s.camera.cy))),
        light_is_point=tensor(light_is_point, torch.bool),
        light_position=tensor(light_position),
        light_colour=tensor(per_scene(lambda s: s.lighting.colour)),
        light_falloff=tensor(per_scene(lambda s: s.lighting.falloff)),
        fill_direction=tensor(unit(per_scene(lambda s: s.lighting.fill_direction))),
        fill_colour=tensor(per_scene(lambda s: s.lighting.fill_colour)),
        ambient_sky=tensor(per_scene(lambda s: s.lighting.ambient_sky)),
        ambient_ground=tensor(per_scene(lambda s: s.lighting.ambient_ground)),
        sky_zenith=tensor(per_scene(lambda s: s.lighting.sky_zenith)),
        sky_horizon=tensor(per_scene(lambda s: s.lighting.sky_horizon)),
        clouds=tensor(per_scene(lambda s: s.lighting.clouds)),
        haze_colour=tensor(per_scene(lambda s: s.lighting.haze_colour)),
        haze_density=tensor(per_scene(lambda s: s.lighting.haze_density)),
        exposure=tensor(per_scene(lambda s: s.sensor.exposure)),
        white_balance=tensor(per_scene(lambda s: s.sensor.white_balance)),
        vignetting=tensor(per_scene(lambda s: s.sensor.vignetting)),
        noise=tensor(per_scene(lambda s: s.sensor.noise)),
        gamma=tensor(per_scene(lambda s: s.sensor.gamma)),
        max_depth=tensor(per_scene(lambda s: s.max_depth)),
        noise_seeds=[int(s.noise_seed) for s in scenes],
    )
