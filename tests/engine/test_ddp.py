"""Scale: two DDP processes (gloo, CPU) train in step and end with identical student weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_overrides
from safetensors.torch import load_file

SCRIPT = Path(__file__).with_name("_tiny_run.py")


@pytest.mark.slow
def test_two_ddp_processes_end_with_identical_weights(tiny_data: Path, tmp_path: Path) -> None:
    overrides = tiny_overrides(
        tiny_data,
        tmp_path / "run",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "trainer.max_steps=3",
        "trainer.val_every_n_steps=3",
        "data.batch_size=2",
        "data.val_limit=5",  # an odd count: the two ranks score different numbers of images
    )
    env = {**os.environ, "DEPTHKD_PROGRESS": "0", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), json.dumps(overrides), "--dump-weights", str(tmp_path / "weights")],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rank0 = load_file(str(tmp_path / "weights" / "rank0.safetensors"))
    rank1 = load_file(str(tmp_path / "weights" / "rank1.safetensors"))
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    exported = load_file(str(tmp_path / "run" / "student.safetensors"))
    assert all(torch.equal(exported[k], rank0[k]) for k in rank0)  # rank 0 exported what it trained
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["stages"] == [{"name": "main", "steps": 3}]
    assert 0 < summary["metrics"]["abs_rel"] < 10
