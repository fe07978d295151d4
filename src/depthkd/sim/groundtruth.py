"""The kinds of ground truth the simulator can give a training set (``gt=`` in a ``sim:`` data spec).

| ``gt`` | like | depth map |
|---|---|---|
| ``dense`` | a synthetic dataset | the exact z-depth of every pixel (0 on sky / beyond the domain's range) |
| ``lidar`` | KITTI's raw LiDAR | a projected Velodyne scan, a few percent of the pixels (:mod:`depthkd.sim.lidar`) |
| ``lidar_annotated`` | KITTI's annotated depth | 11 scans accumulated and checked against the exact depth: denser, cleaner |
| ``kinect`` | NYU's raw Kinect depth | structured light with holes and quantisation (:mod:`depthkd.sim.kinect`) |
| ``kinect_filled`` | NYU's labelled set | the Kinect map with its holes filled edge-aware, for test sets |

Only the depth map changes: the scene, the RGB and every other output are the same bytes for the
same seed and index, and the exact depth comes along as ``dense_depth``. Which sensor fits which
domain is the domain's to say (:attr:`depthkd.sim.domains.Domain.ground_truths`).
"""

from __future__ import annotations

from depthkd.errors import ConfigError

GROUND_TRUTHS: tuple[str, ...] = ("dense", "lidar", "lidar_annotated", "kinect", "kinect_filled")


def check_ground_truth(gt: str) -> str:
    """``gt`` if it names a known kind of ground truth; :class:`ConfigError` naming the choices otherwise."""
    if gt not in GROUND_TRUTHS:
        raise ConfigError(f"unknown ground truth gt={gt!r}; expected one of {', '.join(GROUND_TRUTHS)}")
    return gt
