"""Simulator throughput against its targets, and against a student's training step.

Measures, on ``--threads`` CPU threads (default 2):

- ``render_batch("indoor")`` at 240x320 and 120x160 (scenes with >= 20 primitives, textures,
  shading, shadows): images per second, best of ``--repeats`` timed batches after a warm-up;
  targets 50 and 200 images/s;
- other domains at 240x320, for information;
- each sensor ground truth (``gt=lidar`` and ``lidar_annotated`` on streets at 128x416 and KITTI's
  375x1242, ``gt=kinect`` and ``kinect_filled`` indoors at 120x160 and NYU's 480x640) beside
  ``gt=dense`` of the same scenes: images per second and the cost relative to dense depth
  (``--skip-gt`` leaves them out);
- ``render_batch`` in ``--workers`` independent processes of one thread each (a barrier starts
  them together): what the cores give when each renders whole batches, scene sampling (Python)
  included, instead of sharing every op between threads;
- the scenes as training reads them: a :class:`~depthkd.sim.SimDataset` through the engine's own
  training ``DataLoader`` (``depthkd.engine.data.train_loader``: shuffled indices, a batch prefetched
  in one render pass) with ``--workers`` processes (default: one per thread; PyTorch gives each
  worker one thread); the gap to the figure above is the cost of handing batches between processes;
  both multi-process figures are the best of ``--repeats`` timed windows of about a second each,
  with the median window in brackets (other jobs on the machine only ever slow a window down);
- one training step of a MobileNetV2 student (timm ``mobilenetv2_100`` features_only encoder and a
  small convolutional decoder; forward, backward, AdamW step) on a batch of 8 at 240x320, and the
  ratio of simulator images/s to training images/s (target >= 3: the simulator must not be the
  bottleneck of training on simulated data).

Wall-clock numbers depend on what else runs on the machine. With two OpenMP threads on two busy
cores, threads spin at every op's barrier while the other is descheduled, which inflates both wall
and CPU time several-fold; ``--threads 1`` then gives the cleaner per-core cost (CPU ms/img). To
compare renderer changes on a shared machine, count instructions instead (``render_work.py``).

``--compile`` times the renderer with its compiled ray-primitive tests (:mod:`depthkd.sim.kernels`); each
process compiles them in its warm-up (10-25 s the first time, seconds once PyTorch's cache holds them).

    python benchmarks/sim_speed.py [--threads 2] [--workers 2] [--repeats 5] [--device cpu] [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn


#: Indoor throughput targets (images/s on 2 CPU cores) by image size.
TARGETS = {(240, 320): 50.0, (120, 160): 200.0}

#: The sensor ground-truth rows: domain, size, batch, sensors (each timed beside gt=dense).
GT_CASES = [
    ("outdoor", (128, 416), 8, ("lidar", "lidar_annotated")),
    ("outdoor", (375, 1242), 2, ("lidar", "lidar_annotated")),
    ("indoor", (120, 160), 16, ("kinect", "kinect_filled")),
    ("indoor", (480, 640), 2, ("kinect", "kinect_filled")),
]


def print_row(domain: str, size: tuple[int, int], batch: int, rate: float, prims: float | None = None,
              cpu_ms: float | None = None, median: float | None = None) -> None:
    """One line of the results table, with the verdict against :data:`TARGETS` for indoor scenes;
    ``median``: the median rate of the timed windows, printed after the verdict."""
    target = TARGETS.get(size) if domain == "indoor" else None
    verdict = "" if target is None else ("ok" if rate >= target else f"< {target:g}")
    prims_text = "" if prims is None else f"{prims:.1f}"
    cpu_text = "" if cpu_ms is None else f"{cpu_ms:.1f}"
    median_text = "" if median is None else f" ({median:.1f})"
    print(f"{domain:12s} {size[0]:>3d}x{size[1]:<4d} {batch:5d} {prims_text:>6s} {rate:8.1f} {cpu_text:>10s} "
          f"{verdict:>7s}{median_text}")


def best_time(fn, repeats: int) -> tuple[float, float]:
    """Best wall time and the CPU time of that run, after one warm-up call."""
    fn()
    best_wall, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        cpu, wall = time.process_time(), time.perf_counter()
        fn()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if wall < best_wall:
            best_wall, best_cpu = wall, cpu
    return best_wall, best_cpu


class TinyDepthStudent(nn.Module):
    """MobileNetV2 encoder (timm, features_only) + a few conv/upsample layers to a depth map."""

    def __init__(self) -> None:
        super().__init__()
        import timm

        self.encoder = timm.create_model("mobilenetv2_100", features_only=True, pretrained=False)
        channels = self.encoder.feature_info.channels()
        self.reduce = nn.Conv2d(channels[-1], 128, 1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(128 + c, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(inplace=True))
            for c in reversed(channels[:-1])
        )
        self.head = nn.Conv2d(128, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)
        y = self.reduce(features[-1])
        for block, skip in zip(self.blocks, reversed(features[:-1])):
            y = nn.functional.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = block(torch.cat([y, skip], dim=1))
        y = nn.functional.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return nn.functional.softplus(self.head(y))


def _render_in_process(domain: str, size: tuple[int, int], batch: int, batches: int, windows: int, offset: int,
                       barrier) -> list[float]:
    """Seconds of each of ``windows`` timed windows of ``batches`` batches; every window starts at a
    barrier shared with the other processes, so the windows of all processes overlap."""
    torch.set_num_threads(1)
    from depthkd.sim import render_batch

    render_batch(domain, batch, size, offset)  # warm-up
    seconds = []
    for window in range(windows):
        barrier.wait()
        start = time.perf_counter()
        for k in range(batches):
            render_batch(domain, batch, size, offset + 1 + window * batches + k)
        seconds.append(time.perf_counter() - start)
    return seconds


def process_rates(domain: str, size: tuple[int, int], workers: int, batch: int, windows: int,
                  batches: int = 6) -> list[float]:
    """Images/s of ``workers`` processes rendering at once (one thread each), per timed window; a
    window lasts until its slowest process is done."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    with context.Manager() as manager, context.Pool(workers) as pool:
        barrier = manager.Barrier(workers)
        jobs = [pool.apply_async(_render_in_process, (domain, size, batch, batches, windows, 100_000 * w, barrier))
                for w in range(workers)]
        per_worker = [job.get() for job in jobs]
    return [workers * batches * batch / max(window) for window in zip(*per_worker)]


def loader_rates(domain: str, size: tuple[int, int], workers: int, batch: int, windows: int,
                 batches: int = 24) -> list[float]:
    """Images/s of a ``SimDataset`` through the engine's training DataLoader with ``workers``
    processes, per timed window of ``batches`` batches, in steady state (after every worker has
    delivered its first batches)."""
    from depthkd.config import DataConfig
    from depthkd.engine.data import train_loader
    from depthkd.sim import SimDataset

    dataset = SimDataset(domain, length=1_000_000, size=size, seed=0)
    loader = train_loader(dataset, DataConfig(batch_size=batch, num_workers=workers), seed=0, rank=0,
                          world_size=1, start_batch=0)
    batches_seen = iter(loader)
    for _ in range(2 * workers):  # warm-up: worker start, first chunks
        next(batches_seen)
    rates = []
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(batches):
            next(batches_seen)
        rates.append(batches * batch / (time.perf_counter() - start))
    del batches_seen  # shuts the workers down
    return rates


def training_step_time(device: torch.device, repeats: int, batch: int = 8, size=(240, 320)) -> tuple[float, float]:
    model = TinyDepthStudent().to(device).train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images = torch.rand(batch, 3, *size, device=device)
    target = torch.rand(batch, 1, *size, device=device) + 0.5

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        loss = (model(images) - target).abs().mean()
        loss.backward()
        optimiser.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return best_time(step, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader worker processes of the training-path figures (default: --threads)")
    parser.add_argument("--skip-student", action="store_true", help="only time the simulator")
    parser.add_argument("--skip-gt", action="store_true", help="do not time the sensor ground truths")
    parser.add_argument("--compile", action="store_true",
                        help="compiled ray-primitive tests (depthkd.sim.compile_kernels); worker processes inherit it")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    from depthkd.sim import DOMAINS, compile_kernels, render_batch, sample_scene

    compile_kernels(args.compile)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    print(f"threads={torch.get_num_threads()} device={device} compiled kernels={args.compile}")
    print(f"{'domain':12s} {'size':>8s} {'batch':>5s} {'prims':>6s} {'img/s':>8s} {'cpu ms/img':>10s} {'target':>7s}")
    results = {}
    cases = [("indoor", (240, 320), 8), ("indoor", (120, 160), 16)]
    cases += [(d, (240, 320), 8) for d in DOMAINS if d != "indoor"]
    for domain, size, batch in cases:
        seeds = iter(range(1000))
        wall, cpu = best_time(lambda: (render_batch(domain, batch, size, next(seeds), device), sync()), args.repeats)
        prims = sum(sample_scene(domain, 0, i, size).num_primitives for i in range(batch)) / batch
        rate = batch / wall
        results[(domain, size)] = rate
        print_row(domain, size, batch, rate, prims, cpu / batch * 1000)

    if not args.skip_gt:
        print(f"Sensor ground truth (gt=), one process of {torch.get_num_threads()} threads, best of {args.repeats}:")
        print(f"{'domain':12s} {'size':>8s} {'batch':>5s} {'gt':>14s} {'img/s':>8s} {'ms/img':>8s} {'x dense':>8s}")
        for domain, size, batch, sensors in GT_CASES:
            dense_wall = None
            for gt in ("dense", *sensors):
                seeds = iter(range(1000))
                wall, _ = best_time(lambda: (render_batch(domain, batch, size, next(seeds), device, gt=gt), sync()),
                                    args.repeats)
                dense_wall = dense_wall or wall
                print(f"{domain:12s} {size[0]:>3d}x{size[1]:<4d} {batch:5d} {gt:>14s} {batch / wall:8.1f} "
                      f"{wall / batch * 1000:8.1f} {wall / dense_wall:8.2f}")

    if device.type == "cpu":
        workers = args.workers or args.threads
        # Per worker, larger batches at 120x160: each process's per-op overhead is its own.
        cases = [("indoor", (240, 320), 8), ("indoor", (120, 160), 32)]
        for title, measure in [
            (f"render_batch in {workers} processes at once (1 thread each):", process_rates),
            (f"As training reads them: SimDataset + the engine's DataLoader, {workers} worker processes "
             "(1 thread each):", loader_rates),
        ]:
            print(title + f" best of {args.repeats} windows (median)")
            for domain, size, chunk in cases:
                rates = measure(domain, size, workers, chunk, args.repeats)
                print_row(domain, size, chunk, max(rates), median=statistics.median(rates))

    if args.skip_student:
        return
    wall, cpu = training_step_time(device, args.repeats)
    train_rate = 8 / wall
    sim_rate = results[("indoor", (240, 320))]
    print(f"MobileNetV2 student training step, batch 8 at 240x320: {wall * 1000:.0f} ms "
          f"({train_rate:.1f} img/s, cpu {cpu / 8 * 1000:.0f} ms/img)")
    ratio = sim_rate / train_rate
    print(f"simulator / training throughput: {ratio:.1f}x ({'ok' if ratio >= 3 else '< 3x target'})")


if __name__ == "__main__":
    main()
