"""Train methods under one budget on the same data and score them on one test set.

The machinery shared by ``depthkd demo`` and the method benchmark (``benchmarks/methods.py``): each
row is a packaged recipe (``tiekd-sim``, ``supervised-sim``, ...) with the data, step budget, seed
and run folder replaced, so a row trains exactly what a user gets from ``depthkd distill --config``.
Teachers appear as reference rows scored on the same test set.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from depthkd.config import RecipeConfig, load_recipe
from depthkd.distill.disdepth import REPORT_FILE as ACCLIMATION_REPORT

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
    every tenth of the budget) instead of starting it again. ``also_protocols`` scores each row on the test
    set under more protocols than its recipe's (into ``RowResult.extra["by_protocol"]``).
    """

    train: str
    test: str
    steps: int
    batch_size: int = 8
    val_points: int = 4
    num_workers: int = 1
    val: str | None = None
    resume: bool = False
    also_protocols: tuple[str, ...] = ()


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


@dataclass(frozen=True)
class Setting:
    """A realistic setting: its recipe (data with sensor ground truth, teacher, student range, protocol)
    and its test set (exact depth, seeds apart from every training set).

    Attributes:
        sensor: the ground truth the training labels come from (a :data:`depthkd.sim.GROUND_TRUTHS` name).
        size: where params and GMACs are counted.
        response_with_gt: response KD adds the labels (where only some images have them).
        why: one line on why a teacher should pay in this setting (the demo's report says it).
        also_protocols: protocols every row is scored under beside the recipe's (``eval.protocol``).
    """

    name: str
    recipe: str
    test: str
    sensor: str
    size: tuple[int, int]
    why: str
    response_with_gt: bool = False
    also_protocols: tuple[str, ...] = ()


SETTINGS = {
    "kitti-like": Setting(
        "kitti-like", "kitti-like", "sim:outdoor?num=256&size=128x416&seed=200000", "lidar", (128, 416),
        "the LiDAR measures about 4% of the pixels and nothing above its top beam; the teacher predicts every one",
        # The recipe scores KITTI's way (Garg crop: the rows the LiDAR covers); the full image shows the rest.
        also_protocols=("sim_outdoor",)),
    "nyu-like": Setting(
        "nyu-like", "nyu-like", "sim:indoor?num=256&size=128x160&seed=200000", "kinect", (128, 160),
        "the Kinect-like sensor measures about 85% of the pixels, with holes at edges, far walls and dark "
        "surfaces; the teacher fills them"),
    "label-scarce": Setting(
        "label-scarce", "label-scarce", "sim:indoor?num=256&size=128x160&seed=200000", "kinect", (128, 160),
        "only 5% of the images have depth at all; the teacher labels every image", response_with_gt=True),
}


REGRESSION = ("student.head=regression", "student.num_bins=null")
TEACHER_ONLY = ("method.add=[]",)
WITH_GT = ("method.add=[{name: supervised}]",)


def world_overrides(recipe: str, train: str | None = None) -> tuple[str, ...]:
    """What a setting recipe says about the world, as overrides for any other recipe (DisDepth's): its
    data (``train`` replaces its training set), teacher, depth range and protocol."""
    config = load_recipe(recipe)
    crop = "null" if config.data.crop is None else f"[{config.data.crop[0]}, {config.data.crop[1]}]"
    return (
        f"data.train={train or config.data.train}", f"data.val={config.data.val}", f"data.crop={crop}",
        f"data.augmentation.rotation={config.data.augmentation.rotation}", f"teacher.spec={config.teacher.spec}",
        f"student.max_depth={config.student.max_depth}", f"student.init_encoder={config.student.init_encoder}",
        f"eval.protocol={config.eval.protocol}",
    )


def labelled_only(spec: str) -> str:
    """``spec`` reduced to its labelled items (``unlabelled=drop``), or ``spec`` when every item has labels."""
    from depthkd.data.spec import parse_spec, with_params

    return with_params(spec, unlabelled="drop") if "labels" in parse_spec(spec).params else spec


def setting_contenders(setting: Setting, train: str | None = None) -> dict[str, tuple[Contender, str | None]]:
    """The contenders of a setting (row key -> contender and its teacher, ``None`` for the student alone).

    The student alone on the sensor's ground truth, TIE-KD as the paper runs it (teacher only) and with
    the ground truth, response KD (SSIM, SI, MSE), feature KD and DisDepth (both with ground truth). The
    teacher of every distilled row is the setting's; ``train`` replaces the recipe's training set (the
    rendered folder, or a smaller set for a smoke run). Where only part of the images have labels
    (``label-scarce``), the student alone trains on the labelled ones and every other row on all images,
    with the labels where they exist."""
    config = load_recipe(setting.recipe)
    teacher = config.teacher.spec
    recipe = setting.recipe
    train = train or config.data.train
    data = (f"data.train={train}",)

    def row(key: str, label: str, overrides: tuple[str, ...], base: str = recipe,
            uses_teacher: bool = True) -> tuple[str, tuple[Contender, str | None]]:
        overrides = overrides if base != recipe else (*data, *overrides)
        return key, (Contender(label, base, overrides, own_data=True), teacher if uses_teacher else None)

    alone = ("method.name=supervised", "method.options={}", *TEACHER_ONLY, *REGRESSION, "teacher.spec=null",
             "cache.enabled=false", f"data.train={labelled_only(train)}")
    response = ("method.name=response", *(WITH_GT if setting.response_with_gt else TEACHER_ONLY), *REGRESSION)
    return dict([
        row("alone", "student alone (SILog on the sensor's ground truth)", alone, uses_teacher=False),
        row("tie-kd", "TIE-KD (DPM KL + SSIM, teacher only)", TEACHER_ONLY),
        row("tie-kd-gt", "TIE-KD + SILog on the sensor's ground truth", WITH_GT),
        row("disdepth", "DisDepth (LG-Conv, ghost decoder, attentive KD) + GT", world_overrides(recipe, train),
            base="disdepth-sim"),
        row("response-ssim", "response KD, SSIM", (*response, "method.options={loss: ssim}")),
        row("response-si", "response KD, SI", (*response, "method.options={loss: si}")),
        row("response-mse", "response KD, MSE", (*response, "method.options={loss: mse}")),
        row("tiekd-dpm", "TIE-KD, DPM term alone", (*TEACHER_ONLY, "method.options.terms=dpm")),
        row("tiekd-depth", "TIE-KD, SSIM term alone", (*TEACHER_ONLY, "method.options.terms=depth")),
        row("feature", "feature KD (last map, MSE) + GT", (*world_overrides(recipe, train), "method.add=[]"),
            base="feature-sim"),
    ])


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
    from depthkd.models import load_student

    config = contender_recipe(contender, budget, seed, runs_root, extra_overrides)
    started = time.perf_counter()
    result = run_recipe(config)
    seconds = time.perf_counter() - started
    assert result.student_path is not None and result.metrics is not None  # single process, test set given
    # Validated elsewhere: score on the test set now (the recipe's protocol and the extra ones, in one pass).
    protocols = [config.eval.protocol] if budget.val is not None else []
    scores = score_on_test(str(result.student_path), budget.test, [*protocols, *budget.also_protocols])
    metrics = scores[config.eval.protocol] if budget.val is not None else result.metrics
    by_protocol = {protocol: scores[protocol] for protocol in budget.also_protocols}
    params, gmacs = model_cost(load_student(result.student_path), size)
    extra: dict[str, Any] = {"by_protocol": by_protocol} if by_protocol else {}
    acclimation = result.run_dir / ACCLIMATION_REPORT
    if acclimation.is_file():  # DisDepth: the acclimated teacher must stay near the teacher; every row says
        extra["acclimation"] = json.loads(acclimation.read_text())
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
        extra=extra,
    )


def _train_in_worker(job: tuple[Contender, Budget, int, Path, Sequence[int], Sequence[str], int]) -> RowResult:
    """:func:`train_contender` in a worker process with ``threads`` torch threads, no progress bars (the
    parent shows one bar per row) and only warnings and errors logged (Lightning's start-up lines and dataloader
    hints, printed by two workers at once, would bury the parent's bars)."""
    import logging
    import os
    import warnings

    contender, budget, seed, runs_root, size, extra_overrides, threads = job
    os.environ["DEPTHKD_PROGRESS"] = "0"
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"lightning\.")
    torch.set_num_threads(threads)
    return train_contender(contender, budget, seed, runs_root, size, extra_overrides)


def latest_step(run_dir: Path) -> int:
    """The optimiser steps a run has logged so far (0 before its first log line)."""
    losses = read_curves(run_dir)["train/loss"] if (run_dir / "logs").is_dir() else []
    return losses[-1][0] + 1 if losses else 0


def side_by_side_threads(rows: int) -> int:
    """Torch threads each of ``rows`` side-by-side workers gets: an equal share of this process's."""
    return max(1, torch.get_num_threads() // rows)


def train_side_by_side(
    rows: dict[str, tuple[Contender, Sequence[str]]],
    budget: Budget,
    seed: int,
    runs_root: Path,
    size: Sequence[int] = DEFAULT_TRAIN_SIZE,
    poll_s: float = 2.0,
) -> dict[str, RowResult]:
    """Train several rows at once, one process each with an equal share of this process's torch
    threads, and return their results by name (``rows``: name -> contender and extra overrides).

    Small students on a CPU use a core better alone than split over threads, so two rows side by side
    take little longer than one: the demo's wall time is the slower row's, not the sum. Each row is
    trained exactly as :func:`train_contender` would (same recipe, seed and run folder); its numbers
    differ from a sequential run only by the thread count's effect on float summation order.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from depthkd.progress import make_progress

    threads = side_by_side_threads(len(rows))
    run_dirs = {name: Path(contender_recipe(contender, budget, seed, runs_root, extra).run.dir)
                for name, (contender, extra) in rows.items()}
    jobs = {name: (contender, budget, seed, runs_root, tuple(size), tuple(extra), threads)
            for name, (contender, extra) in rows.items()}
    with ProcessPoolExecutor(max_workers=len(rows), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {name: pool.submit(_train_in_worker, job) for name, job in jobs.items()}
        with make_progress() as progress:
            tasks = {name: progress.add_task(f"training {name}", total=budget.steps, rate="-/s") for name in rows}
            while not all(future.done() for future in futures.values()):
                for name, task in tasks.items():
                    progress.update(task, completed=min(budget.steps, latest_step(run_dirs[name])),
                                    rate=f"{threads} thread{'s' if threads > 1 else ''}")
                time.sleep(poll_s)
        return {name: future.result() for name, future in futures.items()}


def score_on_test(model: Any, test: str, protocols: Sequence[str]) -> dict[str, dict[str, float]]:
    """The metrics of ``model`` (a predictor or any spec ``load_predictor`` takes) on data spec ``test``
    under each protocol, from one pass (nothing is run without a protocol)."""
    from depthkd.data import dataset_from_spec
    from depthkd.evaluate import evaluate_protocols
    from depthkd.inference import load_predictor

    if not protocols:
        return {}
    predictor = load_predictor(model) if isinstance(model, str) else model
    results = evaluate_protocols(predictor, dataset_from_spec(test), protocols, batch_size=8, data_name=test,
                                 description=f"scoring {predictor.spec}")
    return {protocol: result.metrics for protocol, result in results.items()}


def score_teacher(
    spec: str, test: str, protocol: str = "sim_indoor", size: Sequence[int] = DEFAULT_TRAIN_SIZE, label: str = "",
    also_protocols: Sequence[str] = (),
) -> RowResult:
    """A reference row: teacher ``spec`` scored on ``test`` (no alignment: the teachers are metric), and
    under ``also_protocols`` into ``extra["by_protocol"]``."""
    from depthkd.inference import load_predictor

    started = time.perf_counter()
    predictor = load_predictor(spec)
    scores = score_on_test(predictor, test, [protocol, *also_protocols])
    by_protocol = {other: scores[other] for other in also_protocols}
    params, gmacs = model_cost(getattr(predictor.model, "model", predictor.model), size)  # the teacher's network
    return RowResult(
        label=label or f"teacher {spec}",
        method="teacher",
        seed=None,
        metrics=scores[protocol],
        params_m=params,
        gmacs=gmacs,
        seconds=time.perf_counter() - started,
        teacher=spec,
        extra={"by_protocol": by_protocol} if by_protocol else {},
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
