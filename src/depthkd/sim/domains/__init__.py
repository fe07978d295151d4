"""Scene samplers, one per domain, and the registry that names them.

| domain | looks like | valid depth (m) | metric protocol |
|---|---|---|---|
| ``indoor`` | NYU Depth V2 rooms | 0.2-10 | ``sim_indoor`` |
| ``outdoor`` | KITTI streets (sky and > 80 m are 0) | 1-80 | ``sim_outdoor`` |
| ``ood_shapes`` | floating primitives, bold palettes | 0.1-18 | ``none`` |
| ``ood_clutter`` | heaps of small objects from above | 0.05-10 | ``none`` |

How the OOD domains differ from rooms and streets (layout, palettes, lighting, camera) is
described in :mod:`depthkd.sim.domains.ood`.

Each sampler is a function ``(numpy Generator, (H, W)) -> SceneBuilder``. Scene ``index`` of a
``seed`` is drawn from its own generator, ``PCG64(SeedSequence([seed, index, domain tag]))``, so it
does not depend on which batch, chunk or device renders it (the layout is identical on CPU and GPU).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from depthkd.errors import ConfigError
from depthkd.sim.groundtruth import check_ground_truth as check_known
from depthkd.sim.domains.common import SceneRandom
from depthkd.sim.domains.indoor import sample_indoor
from depthkd.sim.domains.ood import sample_ood_clutter, sample_ood_shapes
from depthkd.sim.domains.outdoor import sample_outdoor
from depthkd.sim.scene import Scene, SceneBuilder


@dataclass(frozen=True)
class Domain:
    """A named scene distribution with the depth range its scenes are built to respect."""

    name: str
    sampler: Callable[[np.random.Generator, tuple[int, int]], SceneBuilder]
    min_depth: float
    max_depth: float
    protocol: str
    #: The ground truths (``gt=``) whose sensor suits the domain's scenes (see :mod:`depthkd.sim.groundtruth`).
    ground_truths: tuple[str, ...] = ("dense",)


REGISTRY: dict[str, Domain] = {
    "indoor": Domain("indoor", sample_indoor, 0.2, 10.0, "sim_indoor", ("dense", "kinect", "kinect_filled")),
    "outdoor": Domain("outdoor", sample_outdoor, 1.0, 80.0, "sim_outdoor", ("dense", "lidar", "lidar_annotated")),
    "ood_shapes": Domain("ood_shapes", sample_ood_shapes, 0.1, 18.0, "none"),
    "ood_clutter": Domain("ood_clutter", sample_ood_clutter, 0.05, 10.0, "none"),
}
DOMAINS: tuple[str, ...] = tuple(REGISTRY)
OOD_DOMAINS: tuple[str, ...] = ("ood_shapes", "ood_clutter")


def get_domain(name: str) -> Domain:
    """The registered domain ``name``; :class:`ConfigError` naming the choices otherwise."""
    if name not in REGISTRY:
        raise ConfigError(f"unknown simulator domain {name!r}; expected one of {', '.join(DOMAINS)}")
    return REGISTRY[name]


def check_ground_truth(gt: str, domain: str) -> str:
    """``gt`` if it is a known ground truth that suits ``domain``; :class:`ConfigError` saying what fits otherwise
    (a LiDAR scans streets, a Kinect rooms)."""
    check_known(gt)
    fits = get_domain(domain).ground_truths
    if gt not in fits:
        raise ConfigError(f"gt={gt!r} does not fit the {domain} domain; {domain} takes gt={', '.join(fits)}")
    return gt


def scene_generator(domain: str, seed: int, index: int) -> np.random.Generator:
    """The generator of scene ``index`` for ``seed`` in ``domain`` (independent streams)."""
    tag = zlib.crc32(domain.encode())
    return SceneRandom(np.random.PCG64(np.random.SeedSequence([seed % 2**63, index % 2**63, tag])))


def sample_scene(domain: str, seed: int, index: int, size: tuple[int, int]) -> Scene:
    """Scene ``index`` of ``seed`` in ``domain`` for images of ``size = (H, W)``."""
    sampler = get_domain(domain).sampler
    rng = scene_generator(domain, seed, index)
    builder = sampler(rng, size)
    builder.noise_seed = int(rng.integers(2**62))
    return builder.build()
