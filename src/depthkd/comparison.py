"""Train methods under one budget on the same data and score them on one test set.

The machinery shared by ``depthkd demo`` and the method benchmark (``benchmarks/methods.py``): each
row is a packaged recipe (``tiekd-sim``, ``supervised-sim``, ...) with the data, step budget, seed
and run folder replaced, so a row trains exactly what a user gets from ``depthkd distill --config``.
Teachers appear as reference rows scored on the same test set.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from depthkd.config import RecipeConfig, load_recipe

DEFAULT_TRAIN_SIZE = (128, 160)
"""Rendered training images (the recipes crop 96x128 from them) and the test images' size."""


def slug(label: str) -> str:
    """A folder name for a row label: lower case, runs of other characters as one ``-``."""
    import re

    return re.sub(r"[^a-z0-9.]+", "-", label.lower()).strip("-") or "row"


def disdepth_budget(steps: int) -> list[str]:
    """DisDepth's three stages scaled to ``steps`` student steps, in the recipe's 1000/500/1500 ratio.

    The student trains in warm-up and distillation (40% + 60% of ``steps``); teacher acclimation
    (20% of ``steps``) trains only the teacher-side adapter.
    """
    warmup = max(1, round(0.4 * steps))
    return [
        f"method.options.warmup_steps={warmup}",
        f"method.options.acclimation_steps={max(1, round(0.2 * steps))}",
        f"method.options.distill_steps={max(1, steps - warmup)}",
    ]


STAGED_BUDGETS = {"disdepth": disdepth_budget}
"""Methods whose stages carry their own step counts: how to fit them to a budget."""


@dataclass(frozen=True)
class Contender:
    """One row: a packaged recipe plus overrides.

    Attributes:
        label: the row's name in tables and run folders.
        recipe: packaged recipe name (``depthkd.config.find_recipe``).
        overrides: ``key=value`` overrides applied after the budget's.
        own_data: keep the recipe's training data (data-free trains on out-of-distribution images).
    """

    label: str
    recipe: str
    overrides: tuple[str, ...] = ()
    own_data: bool = False


@dataclass
class Budget:
    """What every row gets: the same data, steps, batch and validation points.

    ``val`` is the validation set the curves are drawn on; ``None`` validates on ``test`` (the demo's
    habit). With a separate ``val``, each exported student is scored on ``test`` after training, so the
    test set never steers a run. ``resume`` continues an interrupted row from its last checkpoint (saved
    every tenth of the budget) instead of starting it again.
    """

    train: str
    test: str
    steps: int
    batch_size: int = 8
    val_points: int = 4
    num_workers: int = 1
    val: str | None = None
    resume: bool = False


@dataclass
class RowResult:
    """A scored row (a trained student or a reference teacher)."""

    label: str
    method: str
    seed: int | None
    metrics: dict[str, float]
    params_m: float
    gmacs: float
    seconds: float
    run_dir: Path | None = None
    student_path: Path | None = None
    teacher: str | None = None
    teacher_metrics: dict[str, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        values = dict(self.__dict__)
        for key in ("run_dir", "student_path"):
            values[key] = str(values[key]) if values[key] is not None else None
        return values


def contender_recipe(
    contender: Contender,
    budget: Budget,
    seed: int,
    runs_root: Path,
    extra_overrides: Sequence[str] = (),
) -> RecipeConfig:
    """The recipe of ``contender`` with ``budget``'s data and steps, seeded, running under ``runs_root``."""
    base = load_recipe(contender.recipe)
    method = base.method.name
    steps = budget.steps
    overrides = [
        f"data.val={budget.val or budget.test}",
        f"data.batch_size={budget.batch_size}",
        f"data.num_workers={budget.num_workers}",
        "trainer.max_epochs=null",
        f"trainer.max_steps={steps}",
        f"trainer.val_every_n_steps={max(1, steps // max(1, budget.val_points))}",
        f"trainer.checkpoint_every_n_steps={max(1, steps // (10 if budget.resume else 2))}",
        f"run.root={runs_root}",
        f"run.dir={runs_root / f'{slug(contender.label)}-s{seed}'}",
        f"run.seed={seed}",
        f"run.resume={'auto' if budget.resume else 'never'}",
    ]
    if not contender.own_data:
        overrides.append(f"data.train={budget.train}")
    if method in STAGED_BUDGETS:
        overrides += STAGED_BUDGETS[method](steps)
    return load_recipe(contender.recipe, [*overrides, *extra_overrides, *contender.overrides])


def model_cost(model: torch.nn.Module, size: Sequence[int]) -> tuple[float, float]:
    """``(params in millions, GMACs at size)``."""
    from depthkd.bench import count_macs, count_parameters

    return count_parameters(model) / 1e6, count_macs(model, tuple(size)) / 1e9


def train_contender(
    contender: Contender,
    budget: Budget,
    seed: int,
    runs_root: Path,
    size: Sequence[int] = DEFAULT_TRAIN_SIZE,
    extra_overrides: Sequence[str] = (),
) -> RowResult:
    """Train one row and score its exported student on the budget's test set (under the recipe's
    ``eval.protocol``)."""
    from depthkd.engine import run_recipe
    from depthkd.evaluate import evaluate
    from depthkd.models import load_student

    config = contender_recipe(contender, budget, seed, runs_root, extra_overrides)
    started = time.perf_counter()
    result = run_recipe(config)
    seconds = time.perf_counter() - started
    assert result.student_path is not None and result.metrics is not None  # single process, test set given
    metrics = result.metrics
    if budget.val is not None:  # validated elsewhere: score on the test set now
        metrics = evaluate(str(result.student_path), budget.test, protocol=config.eval.protocol, batch_size=8).metrics
    params, gmacs = model_cost(load_student(result.student_path), size)
    return RowResult(
        label=contender.label,
        method=config.method.name,
        seed=seed,
        metrics=metrics,
        params_m=params,
        gmacs=gmacs,
        seconds=seconds,
        run_dir=result.run_dir,
        student_path=result.student_path,
        teacher=config.teacher.spec or None,
        teacher_metrics=result.teacher_metrics,
    )


def score_teacher(
    spec: str, test: str, protocol: str = "sim_indoor", size: Sequence[int] = DEFAULT_TRAIN_SIZE, label: str = ""
) -> RowResult:
    """A reference row: teacher ``spec`` scored on ``test`` (no alignment: the teachers are metric)."""
    from depthkd.data import dataset_from_spec
    from depthkd.evaluate import evaluate_dataset
    from depthkd.inference import load_predictor

    started = time.perf_counter()
    predictor = load_predictor(spec)
    result = evaluate_dataset(predictor, dataset_from_spec(test), protocol=protocol, batch_size=8, data_name=test,
                              description=f"scoring {spec}")
    params, gmacs = model_cost(getattr(predictor.model, "model", predictor.model), size)  # the teacher's network
    return RowResult(
        label=label or f"teacher {spec}",
        method="teacher",
        seed=None,
        metrics=result.metrics,
        params_m=params,
        gmacs=gmacs,
        seconds=time.perf_counter() - started,
        teacher=spec,
    )


def read_curves(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """``train/loss`` and ``val/abs_rel`` against the optimiser step, from a run's CSV logs."""
    import csv

    curves: dict[str, list[tuple[int, float]]] = {"train/loss": [], "val/abs_rel": []}
    offset = 0
    for stage_log in sorted((run_dir / "logs").glob("*/metrics.csv"), key=lambda p: p.stat().st_mtime):
        last = 0
        with stage_log.open() as handle:
            for row in csv.DictReader(handle):
                step = int(row["step"]) + offset
                last = max(last, step)
                for key in curves:
                    if row.get(key):
                        curves[key].append((step, float(row[key])))
        offset = last + 1
    return curves


def gap_closed_share(alone: float, distilled: float, teacher: float) -> float | None:
    """Share of the student-alone -> teacher AbsRel gap a distilled student closes (``None``: no gap)."""
    gap = alone - teacher
    return (alone - distilled) / gap if gap > 0 else None
