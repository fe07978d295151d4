"""Hand-built scenes for the simulator tests: a camera at the origin looking along +z."""

from __future__ import annotations

from depthkd.sim.scene import Lighting, SceneBuilder


def builder(size: tuple[int, int], focal: float = 20.0, position=(0.0, 0.0, 0.0), yaw: float = 0.0,
            pitch: float = 0.0, roll: float = 0.0) -> SceneBuilder:
    """A scene with one grey material (index 0), a point light and a centred pinhole camera."""
    height, width = size
    b = SceneBuilder()
    b.material((0.6, 0.6, 0.6))
    b.set_camera(position, yaw, pitch, roll, focal, focal, (width - 1) / 2, (height - 1) / 2)
    b.lighting = Lighting(kind="point", position=(0.0, 2.0, 0.0), colour=(2.0, 2.0, 2.0))
    return b


def wall(b: SceneBuilder, z: float) -> int:
    """A large fronto-parallel box whose near face is the plane ``z`` (stuff, instance 0)."""
    return b.box((0.0, 0.0, z + 0.5), (200.0, 200.0, 1.0), material=0, cls="wall")
