"""NYU Depth V2: the official labeled ``.mat`` file with ``splits.mat``, and list-file splits.

The labeled file is MATLAB v7.3, i.e. HDF5, so h5py reads it; MATLAB stores arrays column-major, so
through h5py ``images`` is ``(1449, 3, 640, 480)`` and ``depths``/``rawDepths`` ``(1449, 640, 480)``:
every item is transposed back to ``(3, 480, 640)`` / ``(1, 480, 640)``. ``splits.mat`` holds
**1-based** indices (``trainNdxs``: 795, ``testNdxs``: 654) into the 1449 images.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import scipy.io
import torch
from torch.utils.data import Dataset

from depthkd.data.listfile import Item, PairListDataset, Transform
from depthkd.errors import ConfigError, DataError
from depthkd.io import PathLike

#: Kinect colour camera intrinsics at 640x480 (fx, fy, cx, cy).
NYU_INTRINSICS = (518.8579, 519.4696, 325.5824, 253.7362)
NYU_FOCAL = NYU_INTRINSICS[0]
#: Images per split of the official ``splits.mat`` (``all`` = every labeled image).
NYU_MAT_SPLIT_SIZES = {"train": 795, "test": 654, "all": 1449}
#: Lines of the common list files (test: the official 654; train: the raw-video list).
NYU_LIST_SIZES = {"test": 654, "train": 24231}
#: Evaluation caps of the ``nyu`` protocol, in metres.
NYU_DEPTH_RANGE = (1e-3, 10.0)

_SPLIT_KEYS = {"train": "trainNdxs", "test": "testNdxs"}
_DEPTH_KEYS = {"filled": "depths", "raw": "rawDepths"}


def read_nyu_splits(splits_path: PathLike, num_images: int) -> dict[str, np.ndarray]:
    """``{"train": ..., "test": ...}``: 1-based indices from ``splits.mat``, checked to lie in range."""
    splits_path = Path(splits_path)
    if not splits_path.is_file():
        raise DataError(f"NYU splits file not found: {splits_path}")
    try:
        content = scipy.io.loadmat(str(splits_path))
    except (ValueError, NotImplementedError, OSError) as exc:
        raise DataError(f"cannot read NYU splits file {splits_path}: {exc}") from exc
    splits: dict[str, np.ndarray] = {}
    for split, key in _SPLIT_KEYS.items():
        if key not in content:
            found = sorted(k for k in content if not k.startswith("__"))
            raise DataError(f"NYU splits file {splits_path} has no {key!r}; found {found}")
        indices = np.asarray(content[key]).astype(np.int64).ravel()
        bad = indices[(indices < 1) | (indices > num_images)]
        if bad.size:
            raise DataError(
                f"{key} in {splits_path} holds {bad.size} index(es) outside 1..{num_images} "
                f"(e.g. {bad[:5].tolist()}); expected MATLAB 1-based indices into the labeled images"
            )
        splits[split] = indices
    return splits


class NYUv2Mat(Dataset):
    """The official ``nyu_depth_v2_labeled.mat`` read lazily, one image per item.

    The HDF5 file is opened on first access in each process (and reopened after a fork), so
    DataLoader workers never share a handle. ``depth="raw"`` returns ``rawDepths`` (``0`` = hole)
    instead of the filled ``depths``. ``split="all"`` returns all labeled images. Item names are
    ``nyu_mat/<split>/<1-based index into the 1449, 5 digits>``, e.g. ``nyu_mat/test/00001``.
    """

    depth_range = NYU_DEPTH_RANGE

    def __init__(
        self,
        mat_path: PathLike,
        splits_path: PathLike,
        split: str = "test",
        depth: str = "filled",
        transform: Transform | None = None,
    ) -> None:
        if split not in NYU_MAT_SPLIT_SIZES:
            raise ConfigError(
                f"NYU split {split!r} is unknown; expected one of {sorted(NYU_MAT_SPLIT_SIZES)}"
            )
        if depth not in _DEPTH_KEYS:
            raise ConfigError(f"NYU depth {depth!r} is unknown; expected one of {sorted(_DEPTH_KEYS)}")
        self.mat_path = Path(mat_path)
        self.splits_path = Path(splits_path)
        self.split = split
        self.depth = depth
        self.depth_key = _DEPTH_KEYS[depth]
        self.transform = transform
        num_images = self._check_layout()
        if split == "all":
            self.indices = np.arange(1, num_images + 1, dtype=np.int64)
        else:
            self.indices = read_nyu_splits(self.splits_path, num_images)[split]
        self._h5: h5py.File | None = None
        self._h5_pid: int | None = None

    def _check_layout(self) -> int:
        """Open the file once to check keys and shapes; returns the number of labeled images."""
        if not self.mat_path.is_file():
            raise DataError(f"NYU labeled .mat file not found: {self.mat_path}")
        try:
            with h5py.File(self.mat_path, "r") as mat:
                missing = [k for k in ("images", self.depth_key) if k not in mat]
                if missing:
                    raise DataError(
                        f"{self.mat_path} has no {missing}; found {sorted(mat.keys())} "
                        "(expected the official nyu_depth_v2_labeled.mat)"
                    )
                images, depths = mat["images"].shape, mat[self.depth_key].shape
        except OSError as exc:
            raise DataError(
                f"cannot open {self.mat_path} as a MATLAB v7.3 (HDF5) file: {exc}"
            ) from exc
        if len(images) != 4 or images[1] != 3 or depths != (images[0], images[2], images[3]):
            raise DataError(
                f"{self.mat_path}: images {images} and {self.depth_key} {depths} do not match the "
                "official layout (N,3,W,H) and (N,W,H)"
            )
        return int(images[0])

    def _file(self) -> h5py.File:
        if self._h5 is None or self._h5_pid != os.getpid():
            self._h5 = h5py.File(self.mat_path, "r")
            self._h5_pid = os.getpid()
        return self._h5

    def close(self) -> None:
        """Close this process's file handle (it reopens on the next access)."""
        if self._h5 is not None and self._h5_pid == os.getpid():
            self._h5.close()
        self._h5 = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_h5"] = None
        state["_h5_pid"] = None
        return state

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Item:
        if not 0 <= index < len(self.indices):
            raise IndexError(f"index {index} out of range for {len(self.indices)} NYU {self.split} images")
        mat_index = int(self.indices[index])
        mat = self._file()
        rgb = np.asarray(mat["images"][mat_index - 1]).transpose(0, 2, 1)
        depth = np.asarray(mat[self.depth_key][mat_index - 1], dtype=np.float32).T
        if not np.isfinite(depth).all():
            raise DataError(
                f"{self.mat_path}: {self.depth_key} of image {mat_index} (1-based) holds NaN or inf; "
                "expected metres with 0 for missing"
            )
        item: Item = {
            "image": torch.from_numpy(np.ascontiguousarray(rgb)).float().div_(255.0),
            "depth": torch.from_numpy(np.ascontiguousarray(depth)).unsqueeze(0),
            "path": str(self.mat_path),
            "name": f"nyu_mat/{self.split}/{mat_index:05d}",
            "focal": NYU_FOCAL,
        }
        return self.transform(item) if self.transform is not None else item

    def __repr__(self) -> str:
        where = str(self.mat_path)
        return f"NYUv2Mat({where!r}, split={self.split!r}, depth={self.depth!r}, {len(self)} items)"


class NYUv2List(PairListDataset):
    """NYU Depth V2 from a list file (``<rgb> <depth> <focal>``; uint16 millimetre PNG depth).

    ``gt_root`` defaults to ``data_root`` (the common layout keeps images and depth side by side).
    """

    depth_range = NYU_DEPTH_RANGE
