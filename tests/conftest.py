"""Shared test setup: quiet progress bars, two CPU threads, deterministic seeds."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("DEPTHKD_PROGRESS", "0")
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


TINY_DEPTH_ANYTHING = {
    "hidden_size": 32,
    "num_layers": 4,
    "num_heads": 2,
    "patch_size": 8,
    "neck_hidden_sizes": [8, 16, 32, 32],
    "fusion_hidden_size": 16,
    "head_hidden_size": 8,
}
"""``arch_options`` of a depth-anything student small enough for tests (a tiny sim-vit)."""


@pytest.fixture(scope="session")
def tiny_depth_anything_options() -> dict:
    return {k: (list(v) if isinstance(v, list) else v) for k, v in TINY_DEPTH_ANYTHING.items()}
