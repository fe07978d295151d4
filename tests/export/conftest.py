"""Fixtures of the export tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from export_utils import SIZE


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny 64x64 graphs gain nothing from a second thread, and idle-spinning threads cost a lot of
    CPU when the machine is shared; benchmarks set their own thread count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def images() -> torch.Tensor:
    """One random 64x64 RGB image in [0,1]."""
    return torch.rand(1, 3, *SIZE, generator=torch.Generator().manual_seed(7))
