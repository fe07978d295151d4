"""``depthkd preview-datafree``: a picture of what a data-free student learns from.

One PNG grid, one column per image, rows top to bottom:

1. ``raw OOD``: the simulated out-of-distribution images as the dataset gives them;
2. ``mixed``: after object-wise mixing (objects pasted from the other images of the grid);
3. ``transformed``: after the transformation network G (``x_hat = x + G(x)``), when one is given:
   the G of a data-free run (``run``), or a G fitted here for ``fit_steps`` steps against ``teacher``;
4. ``teacher depth``: the teacher's depth on the student's input (the KD target), when a teacher is given.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from depthkd.data import collate, dataset_from_spec
from depthkd.distill.base import SetupContext
from depthkd.distill.datafree import DataFree
from depthkd.errors import ConfigError, DataError
from depthkd.io import colorize_depth
from depthkd.models.transformation import TransformationNet
from depthkd.progress import track

logger = logging.getLogger(__name__)

TRANSFORM_PREFIX = "method.transform."


@dataclass
class DataFreePreview:
    """What :func:`preview_datafree` wrote: the PNG, its row labels and the number of columns."""

    path: Path
    rows: list[str]
    num_images: int


def _run_files(run: str | Path) -> tuple[Path, Path]:
    """``(config.yaml, checkpoint)`` of a run directory or of a checkpoint inside ``<run>/checkpoints/``."""
    run = Path(run)
    if run.is_dir():
        config, checkpoint = run / "config.yaml", run / "checkpoints" / "last.ckpt"
    else:
        config, checkpoint = run.parent.parent / "config.yaml", run
    for path, what in ((config, "run config"), (checkpoint, "checkpoint")):
        if not path.is_file():
            raise ConfigError(f"preview-datafree: {what} not found: {path} (pass a data-free run directory)")
    return config, checkpoint


def load_run_transformation(run: str | Path) -> tuple[DataFree.Config, TransformationNet | None, str | None]:
    """The options, the trained G (``None`` without one) and the teacher spec of a data-free run."""
    from depthkd.config import load_recipe

    config_file, checkpoint = _run_files(run)
    recipe = load_recipe(config_file)
    if recipe.method.name != "data-free":
        raise ConfigError(f"preview-datafree: {config_file} is a {recipe.method.name!r} run, not a data-free one")
    options = recipe.method.options
    if options.transformation == "none":
        return options, None, recipe.teacher.spec
    state = torch.load(checkpoint, map_location="cpu", weights_only=True).get("state_dict", {})
    weights = {k.removeprefix(TRANSFORM_PREFIX): v for k, v in state.items() if k.startswith(TRANSFORM_PREFIX)}
    if not weights:
        raise ConfigError(f"preview-datafree: {checkpoint} holds no transformation network weights")
    transform = TransformationNet(width=options.g_width, blocks=options.g_blocks)
    transform.load_state_dict(weights)
    return options, transform.eval(), recipe.teacher.spec


def _options(options: DataFree.Config | Mapping[str, Any] | None) -> DataFree.Config:
    if options is None:
        return DataFree.Config()
    if isinstance(options, DataFree.Config):
        return options
    from depthkd.config import from_dict

    return from_dict(DataFree.Config, options, "method.options")


def _first_items(data: str | Dataset, count: int) -> dict[str, Any]:
    dataset = dataset_from_spec(data) if isinstance(data, str) else data
    available = len(dataset)  # type: ignore[arg-type]
    if available < 2:
        raise DataError(f"preview-datafree needs at least 2 images to mix, {data!r} has {available}")
    return collate([dataset[i] for i in range(min(count, available))])


def fit_transformation(
    method: DataFree, teacher: torch.nn.Module, images: torch.Tensor, steps: int, lr: float | None = None
) -> None:
    """Train ``method.transform`` on ``images`` for ``steps`` Adam steps of ``L_G`` (a quick look, not training)."""
    assert method.transform is not None
    optimizer = torch.optim.Adam(method.transform.parameters(), lr=lr or method.config.g_lr)
    for step in track(range(steps), "fitting the transformation network", total=steps):
        loss = method.transformation_loss(teacher, images)
        optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        optimizer.step()
        if step == steps - 1:
            logger.info("transformation loss at step %d: %s", step, {k: v.item() for k, v in loss.terms.items()})


def _grid_png(path: Path, rows: list[tuple[str, list[np.ndarray]]]) -> None:
    """Write a labelled grid of uint8 ``(H,W,3)`` pictures with matplotlib (no global pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    height, width = rows[0][1][0].shape[:2]
    columns = len(rows[0][1])
    scale = 2.0 / max(height, width)
    figure = Figure(figsize=(columns * width * scale + 0.6, len(rows) * height * scale + 0.2), dpi=max(100, height))
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(rows), columns, squeeze=False)
    for r, (label, pictures) in enumerate(rows):
        for c, picture in enumerate(pictures):
            axis = axes[r][c]
            axis.imshow(picture, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if c == 0:
                axis.set_ylabel(label, fontsize=9)
    figure.tight_layout(pad=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)


def _pictures(images: torch.Tensor) -> list[np.ndarray]:
    return [(img.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8) for img in images]


def preview_datafree(
    output: str | Path,
    data: str | Dataset,
    num_images: int = 6,
    run: str | Path | None = None,
    teacher: str | torch.nn.Module | None = None,
    fit_steps: int = 0,
    options: DataFree.Config | Mapping[str, Any] | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> DataFreePreview:
    """Write the preview grid (see the module docstring) to ``output`` (a ``.png`` path).

    Args:
        output: the PNG to write.
        data: a data spec or dataset whose items carry ``instances`` (e.g. ``sim:ood_shapes?num=8``);
            its first ``num_images`` items form the grid (mixed among themselves).
        num_images: columns of the grid (at least 2 images are needed to mix).
        run: a data-free run directory (or its checkpoint): its trained G and its mixing options.
        teacher: a teacher spec (or loaded teacher) for the depth row; default: the run's teacher.
        fit_steps: without ``run``, fit a fresh G for this many steps against ``teacher`` on these
            images (0: no transformed row).
        options: the method's options (mixing, G) when no run is given.
        seed: seeds the mixing (and G's initialisation when fitted).
        device: where the teacher and G run.
    """
    if num_images < 2:
        raise ConfigError(f"preview-datafree: num_images={num_images} must be >= 2 (objects are mixed between images)")
    device = torch.device(device)
    transform: TransformationNet | None = None
    teacher_spec = teacher
    if run is not None:
        config, transform, run_teacher = load_run_transformation(run)
        teacher_spec = teacher if teacher is not None else run_teacher
    else:
        config = _options(options)
    config = dataclasses.replace(config, mixing=True)
    method = DataFree(config)
    batch = _first_items(data, num_images)
    batch = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
    mixed = method.mix(batch, torch.Generator().manual_seed(seed)).image

    loaded_teacher = None
    if isinstance(teacher_spec, str):
        from depthkd.models.teachers import load_teacher

        loaded_teacher = load_teacher(teacher_spec, device=device)
    elif teacher_spec is not None:
        loaded_teacher = teacher_spec

    if transform is None and fit_steps > 0:
        if loaded_teacher is None:
            raise ConfigError("preview-datafree: fit_steps needs a teacher to fit the transformation network against")
        fitting = dataclasses.replace(config, transformation="alternate")
        method = DataFree(fitting)
        torch.manual_seed(seed)
        method.setup(SetupContext(student=torch.nn.Identity(), teacher=loaded_teacher, sample_batch=batch))
        fit_transformation(method, loaded_teacher, mixed, fit_steps)
        transform = method.transform
    rows = [("raw OOD", _pictures(batch["image"])), ("mixed", _pictures(mixed))]
    student_input = mixed
    if transform is not None:
        transform = transform.to(device).eval()
        with torch.no_grad():
            student_input = transform(mixed)
        rows.append(("transformed", _pictures(student_input)))
    if loaded_teacher is not None:
        depth = loaded_teacher(student_input.detach()).depth
        vmin, vmax = float(depth[depth > 0].quantile(0.02)), float(depth[depth > 0].quantile(0.98))
        rows.append(("teacher depth", [colorize_depth(d, vmin, vmax) for d in depth]))
    path = Path(output)
    _grid_png(path, rows)
    logger.info("data-free preview written to %s (%s)", path, ", ".join(label for label, _ in rows))
    return DataFreePreview(path=path, rows=[label for label, _ in rows], num_images=len(rows[0][1]))


__all__ = ["DataFreePreview", "fit_transformation", "load_run_transformation", "preview_datafree"]
