"""Procedural RGB-D scene simulator: batched ray casting in PyTorch, on CPU or GPU.

Each image is a random scene from a *domain* (``indoor`` rooms like NYU Depth V2, ``outdoor``
streets like KITTI, and out-of-distribution domains for data-free distillation; see
:mod:`depthkd.sim.domains`), ray cast against analytic primitives (planes, boxes, spheres,
cylinders) with procedural textures, Lambertian and specular shading, hard shadows from a key light,
haze and a simple camera sensor. Outputs per image: RGB, metric z-depth, instance ids (one per
object, 0 for walls/floor/road/sky), class ids (:data:`CLASS_NAMES`) and pinhole intrinsics.

    from depthkd.sim import render_batch, SimDataset, DOMAINS, OOD_DOMAINS
    batch = render_batch("indoor", batch_size=8, size=(240, 320), seed=0, device="cpu")
    data = SimDataset("indoor", length=1000, size=(240, 320), seed=0)

``write_dataset`` / ``write_preview`` write files; ``SceneBuilder`` + ``render_scenes`` render
hand-built scenes. ``compile_kernels()`` (or ``DEPTHKD_SIM_COMPILE=1``) compiles the ray-primitive
tests for long runs (see :mod:`depthkd.sim.kernels`).
"""

from depthkd.sim.dataset import SimDataset, SimStream
from depthkd.sim.domains import DOMAINS, OOD_DOMAINS, REGISTRY, get_domain, sample_scene
from depthkd.sim.kernels import compile_kernels, kernels_compiled
from depthkd.sim.render import render_batch, render_scenes
from depthkd.sim.scene import CLASS_NAMES, SceneBuilder
from depthkd.sim.writer import write_dataset, write_preview

__all__ = [
    "CLASS_NAMES",
    "DOMAINS",
    "OOD_DOMAINS",
    "REGISTRY",
    "SceneBuilder",
    "SimDataset",
    "SimStream",
    "compile_kernels",
    "get_domain",
    "kernels_compiled",
    "render_batch",
    "render_scenes",
    "sample_scene",
    "write_dataset",
    "write_preview",
]
