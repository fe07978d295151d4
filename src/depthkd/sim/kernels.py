"""Optional compiled ray-primitive tests, for long simulator runs.

Each intersection test is a chain of about twenty elementwise passes over (pairs x rays); under
``torch.compile`` it becomes one fused loop (the slab test alone: 14x faster). Measured on a 2-core CPU
at 120x160, one thread per process (as in DataLoader workers): 12-17% less time per image, 6% more
images/s from two processes (``python benchmarks/sim_speed.py --compile``); in one process with two
threads it was slower. Compiling takes 10-25 s the first time a process meets each kind of test
(PyTorch caches the result on disk, so later processes load it in seconds).

Off by default (our default): short runs, the CLI and the tests would pay the compilation, and it needs
a C++ compiler (CPU) or Triton (GPU). Turn it on with :func:`compile_kernels` or the environment variable
``DEPTHKD_SIM_COMPILE=1`` (forked DataLoader workers inherit either, spawned ones only the variable).
Compiled tests agree with the eager ones to float rounding, not bit for bit (and an image's last bits may
then depend on which scenes share its render pass), so keep them off for data that must be reproduced
byte for byte. If compiling fails, a warning says why and the eager test is used from then on.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import torch

from depthkd.sim.primitives import INTERSECT

_enabled = os.environ.get("DEPTHKD_SIM_COMPILE", "").strip() not in ("", "0")


def compile_kernels(enabled: bool = True) -> None:
    """Use compiled intersection tests from now on (``False``: the eager ones)."""
    global _enabled
    _enabled = bool(enabled)


def kernels_compiled() -> bool:
    """Whether renders use the compiled intersection tests."""
    return _enabled


class CompiledKernel:
    """``fn`` under ``torch.compile`` (dynamic shapes: pair counts change every batch), compiled on
    first use; after a failure to compile, ``fn`` itself."""

    def __init__(self, fn: Callable[..., torch.Tensor]) -> None:
        self.fn = fn
        self.failed = False
        self._compiled: Callable[..., torch.Tensor] | None = None

    def __call__(self, *args, **kwargs) -> torch.Tensor:
        if self.failed:
            return self.fn(*args, **kwargs)
        if self._compiled is None:
            _compile_in_process()
            self._compiled = torch.compile(self.fn, dynamic=True)
        try:
            return self._compiled(*args, **kwargs)
        except Exception as exc:  # no C++ compiler, no Triton, an unsupported platform...
            self.failed = True
            warnings.warn(f"compiling the simulator's {self.fn.__name__} failed ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}); using the eager version",
                          RuntimeWarning, stacklevel=2)
            return self.fn(*args, **kwargs)


def _compile_in_process() -> None:
    """Compile in this process, without a pool of compiler workers: such a pool does not survive the
    fork of DataLoader workers or process pools (a forked child can wait forever on its locks)."""
    import torch._inductor.config as inductor_config

    inductor_config.compile_threads = 1


COMPILED_INTERSECT = tuple(CompiledKernel(fn) for fn in INTERSECT)


def intersect(kind: int) -> Callable[..., torch.Tensor]:
    """The intersection test of primitive ``kind``: compiled or eager, per :func:`compile_kernels`."""
    return COMPILED_INTERSECT[kind] if _enabled else INTERSECT[kind]
