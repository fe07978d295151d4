"""Label-scarce training data: a seeded subset of items keeps its depth, the rest are images only.

Most users have many more images than depth labels. :class:`LabelSubset` keeps the depth of exactly
``N`` items of a dataset and zeroes the depth of every other one (``0`` = no measurement, the project's
convention); :class:`WithUnlabelled` appends the images of a second source as unlabelled items. Both
keep one item format, so mixed batches collate without special cases: supervised losses ignore ``0``
pixels (a batch without any gives a zero loss), teacher-only methods use every image, and each item
carries ``labelled`` (a Python bool) for code and reports that count.

**Where the zeroing happens.** Both wrappers take the ``transform`` themselves and zero *before* it (the
wrapped datasets are built without one): a transform that derives a dense map from depth (a validity
mask, normals) then sees the zeros, and the depth map and everything made from it stay consistent.
With the transforms of :mod:`depthkd.data.transforms` the order makes no difference to the bytes:
geometry moves dense maps with nearest-neighbour resampling and fills uncovered pixels with ``0``, and
colour jitter touches only the image, so an all-zero depth stays all zero. A dataset that already
applies its own transform is still wrapped correctly for those transforms; its zeroing just happens
after that transform.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import torch
from torch.utils.data import Dataset

from depthkd.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

Item = dict[str, Any]
Transform = Callable[[Item], Item]

#: The seed of the labelled subset when none is given (our default).
DEFAULT_LABELS_SEED = 0

_EXPECTED = "expected a positive count (an integer, e.g. labels=50) or a fraction in (0, 1] (e.g. labels=0.05)"


def parse_labels(text: str) -> int | float:
    """``labels=`` text: an integer is a count, anything else a number read as a fraction."""
    text = text.strip()
    try:
        value: int | float = int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"labels={text!r} is not a number; {_EXPECTED}") from None
    check_labels(value)
    return value


def check_labels(labels: int | float) -> None:
    """Refuse counts below 1, fractions outside ``(0, 1]``, non-numbers (named ``labels=`` in the message)."""
    if isinstance(labels, bool) or not isinstance(labels, (int, float)):
        raise ConfigError(f"labels={labels!r} is not a number; {_EXPECTED}")
    if isinstance(labels, float) and not math.isfinite(labels):
        raise ConfigError(f"labels={labels!r} is not a finite number; {_EXPECTED}")
    if labels <= 0:
        raise ConfigError(f"labels={labels!r} must be positive; {_EXPECTED}")
    if isinstance(labels, float) and labels > 1:
        raise ConfigError(f"labels={labels!r} is a fraction above 1; {_EXPECTED}")


def label_count(labels: int | float, length: int) -> int:
    """How many of ``length`` items keep their depth.

    A count is taken as it is (it must not exceed ``length``). A fraction ``f`` gives
    ``round(f * length)`` with halves rounded up, computed in decimal on the fraction as written (so
    ``0.145`` of 100 is 15, not 14 from binary ``14.4999...``), and at least 1 (our rule: a positive
    fraction of a non-empty set keeps at least one label).
    """
    check_labels(labels)
    if isinstance(labels, float):
        exact = (Decimal(repr(labels)) * length).to_integral_value(rounding=ROUND_HALF_UP)
        return min(length, max(1, int(exact)))
    if labels > length:
        raise ConfigError(
            f"labels={labels} is more than the dataset's {length} items; expected a count up to {length} "
            "or a fraction in (0, 1]"
        )
    return int(labels)


def labelled_indices(length: int, count: int, seed: int = DEFAULT_LABELS_SEED) -> list[int]:
    """``count`` indices of ``range(length)``, sorted: the first ``count`` of a permutation seeded by ``seed``.

    A random permutation spreads the subset over the whole set (lists are often ordered by scene, so
    the first N items would all come from a few scenes); the same length and seed give the same subset.
    """
    generator = torch.Generator().manual_seed(int(seed))
    return sorted(torch.randperm(length, generator=generator)[:count].tolist())


def _length(dataset: Dataset, what: str) -> int:
    try:
        return len(dataset)  # type: ignore[arg-type]
    except TypeError:
        raise ConfigError(
            f"{what} needs a dataset of fixed length; {dataset!r} has none (an endless stream?)"
        ) from None


#: Keys holding ground truth: an unlabelled item carries none of it (the simulator's sensors add the
#: exact ``dense_depth`` beside their ``depth``; it must not reach training through a side door).
GROUND_TRUTH_KEYS = ("depth", "dense_depth")


def _unlabelled(item: Item) -> Item:
    """``item`` with an all-zero depth (kept or made at the image's size) and ``labelled=False``."""
    out = dict(item)
    depth = item.get("depth")
    if depth is None:
        height, width = item["image"].shape[-2:]
        out["depth"] = torch.zeros(1, height, width, dtype=torch.float32)
    for key in GROUND_TRUTH_KEYS:
        if item.get(key) is not None:
            out[key] = torch.zeros_like(item[key])
    out["labelled"] = False
    return out


class LabelSubset(Dataset):
    """``dataset`` with the depth of all but ``labels`` seeded items zeroed (see the module docstring).

    Args:
        dataset: items with ``depth``; build it without a transform and pass the transform here.
        labels: an ``int`` count or a ``float`` fraction in ``(0, 1]`` (rounding: :func:`label_count`).
        seed: seed of the subset (:func:`labelled_indices`); 0 by default (ours).
        transform: applied to each item after its depth is zeroed or kept.

    Attributes:
        labelled_indices: the sorted indices that keep their depth.
    """

    def __init__(
        self,
        dataset: Dataset,
        labels: int | float,
        seed: int = DEFAULT_LABELS_SEED,
        transform: Transform | None = None,
    ) -> None:
        length = _length(dataset, f"labels={labels}")
        self.dataset = dataset
        self.labels = labels
        self.seed = int(seed)
        self.transform = transform
        self.labelled_indices = labelled_indices(length, label_count(labels, length), self.seed)
        self._labelled = frozenset(self.labelled_indices)

    @property
    def num_labelled(self) -> int:
        return len(self.labelled_indices)

    @property
    def num_unlabelled(self) -> int:
        return len(self) - self.num_labelled

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def _finish(self, index: int, item: Item) -> Item:
        if "depth" not in item:
            raise DataError(
                f"item {item.get('name', index)!r} has no depth; labels= needs a dataset with ground truth"
            )
        if index % len(self) in self._labelled:
            item = {**item, "labelled": True}
        else:
            item = _unlabelled(item)
        return self.transform(item) if self.transform is not None else item

    def __getitem__(self, index: int) -> Item:
        return self._finish(int(index), self.dataset[index])

    def prefetch(self, indices: Sequence[int]) -> None:
        """Hand ``indices`` to the wrapped dataset's ``prefetch`` (the simulator's one-pass render), if any."""
        prefetch = getattr(self.dataset, "prefetch", None)
        if callable(prefetch):
            prefetch(list(indices))

    def __getitems__(self, indices: Sequence[int]) -> list[Item]:
        """A DataLoader batch through the wrapped dataset's ``__getitems__`` when it has one."""
        getitems = getattr(self.dataset, "__getitems__", None)
        items = getitems(list(indices)) if callable(getitems) else [self.dataset[i] for i in indices]
        return [self._finish(int(i), item) for i, item in zip(indices, items)]

    def labelled_only(self) -> LabelledOnly:
        """The labelled items alone, as their own dataset (``unlabelled=drop``)."""
        return LabelledOnly(self)

    def __repr__(self) -> str:
        return (
            f"LabelSubset({self.dataset!r}, labels={self.labels}, labels_seed={self.seed}: "
            f"{self.num_labelled} labelled, {self.num_unlabelled} unlabelled)"
        )


class LabelledOnly(Dataset):
    """The labelled items of a :class:`LabelSubset`, in order: what a student trained on the labels alone
    sees (item ``i`` is the subset's item ``labelled_indices[i]``)."""

    def __init__(self, subset: LabelSubset) -> None:
        self.subset = subset
        self.indices = list(subset.labelled_indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Item:
        return self.subset[self.indices[int(index)]]

    def prefetch(self, indices: Sequence[int]) -> None:
        self.subset.prefetch([self.indices[int(i)] for i in indices])

    def __getitems__(self, indices: Sequence[int]) -> list[Item]:
        return self.subset.__getitems__([self.indices[int(i)] for i in indices])

    def __repr__(self) -> str:
        return f"LabelledOnly({self.subset!r}: {len(self)} items)"


class WithUnlabelled(Dataset):
    """The items of ``labelled`` followed by the images of ``unlabelled`` as unlabelled items.

    Unlabelled items get an all-zero depth at their image's size and ``labelled=False``; items of
    ``labelled`` keep their ``labelled`` flag (``True`` when they have none). One item of each source is
    read here to find the keys both share: only those (plus ``depth`` and ``labelled``) are kept, so that
    the two kinds batch together (e.g. KITTI's ``focal`` is dropped when the photos have none). Build
    both datasets without a transform and pass it here; images of both sources must reach one size
    through it (a crop) to share a batch: :attr:`sample_sizes` lets the caller check that up front.
    """

    def __init__(self, labelled: Dataset, unlabelled: Dataset, transform: Transform | None = None) -> None:
        self.labelled, self.unlabelled, self.transform = labelled, unlabelled, transform
        self.offset = _length(labelled, "the labelled data")  # index of the first unlabelled image
        self.num_images = _length(unlabelled, "the unlabelled data")
        if not self.offset or not self.num_images:
            raise ConfigError(
                f"cannot join {self.offset} labelled and {self.num_images} unlabelled items; both sources need some"
            )
        first, other = labelled[0], unlabelled[0]
        if "depth" not in first:
            raise ConfigError(
                f"the labelled data {labelled!r} has no depth; unlabelled images only make sense beside "
                "labelled ones (for teacher-only training, make one image source the training set)"
            )
        self.keys = [key for key in first if key in other or key == "depth"] + ["labelled"]
        dropped = sorted((set(first) | set(other)) - set(self.keys))
        if dropped:
            logger.info("joined labelled and unlabelled data: keys %s are in only one source, dropped", dropped)
        self.sample_sizes = (tuple(first["image"].shape[-2:]), tuple(other["image"].shape[-2:]))

    def __len__(self) -> int:
        return self.offset + self.num_images

    def __getitem__(self, index: int) -> Item:
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        if index < self.offset:
            item = dict(self.labelled[index])
            item["labelled"] = bool(item.get("labelled", True))
        else:
            item = _unlabelled(self.unlabelled[index - self.offset])
        item = {key: item[key] for key in self.keys if key in item}
        return self.transform(item) if self.transform is not None else item

    def prefetch(self, indices: Sequence[int]) -> None:
        """Each source's share of ``indices`` to its ``prefetch``, where it has one."""
        parts = (
            (self.labelled, [i for i in indices if i < self.offset]),
            (self.unlabelled, [i - self.offset for i in indices if i >= self.offset]),
        )
        for dataset, share in parts:
            prefetch = getattr(dataset, "prefetch", None)
            if share and callable(prefetch):
                prefetch(share)

    def __getitems__(self, indices: Sequence[int]) -> list[Item]:
        """A DataLoader batch: prefetched per source, then read item by item."""
        self.prefetch([int(i) for i in indices])
        return [self[i] for i in indices]

    def __repr__(self) -> str:
        return (
            f"WithUnlabelled({self.labelled!r} + {self.num_images} unlabelled images of {self.unlabelled!r})"
        )


__all__ = ["DEFAULT_LABELS_SEED", "LabelSubset", "WithUnlabelled", "label_count", "labelled_indices", "parse_labels"]
