"""Deployment figures: CPU latency of students vs a real teacher architecture, and int8 vs float32.

What it measures (onnxruntime, CPU, ``--threads`` threads, ``--size`` input, default 2 and 480x640):

1. MobileNetV2 (regression head), EfficientNet-B0 and ResNet-18 students against the Depth Anything
   V2 Small architecture (``arch:depth-anything-v2-small``: random weights, with the resize of the
   input to ~518 px at a multiple of 14 and of the output back to the input size inside the timed
   graph). Target: the MobileNetV2 student >= 10x faster.
2. The MobileNetV2 student in int8 (static QDQ, calibrated on simulated scenes) against float32.
   Targets: >= 1.5x faster, AbsRel no more than 2% worse (relative) on simulated test scenes.

The int8 accuracy needs a student that predicts sensible depth: pass a trained checkpoint with
``--checkpoint student.safetensors``, or let the script train one briefly on the simulator (plain
PyTorch loop, SILog loss, ``--train-steps`` steps at ``--train-size``; a few minutes on 2 cores).
Accuracy is measured at the training size (where the student is meaningful) on scenes rendered with
seeds the training and the calibration never used; latency at ``--size``.

Usage::

    python benchmarks/deploy_latency.py                   # print the Markdown table
    python benchmarks/deploy_latency.py --write           # also write benchmarks/results/deploy-<date>.md
    python benchmarks/deploy_latency.py --quick           # seconds-scale settings, to check it runs

Timings on a shared machine are noisy: the table records the load average before and after.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from depthkd.bench import cpu_name
from depthkd.cli import parse_size
from depthkd.export import export_onnx
from depthkd.latency import BenchmarkReport, ModelBenchmark, benchmark
from depthkd.losses import silog_loss
from depthkd.models import build_student, load_student, save_student
from depthkd.progress import track
from depthkd.sim import render_batch

RESULTS = Path(__file__).resolve().parent / "results"
TEACHER = "arch:depth-anything-v2-small"
STUDENTS = ("mobilenetv2_100", "efficientnet_b0", "resnet18")
TARGET_SPEEDUP, TARGET_INT8_SPEEDUP, TARGET_ABS_REL_CHANGE = 10.0, 1.5, 0.02
# Seed ranges kept apart: training scenes, accuracy test scenes (calibration uses export's seed + 1).
TRAIN_SEED, TEST_SEED = 1_000, 9_000


def train_student(steps: int, size: tuple[int, int], batch_size: int, lr: float, seed: int) -> torch.nn.Module:
    """A MobileNetV2 regression student trained on simulated indoor scenes with SILog (AdamW, cosine lr)."""
    torch.manual_seed(seed)
    student = build_student("mobilenetv2_100", "regression", max_depth=10.0)
    optimizer = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=1e-2)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(steps, 1))
    student.train()
    for step in track(range(steps), "training a student on the simulator"):
        scenes = render_batch("indoor", batch_size=batch_size, size=size, seed=TRAIN_SEED + step)
        loss = silog_loss(student(scenes["image"]).depth, scenes["depth"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return student.eval()


def student_checkpoint(args: argparse.Namespace, folder: Path) -> tuple[Path, str]:
    """The checkpoint to use and a sentence saying where it came from."""
    if args.checkpoint is not None:
        return Path(args.checkpoint), f"checkpoint `{args.checkpoint}`"
    started = time.perf_counter()
    student = train_student(args.train_steps, args.train_size, args.train_batch, args.lr, args.seed)
    path = save_student(student, folder / "student.safetensors")
    minutes = (time.perf_counter() - started) / 60
    h, w = args.train_size
    note = (
        f"trained here: {args.train_steps} steps of SILog on simulated indoor scenes, batch "
        f"{args.train_batch}, {h}x{w}, {minutes:.1f} min"
    )
    return path, note


def int8_accuracy(checkpoint: Path, args: argparse.Namespace, folder: Path) -> dict:
    """AbsRel of the float32 and int8 graphs at the training size (see module docs)."""
    report = export_onnx(
        load_student(checkpoint),
        folder / "accuracy.onnx",
        size=args.train_size,
        int8="static",
        calib_count=args.calib_count,
        check_images=args.test_images,
        seed=TEST_SEED,
    )
    assert report.int8 is not None
    return {
        "abs_rel_fp32": report.int8.metrics_float["abs_rel"],
        "abs_rel_int8": report.int8.metrics_int8["abs_rel"],
        "d1_fp32": report.int8.metrics_float["d1"],
        "d1_int8": report.int8.metrics_int8["d1"],
        "change": report.int8.abs_rel_change,
        "label": report.int8.metric_label,
        "parity": max(report.parity.max_abs_diff.values()),
    }


def int8_latency(checkpoint: Path, args: argparse.Namespace, folder: Path) -> tuple[ModelBenchmark, ModelBenchmark]:
    """float32 and int8 graphs of the student at the benchmark size, timed with onnxruntime."""
    report = export_onnx(
        load_student(checkpoint),
        folder / "latency.onnx",
        size=args.size,
        int8="static",
        calib_count=args.calib_count,
        check_images=2,
        seed=TEST_SEED,
    )
    assert report.int8 is not None
    timing = {"size": args.size, "backend": "onnxruntime", "threads": args.threads, "warmup": args.warmup, "iters": args.iters}
    fp32 = benchmark(str(report.path), **timing).model
    int8 = benchmark(str(report.int8.path), **timing).model
    return fp32, int8


def machine_line() -> str:
    cpu = cpu_name()
    import onnxruntime

    return f"{cpu}; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, Python {platform.python_version()}"


def fmt(value: float | None, digits: int = 1, scale: float = 1.0) -> str:
    return "n/a" if value is None else f"{value / scale:.{digits}f}"


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def markdown(
    args: argparse.Namespace,
    rows: list[ModelBenchmark],
    teacher: ModelBenchmark,
    fp32: ModelBenchmark,
    int8: ModelBenchmark,
    accuracy: dict,
    origin: str,
    loads: tuple[float, float],
) -> str:
    h, w = args.size
    lines = [
        f"# Deployment benchmark ({dt.date.today().isoformat()})",
        "",
        f"onnxruntime on the CPU, {args.threads} threads, input {h}x{w}, batch 1, {args.warmup} warm-up + "
        f"{args.iters} timed runs ({args.teacher_iters} for the teacher). {machine_line()}.",
        f"Load average before / after: {loads[0]:.2f} / {loads[1]:.2f} (other processes on the machine skew timings).",
        "",
        "| model | p50 ms | p90 ms | img/s | peak MB | params (M) | GMACs | speed-up vs teacher |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows + [teacher]:
        speedup = teacher.latency.p50_ms / row.latency.p50_ms
        lines.append(
            f"| {row.label} | {fmt(row.latency.p50_ms)} | {fmt(row.latency.p90_ms)} | {fmt(row.latency.throughput, 2)} | "
            f"{fmt(row.peak_memory_mb, 0)} | {fmt(row.params, 2, 1e6)} | {fmt(row.macs, 2, 1e9)} | {speedup:.1f}x |"
        )
    mobilenet = rows[0]
    ratios = BenchmarkReport(mobilenet, teacher).ratios()
    int8_speedup = fp32.latency.p50_ms / int8.latency.p50_ms
    lines += [
        "",
        f"MobileNetV2 student vs {TEACHER} (teacher / student): latency {ratios['latency_p50']:.1f}x, "
        f"parameters {ratios['params']:.1f}x, MACs {ratios['macs']:.1f}x. "
        f"Target >= {TARGET_SPEEDUP:.0f}x faster: {verdict(ratios['latency_p50'] >= TARGET_SPEEDUP)}.",
        "",
        "## int8 (static QDQ, uint8 activations, per-channel int8 weights, output head in float32)",
        "",
        f"Student: {origin}.",
        "",
        "| MobileNetV2 student | p50 ms | p90 ms | model MB | AbsRel | d1 |",
        "|---|---:|---:|---:|---:|---:|",
        f"| float32 | {fmt(fp32.latency.p50_ms)} | {fmt(fp32.latency.p90_ms)} | {fmt(fp32.weights_mb)} | "
        f"{accuracy['abs_rel_fp32']:.4f} | {accuracy['d1_fp32']:.4f} |",
        f"| int8 | {fmt(int8.latency.p50_ms)} | {fmt(int8.latency.p90_ms)} | {fmt(int8.weights_mb)} | "
        f"{accuracy['abs_rel_int8']:.4f} | {accuracy['d1_int8']:.4f} |",
        "",
        f"int8 speed-up {int8_speedup:.2f}x (target >= {TARGET_INT8_SPEEDUP}x: {verdict(int8_speedup >= TARGET_INT8_SPEEDUP)}); "
        f"AbsRel change {accuracy['change']:+.2%} relative (target <= +{TARGET_ABS_REL_CHANGE:.0%}: "
        f"{verdict(accuracy['change'] <= TARGET_ABS_REL_CHANGE)}). Accuracy at {args.train_size[0]}x{args.train_size[1]} "
        f"on {args.test_images} simulated indoor test scenes, {accuracy['label']}; float32 ONNX/PyTorch max "
        f"difference {accuracy['parity']:.1e} m.",
        "",
        f"Peak memory: {mobilenet.memory_method}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=(480, 640), help="benchmark input HxW (480x640)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--teacher-iters", type=int, default=5, help="timed runs of the (slow) teacher")
    parser.add_argument("--checkpoint", help="a trained student .safetensors (MobileNetV2, regression); else train one")
    parser.add_argument("--train-steps", type=int, default=400)
    parser.add_argument("--train-size", type=parse_size, default=(120, 160))
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--calib-count", type=int, default=32, help="simulated calibration scenes for int8")
    parser.add_argument("--test-images", type=int, default=32, help="simulated scenes for the int8 accuracy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny settings: proves the script runs, numbers meaningless")
    parser.add_argument("--write", action="store_true", help="write benchmarks/results/deploy-<date>.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.iters, args.warmup, args.teacher_iters = (96, 128), 3, 1, 1
        args.train_steps, args.train_size, args.calib_count, args.test_images = 5, (64, 64), 4, 2

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="depthkd-deploy-") as tmp:
        folder = Path(tmp)
        checkpoint, origin = student_checkpoint(args, folder)
        accuracy = int8_accuracy(checkpoint, args, folder)
        fp32, int8 = int8_latency(checkpoint, args, folder)
        timing = {"size": args.size, "backend": "onnxruntime", "threads": args.threads, "warmup": args.warmup}
        rows = [benchmark(str(checkpoint), iters=args.iters, **timing).model]
        rows[0].label = "MobileNetV2 student (regression)"
        for backbone in STUDENTS[1:]:
            row = benchmark(f"student:{backbone}", iters=args.iters, **timing).model
            row.label = f"{backbone} student (regression)"
            rows.append(row)
        teacher = benchmark(TEACHER, iters=args.teacher_iters, **{**timing, "warmup": 1}).model
        teacher.label = "Depth Anything V2 Small (teacher architecture)"
    text = markdown(args, rows, teacher, fp32, int8, accuracy, origin, (load_before, os.getloadavg()[0]))
    print(text)
    if args.write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / f"deploy-{dt.date.today().isoformat()}.md"
        out.write_text(text)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
