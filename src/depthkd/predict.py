"""Write depth predictions for a folder of images: 16-bit PNGs (declared scale) and colour maps.

The layout is the one ``preds:DIR`` and ``evaluate --predictions DIR`` read back, so predictions
saved here (or by another toolkit in the same layout) are scored by the same code:

    DIR/<name>.png              uint16, value = depth * scale (0 = no prediction)
    DIR/colormap/<name>.png     colour-mapped depth for people
    DIR/meta.json               {"scale": ..., "kind": ..., "model": ..., "count": ...}
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from depthkd.errors import ConfigError
from depthkd.inference import load_predictor
from depthkd.io import colorize_depth, write_depth_png, write_rgb
from depthkd.progress import track

log = logging.getLogger(__name__)

PNG_MAX = 65535


@dataclass
class PredictionSummary:
    output_dir: Path
    count: int
    kind: str
    scale: float


def images_root(folder: Path) -> Path:
    """``folder``, or its ``rgb/`` when ``folder`` is a paired dataset's root: its depth and label PNGs
    are not photos to predict on."""
    from depthkd.sim.writer import DATASET_FOLDERS  # the layout depthkd simulate writes

    beside = [sub for sub in DATASET_FOLDERS if sub != "rgb"]
    if (folder / "rgb").is_dir() and any((folder / sub).is_dir() for sub in beside):
        log.info("%s is a dataset folder: predicting on its images in %s", folder, folder / "rgb")
        return folder / "rgb"
    return folder


def input_dataset(source: str | Path) -> Any:
    """What to predict on: a data spec (``nyu-list:...``, ``kitti:...``, ``folder:...``) gives its images under
    the item names ``evaluate --predictions`` looks up; a folder gives every image below it (a paired
    dataset's ``rgb/`` when handed the dataset's root)."""
    from depthkd.data import ImageFolder, dataset_from_spec
    from depthkd.data.spec import SCHEMES

    text = str(source)
    if text.partition(":")[0] in SCHEMES and not Path(text).exists():
        return dataset_from_spec(text)
    return ImageFolder(images_root(Path(source)))


def check_fits_png(depth: torch.Tensor, scale: float, name: str) -> None:
    """Refuse depth a 16-bit PNG at ``scale`` cannot hold (it would saturate at 65535 and read back wrong)."""
    peak = float(depth.max())
    if peak * scale > PNG_MAX:
        raise ConfigError(
            f"the prediction for {name!r} reaches {peak:.3g} m, beyond what a 16-bit PNG at --scale {scale:g} "
            f"holds ({PNG_MAX / scale:.3g} m): use --scale {math.floor(PNG_MAX / peak)} or less, or --format npy"
        )


def predict_folder(
    model: str,
    input_dir: str | Path,
    output_dir: str | Path,
    scale: float = 1000.0,
    flip_tta: bool = False,
    device: str = "cpu",
    fmt: str = "png",
) -> PredictionSummary:
    """Predict depth for every image below ``input_dir`` and write it under ``output_dir``.

    Args:
        model: a student checkpoint or a teacher spec (see :func:`depthkd.inference.load_predictor`).
        input_dir: a folder of images, a paired dataset's root (its ``rgb/`` is used), or a data spec
            (its images, named as ``evaluate`` names them: see :func:`input_dataset`).
        scale: 16-bit PNG scale (1000 = millimetres; 256 = KITTI convention); depth beyond
            ``65535 / scale`` metres is an error naming the image, not a saturated pixel.
        fmt: ``png`` (16-bit, metric outputs) or ``npy`` (float32, any output kind, lossless).
    """
    if fmt not in ("png", "npy"):
        raise ConfigError(f"unknown prediction format {fmt!r}; expected 'png' or 'npy'")
    if not (math.isfinite(scale) and scale > 0):
        raise ConfigError(f"--scale {scale}: expected a positive number of PNG units per metre (1000 = mm)")
    predictor = load_predictor(model, device=device)
    if fmt == "png" and predictor.kind != "metric_depth":
        raise ConfigError(
            f"{model} outputs {predictor.kind}, which is not metres: use --format npy to save it losslessly"
        )
    dataset = input_dataset(input_dir)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for item in track(dataset, "predict"):
        images = item["image"].unsqueeze(0).to(device)
        depth = predictor(images, names=[item["name"]], flip=flip_tta)[0, 0].float().cpu()
        name = item["name"]  # relative path without extension: names may contain dots
        if fmt == "png":
            check_fits_png(depth, scale, name)
            write_depth_png(out / f"{name}.png", depth, scale=scale)
        else:
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            np.save(out / f"{name}.npy", depth.numpy().astype(np.float32))
        shown = depth if predictor.kind != "relative_disparity" else torch.reciprocal(depth.clamp_min(1e-6))
        write_rgb(out / "colormap" / f"{name}.png", colorize_depth(shown))
    meta = {"scale": scale, "kind": predictor.kind, "model": model, "count": len(dataset), "format": fmt}
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return PredictionSummary(output_dir=out, count=len(dataset), kind=predictor.kind, scale=scale)
