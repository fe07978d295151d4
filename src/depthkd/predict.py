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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from depthkd.errors import ConfigError
from depthkd.inference import load_predictor
from depthkd.io import colorize_depth, write_depth_png, write_rgb
from depthkd.progress import track

log = logging.getLogger(__name__)


@dataclass
class PredictionSummary:
    output_dir: Path
    count: int
    kind: str
    scale: float


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
        scale: 16-bit PNG scale (1000 = millimetres; 256 = KITTI convention).
        fmt: ``png`` (16-bit, metric outputs) or ``npy`` (float32, any output kind, lossless).
    """
    from depthkd.data import ImageFolder

    if fmt not in ("png", "npy"):
        raise ConfigError(f"unknown prediction format {fmt!r}; expected 'png' or 'npy'")
    predictor = load_predictor(model, device=device)
    if fmt == "png" and predictor.kind != "metric_depth":
        raise ConfigError(
            f"{model} outputs {predictor.kind}, which is not metres: use --format npy to save it losslessly"
        )
    dataset = ImageFolder(input_dir)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for item in track(dataset, "predict"):
        images = item["image"].unsqueeze(0).to(device)
        depth = predictor(images, names=[item["name"]], flip=flip_tta)[0, 0].float().cpu()
        name = item["name"]  # relative path without extension: names may contain dots
        if fmt == "png":
            write_depth_png(out / f"{name}.png", depth, scale=scale)
        else:
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            np.save(out / f"{name}.npy", depth.numpy().astype(np.float32))
        shown = depth if predictor.kind != "relative_disparity" else torch.reciprocal(depth.clamp_min(1e-6))
        write_rgb(out / "colormap" / f"{name}.png", colorize_depth(shown))
    meta = {"scale": scale, "kind": predictor.kind, "model": model, "count": len(dataset), "format": fmt}
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return PredictionSummary(output_dir=out, count=len(dataset), kind=predictor.kind, scale=scale)
