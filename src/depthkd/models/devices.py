"""Checking a device name before a model is moved there, so a missing GPU is one clear line."""

from __future__ import annotations

import torch

from depthkd.errors import ConfigError


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a :class:`torch.device` if this machine has it, else a :class:`ConfigError` saying what
    it has (torch's own error names the missing driver deep inside the first ``.to()``)."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"device {device!r} is not a device name (expected cpu, cuda, cuda:N or mps)") from err
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"device {device!r}: this machine has no usable CUDA device; use cpu")
        if resolved.index is not None and resolved.index >= count:
            raise ConfigError(f"device {device!r}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}")
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {device!r}: MPS is not available on this machine; use cpu")
    return resolved
