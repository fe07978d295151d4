"""Fixtures of the export tests."""

from __future__ import annotations

import pytest
import torch
from export_utils import SIZE


@pytest.fixture
def images() -> torch.Tensor:
    """One random 64x64 RGB image in [0,1]."""
    return torch.rand(1, 3, *SIZE, generator=torch.Generator().manual_seed(7))
