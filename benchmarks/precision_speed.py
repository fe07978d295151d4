"""Does bf16 autocast + channels-last speed up the benchmark's steps on this CPU? Ratios in one run.

    python benchmarks/precision_speed.py [--threads 2] [--steps 6] [--warmup 2]

Times, for each setting's shapes, a student training step (forward, a loss on every output the methods
use, backward, AdamW) and a teacher forward (the built-in teachers, as the teacher cache runs them) in
float32 and under ``torch.autocast("cpu", torch.bfloat16)`` with channels-last inputs and weights, as
``trainer.precision: bf16-mixed`` and ``trainer.channels_last: true`` run them. Prints a Markdown table
of median seconds and the fp32 / bf16 ratio (above 1: bf16 is faster). Whether results stay within the
seed spread in bf16 is a question for the method benchmark, not for this timing.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from depthkd.models import build_student, load_teacher

CASES = {
    # name: (student head, bins, max depth, batch, crop)
    "kitti-like student, regression": ("regression", None, 80.0, 8, (96, 320)),
    "kitti-like student, 257-bin DPM": ("dpm", 257, 80.0, 8, (96, 320)),
    "nyu-like student, 49-bin DPM": ("dpm", 49, 10.0, 8, (96, 128)),
}
TEACHERS = {"sim-vit-outdoor": (8, (128, 416)), "sim-vit": (8, (128, 160))}


def median_seconds(step: Callable[[], None], steps: int, warmup: int) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def student_step(head: str, bins: int | None, max_depth: float, batch: int, size: tuple[int, int],
                 bf16: bool) -> Callable[[], None]:
    torch.manual_seed(0)
    model = build_student("mobilenetv2_100", head=head, num_bins=bins, max_depth=max_depth).train()
    images = torch.rand(batch, 3, *size)
    if bf16:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(images)
            loss = out.depth.float().mean() + (out.logits.float().logsumexp(1).mean() if out.logits is not None else 0)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    return step


def teacher_forward(name: str, batch: int, size: tuple[int, int], bf16: bool) -> Callable[[], None]:
    teacher = load_teacher(name)
    images = torch.rand(batch, 3, *size)
    if bf16:
        images = images.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            teacher(images)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name, (head, bins, max_depth, batch, size) in CASES.items():
        fp32, bf16 = (median_seconds(student_step(head, bins, max_depth, batch, size, flag), args.steps, args.warmup)
                      for flag in (False, True))
        rows.append((f"{name}, batch {batch} at {size[0]}x{size[1]}, training step", fp32, bf16))
    for name, (batch, size) in TEACHERS.items():
        fp32, bf16 = (median_seconds(teacher_forward(name, batch, size, flag), args.steps, args.warmup)
                      for flag in (False, True))
        rows.append((f"teacher `{name}`, batch {batch} at {size[0]}x{size[1]}, forward", fp32, bf16))
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.steps} after {args.warmup} warm-up\n")
    print("| step | fp32 s | bf16 + channels-last s | fp32 / bf16 |")
    print("|---|---:|---:|---:|")
    for label, fp32, bf16 in rows:
        print(f"| {label} | {fp32:.3f} | {bf16:.3f} | {fp32 / bf16:.2f} |")


if __name__ == "__main__":
    main()
