"""The pinned install: the README's setup line and CI's install the same pinned versions."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    pins = [line.split("==") for line in lines if line and not line.startswith("#")]
    assert all(len(pin) == 2 for pin in pins), "every constraint is name==version"
    return {name.lower(): version for name, version in pins}


def test_constraints_pin_the_matching_torch_pair_and_the_field_libraries():
    pins = _pins()
    for name in ("torch", "torchvision", "timm", "lightning", "transformers", "onnxruntime", "safetensors"):
        assert re.fullmatch(r"\d+(\.\d+)+", pins[name]), name


def test_readme_setup_and_ci_install_with_the_constraints():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -e ".[dev]" -c constraints.txt' in readme
    assert 'pip install --quiet -e ".[dev]" -c constraints.txt' in ci
