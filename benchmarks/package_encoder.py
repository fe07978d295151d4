"""Ship a pretrained student encoder (the ImageNet stand-in): float16 weights in ``src/depthkd/weights/``.

    depthkd train --config configs/pretrain-sim-pool.yaml
    python benchmarks/package_encoder.py runs/pretrain-sim-pool

Writes ``<name>-<backbone>.safetensors``: the run's encoder weights in float16, with a card in the
file's metadata (recipe, steps, training data, wall time, hardware, versions, the run's validation
metrics) and the same card as ``<name>-<backbone>.encoder.json`` for people to read. Students load it with
``student.init_encoder: <name>`` (:mod:`depthkd.models.pretrained`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from depthkd.bench import cpu_name
from depthkd.models import load_student
from depthkd.models.pretrained import BUILTIN_ENCODERS, read_encoder_state, save_encoder
from depthkd.models.teachers.builtin import weights_dir


def package(run_dir: Path, name: str, recipe: str, hardware: str) -> dict:
    student = load_student(run_dir / "student.safetensors")
    backbone = student.config.backbone
    summary = json.loads((run_dir / "summary.json").read_text())
    environment = json.loads((run_dir / "environment.json").read_text())
    minutes = ((run_dir / "student.safetensors").stat().st_mtime - (run_dir / "environment.json").stat().st_mtime) / 60
    card = {
        "name": name,
        "backbone": backbone,
        "recipe": recipe,
        "command": f"depthkd train --config {recipe}",
        "steps": sum(stage["steps"] for stage in summary["stages"]),
        "batch_size": summary["config"]["data"]["batch_size"],
        "train_data": summary["config"]["data"]["train"],
        "val_data": summary["config"]["data"]["val"],
        "validation_metrics_fp32": summary.get("metrics"),
        "train_minutes": round(minutes, 1),
        "hardware": hardware,
        "cpu": cpu_name(),
        "versions": environment["versions"],
        "commit": environment["git"]["commit"],
    }
    target = weights_dir() / f"{name}-{backbone}.safetensors"
    save_encoder(student.encoder.half(), backbone, target, card)
    read_encoder_state(str(target), backbone)  # what users get must load
    card["weights_mb"] = round(target.stat().st_size / 2**20, 2)
    card["sha256"] = hashlib.sha256(target.read_bytes()).hexdigest()
    target.with_suffix(".encoder.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="run folder holding student.safetensors and summary.json")
    parser.add_argument("--name", choices=sorted(BUILTIN_ENCODERS), default="sim-pool")
    parser.add_argument("--recipe", default="configs/pretrain-sim-pool.yaml")
    parser.add_argument("--hardware", default="2 CPU cores (no GPU)")
    args = parser.parse_args()
    card = package(args.run_dir, args.name, args.recipe, args.hardware)
    print(json.dumps({k: card[k] for k in ("name", "backbone", "steps", "weights_mb", "validation_metrics_fp32")},
                     indent=2))


if __name__ == "__main__":
    main()
