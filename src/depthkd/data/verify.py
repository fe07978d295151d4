"""Check a dataset before trusting numbers computed on it: counts, missing files, decodable items, ranges.

A wrong split file, a half-extracted archive or millimetres read as metres all produce plausible-looking
but wrong benchmark numbers; ``depthkd verify-data SPEC`` runs :func:`verify_dataset` to catch them first.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch.utils.data import Dataset

from depthkd.data.kitti import EIGEN_TEST_LINES, EIGEN_TEST_WITH_GT, EIGEN_TRAIN_LINES, KittiEigen
from depthkd.data.labels import LabelSubset
from depthkd.data.nyu import NYU_LIST_SIZES, NYU_MAT_SPLIT_SIZES, NYUv2List, NYUv2Mat
from depthkd.data.spec import dataset_from_spec
from depthkd.errors import DataError
from depthkd.progress import track

#: How many offending item names a warning quotes.
EXAMPLES_SHOWN = 3


@dataclass
class VerifyReport:
    """What :func:`verify_dataset` found. ``ok`` is false when anything in ``missing`` or ``errors``."""

    source: str
    num_items: int = 0
    num_lines: int | None = None
    num_skipped: int = 0
    expected: int | None = None
    num_labelled: int | None = None
    num_unlabelled: int | None = None
    decoded: int = 0
    missing: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    depth_range: tuple[float, float] | None = None
    depth_min: float | None = None
    depth_max: float | None = None
    depth_mean: float | None = None
    valid_pixels: int = 0
    out_of_range_pixels: int = 0

    @property
    def ok(self) -> bool:
        return not self.missing and not self.errors

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON, ``ok`` included."""
        return {"ok": self.ok, **asdict(self)}

    def to_text(self) -> str:
        """A readable summary for the command line; every missing file and error is listed."""
        lines = [f"{'OK' if self.ok else 'FAILED'}: {self.source}"]
        count = f"items: {self.num_items}"
        if self.num_lines is not None:
            count += f" (list lines: {self.num_lines}, without ground truth: {self.num_skipped})"
        if self.expected is not None:
            count += f"; expected {self.expected}"
        lines.append(count)
        if self.num_labelled is not None:
            lines.append(f"labelled: {self.num_labelled}, unlabelled: {self.num_unlabelled} (labels=)")
        if self.decoded:
            lines.append(f"decoded: {self.decoded}")
        if self.depth_min is not None:
            lines.append(
                f"depth (m, pixels > 0): min {self.depth_min:.4g}, max {self.depth_max:.4g}, "
                f"mean {self.depth_mean:.4g} over {self.valid_pixels} pixels"
            )
        for title, entries in (
            ("missing files", self.missing),
            ("errors", self.errors),
            ("warnings", self.warnings),
            ("notes", self.notes),
        ):
            if entries:
                lines.append(f"{title} ({len(entries)}):")
                lines.extend(f"  {entry}" for entry in entries)
        return "\n".join(lines)


def verify_dataset(
    spec_or_dataset: str | Dataset, expected: int | None = None, decode: bool = True
) -> VerifyReport:
    """Check a data spec (or a built dataset) and return a :class:`VerifyReport`.

    Counts are checked against ``expected`` when given, otherwise against the known official counts
    (NYU .mat test 654 / train 795; a 697-line KITTI list is the Eigen test list, 652 with ground
    truth). Every missing file is listed. With ``decode`` every item is read (progress bar with rate
    and ETA) and its values checked: image finite in [0, 1]; depth finite, >= 0 and within the
    dataset's evaluation range (pixels outside it are a warning: evaluation masks them, but many of
    them usually mean a wrong ``depth_scale``). With ``labels=`` the report counts labelled and
    unlabelled items; counts are checked on the whole set and depth statistics cover the labelled
    items (the others read as all-zero depth by design). A spec with an unknown scheme or parameter raises
    :class:`depthkd.errors.ConfigError`; data problems end up in the report.
    """
    if isinstance(spec_or_dataset, str):
        report = VerifyReport(source=spec_or_dataset, expected=expected)
        try:
            dataset = dataset_from_spec(spec_or_dataset, allow_missing=True)
        except DataError as exc:
            report.errors.append(str(exc))
            return report
    else:
        dataset = spec_or_dataset
        report = VerifyReport(source=repr(dataset), expected=expected)

    report.num_items = len(dataset)  # type: ignore[arg-type]
    base = dataset
    if isinstance(dataset, LabelSubset):
        report.num_labelled, report.num_unlabelled = dataset.num_labelled, dataset.num_unlabelled
        base = dataset.dataset  # the reader's own counts, files and ranges
    report.num_lines = getattr(base, "num_lines", None)
    report.num_skipped = int(getattr(base, "num_skipped", 0))
    report.missing = [str(path) for path in getattr(base, "missing", [])]
    report.depth_range = getattr(base, "depth_range", None)
    _check_count(base, report)
    if decode:
        _decode_all(dataset, report)
    return report


def _check_count(dataset: Dataset, report: VerifyReport) -> None:
    """Compare the number of labeled entries (readable or not) with the expected or known count."""
    labeled = report.num_items + int(getattr(dataset, "num_missing", 0))
    if report.expected is not None:
        if labeled != report.expected:
            report.errors.append(f"found {labeled} labeled entries; expected {report.expected}")
        return
    if isinstance(dataset, NYUv2Mat):
        known = NYU_MAT_SPLIT_SIZES[dataset.split]
        if labeled == known:
            report.notes.append(f"count matches the official NYU Depth V2 {dataset.split} split ({known})")
        else:
            report.errors.append(
                f"NYU {dataset.split} split has {labeled} images; the official splits.mat gives {known} "
                "(for a custom split file, pass --expected N; in Python, expected=N)"
            )
    elif isinstance(dataset, KittiEigen):
        _check_kitti_count(labeled, report)
    elif isinstance(dataset, NYUv2List):
        matches = [name for name, size in NYU_LIST_SIZES.items() if size == report.num_lines]
        if matches:
            report.notes.append(f"{report.num_lines} lines: the size of the NYU {matches[0]} list")
        else:
            report.warnings.append(
                f"{report.num_lines} lines match no known NYU list ({NYU_LIST_SIZES}); "
                "pass --expected N (Python: expected=N) to check the count"
            )


def _check_kitti_count(labeled: int, report: VerifyReport) -> None:
    if report.num_lines == EIGEN_TEST_LINES:
        if labeled == EIGEN_TEST_WITH_GT:
            report.notes.append(
                f"Eigen test list: {EIGEN_TEST_LINES} lines, {EIGEN_TEST_WITH_GT} with ground truth, "
                f"{report.num_skipped} without (skipped)"
            )
        else:
            report.errors.append(
                f"a {EIGEN_TEST_LINES}-line list is the Eigen test list, which has {EIGEN_TEST_WITH_GT} "
                f"lines with ground truth; this one has {labeled}"
            )
    elif report.num_lines == EIGEN_TRAIN_LINES:
        report.notes.append(f"{EIGEN_TRAIN_LINES} lines: the size of the Eigen train list")
    else:
        report.warnings.append(
            f"{report.num_lines} lines match no known KITTI list (Eigen test {EIGEN_TEST_LINES}, "
            f"train {EIGEN_TRAIN_LINES}); pass --expected N (Python: expected=N) to check the count"
        )


class _DepthStats:
    """Running min/max/mean over valid pixels and the items with out-of-range or no ground truth."""

    def __init__(self, depth_range: tuple[float, float] | None) -> None:
        self.depth_range = depth_range
        self.minimum, self.maximum, self.total, self.count = math.inf, -math.inf, 0.0, 0
        self.out_of_range = 0
        self.out_of_range_items: list[str] = []
        self.empty_items: list[str] = []

    def update(self, depth: torch.Tensor, name: str) -> None:
        valid = depth[depth > 0].double()
        if valid.numel() == 0:
            self.empty_items.append(name)
            return
        self.minimum = min(self.minimum, float(valid.min()))
        self.maximum = max(self.maximum, float(valid.max()))
        self.total += float(valid.sum())
        self.count += valid.numel()
        if self.depth_range is not None:
            low, high = self.depth_range
            outside = int(((valid <= low) | (valid >= high)).sum())
            if outside:
                self.out_of_range += outside
                self.out_of_range_items.append(name)

    def write(self, report: VerifyReport) -> None:
        report.valid_pixels = self.count
        report.out_of_range_pixels = self.out_of_range
        if self.count:
            report.depth_min, report.depth_max = self.minimum, self.maximum
            report.depth_mean = self.total / self.count
        if self.out_of_range:
            low, high = self.depth_range  # type: ignore[misc]
            share = 100.0 * self.out_of_range / self.count
            report.warnings.append(
                f"{self.out_of_range} depth pixels ({share:.2f}% of valid) in {len(self.out_of_range_items)} "
                f"item(s) lie outside the evaluation range ({low:g}, {high:g}) m, e.g. "
                f"{self.out_of_range_items[:EXAMPLES_SHOWN]}; evaluation masks them, a large share "
                "suggests a wrong depth_scale"
            )
        if self.empty_items:
            report.warnings.append(
                f"{len(self.empty_items)} item(s) have no valid depth pixel (they are left out of "
                f"the metrics), e.g. {self.empty_items[:EXAMPLES_SHOWN]}"
            )


def _decode_all(dataset: Dataset, report: VerifyReport) -> None:
    stats = _DepthStats(report.depth_range)
    reader = dataset.dataset if isinstance(dataset, LabelSubset) else dataset
    for index in track(range(report.num_items), f"verify {type(reader).__name__}"):
        try:
            item = dataset[index]
        except (DataError, OSError) as exc:
            report.errors.append(f"item {index}: {exc}")
            continue
        name = str(item.get("name", index))
        problems = _value_problems(item)
        report.errors.extend(f"{name} ({item.get('path', '?')}): {problem}" for problem in problems)
        if "depth" in item and not problems and item.get("labelled", True):
            stats.update(item["depth"], name)
        report.decoded += 1
    stats.write(report)


def _value_problems(item: dict[str, Any]) -> list[str]:
    """Range problems of one item: image finite in [0, 1]; depth finite and >= 0."""
    problems = []
    image = item["image"]
    if not torch.isfinite(image).all():
        problems.append("image holds NaN or inf")
    elif image.numel() and (float(image.min()) < 0.0 or float(image.max()) > 1.0):
        low, high = float(image.min()), float(image.max())
        problems.append(f"image values span [{low:.4g}, {high:.4g}]; expected [0, 1]")
    depth = item.get("depth")
    if depth is not None:
        if not torch.isfinite(depth).all():
            problems.append("depth holds NaN or inf")
        elif depth.numel() and float(depth.min()) < 0.0:
            problems.append(f"depth has negative values (min {float(depth.min()):.4g} m); expected >= 0")
    return problems
