"""A ``response`` epoch with the teacher cached vs a ``supervised`` epoch and vs an uncached epoch.

With the teacher's maps cached, response KD should cost about what supervised training costs (the
only extra work is reading one float16 map per image and the loss): target cached / supervised <=
1.15. The speed-up over running the teacher every step is reported. Same student (MobileNetV2), same
data (64 images, 96x128), same small ViT teacher as ``engine_overhead.py``, 2 CPU threads; the
cache is built before timing. Ratios are measured in one run; on a shared machine rerun on a quiet one.

    python benchmarks/cache_speed.py [--images 64] [--batch 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_overhead import IMAGE_SIZE, make_paired_folder, make_small_depth_anything  # noqa: E402

os.environ.setdefault("DEPTHKD_PROGRESS", "0")


class EpochClock(L.Callback):
    """Seconds spent in the training loop (teacher cache building and setup excluded)."""

    def on_train_start(self, *args: object) -> None:
        self.start = time.perf_counter()

    def on_train_end(self, *args: object) -> None:
        self.seconds = time.perf_counter() - self.start


def overrides(data: Path, teacher: Path, run_dir: Path, batch: int, *extra: str) -> list[str]:
    return [
        f"data.train=folder:{data}",
        "data.val=null",
        f"data.crop=[{IMAGE_SIZE[0]},{IMAGE_SIZE[1]}]",
        f"data.batch_size={batch}",
        "data.num_workers=0",
        "student.backbone=mobilenetv2_100",
        f"teacher.spec=hf:{teacher}",
        "optim.scheduler=none",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=1",
        "trainer.checkpoint_every_n_steps=100000",
        "trainer.log_every_n_steps=100000",
        "trainer.loggers=[]",
        f"run.dir={run_dir}",
        *extra,
    ]


def epoch_seconds(args: list[str]) -> float:
    from depthkd.config import load_recipe
    from depthkd.engine import distill

    clock = EpochClock()
    distill(load_recipe(None, args), callbacks=[clock])
    return clock.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    for name in ("lightning", "lightning.pytorch", "depthkd"):
        logging.getLogger(name).setLevel(logging.WARNING)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        teacher = make_small_depth_anything(root / "teacher")
        data = make_paired_folder(root / "data", count=args.images)
        response = ("method.name=response", "method.options.loss=ssim")
        cache = ("cache.enabled=true", f"cache.dir={root / 'cache'}")

        def run(name: str, *extra: str) -> float:
            return epoch_seconds(overrides(data, teacher, root / name, args.batch, *extra))

        run("warmup", "method.name=supervised", "trainer.max_epochs=null", "trainer.max_steps=2")
        run("build-cache", *response, *cache, "trainer.max_epochs=null", "trainer.max_steps=1")
        supervised = run("supervised", "method.name=supervised")
        cached = run("cached", *response, *cache)
        uncached = run("uncached", *response)

    steps = -(-args.images // args.batch)
    print(f"threads={args.threads} images={args.images} batch={args.batch} ({steps} steps per epoch)")
    for label, seconds in (("supervised", supervised), ("response, cached", cached), ("response, uncached", uncached)):
        print(f"{label:<20}: {seconds:7.2f} s/epoch  ({seconds / steps * 1000:7.1f} ms/step)")
    ratio = cached / supervised
    print(f"cached / supervised = {ratio:.3f}  (target <= 1.15: {'met' if ratio <= 1.15 else 'NOT met'})")
    print(f"uncached / cached   = {uncached / cached:.2f}x  (speed-up from the cache)")


if __name__ == "__main__":
    main()
