"""A run directory belongs to one recipe and one run at a time: a resume with a changed recipe is refused
before anything is rewritten, a second run on a busy directory stops at once, a resume keeps the metrics
rows logged before its checkpoint, and a recipe that cannot build its student leaves no directory."""

from __future__ import annotations

import csv
import shutil
import time
from pathlib import Path

import lightning as L
import pytest
from conftest import tiny_overrides

from depthkd.cli import main
from depthkd.config import load_recipe
from depthkd.engine import distill
from depthkd.errors import ConfigError, DepthkdError

RECORDS = ("config.yaml", "summary.json", "student.safetensors", "checkpoints/last.ckpt")


def _records(run_dir: Path) -> dict[str, bytes]:
    return {name: (run_dir / name).read_bytes() for name in RECORDS}


@pytest.fixture
def finished(tiny_data: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    """A finished two-step run and the overrides that made it."""
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(tiny_data, run_dir, "data.val=null", "trainer.max_steps=2")
    distill(load_recipe(None, overrides))
    return run_dir, overrides


def test_resuming_with_a_changed_recipe_is_refused_and_rewrites_nothing(finished: tuple[Path, list[str]]) -> None:
    run_dir, overrides = finished
    before = _records(run_dir)
    with pytest.raises(ConfigError) as caught:
        distill(load_recipe(None, [*overrides, "run.seed=5", "optim.lr=0.5"]))
    message = str(caught.value)
    assert str(run_dir) in message and "\n" not in message
    assert "optim.lr: 0.001 -> 0.5" in message and "run.seed: 0 -> 5" in message
    assert "another run.dir" in message and "delete" in message
    assert _records(run_dir) == before

    with pytest.raises(ConfigError, match="resume=auto"):  # refused before config.yaml is rewritten
        distill(load_recipe(None, [*overrides, "run.seed=5", "run.resume=never"]))
    assert _records(run_dir) == before


def test_the_cli_reports_a_changed_recipe_in_one_line(
    finished: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, overrides = finished
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("{}\n")
    sets = [arg for override in [*overrides, "optim.lr=0.5"] for arg in ("--set", override)]
    capsys.readouterr()
    assert main(["distill", "--config", str(recipe), *sets]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "optim.lr: 0.001 -> 0.5" in err and str(run_dir) in err


def test_keys_that_do_not_change_the_training_may_differ_on_resume(
    finished: tuple[Path, list[str]], tmp_path: Path
) -> None:
    run_dir, overrides = finished
    moved = tmp_path / "moved" / "renamed"
    shutil.copytree(run_dir, moved)
    changed = [
        *overrides,
        "run.dir=null",
        f"run.root={moved.parent}",
        "run.name=renamed",
        f"run.resume={moved / 'checkpoints' / 'last.ckpt'}",
        "trainer.log_every_n_steps=1",
        "trainer.checkpoint_every_n_steps=1",
        "trainer.loggers=[]",
        "data.val_batch_size=2",
    ]
    result = distill(load_recipe(None, changed))
    assert result.run_dir == moved and result.stages == [{"name": "main", "steps": 2}]


class _RunAgain(L.Callback):
    """Starts a second run on the same directory while the first is training."""

    def __init__(self, overrides: list[str]) -> None:
        self.overrides = overrides
        self.error: DepthkdError | None = None
        self.seconds = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        started = time.perf_counter()
        try:
            distill(load_recipe(None, self.overrides))
        except DepthkdError as err:
            self.error = err
        self.seconds = time.perf_counter() - started


def test_a_second_run_on_a_busy_run_dir_stops_at_once(tiny_data: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(tiny_data, run_dir, "data.val=null", "trainer.max_steps=2")
    again = _RunAgain(overrides)
    result = distill(load_recipe(None, overrides), callbacks=[again])
    assert isinstance(again.error, ConfigError), again.error
    assert str(run_dir) in str(again.error) and "another run" in str(again.error)
    assert again.seconds < 30  # before its teacher, data and training
    assert result.student_path is not None and result.student_path.is_file()
    distill(load_recipe(None, overrides))  # the lock went with the first run


class _Crash(Exception):
    pass


class _CrashAt(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step >= self.step:
            raise _Crash


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def test_a_resume_keeps_the_metrics_rows_logged_before_its_checkpoint(tiny_data: Path, tmp_path: Path) -> None:
    extra = (
        "trainer.max_steps=6",
        "trainer.checkpoint_every_n_steps=3",
        "trainer.log_every_n_steps=1",
        "trainer.val_every_n_steps=3",
        "data.val_limit=4",
    )
    overrides = tiny_overrides(tiny_data, tmp_path, *extra)
    with pytest.raises(_Crash):
        distill(load_recipe(None, overrides), callbacks=[_CrashAt(5)])  # last.ckpt holds step 3
    metrics = tmp_path / "logs" / "main" / "metrics.csv"
    first = _rows(metrics)
    assert [r["step"] for r in first if r["train/loss"]] == ["0", "1", "2", "3"]  # step 3: after the checkpoint

    distill(load_recipe(None, overrides))
    rows = _rows(metrics)
    assert [r["step"] for r in rows if r["train/loss"]] == ["0", "1", "2", "3", "4", "5"]
    assert [r["step"] for r in rows if r["val/abs_rel"]] == ["2", "5"]
    kept = [r for r in first if int(r["step"]) <= 2]
    assert [{k: r[k] for k in kept[0]} for r in rows[: len(kept)]] == kept


def test_a_bad_backbone_leaves_no_run_directory(tiny_data: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(DepthkdError, match="unknown backbone 'no_such_net'"):
        distill(load_recipe(None, tiny_overrides(tiny_data, run_dir, "student.backbone=no_such_net")))
    assert not run_dir.exists()
