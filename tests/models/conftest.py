"""Fixtures shared by the student tests: tiny images keep every forward pass in milliseconds."""

from __future__ import annotations

import pytest
import torch

TINY_SIZE = (32, 48)


@pytest.fixture
def tiny_images() -> torch.Tensor:
    """Two random RGB images in [0,1] of 32x48 pixels."""
    generator = torch.Generator().manual_seed(123)
    return torch.rand(2, 3, *TINY_SIZE, generator=generator)
