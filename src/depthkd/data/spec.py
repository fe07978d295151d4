"""Build a dataset from a one-line spec, as used on the command line and in recipes.

``scheme:PATH?key=value&key=value``, for example::

    nyu-mat:nyu_depth_v2_labeled.mat?splits=splits.mat&split=test&depth=filled
    nyu-list:nyu_test.txt?root=nyu/official_splits/test
    kitti:eigen_test_files_with_gt.txt?root=kitti_raw&gt_root=data_depth_annotated&kb_crop=1
    folder:my_rgbd?depth_scale=1000          (PairedFolder: rgb/ and depth/)
    images:my_photos                          (ImageFolder)
    instances:sim/rgb?masks=sim/instances&depth=sim/depth   (images + instance PNGs, data-free KD)
    sim:indoor?num=64&size=240x320&seed=0     (the procedural simulator)
    sim:ood_shapes+ood_clutter?num=600        (several simulator domains, interleaved)
    sim:outdoor?size=128x416&gt=lidar        (sensor-like ground truth: gt=dense|lidar|kinect|kinect_filled)

Paths may be relative (to the working directory). Defaults where the spec leaves a path out (ours):
``splits`` is ``splits.mat`` beside the ``.mat`` file; ``root`` is the list file's folder;
``gt_root`` is ``root``.

Every scheme with depth also takes ``labels=N`` (a count) or ``labels=0.05`` (a fraction in (0, 1]) and
``labels_seed=S`` (0 unless given, our default): a fixed, seeded subset of N items keeps its depth and
every other item comes with an all-zero depth and ``labelled=False`` (:mod:`depthkd.data.labels`), e.g.
``sim:indoor?num=1000&size=128x160&labels=50`` or ``nyu-list:list.txt?root=nyu&labels=0.05``. With
``unlabelled=drop`` the set holds the labelled items only (the data of a student trained alone on the
labels a label-scarce user has); ``keep``, the default, keeps every image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from torch.utils.data import Dataset

from depthkd.data.labels import DEFAULT_LABELS_SEED, LabelSubset, parse_labels
from depthkd.config import bool_word
from depthkd.errors import ConfigError

Transform = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class DataSpec:
    """A parsed spec: scheme, path (or simulator domain) and raw ``key=value`` parameters."""

    scheme: str
    path: str
    params: dict[str, str]


def _parse_bool(key: str, value: str) -> bool:
    parsed = bool_word(value)
    if parsed is not None:
        return parsed
    raise ConfigError(f"data spec parameter {key}={value!r} is not a boolean (use 1/0, true/false)")


def _parse_choice(key: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"data spec parameter {key}={value!r} is not one of {', '.join(choices)}")
    return value


def _parse_float(key: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"data spec parameter {key}={value!r} is not a number") from None


def _parse_scale(key: str, value: str) -> float:
    """A depth scale (stored units per metre): a positive, finite number."""
    scale = _parse_float(key, value)
    if not 0 < scale < float("inf"):
        raise ConfigError(f"data spec parameter {key}={value!r} must be a positive number (stored units per metre, "
                          "e.g. 1000 for millimetre PNGs)")
    return scale


def _parse_int(key: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"data spec parameter {key}={value!r} is not an integer") from None


def parse_size(text: str, what: str | None = None) -> tuple[int, int]:
    """Parse ``HxW`` (e.g. ``240x320``) into positive ``(H, W)``; errors name ``what`` (default: the text)."""
    what = what or f"size {text!r}"
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"{what} is not HxW, e.g. 240x320") from None
    if height <= 0 or width <= 0:
        raise ConfigError(f"{what} must be positive")
    return height, width


def _parse_size(key: str, value: str) -> tuple[int, int]:
    return parse_size(value, f"data spec parameter {key}={value!r}")


# Per scheme: parameter name -> parser. The order is the order shown in error messages.
_PARAMS: dict[str, dict[str, Callable[[str, str], Any]]] = {
    "nyu-mat": {"splits": lambda k, v: v, "split": lambda k, v: v, "depth": lambda k, v: v},
    "nyu-list": {
        "root": lambda k, v: v,
        "gt_root": lambda k, v: v,
        "depth_scale": _parse_scale,
        "allow_missing": _parse_bool,
    },
    "kitti": {
        "root": lambda k, v: v,
        "gt_root": lambda k, v: v,
        "kb_crop": _parse_bool,
        "depth_scale": _parse_scale,
        "allow_missing": _parse_bool,
    },
    "folder": {"depth_scale": _parse_scale, "allow_missing": _parse_bool},
    "images": {},
    "instances": {
        "masks": lambda k, v: v,
        "depth": lambda k, v: v,
        "depth_scale": _parse_scale,
        "allow_missing": _parse_bool,
    },
    "sim": {
        "num": _parse_int,
        "size": _parse_size,
        "seed": _parse_int,
        "batch_render": _parse_int,
        "gt": lambda k, v: v,
    },
}
SCHEMES = tuple(_PARAMS)
# Parameters every scheme takes (the labelled subset, see the module docstring).
_LABEL_PARAMS: dict[str, Callable[[str, str], Any]] = {
    "labels": lambda k, v: parse_labels(v),
    "labels_seed": _parse_int,
    "unlabelled": lambda k, v: _parse_choice(k, v, ("keep", "drop")),
}


def _scheme_params(scheme: str) -> dict[str, Callable[[str, str], Any]]:
    """The parameters ``scheme`` takes: its own, then the label ones."""
    return {**_PARAMS[scheme], **_LABEL_PARAMS}


def parse_spec(spec: str) -> DataSpec:
    """Split ``scheme:PATH?query`` and check the scheme and parameter names (values are parsed later)."""
    scheme, sep, rest = spec.partition(":")
    if not sep or scheme not in _PARAMS:
        raise ConfigError(
            f"data spec {spec!r} has unknown scheme {scheme if sep else ''!r}; expected one of "
            f"{', '.join(s + ':' for s in SCHEMES)}"
        )
    path, _, query = rest.partition("?")
    path = unquote(path)
    if not path:
        raise ConfigError(f"data spec {spec!r} names no path after {scheme}:")
    params: dict[str, str] = {}
    for field in filter(None, query.split("&")):
        key, equals, value = field.partition("=")
        if not equals or not key:
            raise ConfigError(
                f"data spec {spec!r}: {field!r} is not key=value (parameters: key=value&key=value)"
            )
        key, value = unquote(key), unquote(value)
        if key not in _scheme_params(scheme):
            # images: has no depth, so the label parameters (refused with their own message) are not listed.
            valid = ", ".join(_PARAMS[scheme] if scheme == "images" else _scheme_params(scheme)) or "none"
            raise ConfigError(f"data spec {spec!r}: unknown parameter {key!r} for {scheme}:; valid: {valid}")
        if key in params:
            raise ConfigError(f"data spec {spec!r}: parameter {key!r} given twice")
        params[key] = value
    return DataSpec(scheme, path, params)


#: Spec parameters that change only the labels of the items, never their images (unless
#: ``unlabelled=drop``, which keeps only the labelled images: then only ``gt`` is label-only).
LABEL_PARAMS = ("gt", "labels", "labels_seed")


def image_source(spec: str) -> str:
    """``spec`` without the parameters that change only the labels (:data:`LABEL_PARAMS`), in a canonical
    order: two specs with the same result name the same images (e.g. a teacher cache can serve both)."""
    parsed = parse_spec(spec)
    label_only = ("gt",) if parsed.params.get("unlabelled") == "drop" else (*LABEL_PARAMS, "unlabelled")
    kept = sorted((k, v) for k, v in parsed.params.items() if k not in label_only)
    query = "&".join(f"{k}={v}" for k, v in kept)
    return f"{parsed.scheme}:{parsed.path}" + (f"?{query}" if query else "")


def with_params(spec: str, **values: object) -> str:
    """``spec`` with parameters set: an existing one replaced where it stands, a new one appended, e.g.
    ``with_params("sim:indoor?num=256&seed=9", num=64)`` is ``"sim:indoor?num=64&seed=9"``."""
    parsed = parse_spec(spec)
    params = {**parsed.params, **{key: str(value) for key, value in values.items()}}
    query = "&".join(f"{k}={v}" for k, v in params.items())
    text = f"{parsed.scheme}:{parsed.path}" + (f"?{query}" if query else "")
    parse_spec(text)  # a parameter the scheme does not take is refused here, by name
    return text


def dataset_from_spec(
    spec: str, transform: Transform | None = None, allow_missing: bool | None = None
) -> Dataset:
    """The dataset a spec names (see the module docstring for the schemes).

    ``allow_missing`` overrides the spec's own flag for the readers that check files up front
    (``verify_dataset`` uses it to list every missing file instead of stopping at the first report).
    """
    parsed = parse_spec(spec)
    options = {key: _scheme_params(parsed.scheme)[key](key, value) for key, value in parsed.params.items()}
    if allow_missing is not None and "allow_missing" in _PARAMS[parsed.scheme]:
        options["allow_missing"] = allow_missing
    labels = options.pop("labels", None)
    labels_seed = options.pop("labels_seed", None)
    unlabelled = options.pop("unlabelled", "keep")
    if labels is None:
        for key in ("labels_seed", "unlabelled"):
            if key in parsed.params:
                raise ConfigError(
                    f"data spec {spec!r}: {key}={parsed.params[key]} needs labels= (the count or fraction of "
                    "items that keep their depth)"
                )
        return _BUILDERS[parsed.scheme](parsed.path, options, transform)
    if parsed.scheme == "images" or (parsed.scheme == "instances" and "depth" not in options):
        raise ConfigError(
            f"data spec {spec!r}: labels={labels} needs items with depth, but {parsed.scheme}: items have "
            "none (images: never; instances: only with depth=DIR)"
        )
    # The wrapper applies the transform, after zeroing (see depthkd.data.labels for why).
    dataset = _BUILDERS[parsed.scheme](parsed.path, options, None)
    seed = DEFAULT_LABELS_SEED if labels_seed is None else labels_seed
    subset = LabelSubset(dataset, labels, seed, transform=transform)
    return subset.labelled_only() if unlabelled == "drop" else subset


def _build_nyu_mat(path: str, options: dict[str, Any], transform: Transform | None) -> Dataset:
    from depthkd.data.nyu import NYUv2Mat

    splits = options.pop("splits", None) or Path(path).with_name("splits.mat")
    return NYUv2Mat(path, splits, transform=transform, **options)


def _build_nyu_list(path: str, options: dict[str, Any], transform: Transform | None) -> Dataset:
    from depthkd.data.nyu import NYUv2List

    root = options.pop("root", None) or Path(path).parent
    return NYUv2List(path, root, transform=transform, **options)


def _build_kitti(path: str, options: dict[str, Any], transform: Transform | None) -> Dataset:
    from depthkd.data.kitti import KittiEigen

    root = options.pop("root", None) or Path(path).parent
    gt_root = options.pop("gt_root", None) or root
    return KittiEigen(path, root, gt_root, transform=transform, **options)


def _build_folder(path: str, options: dict[str, Any], transform: Transform | None) -> Dataset:
    from depthkd.data.folders import PairedFolder

    return PairedFolder(path, transform=transform, **options)


def _build_images(path: str, options: dict[str, Any], transform: Transform | None) -> Dataset:
    from depthkd.data.folders import ImageFolder

    return ImageFolder(path, transform=transform)


def _build_instances(path: str, options: dict[str, Any], transform: Transform | None) -> Dataset:
    from depthkd.data.instances import InstanceFolder

    if "masks" not in options:
        raise ConfigError(f"data spec instances:{path} needs masks=DIR (a folder of instance-id PNGs)")
    return InstanceFolder(path, transform=transform, **options)


def _build_sim(domain: str, options: dict[str, Any], transform: Transform | None) -> Dataset:
    """One simulator domain, or several joined by ``+`` and interleaved.

    ``batch_render`` (scenes rendered together per cache chunk) defaults to 1 here (ours): training
    samplers read items in random order, where larger chunks render scenes that are thrown away.
    """
    from depthkd.data.instances import MultiDomainSim
    from depthkd.sim import SimDataset

    if "num" in options:
        options["length"] = options.pop("num")
    options.setdefault("batch_render", 1)
    if "+" in domain:
        return MultiDomainSim(domain.split("+"), transform=transform, **options)
    return SimDataset(domain, transform=transform, **options)


_BUILDERS: dict[str, Callable[[str, dict[str, Any], Transform | None], Dataset]] = {
    "nyu-mat": _build_nyu_mat,
    "nyu-list": _build_nyu_list,
    "kitti": _build_kitti,
    "folder": _build_folder,
    "images": _build_images,
    "instances": _build_instances,
    "sim": _build_sim,
}
