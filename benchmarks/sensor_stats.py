"""What the simulated sensors measure: density and error against the exact depth, per image size.

For each sensor ground truth (``gt=lidar`` and ``lidar_annotated`` on ``outdoor`` streets, ``gt=kinect``
and ``kinect_filled`` in ``indoor`` rooms)
and size (the training sizes of the recipes and the real datasets' own: KITTI 375x1242, NYU 480x640),
over ``--scenes`` scenes of ``--seed``:

- density: the share of pixels with a measurement (of all pixels, and of those with a surface);
- error of the measured pixels against the exact depth of the same pixel: median absolute (m), median
  relative, and the share off by more than 10% (LiDAR points seen through foreground edges, Kinect
  quantisation far away);
- for ``kinect_filled``, the same error over all pixels (what the edge-aware filling adds).

    python benchmarks/sensor_stats.py [--scenes 16] [--seed 300]
"""

from __future__ import annotations

import argparse

import torch

from depthkd.sim import render_batch

CASES = [
    ("outdoor", "lidar", (128, 416)),
    ("outdoor", "lidar", (375, 1242)),
    ("outdoor", "lidar_annotated", (128, 416)),
    ("outdoor", "lidar_annotated", (375, 1242)),
    ("indoor", "kinect", (120, 160)),
    ("indoor", "kinect", (480, 640)),
    ("indoor", "kinect_filled", (120, 160)),
    ("indoor", "kinect_filled", (480, 640)),
]


def stats(measured: torch.Tensor, exact: torch.Tensor) -> dict[str, float]:
    """Density and error of ``measured`` against ``exact`` (both ``(B, 1, H, W)``, 0 = none)."""
    surface = exact > 0
    valid = (measured > 0) & surface
    error = (measured - exact).abs()[valid]
    relative = error / exact[valid]
    return {
        "density": float((measured > 0).float().mean()),
        "of_surface": float(valid.sum() / surface.sum().clamp_min(1)),
        "median_abs_m": float(error.median()),
        "median_rel": float(relative.median()),
        "over_10pct": float((relative > 0.1).float().mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=16)
    parser.add_argument("--seed", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.scenes} scenes of seed {args.seed}; error of measured pixels against the exact depth")
    print("| domain | gt | size | density | of surface pixels | median abs error (m) | median rel error | > 10% off |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for domain, gt, size in CASES:
        parts = [render_batch(domain, 2, size, args.seed, start=start, gt=gt) for start in range(0, args.scenes, 2)]
        measured = torch.cat([p["depth"] for p in parts])
        exact = torch.cat([p["dense_depth"] for p in parts])
        s = stats(measured, exact)
        print(f"| {domain} | {gt} | {size[0]}x{size[1]} | {s['density']:.2%} | {s['of_surface']:.2%} | "
              f"{s['median_abs_m']:.4f} | {s['median_rel']:.4f} | {s['over_10pct']:.2%} |")


if __name__ == "__main__":
    main()
