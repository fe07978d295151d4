"""``depthkd demo``: depth distillation end to end, in the realistic case, in one command.

By default the ``label-scarce`` setting (:data:`depthkd.comparison.SETTINGS`; why: :data:`DEFAULT_REASON`):
simulated rooms of which only 5% have depth (a Kinect-like sensor's, with holes), the built-in teacher
``sim-vit`` (dense, trained on other rooms), and a MobileNetV2 student trained twice under the same budget,
alone on the labelled images and with a distillation method on all of them (TIE-KD with the labels where
they exist, by default). ``--setting kitti-like`` (streets, LiDAR labels, ``sim-vit-outdoor``, TIE-KD
from the teacher alone as its paper runs it) or ``nyu-like`` picks another. The teacher and both students are
scored on a fixed test set of exact depth under the setting's protocol; the distilled student is
exported to ONNX and timed against the teacher, and a report folder is written:

- ``report.md``: the setting, metrics, parameters, MACs, latency, the share of the teacher/student gap closed;
- ``samples.png``: RGB | the sensor's labels | exact depth | teacher | student alone | distilled student;
- ``curves.png``: training loss and validation AbsRel of both students;
- ``results.json``, ``student-kd.onnx`` (+ sidecar), and the runs (checkpoints, logs) under ``runs/``.

Every student starts from the shipped pretrained encoder ``sim-pool`` (the ImageNet stand-in, see
:mod:`depthkd.models.pretrained`), as the setting recipes say. Deterministic per seed on one machine.
Budgets and timings: :data:`BUDGETS`.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from depthkd.comparison import (
    SETTINGS,
    Budget,
    RowResult,
    Setting,
    gap_closed_share,
    read_curves,
    score_teacher,
    setting_contenders,
    side_by_side_threads,
    train_contender,
    train_side_by_side,
)
from depthkd.errors import ConfigError
from depthkd.metrics import protocol_label

log = logging.getLogger(__name__)

DEMO_METHODS: dict[str, str] = {
    "tie-kd": "tie-kd",
    "tie-kd-gt": "tie-kd-gt",
    "response": "response-ssim",
    "feature": "feature",
    "disdepth": "disdepth",
}
"""Distillation methods the demo can run (``--method``) and the setting row of each
(:func:`depthkd.comparison.setting_contenders`)."""

DEFAULT_SETTING = "label-scarce"
DEFAULT_REASON = (
    "the demo's default because a teacher has the most to give there and it fits the demo's budget: in the "
    "method benchmark (3000 steps, seeds 0-2, 256 test scenes) the student alone reached AbsRel 0.213 ± 0.003 on "
    "its 100 labelled images and TIE-KD with those labels 0.166 ± 0.002, against the teacher's 0.148 (73% of the "
    "gap closed), while in kitti-like the student alone on the LiDAR (0.100 under KITTI's Garg crop) beat the "
    "built-in street teacher (0.161), and a kitti-like TIE-KD student needs several seconds a step on 2 CPU cores"
)
"""Why :data:`DEFAULT_SETTING` is the default (the report says it); figures from
``benchmarks/results/2026-12-04-cpu-2core-methods-label-scarce.md`` and
``benchmarks/results/2026-12-03-cpu-2core-methods-kitti-like.md``."""
DEFAULT_METHODS = {"kitti-like": "tie-kd", "nyu-like": "tie-kd", "label-scarce": "tie-kd-gt"}
"""Each setting's method when ``--method`` is not given: TIE-KD as its paper runs it (teacher only) where
every image has labels, TIE-KD with the labels where only a few images have them."""


@dataclass(frozen=True)
class DemoSettings:
    """One demo run's budget (see :data:`BUDGETS`)."""

    steps: int = 1000
    train_images: int = 1000
    test_images: int = 64
    val_images: int = 32
    samples: int = 4


BUDGETS: dict[str, dict[str, DemoSettings]] = {
    "kitti-like": {"full": DemoSettings(steps=400, train_images=400, test_images=64),
                   "quick": DemoSettings(steps=30, train_images=32, test_images=8, val_images=8, samples=3)},
    "nyu-like": {"full": DemoSettings(steps=1000, train_images=1000, test_images=64),
                 "quick": DemoSettings(steps=100, train_images=100, test_images=16, val_images=8, samples=3)},
    "label-scarce": {"full": DemoSettings(steps=1800, train_images=1000, test_images=64),
                     "quick": DemoSettings(steps=100, train_images=100, test_images=16, val_images=8, samples=3)},
}
"""Each setting's budget, ``full`` (``depthkd demo``) and ``quick`` (``--quick``). Measured: ``label-scarce``
full took 12.9 min on 2 cores with the students side by side (2026-12-04, seed 0: 58% of the gap closed; at
800 steps it had closed 9%); the ``kitti-like`` budget is too small for its TIE-KD student to learn much and
takes longer than 15 min."""


SENSOR_NAMES = {"lidar": "LiDAR", "lidar_annotated": "annotated LiDAR", "kinect": "Kinect",
                "kinect_filled": "filled Kinect"}


def predict_samples(paths: dict[str, str], test: str, count: int, sensor: str | None = None
                    ) -> list[dict[str, np.ndarray]]:
    """RGB, ground truth and every model's prediction for the first ``count`` test images; with a
    ``sensor``, what that sensor measures of the same scenes beside their exact depth."""
    from depthkd.data import dataset_from_spec
    from depthkd.data.spec import with_params
    from depthkd.inference import load_predictor

    dataset = dataset_from_spec(with_params(test, gt=sensor) if sensor and sensor != "dense" else test)
    items = [dataset[i] for i in range(min(count, len(dataset)))]
    images = torch.stack([item["image"] for item in items])
    columns = {name: load_predictor(spec)(images).float().cpu() for name, spec in paths.items()}
    rows = []
    for i, item in enumerate(items):
        row = {"RGB": item["image"].permute(1, 2, 0).numpy()}
        if "dense_depth" in item:
            row[f"{SENSOR_NAMES.get(sensor, sensor)} (training labels)"] = item["depth"].squeeze().numpy()
        row["ground truth"] = item.get("dense_depth", item["depth"]).squeeze().numpy()
        row.update({name: columns[name][i].squeeze().numpy() for name in paths})
        rows.append(row)
    return rows


def plot_samples(rows: list[dict[str, np.ndarray]], path: Path) -> Path:
    """One row per image: RGB, then depth maps on the row's ground-truth colour scale (a sensor's
    unmeasured pixels in black)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = list(rows[0])
    width = rows[0]["RGB"].shape[1] / rows[0]["RGB"].shape[0]
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(1.9 * width * len(columns), 1.9 * len(rows) + 0.5),
                             squeeze=False)
    cmap = matplotlib.colormaps["turbo_r"].with_extremes(bad="black")
    for r, row in enumerate(rows):
        gt = row["ground truth"]
        valid = gt[gt > 0]
        vmin, vmax = float(valid.min()), float(valid.max())
        for c, name in enumerate(columns):
            ax = axes[r][c]
            if name == "RGB":
                ax.imshow(np.clip(row[name], 0, 1))
            else:
                shown = ax.imshow(np.ma.masked_less_equal(row[name], 0), cmap=cmap, vmin=vmin, vmax=vmax,
                                  interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=8)
        fig.colorbar(shown, ax=axes[r].tolist(), fraction=0.02, pad=0.01, label="m")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_curves(runs: dict[str, Path], path: Path) -> Path:
    """Training loss and validation AbsRel against the step, one line per student."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, val_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, run_dir in runs.items():
        curves = read_curves(run_dir)
        if curves["train/loss"]:
            steps, values = zip(*curves["train/loss"])
            loss_ax.plot(steps, values, label=label, alpha=0.8)
        if curves["val/abs_rel"]:
            steps, values = zip(*curves["val/abs_rel"])
            val_ax.plot(steps, values, marker="o", label=label)
    loss_ax.set(title="training loss (each method's own loss)", xlabel="step")
    val_ax.set(title="AbsRel on the validation scenes (lower is better)", xlabel="step")
    for ax in (loss_ax, val_ax):
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def time_models(student_onnx: Path, teacher: str, size: tuple[int, int], threads: int = 2) -> dict[str, float]:
    """onnxruntime latency (p50 ms, batch 1) of the exported student and the teacher at ``size``."""
    from depthkd.latency import benchmark
    from depthkd.models import load_teacher

    report = benchmark(
        str(student_onnx), teacher=load_teacher(teacher).model, size=size, backend="onnxruntime",
        threads=threads, warmup=3, iters=20,
    )
    assert report.teacher is not None
    return {"student_ms": report.model.latency.p50_ms, "teacher_ms": report.teacher.latency.p50_ms}


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def gap_verdict(closed: float | None) -> str:
    """One sentence on the gap closed, so a reader never has to interpret a negative share."""
    if closed is None:
        return "The teacher is no better than the student alone here: there was no gap to close."
    if closed < 0:
        return "Distillation made the student *worse* than training it alone under this budget."
    if closed >= 0.5:
        return "Distillation closed at least half of the gap."
    return "Distillation helped, but closed less than half of the gap."


def write_report(out: Path, rows: list[RowResult], info: dict[str, Any]) -> Path:
    """``report.md``: the setting, the table, the gap closed, the pictures and how the numbers were made."""
    teacher, alone, distilled = rows
    latency = info.get("latency", {})
    latencies = {teacher.label: latency.get("teacher_ms"), distilled.label: latency.get("student_ms")}
    closed = gap_closed_share(alone.metrics["abs_rel"], distilled.metrics["abs_rel"], teacher.metrics["abs_rel"])
    height, width = info["size"]
    sensor = SENSOR_NAMES.get(info["sensor"], info["sensor"])
    lines = [
        f"# depthkd demo: the `{info['setting']}` setting",
        "",
        f"Teacher `{info['teacher']}` distilled into a `{info['student']}` student with **{info['method']}**, "
        f"against the same student trained alone on the {sensor} labels. Why a teacher should pay here: "
        f"{info['why']}." + (f" This setting is {DEFAULT_REASON}." if info["setting"] == DEFAULT_SETTING else ""),
        f"Each student: {info['steps']} steps of batch {info['batch_size']} on `{info['train']}` "
        f"({info['train_images']} scenes; {info['labelled']}), starting from the pretrained encoder "
        f"`{info['init_encoder']}` (the ImageNet stand-in).",
        f"Test set: `{info['test']}` ({info['test_images']} scenes, {height}x{width}, exact depth), protocol "
        f"`{protocol_label(info['protocol'])}`.",
        "",
        "| model | params (M) | GMACs | AbsRel | RMSE (m) | d1 | ONNX p50 ms | train s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        m = row.metrics
        lines.append(
            f"| {row.label} | {row.params_m:.2f} | {row.gmacs:.3f} | {m['abs_rel']:.4f} | {m['rmse']:.4f} | "
            f"{m['d1']:.4f} | {_fmt(latencies.get(row.label), 1)} | "
            f"{'-' if row.method == 'teacher' else f'{row.seconds:.0f}'} |"
        )
    ratio = teacher.gmacs / distilled.gmacs
    speed = (latency["teacher_ms"] / latency["student_ms"]) if latency.get("student_ms") else None
    lines += [
        "",
        f"- The distilled student closes **{_fmt(None if closed is None else 100 * closed, 1)}%** of the AbsRel gap "
        "between the student alone and the teacher "
        f"(alone {alone.metrics['abs_rel']:.4f}, distilled {distilled.metrics['abs_rel']:.4f}, teacher "
        f"{teacher.metrics['abs_rel']:.4f}). {gap_verdict(closed)}",
        f"- It has 1/{ratio:.1f} of the teacher's MACs and runs {_fmt(speed, 1)}x faster in onnxruntime "
        f"({info.get('threads', 2)} threads, batch 1, {height}x{width}).",
        f"- MACs at {height}x{width} (FLOPs / 2, torch's FlopCounterMode).",
        "",
        "## Samples",
        "",
        f"RGB | what the {sensor} measured of the scene (the student alone's only labels; black: no measurement) | "
        "exact depth | teacher | student alone | distilled student; each row on its exact depth's colour scale "
        "(near = red, far = blue).",
        "",
        "![samples](samples.png)",
        "",
        "## Training curves",
        "",
        "![curves](curves.png)",
        "",
        "## How this was made",
        "",
        f"- Command: `{info['command']}`; seed {info['seed']}; {info['minutes']:.1f} min in all.",
        f"- Machine: {info['machine']}; torch {torch.__version__}. The students trained {info['training']}.",
        f"- Runs (checkpoints, logs, resolved recipes): `runs/`. Students: `{alone.student_path}`, "
        f"`{distilled.student_path}`; ONNX: `student-kd.onnx`.",
        f"- The validation curves use `{info['val']}`, apart from the test set; the test set scores each "
        "exported student once, after training.",
        f"- Reproduce a row alone: `depthkd distill --config {info['recipe']} --set ...` with the overrides in the "
        "run's `config.yaml`; the method benchmark (`benchmarks/methods.py --setting "
        f"{info['setting']}`) runs every method of this setting over several seeds.",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def machine_description() -> str:
    import os

    from depthkd.bench import cpu_name

    return f"{cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def run_demo(
    out: str | Path = "demo-report",
    quick: bool = False,
    method: str | None = None,
    student: str = "mobilenetv2_100",
    steps: int | None = None,
    seed: int = 0,
    teacher: str | None = None,
    command: str = "depthkd demo",
    settings: DemoSettings | None = None,
    setting: str = DEFAULT_SETTING,
    side_by_side: bool = True,
) -> Path:
    """Run the demo and return the path of ``report.md`` (see the module docstring).

    ``setting`` names one of :data:`depthkd.comparison.SETTINGS`; ``method`` defaults to the setting's
    (:data:`DEFAULT_METHODS`); ``teacher`` replaces its teacher;
    ``settings`` replaces the budget ``quick`` picks from :data:`BUDGETS`; ``steps`` overrides its step count.
    ``side_by_side`` trains the two students at once, one process each, when torch has two threads or more
    (:func:`depthkd.comparison.train_side_by_side`); ``False`` trains them one after the other.
    """
    if setting not in SETTINGS:
        raise ConfigError(f"demo setting {setting!r} is not one of {', '.join(SETTINGS)}")
    method = method or DEFAULT_METHODS[setting]
    if method not in DEMO_METHODS:
        raise ConfigError(f"demo method {method!r} is not one of {', '.join(DEMO_METHODS)}")
    world: Setting = SETTINGS[setting]
    settings = settings or BUDGETS[setting]["quick" if quick else "full"]
    steps = int(steps or settings.steps)
    if steps < 1:
        raise ConfigError(f"--steps must be positive, got {steps}")
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs_root = out / "runs"
    shutil.rmtree(runs_root, ignore_errors=True)

    from depthkd.config import load_recipe
    from depthkd.data import dataset_from_spec
    from depthkd.data.spec import with_params
    from depthkd.sim.writer import render_spec_once

    recipe = load_recipe(world.recipe)
    teacher = teacher or recipe.teacher.spec
    log.info("rendering %d training scenes with %s labels", settings.train_images, world.sensor)
    train, val = (render_spec_once(with_params(spec, num=num), out / "data")
                  for spec, num in ((recipe.data.train, settings.train_images), (recipe.data.val, settings.val_images)))
    test = with_params(world.test, num=settings.test_images)
    budget = Budget(train=train, test=test, steps=steps, val=val)
    contenders = setting_contenders(world, train)
    student_set = [f"student.backbone={student}", f"teacher.spec={teacher}"]

    log.info("scoring the teacher %s", teacher)
    protocol = recipe.eval.protocol
    teacher_row = score_teacher(teacher, test, protocol=protocol, size=world.size, label=f"teacher `{teacher}`")
    students = {"student alone": (contenders["alone"][0], [f"student.backbone={student}"]),
                f"student + {method}": (contenders[DEMO_METHODS[method]][0], student_set)}
    side_by_side = side_by_side and torch.get_num_threads() >= 2
    if side_by_side:
        log.info("training the student alone and the student with %s side by side (%d steps each)", method, steps)
        trained = train_side_by_side(students, budget, seed, runs_root, world.size)
    else:
        trained = {}
        for name, (contender, extra) in students.items():
            log.info("training the %s (%d steps)", name, steps)
            trained[name] = train_contender(contender, budget, seed, runs_root, world.size, extra)
    alone, distilled = trained.values()
    for name, row in trained.items():
        row.label = name
    rows = [teacher_row, alone, distilled]
    for row in rows[1:]:
        row.label = f"{row.label} (`{student}`)"

    log.info("exporting the distilled student to ONNX and timing it against the teacher")
    from depthkd.export import export_onnx

    onnx_path = out / "student-kd.onnx"
    assert distilled.student_path is not None
    export_onnx(str(distilled.student_path), onnx_path, size=world.size, check_images=2)
    latency = time_models(onnx_path, teacher, world.size)

    log.info("drawing samples and curves")
    assert alone.student_path is not None
    samples = predict_samples(
        {"teacher": teacher, "student alone": str(alone.student_path), "student + KD": str(distilled.student_path)},
        test, settings.samples, sensor=world.sensor,
    )
    plot_samples(samples, out / "samples.png")
    assert alone.run_dir is not None and distilled.run_dir is not None
    plot_curves({"student alone": alone.run_dir, f"student + {method}": distilled.run_dir}, out / "curves.png")

    train_set = dataset_from_spec(train)
    labelled = getattr(train_set, "num_labelled", None)
    info = {
        "setting": setting, "why": world.why, "sensor": world.sensor, "recipe": world.recipe,
        "teacher": teacher, "student": student, "method": method, "steps": steps, "batch_size": budget.batch_size,
        "train": with_params(recipe.data.train, num=settings.train_images), "train_images": settings.train_images,
        "labelled": (f"{labelled} of them with labels, the others images only" if labelled is not None
                     else f"every one with {SENSOR_NAMES.get(world.sensor, world.sensor)} labels"),
        "init_encoder": recipe.student.init_encoder, "val": with_params(recipe.data.val, num=settings.val_images),
        "test": test, "test_images": settings.test_images, "size": list(world.size), "protocol": protocol,
        "seed": seed, "latency": latency, "threads": 2, "command": command, "machine": machine_description(),
        "training": (f"side by side, one process and {side_by_side_threads(len(students))} torch thread(s) each"
                     if side_by_side else f"one after the other, {torch.get_num_threads()} torch thread(s)"),
        "minutes": (time.perf_counter() - started) / 60.0,
    }
    (out / "results.json").write_text(
        json.dumps({"rows": [row.to_dict() for row in rows], "info": info}, indent=2) + "\n"
    )
    return write_report(out, rows, info)
