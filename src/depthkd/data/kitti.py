"""KITTI with the Eigen split lists and the improved (``data_depth_annotated``) ground truth.

Images live under ``data_root`` as ``<date>/<date>_drive_<id>_sync/image_02/data/<frame>.png``; ground
truth under ``gt_root`` as ``<date>_drive_<id>_sync/proj_depth/groundtruth/image_02/<frame>.png``
(uint16, metres = value / 256, 0 = no LiDAR return). The Eigen test list has 697 lines, 45 of them
without ground truth (``None``); those are skipped and counted.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import torch

from depthkd.data.listfile import Item, ListEntry, PairListDataset, Transform
from depthkd.errors import DataError
from depthkd.io import PathLike

#: Left colour camera focal length (pixels) per recording date.
KITTI_FOCALS = {
    "2011_09_26": 721.5377,
    "2011_09_28": 707.0493,
    "2011_09_29": 718.3351,
    "2011_09_30": 707.0912,
    "2011_10_03": 718.856,
}
#: The KITTI benchmark crop ("KB crop"): bottom rows x centred columns.
KB_CROP_SIZE = (352, 1216)
EIGEN_TEST_LINES = 697
EIGEN_TEST_WITH_GT = 652
EIGEN_TRAIN_LINES = 23158
#: Evaluation caps of the KITTI protocols, in metres.
KITTI_DEPTH_RANGE = (1e-3, 80.0)


def kb_crop_box(height: int, width: int) -> tuple[int, int]:
    """``(top, left)`` of the benchmark crop: bottom 352 rows, 1216 columns from ``floor((W-1216)/2)``."""
    crop_h, crop_w = KB_CROP_SIZE
    if height < crop_h or width < crop_w:
        raise DataError(
            f"image of {height}x{width} (HxW) is smaller than the KITTI benchmark crop {crop_h}x{crop_w}"
        )
    return height - crop_h, (width - crop_w) // 2


def apply_kb_crop(tensor: torch.Tensor, top: int, left: int) -> torch.Tensor:
    """The benchmark-crop window of a ``(..., H, W)`` tensor."""
    crop_h, crop_w = KB_CROP_SIZE
    return tensor[..., top : top + crop_h, left : left + crop_w].contiguous()


def focal_from_path(rgb_path: str) -> float | None:
    """The focal length for a KITTI image path, from the recording date that starts it."""
    parts = PurePosixPath(rgb_path.lstrip("/")).parts
    return KITTI_FOCALS.get(parts[0]) if parts else None


class KittiEigen(PairListDataset):
    """KITTI from an Eigen-style list file; optionally the benchmark crop on image and depth.

    With ``kb_crop`` each item also carries ``"kb_crop": (top, left)``, the crop's offset in the
    full-resolution frame. Lines without a focal length take it from the date in the image path.
    """

    depth_range = KITTI_DEPTH_RANGE

    def __init__(
        self,
        list_file: PathLike,
        data_root: PathLike,
        gt_root: PathLike,
        kb_crop: bool = False,
        transform: Transform | None = None,
        depth_scale: float = 256.0,
        allow_missing: bool = False,
    ) -> None:
        self.kb_crop = bool(kb_crop)
        super().__init__(
            list_file,
            data_root,
            gt_root=gt_root,
            transform=transform,
            depth_scale=depth_scale,
            allow_missing=allow_missing,
        )

    def focal_for(self, entry: ListEntry) -> float | None:
        return entry.focal if entry.focal is not None else focal_from_path(entry.rgb)

    def prepare(self, item: Item) -> Item:
        if not self.kb_crop:
            return item
        height, width = item["image"].shape[-2:]
        try:
            top, left = kb_crop_box(height, width)
        except DataError as exc:
            raise DataError(f"{item['path']}: {exc}") from exc
        item["image"] = apply_kb_crop(item["image"], top, left)
        if "depth" in item:
            item["depth"] = apply_kb_crop(item["depth"], top, left)
        item["kb_crop"] = (top, left)
        return item
