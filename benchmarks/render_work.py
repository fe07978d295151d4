"""Work per rendered image, counted in CPU instructions: a measure that other jobs on the machine
cannot move.

Wall-clock rates of ``sim_speed.py`` swing by a third on a shared machine (the same code read 45 and
28 images/s at 240x320 within hours). This script runs the renderer under ``valgrind --tool=cachegrind``
(instruction counts only, no cache simulation) twice, rendering ``1`` and ``1 + --batches`` batches of the
same ``indoor`` scenes on one thread, and reports the difference per image: import, scene sampling and
first-call set-up cancel out. Counts cover the work, not memory stalls, so they rank changes that remove
work; wall time still decides. Under valgrind, PyTorch runs its AVX2 kernels.

``--sampling`` counts the other part of an image's cost instead: the Python scene sampler, per scene
(sampling ``0`` and ``--batch x --batches`` scenes, rendering none).

    python benchmarks/render_work.py [--size 120x160] [--batch 16] [--batches 2] [--tiles 8 16] [--sampling]

Needs ``valgrind`` on the PATH; each count takes one to three minutes (two runs per tile size, in
parallel).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from depthkd.cli import parse_size

RENDER = """
import sys, torch
torch.set_num_threads(1)
from depthkd.sim.domains import sample_scene
from depthkd.sim.render import render_scenes
height, width, batch, batches, tile = (int(a) for a in sys.argv[1:6])
scenes = [sample_scene("indoor", 0, i, (height, width)) for i in range(batch)]
for _ in range(batches):
    render_scenes(scenes, (height, width), tile=tile or None)
"""


SAMPLE = """
import sys
from depthkd.sim.domains import sample_scene
height, width, count = (int(a) for a in sys.argv[1:4])
sample_scene("indoor", 0, 0, (height, width))  # first-call set-up
for i in range(count):
    sample_scene("indoor", 1, i, (height, width))
"""


def instructions(size: tuple[int, int], batch: int, batches: int, tile: int) -> int:
    """Instructions of a process that renders ``batches`` batches (valgrind's ``I refs``)."""
    return _count(RENDER, *size, batch, batches, tile)


def _count(script: str, *args: int) -> int:
    command = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
               sys.executable, "-c", script, *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    match = re.search(r"I\s+refs:\s+([\d,]+)", result.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{result.stderr[-2000:]}")
    return int(match.group(1).replace(",", ""))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=parse_size, default=(120, 160), help="HxW (default 120x160)")
    parser.add_argument("--batch", type=int, default=16, help="images per batch (default 16)")
    parser.add_argument("--batches", type=int, default=2, help="batches counted (default 2)")
    parser.add_argument("--tiles", type=int, nargs="+", default=[0],
                        help="tile sides to compare; 0 = the renderer's default (default: 0)")
    parser.add_argument("--sampling", action="store_true",
                        help="count the scene sampler per scene instead of the renderer per image")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not on the PATH")
    size = height, width = args.size
    if args.sampling:
        scenes = args.batch * args.batches
        with ThreadPoolExecutor(2) as pool:
            none, some = pool.map(lambda n: _count(SAMPLE, height, width, n), (0, scenes))
        print(f"indoor {height}x{width}, scene sampling, {scenes} scenes counted")
        print(f"{(some - none) / scenes / 1e6:7.2f} M instructions per scene")
        return
    print(f"indoor {height}x{width}, batch {args.batch}, {args.batches} batches counted, 1 thread")
    base = None
    for tile in args.tiles:
        with ThreadPoolExecutor(2) as pool:
            one, more = pool.map(lambda n: instructions(size, args.batch, n, tile), (1, 1 + args.batches))
        per_image = (more - one) / (args.batches * args.batch)
        base = base or per_image
        name = "default" if tile == 0 else f"{tile} px"
        print(f"tile {name:>8}: {per_image / 1e6:7.1f} M instructions per image  (x{per_image / base:.3f})")


if __name__ == "__main__":
    main()
