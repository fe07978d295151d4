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
