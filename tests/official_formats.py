"""Tiny fixtures in the exact on-disk formats of the official datasets, for any test that needs data.

Each writer encodes known, asymmetric patterns so a test can prove orientation (not transposed or
flipped), units (metres) and indexing: in every RGB image red grows with the row, green with the column
and blue carries a per-image tag; every depth map grows by 10 mm per row and 1 mm per column
(KITTI: its own 1/256 m pattern). The ``expected_*`` functions give the arrays a reader must return.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import scipy.io
from PIL import Image

NYU_FOCAL = 518.8579
KITTI_FOCALS = {
    "2011_09_26": 721.5377,
    "2011_09_28": 707.0493,
    "2011_09_29": 718.3351,
    "2011_09_30": 707.0912,
    "2011_10_03": 718.856,
}


# --- patterns -----------------------------------------------------------------------------------


def expected_rgb(tag: int, h: int, w: int) -> np.ndarray:
    """``(H,W,3)`` uint8: red = row ramp, green = column ramp, blue = ``tag * 37 mod 256``."""
    rows = np.arange(h)[:, None] * 255 // max(h - 1, 1)
    cols = np.arange(w)[None, :] * 255 // max(w - 1, 1)
    image = np.empty((h, w, 3), dtype=np.uint8)
    image[..., 0] = np.broadcast_to(rows, (h, w))
    image[..., 1] = np.broadcast_to(cols, (h, w))
    image[..., 2] = (tag * 37) % 256
    return image


def expected_depth(tag: int, h: int, w: int) -> np.ndarray:
    """``(H,W)`` float32 metres: ``0.5 + 0.001*tag + 0.01*row + 0.001*col`` (whole millimetres)."""
    millimetres = 500 + tag + 10 * np.arange(h)[:, None] + np.arange(w)[None, :]
    return (millimetres / 1000.0).astype(np.float32)


def expected_raw_depth(tag: int, h: int, w: int) -> np.ndarray:
    """The filled depth with Kinect-like holes (``0``): the left eighth of the columns and a lattice."""
    depth = expected_depth(tag, h, w)
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    depth[(cols < max(w // 8, 1)) | ((rows + cols) % 5 == 0)] = 0.0
    return depth


def expected_kitti_depth_u16(tag: int, h: int, w: int) -> np.ndarray:
    """``(H,W)`` uint16 as stored (metres * 256), below 80 m at full size.

    Sparse like LiDAR: nothing in the top 30% of the rows (sky) and every third pixel empty.
    """
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    values = 256 + 32 * rows + cols // 8 + 512 * (tag % 13)
    values[(rows < int(0.3 * h)) | ((rows + cols) % 3 == 0)] = 0
    return values.astype(np.uint16)


def expected_kitti_depth(tag: int, h: int, w: int) -> np.ndarray:
    """The KITTI pattern in metres (value / 256, exact in float32)."""
    return expected_kitti_depth_u16(tag, h, w).astype(np.float32) / 256.0


def _write_png_u16(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint16)).save(path)


def _write_image(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        Image.fromarray(image).save(path, quality=95)
    else:
        Image.fromarray(image).save(path)


# --- NYU Depth V2: labeled .mat + splits.mat ------------------------------------------------------


@dataclass
class NyuMatFixture:
    mat_path: Path
    splits_path: Path
    train_idx: list[int]  # 1-based
    test_idx: list[int]  # 1-based
    h: int
    w: int


def _matlab_userblock(path: Path) -> None:
    """Write the 128-byte MATLAB 7.3 header into the file's 512-byte HDF5 user block."""
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    header = text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as handle:
        handle.write(header)


def write_nyu_mat(
    directory: str | Path,
    n: int = 6,
    test_idx: Sequence[int] = (1, 2, 5),
    h: int = 480,
    w: int = 640,
) -> NyuMatFixture:
    """``nyu_depth_v2_labeled.mat`` (MATLAB v7.3/HDF5) with ``n`` images and ``splits.mat``.

    Image ``k`` (1-based) has RGB ``expected_rgb(k)``, filled depth ``expected_depth(k)`` and raw depth
    ``expected_raw_depth(k)``. On disk the arrays are MATLAB's column-major layout seen by h5py:
    ``images`` (n, 3, W, H) uint8, ``depths``/``rawDepths`` (n, W, H) float32. ``test_idx`` are 1-based;
    the other indices form the train split. Both are stored as double column vectors, like MATLAB.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    test = sorted(int(i) for i in test_idx)
    if any(not 1 <= i <= n for i in test):
        raise ValueError(f"test_idx {test} must be 1-based indices within 1..{n}")
    train = [i for i in range(1, n + 1) if i not in test]
    indices = range(1, n + 1)
    images = np.stack([expected_rgb(k, h, w) for k in indices]).transpose(0, 3, 2, 1)  # (n,3,W,H)
    depths = np.stack([expected_depth(k, h, w) for k in indices]).transpose(0, 2, 1)  # (n,W,H)
    raw = np.stack([expected_raw_depth(k, h, w) for k in indices]).transpose(0, 2, 1)
    mat_path = directory / "nyu_depth_v2_labeled.mat"
    with h5py.File(mat_path, "w", userblock_size=512) as mat:
        for key, array, matlab_class in (
            ("images", images, "uint8"),
            ("depths", depths, "single"),
            ("rawDepths", raw, "single"),
        ):
            dataset = mat.create_dataset(key, data=np.ascontiguousarray(array))
            dataset.attrs["MATLAB_class"] = np.bytes_(matlab_class)
    _matlab_userblock(mat_path)
    splits_path = directory / "splits.mat"
    scipy.io.savemat(
        splits_path,
        {
            "trainNdxs": np.asarray(train, dtype=np.float64).reshape(-1, 1),
            "testNdxs": np.asarray(test, dtype=np.float64).reshape(-1, 1),
        },
    )
    return NyuMatFixture(mat_path, splits_path, train, test, h, w)


# --- NYU Depth V2: list-file tree -----------------------------------------------------------------


@dataclass
class ListTreeFixture:
    root: Path  # data root (images)
    gt_root: Path  # ground-truth root (depth)
    list_file: Path
    rgb: list[Path] = field(default_factory=list)
    depth: list[Path | None] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # expected item names, labeled lines only
    tags: list[int] = field(default_factory=list)  # pattern tag of each labeled item
    num_lines: int = 0
    num_none: int = 0


def write_nyu_list_tree(
    directory: str | Path,
    n: int = 4,
    h: int = 480,
    w: int = 640,
    leading_slash: bool = False,
    list_name: str = "nyu_test.txt",
) -> ListTreeFixture:
    """NYU in the list-file layout: ``<scene>/rgb_XXXXX.jpg``, ``<scene>/sync_depth_XXXXX.png`` (uint16 mm).

    Item ``i`` (0-based line) uses pattern tag ``i + 1``. ``leading_slash`` writes paths as the train
    lists do (``/kitchen/rgb_00001.jpg``), which still mean "relative to the root".
    """
    root = Path(directory)
    scenes = ("bathroom", "kitchen_0028b")
    fixture = ListTreeFixture(root=root, gt_root=root, list_file=root / list_name)
    lines = []
    for i in range(n):
        tag = i + 1
        scene = scenes[i % len(scenes)]
        rgb_rel = f"{scene}/rgb_{tag:05d}.jpg"
        depth_rel = f"{scene}/sync_depth_{tag:05d}.png"
        _write_image(root / rgb_rel, expected_rgb(tag, h, w))
        _write_png_u16(root / depth_rel, np.rint(expected_depth(tag, h, w) * 1000.0))
        prefix = "/" if leading_slash else ""
        lines.append(f"{prefix}{rgb_rel} {prefix}{depth_rel} {NYU_FOCAL}")
        fixture.rgb.append(root / rgb_rel)
        fixture.depth.append(root / depth_rel)
        fixture.names.append(rgb_rel[: -len(".jpg")])
        fixture.tags.append(tag)
    fixture.list_file.write_text("\n".join(lines) + "\n")
    fixture.num_lines = n
    return fixture


# --- KITTI raw + annotated depth, Eigen-style list ------------------------------------------------


def write_kitti_tree(
    directory: str | Path,
    n: int = 3,
    num_none: int = 1,
    h: int = 375,
    w: int = 1242,
    date: str = "2011_09_26",
    drive: str = "0002",
    write_focal: bool = True,
    list_name: str = "eigen_test_files_with_gt.txt",
) -> ListTreeFixture:
    """KITTI raw images (``raw/``) and improved ground truth (``gt/``) with an Eigen-style list.

    ``n`` labeled frames (tag ``i + 1``, RGB ``expected_rgb``, depth ``expected_kitti_depth_u16``) and
    ``num_none`` frames whose line says ``None`` (their images exist, their ground truth does not);
    the ``None`` lines are interleaved with the others. Without ``write_focal`` lines have two columns.
    """
    directory = Path(directory)
    raw_root, gt_root = directory / "raw", directory / "gt"
    sync = f"{date}_drive_{drive}_sync"
    fixture = ListTreeFixture(root=raw_root, gt_root=gt_root, list_file=directory / list_name)
    focal = f" {KITTI_FOCALS[date]}" if write_focal else ""
    lines = []
    labeled, unlabeled = 0, 0
    for position in range(n + num_none):
        frame = 10 + 7 * position
        rgb_rel = f"{date}/{sync}/image_02/data/{frame:010d}.png"
        is_none = unlabeled < num_none and (position % 2 == 1 or labeled == n)
        if is_none:
            _write_image(raw_root / rgb_rel, expected_rgb(100 + position, h, w))
            lines.append(f"{rgb_rel} None{focal}")
            fixture.rgb.append(raw_root / rgb_rel)
            fixture.depth.append(None)
            unlabeled += 1
            continue
        tag = labeled + 1
        depth_rel = f"{sync}/proj_depth/groundtruth/image_02/{frame:010d}.png"
        _write_image(raw_root / rgb_rel, expected_rgb(tag, h, w))
        _write_png_u16(gt_root / depth_rel, expected_kitti_depth_u16(tag, h, w))
        lines.append(f"{rgb_rel} {depth_rel}{focal}")
        fixture.rgb.append(raw_root / rgb_rel)
        fixture.depth.append(gt_root / depth_rel)
        fixture.names.append(rgb_rel[: -len(".png")])
        fixture.tags.append(tag)
        labeled += 1
    fixture.list_file.write_text("\n".join(lines) + "\n")
    fixture.num_lines = n + num_none
    fixture.num_none = num_none
    return fixture


# --- paired folder --------------------------------------------------------------------------------


def write_paired_folder(
    directory: str | Path,
    n: int = 3,
    h: int = 32,
    w: int = 48,
    depth_ext: str = ".png",
    scale: float = 1000.0,
) -> ListTreeFixture:
    """``root/rgb/img_XXX.png`` with ``root/depth/img_XXX.png`` (uint16, metres * ``scale``) or ``.npy``.

    Item ``i`` (sorted by name) uses pattern tag ``i + 1``.
    """
    root = Path(directory)
    fixture = ListTreeFixture(root=root, gt_root=root, list_file=root)
    for i in range(n):
        tag = i + 1
        name = f"img_{tag:03d}"
        rgb_path, depth_path = root / "rgb" / f"{name}.png", root / "depth" / f"{name}{depth_ext}"
        _write_image(rgb_path, expected_rgb(tag, h, w))
        depth = expected_depth(tag, h, w)
        if depth_ext == ".npy":
            depth_path.parent.mkdir(parents=True, exist_ok=True)
            np.save(depth_path, depth)
        else:
            _write_png_u16(depth_path, np.rint(depth * scale))
        fixture.rgb.append(rgb_path)
        fixture.depth.append(depth_path)
        fixture.names.append(name)
        fixture.tags.append(tag)
    fixture.num_lines = n
    return fixture
