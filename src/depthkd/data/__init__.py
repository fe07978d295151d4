"""Datasets (NYU Depth V2, KITTI Eigen, folders), joint augmentation, data specs and data checks.

Every dataset yields ``dict(image=(3,H,W) float [0,1], depth=(1,H,W) metres (0 = no ground truth),
path=str, name=str[, focal=float])`` at full resolution unless a transform is given; ``name`` is a
stable key used to match cached teacher maps and saved predictions. Label-scarce data (``labels=`` in a
spec, :class:`LabelSubset`, :class:`WithUnlabelled`) adds ``labelled`` (bool) and zeroes the rest's depth.
"""

from depthkd.data.folders import ImageFolder, PairedFolder
from depthkd.data.kitti import KittiEigen
from depthkd.data.labels import LabelSubset, WithUnlabelled
from depthkd.data.listfile import FilePair, FilePairDataset, read_list_file
from depthkd.data.nyu import NYUv2List, NYUv2Mat
from depthkd.data.spec import dataset_from_spec, parse_spec
from depthkd.data.transforms import (
    CenterCrop,
    ColorJitter,
    Compose,
    RandomCrop,
    RandomHorizontalFlip,
    RandomRotation,
    Resize,
    collate,
    default_train_transform,
)
from depthkd.data.verify import VerifyReport, verify_dataset

__all__ = [
    "CenterCrop",
    "ColorJitter",
    "Compose",
    "FilePair",
    "FilePairDataset",
    "ImageFolder",
    "KittiEigen",
    "LabelSubset",
    "NYUv2List",
    "NYUv2Mat",
    "PairedFolder",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomRotation",
    "Resize",
    "VerifyReport",
    "WithUnlabelled",
    "collate",
    "dataset_from_spec",
    "default_train_transform",
    "parse_spec",
    "read_list_file",
    "verify_dataset",
]
