"""Method benchmark: every method and baseline on the same simulated data, budget and seeds.

    python benchmarks/methods.py                  # CPU budget (about an hour on 2 cores)
    python benchmarks/methods.py --scale paper    # a GPU budget
    python benchmarks/methods.py --steps 50 --rows alone tie-kd --seeds 0   # a smoke run
    python benchmarks/methods.py --setting kitti-like --steps 3000 --seeds 0 1 2 --resume

``--setting`` runs the rows in one of the realistic settings instead (the recipes ``kitti-like``,
``nyu-like`` and ``label-scarce``: sensor ground truth for the student, a dense teacher; see
``depthkd.comparison.SETTINGS``). There the recipe's training set is rendered once under ``--work``, every
row trains on it from the shipped pretrained encoder ``sim-pool``, draws its curves on the recipe's
validation set, and its exported student is scored afterwards on the setting's test set (exact depth,
seeds apart from every training set) under the setting's protocol and any extra ones; results go to
``...-methods-<setting>.md`` and ``.json`` (with ``"setting"``). With ``--resume`` an interrupted row
continues from its last checkpoint. Without ``--setting`` (``sim``) the rows are those below, on perfect dense labels.

Each row is a packaged recipe (``depthkd.comparison``): the student (MobileNetV2 unless the recipe
says otherwise) trains ``--steps`` steps of batch 8 on rendered ``indoor`` scenes (data-free trains on
the out-of-distribution domains instead) and is scored on the built-in teachers' card test set
(``sim_indoor``, no alignment). The teachers are reference rows. Headline rows run every seed;
the others the first seed only. Writes ``benchmarks/results/<date>-<machine>-methods.md`` (table,
per-seed numbers, command, hardware, versions) and a JSON of every row beside it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from depthkd.comparison import (
    DEFAULT_TRAIN_SIZE,
    SETTINGS,
    Budget,
    Contender,
    RowResult,
    Setting,
    gap_closed_share,
    score_on_test,
    score_teacher,
    setting_contenders,
    train_contender,
)
from depthkd.config import load_recipe
from depthkd.data.spec import parse_spec, with_params
from depthkd.demo import machine_description
from depthkd.metrics import protocol_label
from depthkd.models.teachers.builtin import CARD_PROTOCOL, CARD_TEST_SET
from depthkd.sim.writer import render_spec_once

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Row:
    key: str
    contender: Contender
    teacher: str | None
    headline: bool
    group: str


DISDEPTH_OPTIM = ("optim.lr=3.57e-4", "optim.weight_decay=0.1", "optim.encoder_lr_scale=0.1")
DISDEPTH_STUDENT = ("student.head=bins", *DISDEPTH_OPTIM)
DISDEPTH_LGCONV = ("student.lgconv=true", "student.lgconv_depthwise=true", "student.lgconv_hidden=16")  # as the recipe
NO_MIX = "method.options.mixing=false"
NO_G = "method.options.transformation=none"
ONE_SIXTH = "data.train=sim:ood_shapes+ood_clutter?num=1000&size=128x160&seed=0"

GROUPS = {
    "headline": "Headline rows (every seed): each paper's method against the student alone.",
    "tie-kd": "TIE-KD (teacher sim-vit, no ground truth): response-KD losses, targets, terms. "
              "Paper: both terms together beat the student alone, every response-KD variant and each term alone.",
    "disdepth": "DisDepth (teacher sim-vit, with ground truth; AdaBins head and DisDepth's optimiser in every "
                "row). Paper: LG-Conv helps, feature KD helps, acclimation helps further.",
    "data-free": "Data-free (teacher sim-resnet; the student never sees an indoor image except in the upper "
                 "bound). Paper: mixing + transformation beat baseline KD on raw OOD images by a clear margin, "
                 "and 1/6 of the images suffices.",
    "other": "Other baselines.",
}

ROWS = [
    Row("alone", Contender("student alone (SILog on ground truth)", "supervised-sim"), None, True, "headline"),
    Row("tie-kd", Contender("TIE-KD (DPM KL + SSIM, no GT)", "tiekd-sim"), "sim-vit", True, "headline"),
    Row("disdepth", Contender("DisDepth (LG-Conv, ghost decoder, attentive KD) + GT", "disdepth-sim"), "sim-vit",
        True, "headline"),
    Row("data-free", Contender("data-free: OOD + mixing + transformation", "datafree-sim", own_data=True),
        "sim-resnet", True, "headline"),
    # TIE-KD ablations
    Row("dpm-alone", Contender("DPM-head student alone (SILog on GT)", "supervised-sim", ("student.head=dpm",)),
        None, False, "tie-kd"),
    Row("response-ssim", Contender("response KD, SSIM", "response-sim"), "sim-vit", False, "tie-kd"),
    Row("response-si", Contender("response KD, SI", "response-sim", ("method.options.loss=si",)), "sim-vit", False,
        "tie-kd"),
    Row("response-mse", Contender("response KD, MSE", "response-sim", ("method.options.loss=mse",)), "sim-vit",
        False, "tie-kd"),
    Row("tiekd-softmax", Contender("TIE-KD, softmax_pdf target (sigma 0.5, as the released code)", "tiekd-sim",
                                   ("method.options.target=softmax_pdf", "method.options.sigma=0.5")),
        "sim-vit", False, "tie-kd"),
    Row("tiekd-dpm", Contender("TIE-KD, DPM term alone", "tiekd-sim", ("method.options.terms=dpm",)), "sim-vit",
        False, "tie-kd"),
    Row("tiekd-depth", Contender("TIE-KD, SSIM term alone", "tiekd-sim", ("method.options.terms=depth",)),
        "sim-vit", False, "tie-kd"),
    # DisDepth ablations
    Row("bins-alone", Contender("AdaBins-head student alone", "supervised-sim", DISDEPTH_STUDENT), None, False,
        "disdepth"),
    Row("bins-lgconv", Contender("+ LG-Conv", "supervised-sim",
                                 (*DISDEPTH_STUDENT, *DISDEPTH_LGCONV)),
        None, False, "disdepth"),
    Row("disdepth-noacc", Contender("+ LG-Conv + feature KD, no acclimation", "disdepth-sim",
                                    ("method.options.acclimation=false",)), "sim-vit", False, "disdepth"),
    # data-free ablations
    Row("kd-indoor", Contender("KD on indoor images (upper bound)", "datafree-sim", (NO_MIX, NO_G)), "sim-resnet",
        False, "data-free"),
    Row("ood-raw", Contender("baseline KD on raw OOD images", "datafree-sim", (NO_MIX, NO_G), own_data=True),
        "sim-resnet", False, "data-free"),
    Row("ood-mix", Contender("+ mixing", "datafree-sim", (NO_G,), own_data=True), "sim-resnet", False, "data-free"),
    Row("ood-g", Contender("+ transformation", "datafree-sim", (NO_MIX,), own_data=True), "sim-resnet", False,
        "data-free"),
    Row("ood-sixth", Contender("+ both, 1/6 of the OOD images", "datafree-sim", (ONE_SIXTH,), own_data=True),
        "sim-resnet", False, "data-free"),
    Row("feature", Contender("feature KD (last map, MSE) + GT", "feature-sim"), "sim-vit", False, "other"),
]
ROW_KEYS = [row.key for row in ROWS]

# Each setting row: (headline, group) in the tables; the contenders come from depthkd.comparison.
SETTING_ROWS = {
    "alone": (True, "headline"),
    "tie-kd": (True, "headline"),
    "tie-kd-gt": (True, "headline"),
    "disdepth": (True, "headline"),
    "response-ssim": (True, "headline"),
    "response-si": (False, "tie-kd"),
    "response-mse": (False, "tie-kd"),
    "tiekd-dpm": (False, "tie-kd"),
    "tiekd-depth": (False, "tie-kd"),
    "feature": (False, "other"),
}


def setting_rows(setting: Setting, train: str | None = None) -> list[Row]:
    """The rows of a setting (:func:`depthkd.comparison.setting_contenders`), headline rows first."""
    contenders = setting_contenders(setting, train)
    return [Row(key, contender, teacher, *SETTING_ROWS[key]) for key, (contender, teacher) in contenders.items()]


SCALES = {
    "cpu": {"steps": 400, "train_images": 2000, "test_images": 64},
    "paper": {"steps": 20000, "train_images": 20000, "test_images": 654},
}


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt_ms(values: list[float], digits: int = 4) -> str:
    mean, std = mean_std(values)
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}"


HEADER = [
    "| row | teacher | seeds | AbsRel | RMSE (m) | d1 | params (M) | GMACs | gap closed | beats alone | min/run |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
]


Metrics = Callable[[RowResult], dict[str, float]]


def recipe_metrics(result: RowResult) -> dict[str, float]:
    return result.metrics


def protocol_metrics(protocol: str) -> Metrics:
    """The metrics of a row under one of its setting's extra protocols."""
    return lambda result: result.extra["by_protocol"][protocol]


def table(results: dict[str, list[RowResult]], teachers: dict[str, RowResult], rows: list[Row] = ROWS,
          metrics_of: Metrics = recipe_metrics) -> list[str]:
    lines = ["**Teachers (reference rows, the built-in weights).**", "", *HEADER]
    for name, ref in teachers.items():
        m = metrics_of(ref)
        lines.append(f"| teacher `{name}` | - | - | {m['abs_rel']:.4f} | {m['rmse']:.4f} | "
                     f"{m['d1']:.4f} | {ref.params_m:.2f} | {ref.gmacs:.3f} | - | - | - |")
    for group, text in GROUPS.items():
        members = [row for row in rows if row.group == group and results.get(row.key)]
        if members:
            lines += ["", f"**{text}**", "", *group_lines(members, results, teachers, metrics_of)]
    return lines


def group_lines(rows: list[Row], results: dict[str, list[RowResult]], teachers: dict[str, RowResult],
                metrics_of: Metrics = recipe_metrics) -> list[str]:
    alone = statistics.fmean(metrics_of(r)["abs_rel"] for r in results["alone"]) if results.get("alone") else None
    lines = [*HEADER]
    for row in rows:
        runs = results.get(row.key) or []
        if not runs:
            continue
        scores = [metrics_of(r) for r in runs]
        absrel = [m["abs_rel"] for m in scores]
        gap = beats = "-"
        if row.key != "alone" and alone is not None:
            mean = statistics.fmean(absrel)
            beats = "yes" if mean < alone else "**no**"
            teacher_absrel = metrics_of(teachers[row.teacher])["abs_rel"] if row.teacher in teachers else None
            share = gap_closed_share(alone, mean, teacher_absrel) if teacher_absrel is not None else None
            gap = "-" if share is None else f"{100 * share:.0f}%"
        lines.append(
            f"| {row.contender.label} | {row.teacher or '-'} | {len(runs)} | {fmt_ms(absrel)} | "
            f"{fmt_ms([m['rmse'] for m in scores])} | {fmt_ms([m['d1'] for m in scores])} | "
            f"{runs[0].params_m:.2f} | {runs[0].gmacs:.3f} | {gap} | {beats} | "
            f"{statistics.fmean(r.seconds for r in runs) / 60:.1f} |"
        )
    lines += acclimation_lines(rows, results)
    return lines


def acclimation_lines(rows: list[Row], results: dict[str, list[RowResult]]) -> list[str]:
    """Per DisDepth row, the acclimated teacher (teacher -> FAM -> ghost decoder) beside the teacher and the
    warmed-up student on the validation set: the FAM targets are only as good as the acclimated teacher."""
    lines = []
    for row in rows:
        reports = [r.extra["acclimation"] for r in results.get(row.key) or [] if "metrics" in
                   r.extra.get("acclimation", {}).get("teacher", {})]
        if not reports:
            continue

        def absrel(name: str) -> str:
            return fmt_ms([report[name]["metrics"]["abs_rel"] for report in reports])

        lines.append(f"- {row.contender.label}, validation AbsRel: teacher {absrel('teacher')}, acclimated teacher "
                     f"{absrel('acclimated_teacher')}, warmed-up student {absrel('student')}.")
    return ["", *lines] if lines else []


@dataclass(frozen=True)
class Claim:
    """A paper's claim as a comparison of rows: ``row`` has a lower AbsRel than each of ``others``
    (``suffices``: no more than 5% higher than each, our reading of "suffices")."""

    text: str
    row: str
    others: tuple[str, ...]
    suffices: bool = False


CLAIMS = [
    Claim("TIE-KD beats the student alone", "tie-kd", ("alone",)),
    Claim("TIE-KD beats every response-KD variant", "tie-kd", ("response-ssim", "response-si", "response-mse")),
    Claim("TIE-KD's KL term alone is worse than both terms", "tie-kd", ("tiekd-dpm",)),
    Claim("TIE-KD's SSIM term alone is worse than both terms", "tie-kd", ("tiekd-depth",)),
    Claim("DisDepth: LG-Conv helps", "bins-lgconv", ("bins-alone",)),
    Claim("DisDepth: feature KD helps", "disdepth-noacc", ("bins-lgconv",)),
    Claim("DisDepth: acclimation helps further", "disdepth", ("disdepth-noacc",)),
    Claim("Data-free: mixing + transformation beat baseline KD on raw OOD images", "data-free", ("ood-raw",)),
    Claim("Data-free: 1/6 of the OOD images suffices", "ood-sixth", ("data-free",), suffices=True),
]


def claim_lines(results: dict[str, list[RowResult]], metrics_of: Metrics = recipe_metrics) -> list[str]:
    """One line per claim whose rows were measured: held / not held / level within twice the seeds' spread."""
    def stats(key: str) -> tuple[float, float, int]:
        values = [metrics_of(r)["abs_rel"] for r in results[key]]
        return (*mean_std(values), len(values))

    lines = []
    for claim in CLAIMS:
        keys = (claim.row, *claim.others)
        if not all(results.get(key) for key in keys):
            continue
        mean, std, seeds = stats(claim.row)
        verdicts, figures = [], [f"`{claim.row}` {fmt_ms([metrics_of(r)['abs_rel'] for r in results[claim.row]])}"]
        for other in claim.others:
            other_mean, other_std, other_seeds = stats(other)
            spread = 2 * max(std, other_std)
            figures.append(f"`{other}` {fmt_ms([metrics_of(r)['abs_rel'] for r in results[other]])}")
            if claim.suffices:
                verdicts.append("held" if mean <= 1.05 * other_mean else "not held")
            elif abs(other_mean - mean) <= spread:
                verdicts.append("level within the spread")
            else:
                verdicts.append("held" if mean < other_mean else "not held")
        verdict = verdicts[0] if len(set(verdicts)) == 1 else "mixed (" + ", ".join(verdicts) + ")"
        single = " (one seed: no spread to compare with)" if seeds == 1 else ""
        lines.append(f"- {claim.text}: **{verdict}**; AbsRel {', '.join(figures)}{single}.")
    return lines


def write_results(path: Path, args: argparse.Namespace, results: dict[str, list[RowResult]],
                  teachers: dict[str, RowResult], budget: Budget, minutes: float, rows: list[Row] = ROWS,
                  setting: Setting | None = None) -> None:
    import depthkd

    command = f"python benchmarks/{Path(sys.argv[0]).name} {shlex.join(sys.argv[1:])}".rstrip()
    json_path = path.with_suffix(".json")
    commands = json.loads(json_path.read_text()).get("commands", []) if args.resume and json_path.is_file() else []
    for other in args.include:  # the runs merged in
        commands += [c for c in json.loads(other.read_text()).get("commands", []) if c not in commands]
    if command not in commands:
        commands.append(command)
    name = setting.name if setting else (args.setting if args.setting != "sim" else None)
    if setting is None:
        data_line = (f"Budget: {budget.steps} steps of batch {budget.batch_size} per row on `{budget.train}` "
                     "(data-free: its recipe's out-of-distribution domains); test set "
                     f"`{budget.test}`, protocol `{CARD_PROTOCOL}`, no alignment; params/GMACs at 128x160.")
    else:
        recipe = load_recipe(setting.recipe)
        data_line = (f"Setting `{setting.name}` (recipe `{setting.recipe}`): {budget.steps} steps of batch "
                     f"{budget.batch_size} per row on `{recipe.data.train}` (rendered once to `{budget.train}`), "
                     f"validation curves on `{recipe.data.val}`; each student scored after training on the test "
                     f"set `{budget.test}` (exact depth), protocol `{recipe.eval.protocol}`, no alignment; params/GMACs at "
                     f"{setting.size[0]}x{setting.size[1]}.")
    lines = [
        f"# Method benchmark{f' ({name})' if name else ''}, {datetime.date.today().isoformat()} "
        f"({args.scale} budget{f', {budget.steps} steps' if args.steps else ''})",
        "",
        "Command" + ("s (later ones resumed or merged the earlier, adding rows)" if len(commands) > 1 else "") + ": "
        + "; ".join(f"`{c}`" for c in commands) + f"; the last took {minutes:.0f} min.",
        f"Machine: {machine_description()}; Python {platform.python_version()}, torch {torch.__version__}, "
        f"depthkd {depthkd.__version__}.",
        data_line,
        *([args.note] if args.note else []),
        "Gap closed = (AbsRel alone - AbsRel row) / (AbsRel alone - AbsRel of the row's teacher); 'beats alone' "
        "compares with the headline student alone (MobileNetV2, regression head, SILog on ground truth).",
        "",
        *table(results, teachers, rows),
        "",
        "## The papers' claims",
        "",
        *(claim_lines(results) or ["- No claim's rows have been measured yet."]),
        "",
    ]
    for protocol in () if setting is None else setting.also_protocols:
        lines += [f"### The same students under `{protocol_label(protocol)}`", "",
                  *table(results, teachers, rows, protocol_metrics(protocol)), "",
                  *claim_lines(results, protocol_metrics(protocol)), ""]
    lines += ["", "## Per seed", "", "| row | seed | AbsRel | RMSE | d1 | teacher AbsRel in run | min |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        for r in results.get(row.key) or []:
            t = r.teacher_metrics["abs_rel"] if r.teacher_metrics else None
            lines.append(f"| {row.contender.label} | {r.seed} | {r.metrics['abs_rel']:.4f} | {r.metrics['rmse']:.4f} | "
                         f"{r.metrics['d1']:.4f} | {'-' if t is None else f'{t:.4f}'} | {r.seconds / 60:.1f} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    payload = {
        **({"setting": name} if name else {}),
        "commands": commands,
        "teachers": {k: v.to_dict() for k, v in teachers.items()},
        "rows": {k: [r.to_dict() for r in v] for k, v in results.items()},
    }
    json_path.write_text(json.dumps(payload, indent=2) + "\n")


def load_results(path: Path) -> dict[str, list[RowResult]]:
    """The trained rows of an earlier (interrupted or partial) run of this benchmark."""
    if not path.is_file():
        return {}
    rows = json.loads(path.read_text())["rows"]
    return {key: [RowResult(**values) for values in runs] for key, runs in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=["sim", *SETTINGS, "data-free"], default="sim",
                        help="sim: perfect dense labels (the rows above); a realistic setting (SETTINGS); or "
                             "data-free: the data-free rows budgeted in epochs of the full OOD set")
    parser.add_argument("--epochs", type=float, default=4.0,
                        help="data-free: epochs of the full OOD set per row (default 4; the 1/6 row gets the same "
                             "steps); --steps overrides")
    parser.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    parser.add_argument("--steps", type=int, default=None, help="steps per row (overrides the scale)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    all_keys = list(dict.fromkeys(ROW_KEYS + [row.key for name in SETTINGS for row in setting_rows(SETTINGS[name])]))
    parser.add_argument("--rows", nargs="+", choices=all_keys, default=None, help="default: every row of the setting")
    parser.add_argument("--test-images", type=int, default=None, help="test images (default: the setting's or scale's)")
    parser.add_argument("--train-images", type=int, default=None,
                        help="with --setting: training images (default: the recipe's; fewer for a smoke run)")
    parser.add_argument("--work", type=Path, default=Path("runs/benchmark-methods"), help="data and run folders")
    parser.add_argument("--out", type=Path, default=None, help="results .md (default benchmarks/results/...)")
    parser.add_argument("--machine", default=None, help="machine tag of the results file (default: cpu-Ncore)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the rows/seeds already in the results JSON and run only the missing ones")
    parser.add_argument("--note", default="", help="a line for the results file (how the run was made)")
    parser.add_argument("--include", type=Path, nargs="*", default=[],
                        help="results JSONs of other runs of this benchmark (same budget) to merge into this one")
    args = parser.parse_args()

    scale = SCALES[args.scale]
    started = time.perf_counter()
    setting = SETTINGS.get(args.setting)
    extra: tuple[str, ...] = ()
    if args.setting == "data-free":
        # Every row the same steps: epochs of the full OOD set, so the 1/6 row sees its images 6x as often.
        available = [row for row in ROWS if row.group == "data-free" or row.key == "data-free"]
        datafree = load_recipe("datafree-sim")
        full_set = int(parse_spec(datafree.data.train).params["num"])
        steps = args.steps or math.ceil(args.epochs * full_set / 8)
        train = render_spec_once(f"sim:indoor?num={full_set}&size=128x160&seed=1", args.work / "data")  # KD on indoor
        test = f"sim:indoor?num={args.test_images or 256}&size=128x160&seed=200000"
        budget = Budget(train=train, test=test, steps=steps, val_points=4,
                        val=render_spec_once(datafree.data.val, args.work / "data"),
                        resume=args.resume)
        protocol, size, suffix = CARD_PROTOCOL, DEFAULT_TRAIN_SIZE, "-data-free"
        extra = ("student.init_encoder=sim-pool",)
    elif setting is None:
        available = ROWS
        train = render_spec_once(f"sim:indoor?num={scale['train_images']}&size=128x160&seed=0", args.work / "data")
        test = with_params(CARD_TEST_SET, num=args.test_images or scale["test_images"])
        budget = Budget(train=train, test=test, steps=args.steps or scale["steps"], val_points=2)
        protocol, size, suffix = CARD_PROTOCOL, DEFAULT_TRAIN_SIZE, ""
    else:
        recipe = load_recipe(setting.recipe)
        train = with_params(recipe.data.train, num=args.train_images) if args.train_images else recipe.data.train
        # Rendered once, read by every row (the teacher cache is filled once for them all).
        train, val = (render_spec_once(spec, args.work / "data") for spec in (train, recipe.data.val))
        available = setting_rows(setting, train)
        test = setting.test if args.test_images is None else with_params(setting.test, num=args.test_images)
        budget = Budget(train=train, test=test, steps=args.steps or scale["steps"], val_points=4, val=val,
                        resume=args.resume, also_protocols=setting.also_protocols)
        protocol, size, suffix = recipe.eval.protocol, setting.size, f"-{setting.name}"
    by_key = {row.key: row for row in available}
    unknown = [key for key in args.rows or [] if key not in by_key]
    if unknown:
        parser.error(f"rows {unknown} are not rows of --setting {args.setting}; its rows: {list(by_key)}")
    rows = [by_key[key] for key in dict.fromkeys(args.rows or list(by_key))]

    machine = args.machine or ("gpu" if torch.cuda.is_available() else f"cpu-{os.cpu_count()}core")
    out = args.out or RESULTS / f"{datetime.date.today().isoformat()}-{machine}-methods{suffix}.md"
    results = load_results(out.with_suffix(".json")) if args.resume else {}
    for other in args.include:
        for key, runs in load_results(other).items():
            seen = {r.seed for r in results.get(key, [])}
            results.setdefault(key, []).extend(r for r in runs if r.seed not in seen)
    # The reference rows of every teacher in the file, not only of the rows run now.
    reported = rows + [by_key[key] for key in results if key in by_key]
    also = budget.also_protocols
    setting_teacher = {load_recipe(setting.recipe).teacher.spec} if setting else set()  # always a reference row
    teachers = {
        name: score_teacher(name, test, protocol=protocol, size=size, label=name, also_protocols=also)
        for name in sorted({row.teacher for row in reported if row.teacher} | setting_teacher)
    }
    for runs in results.values():  # rows of an earlier run scored under fewer protocols
        for r in runs:
            missing = [p for p in also if p not in r.extra.get("by_protocol", {})]
            if missing and r.student_path:
                r.extra.setdefault("by_protocol", {}).update(score_on_test(str(r.student_path), test, missing))

    def save() -> None:
        write_results(out, args, results, teachers, budget, (time.perf_counter() - started) / 60, available, setting)

    for row in rows:  # in the order given, so a partial run measures the rows asked for first
        for seed in args.seeds if row.headline else args.seeds[:1]:
            if any(r.seed == seed for r in results.get(row.key, [])):
                continue
            print(f"== {row.contender.label}, seed {seed}", flush=True)
            result = train_contender(row.contender, budget, seed, args.work / f"runs{suffix}", size=size,
                                     extra_overrides=extra)
            results.setdefault(row.key, []).append(result)
            print(f"   AbsRel {result.metrics['abs_rel']:.4f} in {result.seconds / 60:.1f} min", flush=True)
            save()  # after every row, so an interrupted benchmark keeps what it measured
    save()
    print(out.read_text())


if __name__ == "__main__":
    main()
