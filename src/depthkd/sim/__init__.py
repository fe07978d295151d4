"""Procedural RGB-D scene simulator: batched ray casting in PyTorch (CPU or GPU).

``render_batch(domain, batch_size, size, seed, device)`` renders RGB, metric z-depth, instance and
class maps and intrinsics; ``SimDataset`` serves them to a DataLoader; ``write_dataset`` and
``write_preview`` write them to disk. ``SceneBuilder`` + ``render_scenes`` render hand-built scenes.
"""

from depthkd.sim.dataset import SimDataset
from depthkd.sim.domains import DOMAINS, OOD_DOMAINS, REGISTRY, get_domain, sample_scene
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
    "get_domain",
    "render_batch",
    "render_scenes",
    "sample_scene",
    "write_dataset",
    "write_preview",
]
