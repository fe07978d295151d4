"""Latency, throughput, peak memory, parameters and MACs of a depth model; student vs teacher ratios.

How each number is measured:

- **Latency**: wall time (``time.perf_counter``) of each of ``iters`` calls on one fixed random batch,
  after ``warmup`` untimed calls (allocator arenas, kernel selection, lazy initialisation); p50/p90
  are the 50th/90th percentiles of those times, in milliseconds. Throughput = ``batch`` x ``iters`` /
  total timed seconds (images per second).
- **Peak memory**: working memory of inference, i.e. the peak resident set size during warm-up and
  timed calls minus the resident size just before them (the loaded model's weights are not counted;
  see ``weights_mb``). On Linux the kernel's high-water mark ``VmHWM`` (``/proc/self/status``) is
  reset before measuring by writing ``5`` to ``/proc/self/clear_refs``, so the number belongs to this
  model alone, without psutil. Freed heap memory is handed back to the system first (garbage
  collection, then glibc's ``malloc_trim``), so a model benchmarked after another does not reuse
  pages already counted in the baseline. Where the reset is not possible, ``resource.getrusage``'s
  ``ru_maxrss`` (the process's lifetime peak) is used and the report says so.
- **Parameters**: :func:`depthkd.bench.count_parameters` of the PyTorch model (for a bare ``.onnx``
  file: the element count of its weight initialisers, quantisation scales excluded).
- **MACs**: :func:`depthkd.bench.count_macs` at the benchmark size and batch (``None`` for a bare
  ``.onnx`` file).
- **Threads**: ``torch.set_num_threads`` (restored afterwards) or onnxruntime's
  ``intra_op_num_threads``; inter-op parallelism off.

The onnxruntime backend times a PyTorch model through a static ONNX graph of the benchmark's batch
and size, exported to a temporary folder (parity is :func:`depthkd.export.export_onnx`'s job, not
re-checked here). Every model runs on the CPU.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import math
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from depthkd.bench import count_macs, count_parameters
from depthkd.errors import ConfigError, ModelError
from depthkd.export.convert import size_of, torch_to_onnx
from depthkd.export.graph import DepthGraph, GraphInput
from depthkd.export.runtime import onnx_session
from depthkd.export.specs import ModelSource, load_model_spec
from depthkd.progress import track

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime")
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


# --------------------------------------------------------------------------------------- memory


def _status_kb(key: str) -> int | None:
    """A ``kB`` value from ``/proc/self/status`` (``VmRSS``, ``VmHWM``), or ``None`` off Linux."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_peak() -> bool:
    """Reset the kernel's resident-set high-water mark of this process (Linux >= 4.0)."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def _release_free_memory() -> None:
    """Collect garbage and return freed heap pages to the system (glibc only; a no-op elsewhere)."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        libc = ctypes.CDLL(name)
        if hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)
    except OSError:
        return


def _maxrss_kb() -> int:
    """``ru_maxrss`` in kB (macOS reports bytes)."""
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value // 1024 if sys.platform == "darwin" else value


@dataclass
class PeakMemory:
    """Result of :func:`peak_memory`: ``peak_mb`` above the resident size at entry, and the method."""

    peak_mb: float = 0.0
    method: str = ""


@contextmanager
def peak_memory() -> Iterator[PeakMemory]:
    """Measure the peak resident memory reached inside the block, above the level at entry."""
    result = PeakMemory()
    _release_free_memory()
    baseline = _status_kb("VmRSS")
    exact = baseline is not None and _reset_peak()
    if not exact:
        baseline = _maxrss_kb()
    try:
        yield result
    finally:
        if exact:
            peak = _status_kb("VmHWM") or 0
            result.method = "VmHWM above VmRSS at start (peak reset via /proc/self/clear_refs)"
        else:
            peak = _maxrss_kb()
            result.method = "ru_maxrss growth (process lifetime peak; 0 if an earlier peak was higher)"
        result.peak_mb = max(0, peak - int(baseline or 0)) / 1024


# -------------------------------------------------------------------------------------- latency


@dataclass
class LatencyStats:
    """Timing of ``iters`` calls (see module docs); times in milliseconds."""

    p50_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    throughput: float
    iters: int
    warmup: int
    batch: int


def measure_latency(
    run: Callable[[], object], warmup: int = 5, iters: int = 20, batch: int = 1, description: str = "timing"
) -> LatencyStats:
    """Call ``run`` ``warmup`` times untimed, then ``iters`` times timed, with a progress bar."""
    if iters < 1 or warmup < 0:
        raise ConfigError(f"need iters >= 1 and warmup >= 0, got iters={iters}, warmup={warmup}")
    times: list[float] = []
    for step in track(range(warmup + iters), description):
        start = time.perf_counter()
        run()
        if step >= warmup:
            times.append(time.perf_counter() - start)
    ms = np.asarray(times) * 1000.0
    return LatencyStats(
        p50_ms=float(np.percentile(ms, 50)),
        p90_ms=float(np.percentile(ms, 90)),
        mean_ms=float(ms.mean()),
        min_ms=float(ms.min()),
        throughput=batch * len(times) / float(np.sum(times)),
        iters=iters,
        warmup=warmup,
        batch=batch,
    )


# ------------------------------------------------------------------------------------ reports


@dataclass
class ModelBenchmark:
    """One model's numbers.

    Attributes:
        spec: what was benchmarked; label: its short name.
        backend: ``torch`` or ``onnxruntime``; threads: CPU threads.
        size: input ``(H, W)``; batch: images per call.
        kind: what the model outputs.
        latency: timing (see :class:`LatencyStats`).
        peak_memory_mb, memory_method: working memory of inference and how it was measured.
        params: parameter count; macs: multiply-accumulates per call (``None`` when unknown).
        weights_mb: size of the weights (in memory for PyTorch, the file for ONNX).
        timed: which graph or module the figures are of (a given ``.onnx`` file, or a fresh export).
    """

    spec: str
    label: str
    backend: str
    threads: int
    size: tuple[int, int]
    batch: int
    kind: str
    latency: LatencyStats
    peak_memory_mb: float
    memory_method: str
    params: int | None
    macs: int | None
    weights_mb: float
    timed: str = ""


def _fmt(value: float | None, digits: int = 1, scale: float = 1.0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value / scale:.{digits}f}"


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return float(numerator) / float(denominator)


@dataclass
class BenchmarkReport:
    """A student's numbers and, optionally, a teacher's and the ratios between them."""

    model: ModelBenchmark
    teacher: ModelBenchmark | None = None

    def ratios(self) -> dict[str, float | None]:
        """Teacher / student ratios: > 1 means the student is faster / smaller / cheaper."""
        if self.teacher is None:
            return {}
        s, t = self.model, self.teacher
        return {
            "latency_p50": _ratio(t.latency.p50_ms, s.latency.p50_ms),
            "throughput": _ratio(s.latency.throughput, t.latency.throughput),
            "params": _ratio(t.params, s.params),
            "macs": _ratio(t.macs, s.macs),
            "peak_memory": _ratio(t.peak_memory_mb, s.peak_memory_mb),
        }

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": asdict(self.model)}
        if self.teacher is not None:
            out["teacher"] = asdict(self.teacher)
            out["ratios"] = self.ratios()
        return out

    def to_markdown(self) -> str:
        """A results table (and a ratio table with a teacher)."""
        rows = [self.model] + ([self.teacher] if self.teacher is not None else [])
        first = rows[0]
        lines = [
            f"Input {first.size[0]}x{first.size[1]}, batch {first.batch}, {first.threads} threads, CPU.",
            "",
            "| model | backend | p50 ms | p90 ms | img/s | peak MB | params (M) | GMACs |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for row in rows:
            lines.append(
                f"| {row.label} | {row.backend} | {_fmt(row.latency.p50_ms)} | {_fmt(row.latency.p90_ms)} | "
                f"{_fmt(row.latency.throughput, 2)} | {_fmt(row.peak_memory_mb, 0)} | {_fmt(row.params, 2, 1e6)} | "
                f"{_fmt(row.macs, 2, 1e9)} |"
            )
        if self.teacher is not None:
            ratios = self.ratios()
            names = {
                "latency_p50": "latency (p50)",
                "throughput": "throughput",
                "params": "parameters",
                "macs": "MACs",
                "peak_memory": "peak memory",
            }
            lines += ["", "| teacher / student | ratio |", "|---|---:|"]
            for key, name in names.items():
                value = ratios[key]
                lines.append(f"| {name} | {'n/a' if value is None else f'{value:.1f}x'} |")
        lines += [""] + [f"Timed for {row.label}: {row.timed}." for row in rows if row.timed]
        lines += ["", f"Peak memory: {first.memory_method}."]
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- measuring


def onnx_parameter_count(path: str | Path) -> int:
    """Elements in an ONNX graph's weight initialisers (quantisation scales/zero points excluded)."""
    from depthkd.export.convert import read_onnx

    model = read_onnx(path)
    total = 0
    for tensor in model.graph.initializer:
        if tensor.name.endswith(("_scale", "_zero_point")) or len(tensor.dims) == 0:
            continue
        total += int(np.prod(tensor.dims))
    return total


def _weights_mb(module: nn.Module) -> float:
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def benchmark_source(
    source: ModelSource,
    size: tuple[int, int],
    backend: str,
    threads: int,
    warmup: int,
    iters: int,
    batch: int,
    seed: int = 0,
    exporter: str = "dynamo",
) -> ModelBenchmark:
    """Benchmark one resolved model (see :func:`benchmark`)."""
    images = torch.rand(batch, 3, *size, generator=torch.Generator().manual_seed(seed))
    description = f"benchmark {source.label} ({backend})"
    with _torch_threads(threads):
        params = count_parameters(source.module) if source.module is not None else None
        macs = count_macs(source.module, input_size=size, batch=batch) if source.module is not None else None
        timed = f"the PyTorch module of {source.spec}"
        if backend == "torch":
            if source.module is None:
                raise ConfigError(f"{source.spec} is an ONNX graph: benchmark it with backend='onnxruntime'")
            module = source.module.eval()
            weights_mb = _weights_mb(module)

            def run() -> object:
                with torch.inference_mode():
                    return module(images)

            with peak_memory() as memory:
                latency = measure_latency(run, warmup, iters, batch, description)
        else:
            with tempfile.TemporaryDirectory(prefix="depthkd-bench-") as folder:
                path = source.onnx_path
                timed = f"the ONNX graph {path} as given"
                if path is None:
                    timed = (f"a fresh float32 ONNX export of {source.spec} at {size[0]}x{size[1]} (not a file "
                             "`depthkd export` wrote: pass that .onnx to time it)")
                    path = Path(folder) / "model.onnx"
                    torch_to_onnx(DepthGraph(source.module).eval(), images, path, exporter=exporter)  # type: ignore[arg-type]
                if params is None:
                    params = onnx_parameter_count(path)
                weights_mb = Path(path).stat().st_size / 2**20
                session = onnx_session(path, threads=threads)
                graph_images = _onnx_input(session, images)
                name = session.get_inputs()[0].name
                with peak_memory() as memory:
                    latency = measure_latency(
                        lambda: session.run(None, {name: graph_images}), warmup, iters, batch, description
                    )
    return ModelBenchmark(
        spec=source.spec,
        label=source.label,
        backend=backend,
        threads=threads,
        size=size,
        batch=batch,
        kind=source.kind,
        latency=latency,
        peak_memory_mb=memory.peak_mb,
        memory_method=memory.method,
        params=params,
        macs=macs,
        weights_mb=weights_mb,
        timed=timed,
    )


def _onnx_input(session: Any, images: torch.Tensor) -> np.ndarray:
    """The images in the layout and dtype the graph declares (float NCHW, uint8 NHWC, float16)."""
    graph = session.get_inputs()[0]
    if graph.type == "tensor(uint8)":
        return GraphInput("uint8").to_graph(images)
    array = GraphInput("float").to_graph(images)
    return array.astype(np.float16) if graph.type == "tensor(float16)" else array


def benchmark(
    model_spec: str | Path | nn.Module,
    teacher: str | Path | nn.Module | None = None,
    size: Sequence[int] = (480, 640),
    backend: str = "torch",
    threads: int = 2,
    warmup: int = 5,
    iters: int = 20,
    batch: int = 1,
    seed: int = 0,
    exporter: str = "dynamo",
) -> BenchmarkReport:
    """Latency, throughput, peak memory, parameters and MACs of a model (and a teacher to compare).

    Args:
        model_spec: a module or a spec (:mod:`depthkd.export.specs`): ``.safetensors``, ``.onnx``,
            ``student:BACKBONE``, ``arch:NAME`` or a teacher spec.
        teacher: the same kinds of spec; adds teacher/student ratios to the report.
        size: input ``(H, W)``.
        backend: ``torch`` or ``onnxruntime`` (PyTorch models are exported to a temporary graph).
        threads: CPU threads of the backend.
        warmup, iters: untimed and timed calls.
        batch: images per call.
        seed: seed of the random input batch.
        exporter: how PyTorch models become graphs for ``onnxruntime`` (:mod:`depthkd.export.convert`).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
    if threads < 1 or batch < 1:
        raise ConfigError(f"threads and batch must be positive, got threads={threads}, batch={batch}")
    size = size_of(size)
    try:
        settings = (size, backend, threads, warmup, iters, batch, seed, exporter)
        student = benchmark_source(load_model_spec(model_spec), *settings)
        other = benchmark_source(load_model_spec(teacher), *settings) if teacher is not None else None
    except RuntimeError as err:  # a model that cannot run at this size/batch
        raise ModelError(f"benchmark failed: {err}") from err
    return BenchmarkReport(student, other)
