"""Time per distillation step through the engine vs the bare work, in one process.

The bare work is what a step must do anyway: teacher forward, student forward and backward, the
``response`` loss, an AdamW step, on batches already in memory. The engine step adds Lightning's loop,
the data stream (PNG decoding, augmentation, collation), logging and the non-finite check. Target:
engine / bare <= 1.10 with a MobileNetV2 student and a small ViT teacher (a Depth Anything built from
config with random weights) on 2 CPU threads. Ratios are measured in one run; on a shared machine
rerun on a quiet one.

    python benchmarks/engine_overhead.py [--steps 12] [--warmup 3] [--batch 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

os.environ.setdefault("DEPTHKD_PROGRESS", "0")

IMAGE_SIZE = (96, 128)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def make_small_depth_anything(folder: Path, seed: int = 0) -> Path:
    """A small Depth Anything (DINOv2 ViT, 8 layers, width 192) saved with its processor, random weights."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    torch.manual_seed(seed)
    backbone = Dinov2Config(
        hidden_size=192,
        num_hidden_layers=8,
        num_attention_heads=3,
        intermediate_size=768,
        patch_size=14,
        image_size=126,
        out_indices=[2, 4, 6, 8],
        reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=192,
        neck_hidden_sizes=[48, 96, 192, 384],
        reassemble_factors=[4, 2, 1, 0.5],
        fusion_hidden_size=64,
        head_hidden_size=32,
        depth_estimation_type="metric",
        max_depth=10,
    )
    processor = DPTImageProcessor(
        size={"height": 126, "width": 168},
        keep_aspect_ratio=False,
        ensure_multiple_of=14,
        resample=3,
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
    )
    DepthAnythingForDepthEstimation(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def make_paired_folder(root: Path, count: int, size: tuple[int, int] = IMAGE_SIZE, seed: int = 0) -> Path:
    """``root/rgb`` + ``root/depth`` with smooth random scenes (content does not matter for timing)."""
    from depthkd.io import write_depth_png, write_rgb

    generator = torch.Generator().manual_seed(seed)
    height, width = size
    for i in range(count):
        low = torch.rand(1, 4, 4, 6, generator=generator)
        image = torch.nn.functional.interpolate(low, size=size, mode="bilinear", align_corners=False)[0]
        depth = 1.0 + 8.0 * image[3:4]
        write_rgb(root / "rgb" / f"{i:04d}.png", image[:3])
        write_depth_png(root / "depth" / f"{i:04d}.png", depth)
    return root


class StepClock(L.Callback):
    """Wall-clock time at the end of every training batch."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_end(self, *args: object) -> None:
        self.times.append(time.perf_counter())


def per_step(times: list[float], warmup: int) -> float:
    """Mean seconds per step after ``warmup`` steps."""
    return (times[-1] - times[warmup - 1]) / (len(times) - warmup)


def recipe_overrides(data: Path, teacher: Path, run_dir: Path, steps: int, batch: int) -> list[str]:
    return [
        f"data.train=folder:{data}",
        "data.val=null",
        f"data.crop=[{IMAGE_SIZE[0]},{IMAGE_SIZE[1]}]",
        f"data.batch_size={batch}",
        "data.num_workers=0",
        "student.backbone=mobilenetv2_100",
        f"teacher.spec=hf:{teacher}",
        "method.name=response",
        "method.options.loss=ssim",
        "optim.scheduler=none",
        "trainer.accelerator=cpu",
        f"trainer.max_steps={steps}",
        f"trainer.checkpoint_every_n_steps={steps + 1}",
        f"trainer.log_every_n_steps={steps + 1}",
        "trainer.loggers=[]",
        f"run.dir={run_dir}",
    ]


def engine_step_time(overrides: list[str], warmup: int) -> float:
    from depthkd.config import load_recipe
    from depthkd.engine import distill

    clock = StepClock()
    distill(load_recipe(None, overrides), callbacks=[clock])
    return per_step(clock.times, warmup)


def bare_step_time(overrides: list[str], steps: int, warmup: int) -> float:
    """The same student, teacher, loss and optimiser in a plain loop over preloaded batches."""
    from depthkd.config import load_recipe
    from depthkd.data import collate, dataset_from_spec
    from depthkd.distill import Stage, build_method
    from depthkd.models.student import DepthStudent
    from depthkd.models.teachers import load_teacher

    config = load_recipe(None, overrides)
    torch.manual_seed(0)
    student = DepthStudent(config.student).train()
    teacher = load_teacher(config.teacher.spec)
    method = build_method("response", config.method.options)
    optimizer = torch.optim.AdamW(student.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    dataset = dataset_from_spec(config.data.train)
    batch_size = config.data.batch_size
    batches = [
        collate([dataset[(i * batch_size + j) % len(dataset)] for j in range(batch_size)]) for i in range(steps)
    ]
    stage = Stage()
    times = []
    for batch in batches:
        teacher_out = teacher(batch["image"], names=batch["name"])
        student_out = student(batch["image"])
        loss = method.loss(batch, student_out, teacher_out, stage).total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter())
    return per_step(times, warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="alternating bare/engine measurements")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    for name in ("lightning", "lightning.pytorch", "depthkd"):
        logging.getLogger(name).setLevel(logging.WARNING)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        teacher = make_small_depth_anything(root / "teacher")
        data = make_paired_folder(root / "data", count=64)
        bare, engine = [], []
        for repeat in range(args.repeats):
            overrides = recipe_overrides(data, teacher, root / f"run{repeat}", args.steps, args.batch)
            bare.append(bare_step_time(overrides, args.steps, args.warmup))
            engine.append(engine_step_time(overrides, args.warmup))
    bare_s, engine_s = statistics.median(bare), statistics.median(engine)
    print(f"threads={args.threads} batch={args.batch} image={IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} steps={args.steps} (warm-up {args.warmup})")
    print(f"bare step   : {bare_s * 1000:8.1f} ms  (runs: {', '.join(f'{t * 1000:.1f}' for t in bare)})")
    print(f"engine step : {engine_s * 1000:8.1f} ms  (runs: {', '.join(f'{t * 1000:.1f}' for t in engine)})")
    ratio = engine_s / bare_s
    print(f"engine / bare = {ratio:.3f}  (target <= 1.10: {'met' if ratio <= 1.10 else 'NOT met'})")


if __name__ == "__main__":
    sys.exit(main())
