"""Reliability: a run killed with SIGKILL and resumed with ``run.resume=auto`` ends where an
uninterrupted run with the same seed ends, bit for bit. Bit-for-bit needs ``trainer.deterministic``:
without it oneDNN's CPU convolution backward may sum weight gradients in a run-dependent order."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import tiny_overrides
from safetensors.torch import load_file

from depthkd.config import load_recipe
from depthkd.engine import distill

SCRIPT = Path(__file__).with_name("_tiny_run.py")


class CountBatches(L.Callback):
    def __init__(self) -> None:
        self.batches = 0

    def on_train_batch_end(self, *args: object) -> None:
        self.batches += 1


def run_subprocess(overrides: list[str], *flags: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEPTHKD_PROGRESS": "0", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), json.dumps(overrides), *flags],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def restore_determinism():
    """``trainer.deterministic`` sets a process-wide flag; later tests get it back unset."""
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


@pytest.mark.slow
@pytest.mark.usefixtures("restore_determinism")
def test_sigkill_then_auto_resume_matches_uninterrupted_run(tiny_data: Path, tmp_path: Path) -> None:
    extra = (
        "trainer.max_steps=6",
        "trainer.checkpoint_every_n_steps=2",
        "data.val=null",
        "trainer.deterministic=true",
        "trainer.log_every_n_steps=1",
        "trainer.loggers=[csv,tensorboard]",
    )
    straight = distill(load_recipe(None, tiny_overrides(tiny_data, tmp_path / "straight", *extra)))

    interrupted = tiny_overrides(tiny_data, tmp_path / "interrupted", *extra)
    killed = run_subprocess(interrupted, "--kill-at-step", "4")  # its step-2 row logged past the checkpoint
    assert killed.returncode == -9, killed.stderr[-2000:]
    last = tmp_path / "interrupted" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 2
    assert checkpoint["depthkd"]["batches_seen"] == 2
    assert "teacher" not in " ".join(checkpoint["state_dict"])

    counter = CountBatches()
    resumed = distill(load_recipe(None, interrupted), callbacks=[counter])
    assert counter.batches == 4  # steps 3..6 only: the run continued, it did not start over
    with (tmp_path / "interrupted" / "logs" / "main" / "metrics.csv").open(newline="") as file:
        logged = [row["step"] for row in csv.DictReader(file)]
    assert logged == ["0", "1", "2", "3", "4", "5"]  # the rows before the kill were flushed and kept
    assert tensorboard_steps(tmp_path / "interrupted" / "tensorboard" / "main", "train/loss") == [0, 1, 2, 3, 4, 5]

    expected = load_file(str(straight.student_path))
    actual = load_file(str(resumed.student_path))
    assert expected.keys() == actual.keys()
    for name, tensor in expected.items():
        assert torch.equal(tensor, actual[name]), name


def tensorboard_steps(folder: Path, tag: str) -> list[int]:
    """The steps of ``tag`` TensorBoard shows from ``folder`` (after its purges of killed attempts' events)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return [event.step for event in events.Scalars(tag)]


class _Payload:
    """Unpickling this touches a marker file: the stand-in for code a crafted checkpoint would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (type(self.marker).touch, (self.marker,))


def test_a_crafted_or_truncated_checkpoint_is_one_clear_error(tmp_path: Path) -> None:
    from depthkd.engine.rundir import checkpoint_stage
    from depthkd.errors import DataError

    marker = tmp_path / "ran"
    crafted = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "payload": _Payload(marker)}, crafted)
    with pytest.raises(DataError, match="crafted.ckpt holds pickled objects.*unpickling can run code"):
        checkpoint_stage(crafted)
    assert not marker.exists()
    truncated = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    with pytest.raises(DataError, match="last.ckpt is not a readable checkpoint"):
        checkpoint_stage(truncated)


class _CtrlCAt(L.Callback):
    """Sends this process SIGINT (Ctrl+C) right after optimiser step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if trainer.global_step == self.step:
            import signal

            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.slow
@pytest.mark.usefixtures("restore_determinism")
def test_ctrl_c_saves_a_checkpoint_at_the_step_and_the_rerun_continues_bit_for_bit(
    tiny_data: Path, tmp_path: Path, capsys  # noqa: ANN001
) -> None:
    import signal

    from depthkd.engine.interrupt import TrainingInterrupted

    extra = ("trainer.max_steps=6", "trainer.checkpoint_every_n_steps=100", "data.val=null",
             "trainer.deterministic=true")
    straight = distill(load_recipe(None, tiny_overrides(tiny_data, tmp_path / "straight", *extra)))
    overrides = tiny_overrides(tiny_data, tmp_path / "interrupted", *extra)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted, match=r"interrupted at step 3 of stage main; saved .*last\.ckpt"):
        distill(load_recipe(None, overrides), callbacks=[_CtrlCAt(3)])
    assert signal.getsignal(signal.SIGINT) == handler  # the default Ctrl+C is back
    last = tmp_path / "interrupted" / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 3
    assert not (tmp_path / "interrupted" / "student.safetensors").exists()  # nothing exported mid-run

    counter = CountBatches()
    resumed = distill(load_recipe(None, overrides), callbacks=[counter])
    assert counter.batches == 3  # steps 4..6
    expected, actual = load_file(str(straight.student_path)), load_file(str(resumed.student_path))
    assert expected.keys() == actual.keys() and all(torch.equal(expected[k], actual[k]) for k in expected)


def test_the_cli_reports_an_interrupted_run_in_one_line_with_status_130(monkeypatch, capsys) -> None:  # noqa: ANN001
    from depthkd import cli
    from depthkd.engine.interrupt import TrainingInterrupted

    def interrupted(args: object) -> int:
        raise TrainingInterrupted("interrupted at step 3 of stage main; saved runs/x/checkpoints/last.ckpt: ...")

    monkeypatch.setattr(cli, "cmd_distill", interrupted)
    assert cli.main(["distill", "--config", "tiekd-sim"]) == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith("depthkd distill: interrupted at step 3") and len(err.splitlines()) == 1
