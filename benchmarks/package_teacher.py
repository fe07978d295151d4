"""Ship a trained simulator teacher: float16 weights + card in ``src/depthkd/weights/``.

    python benchmarks/package_teacher.py runs/teacher-sim-vit sim-vit --recipe configs/teacher-sim-vit.yaml
    python benchmarks/package_teacher.py runs/teacher-sim-vit-outdoor sim-vit-outdoor \
        --recipe configs/teacher-sim-vit-outdoor.yaml --baseline runs/mobilenetv2-outdoor-same-recipe

Writes ``<name>.safetensors`` (the run's student in float16), ``<name>.json`` (recipe, steps, wall
time, hardware, versions, and the metrics of the *shipped* float16 weights on the card's fixed test
set of the recipe's protocol) and regenerates ``MODEL_CARD.md`` from every card present. ``--baseline``
scores a second run (a small student trained with the same recipe) on the same test set and records it
in the card: a teacher is only worth distilling if it is clearly better than that. The package test
``tests/teachers/test_builtin_teachers.py`` re-scores the shipped weights against these numbers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import torch

from depthkd.bench import count_macs, count_parameters, cpu_name
from depthkd.evaluate import evaluate
from depthkd.metrics import PROTOCOLS
from depthkd.models import load_student, save_student
from depthkd.models.teachers.builtin import BUILTIN_TEACHERS, CARD_FILE, CARD_TEST_SETS, weights_dir

METRIC_KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "d1", "d2", "d3")


def wall_minutes(run_dir: Path) -> float:
    """Training wall time: from the run's first metadata file to its exported student."""
    start = (run_dir / "environment.json").stat().st_mtime
    return ((run_dir / "student.safetensors").stat().st_mtime - start) / 60.0


def _size(test_set: str) -> tuple[int, int]:
    height, width = test_set.split("size=")[1].split("&")[0].split("x")
    return int(height), int(width)


def _baseline(run_dir: Path, test_set: str, protocol: str) -> dict:
    """The card entry of a comparison run: what it is, its cost and its metrics on the card's test set."""
    student = load_student(run_dir / "student.safetensors")
    result = evaluate(str(run_dir / "student.safetensors"), test_set, protocol=protocol, batch_size=8)
    summary = json.loads((run_dir / "summary.json").read_text())
    return {
        "run": run_dir.name,
        "backbone": student.config.backbone,
        "steps": sum(stage["steps"] for stage in summary["stages"]),
        "params_m": round(count_parameters(student) / 1e6, 3),
        "gmacs": round(count_macs(student, _size(test_set)) / 1e9, 3),
        "metrics": {k: result.metrics[k] for k in METRIC_KEYS},
    }


def package(run_dir: Path, name: str, recipe: str, hardware: str, notes: str, baseline: Path | None = None) -> dict:
    out_dir = weights_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    student = load_student(run_dir / "student.safetensors")
    target = save_student(student.half(), out_dir / f"{name}.safetensors")
    shipped = load_student(target)  # what users get: float16 weights in a float32 model
    summary = json.loads((run_dir / "summary.json").read_text())
    protocol = summary["config"]["eval"]["protocol"]
    test_set = CARD_TEST_SETS[protocol]
    result = evaluate(str(target), test_set, protocol=protocol, batch_size=8)
    environment = json.loads((run_dir / "environment.json").read_text())
    card = {
        "name": name,
        "description": BUILTIN_TEACHERS[name],
        "recipe": recipe,
        "command": f"depthkd train --config {recipe}",
        "steps": sum(stage["steps"] for stage in summary["stages"]),
        "batch_size": summary["config"]["data"]["batch_size"],
        "train_data": summary["config"]["data"]["train"],
        "train_minutes": round(wall_minutes(run_dir), 1),
        "hardware": hardware,
        "cpu": cpu_name(),
        "versions": environment["versions"],
        "commit": environment["git"]["commit"],
        "student_config": shipped.config.to_dict(),
        "params_m": round(count_parameters(shipped) / 1e6, 3),
        "gmacs_128x160": round(count_macs(shipped, (128, 160)) / 1e9, 3),
        "gmacs_480x640": round(count_macs(shipped, (480, 640)) / 1e9, 3),
        "gmacs_test_size": round(count_macs(shipped, _size(test_set)) / 1e9, 3),
        "weights_mb": round(target.stat().st_size / 2**20, 2),
        "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
        "test_set": test_set,
        "protocol": protocol,
        "metrics": {k: result.metrics[k] for k in METRIC_KEYS},
        "validation_metrics_fp32": summary.get("metrics"),
        "notes": notes,
    }
    if baseline is not None:
        card["baseline"] = _baseline(baseline, test_set, protocol)
    target.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    write_model_card(out_dir)
    return card


def write_model_card(out_dir: Path) -> Path:
    cards = [json.loads(p.read_text()) for p in sorted(out_dir.glob("*.json")) if p.stem in BUILTIN_TEACHERS]
    lines = [
        "# Built-in simulator teachers",
        "",
        "Trained by depthkd on its own simulator (`indoor` rooms, `outdoor` streets), shipped as float16",
        'safetensors and loaded offline with `load_teacher("<name>")`. Metrics are those of the shipped float16',
        "weights (run in float32) on each card's fixed test set (exact depth, its domain's protocol);",
        "`tests/teachers/test_builtin_teachers.py` checks them. They know simulated scenes only: on",
        "photographs their depth means little.",
        "",
        "| teacher | params (M) | GMACs 128x160 | GMACs 480x640 | MB | steps | train min | AbsRel | RMSE | d1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cards:
        m = c["metrics"]
        lines.append(
            f"| `{c['name']}` | {c['params_m']:.2f} | {c['gmacs_128x160']:.2f} | {c['gmacs_480x640']:.2f} | "
            f"{c['weights_mb']:.1f} | {c['steps']} | {c['train_minutes']:.0f} | {m['abs_rel']:.4f} | "
            f"{m['rmse']:.4f} | {m['d1']:.4f} |"
        )
    for c in cards:
        lines += [
            "",
            f"## `{c['name']}`",
            "",
            f"- Architecture: {c['description']}.",
            f"- Recipe: `{c['recipe']}`; reproduce with `{c['command']}` (after rendering its data, see the recipe).",
            f"- Training: {c['steps']} steps of batch {c['batch_size']} on `{c['train_data']}`, "
            f"{c['train_minutes']:.0f} min on {c['hardware']} ({c['cpu']}); commit `{c['commit'][:10]}`.",
            f"- Versions: torch {c['versions'].get('torch')}, transformers {c['versions'].get('transformers')}, "
            f"timm {c['versions'].get('timm')}.",
            f"- Test set: `{c['test_set']}`, protocol `{c['protocol']}` (no crop, "
            f"1e-3..{PROTOCOLS[c['protocol']].max_depth:g} m), no alignment.",
            "- Metrics of the shipped weights: "
            + ", ".join(f"{k} {v:.4f}" for k, v in c["metrics"].items())
            + ".",
            f"- File: `{c['name']}.safetensors`, {c['weights_mb']:.1f} MB, sha256 `{c['sha256'][:16]}...`.",
        ]
        if c.get("baseline"):
            b, m = c["baseline"], c["metrics"]
            lines.append(
                f"- Against a {b['backbone']} student trained with the same recipe ({b['steps']} steps, "
                f"{b['params_m']:.2f} M params, {b['gmacs']:.2f} GMACs at the test size): AbsRel "
                f"{b['metrics']['abs_rel']:.4f}, RMSE {b['metrics']['rmse']:.4f}, d1 {b['metrics']['d1']:.4f}; "
                f"the teacher's AbsRel is {1 - m['abs_rel'] / b['metrics']['abs_rel']:.0%} lower."
            )
        if c.get("notes"):
            lines.append(f"- Notes: {c['notes']}")
    path = out_dir / CARD_FILE
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="run folder holding student.safetensors and summary.json")
    parser.add_argument("name", choices=sorted(BUILTIN_TEACHERS))
    parser.add_argument("--recipe", required=True, help="the recipe the run used (recorded in the card)")
    parser.add_argument("--hardware", default="2 CPU cores (no GPU)")
    parser.add_argument("--notes", default="")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="run folder of a small student trained with the same recipe, scored beside the teacher")
    args = parser.parse_args()
    torch.set_num_threads(2)
    card = package(args.run_dir, args.name, args.recipe, args.hardware, args.notes, args.baseline)
    print(json.dumps({k: card[k] for k in ("name", "params_m", "weights_mb", "metrics")}, indent=2))


if __name__ == "__main__":
    main()
