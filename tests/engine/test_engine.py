"""End-to-end behaviour of the engine on tiny CPU runs: run records, export, teacher handling,
validation beside the teacher, non-finite losses, stages, manual optimisation and EMA."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from conftest import make_paired_folder, tiny_overrides
from safetensors.torch import load_file
from torch import nn

from depthkd.config import load_recipe
from depthkd.distill import LossOutput, Method, OptimizerSpec, Stage, register_method
from depthkd.engine import NonFiniteLossError, distill, train
from depthkd.errors import ConfigError
from depthkd.losses import silog_loss
from depthkd.metrics import METRIC_KEYS
from depthkd.models import build_student, load_student, save_student


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny student saved as a ``torch:`` teacher (metric depth, encoder features)."""
    torch.manual_seed(1)
    teacher = build_student("mobilenetv2_050", decoder_channels=(16, 16, 8, 8))
    return save_student(teacher, tmp_path_factory.mktemp("teacher") / "teacher.safetensors")


def test_supervised_run_writes_records_checkpoints_and_a_loadable_student(tiny_data: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = train(load_recipe(None, tiny_overrides(tiny_data, run_dir, "trainer.val_every_n_steps=2")))
    for name in ("config.yaml", "environment.json", "summary.json", "student.safetensors"):
        assert (run_dir / name).is_file(), name
    assert result.last_checkpoint == run_dir / "checkpoints" / "last.ckpt" and result.last_checkpoint.is_file()
    assert result.best_checkpoint == run_dir / "checkpoints" / "best.ckpt"
    assert result.teacher_metrics is None
    assert set(result.metrics) == set(METRIC_KEYS)
    assert result.protocol.startswith("sim_indoor")
    assert result.stages == [{"name": "main", "steps": 4}]
    student = load_student(result.student_path)
    assert student.config.backbone == "mobilenetv2_050"
    assert torch.isfinite(student(torch.rand(1, 3, 32, 32)).depth).all()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["method"] == "supervised" and summary["metrics"] == pytest.approx(result.metrics)
    logged = (run_dir / "logs" / "main" / "metrics.csv").read_text()
    assert "val/abs_rel" in logged


def test_train_refuses_distillation_recipes(tiny_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="use distill"):
        train(load_recipe(None, tiny_overrides(tiny_data, tmp_path, "method.name=response")))


def test_method_needing_a_teacher_without_spec_is_a_config_error(tiny_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="teacher.spec"):
        distill(load_recipe(None, tiny_overrides(tiny_data, tmp_path, "method.name=response")))


def test_resume_never_refuses_an_existing_run(tiny_data: Path, tmp_path: Path) -> None:
    overrides = tiny_overrides(tiny_data, tmp_path, "data.val=null", "trainer.max_steps=2")
    distill(load_recipe(None, overrides))
    with pytest.raises(ConfigError, match="resume=auto"):
        distill(load_recipe(None, [*overrides, "run.resume=never"]))


def test_response_distillation_reports_teacher_and_keeps_it_out_of_checkpoints(
    tiny_data: Path, teacher_file: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(
        tiny_data,
        run_dir,
        "method.name=response",
        "method.options.loss=ssim+si",
        "method.options.gt_weight=0.5",
        f"teacher.spec=torch:{teacher_file}",
        "trainer.val_every_n_steps=2",
    )
    result = distill(load_recipe(None, overrides))
    assert set(result.teacher_metrics) == set(METRIC_KEYS)
    # The teacher is scored once on the same data; its numbers sit beside the student's in the logs.
    logged = (run_dir / "logs" / "main" / "metrics.csv").read_text()
    assert "val_teacher/abs_rel" in logged and "val/abs_rel" in logged
    checkpoint = torch.load(result.last_checkpoint, map_location="cpu", weights_only=True)
    assert all(key.startswith("student.") for key in checkpoint["state_dict"])
    assert checkpoint["depthkd"]["teacher_metrics"] == pytest.approx(result.teacher_metrics)
    exported = load_file(str(result.student_path))
    assert set(exported) == {key.removeprefix("student.") for key in checkpoint["state_dict"]}


def test_teacher_is_scored_even_when_the_run_never_validated(
    tiny_data: Path, teacher_file: Path, tmp_path: Path
) -> None:
    """A run shorter than val_every_n_steps still reports the teacher beside the student."""
    overrides = tiny_overrides(
        tiny_data,
        tmp_path / "run",
        "method.name=response",
        f"teacher.spec=torch:{teacher_file}",
        "trainer.max_steps=2",
        "trainer.val_every_n_steps=100",
    )
    result = distill(load_recipe(None, overrides))
    assert set(result.teacher_metrics) == set(METRIC_KEYS)
    assert result.teacher_metrics != result.metrics  # scored the teacher, not the student again


# --- methods written for these tests -----------------------------------------------------------


@register_method("test-nan-after")
class NanAfter(Method):
    """SILog on ground truth whose ``boom`` term turns NaN from batch ``after`` on (odd batches only)."""

    @dataclass
    class Config:
        after: int = 2
        every_other: bool = False

    needs_teacher = False
    needs_ground_truth = True

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.calls = 0

    def loss(self, batch, student_out, teacher_out, stage) -> LossOutput:  # noqa: ANN001
        self.calls += 1
        bad = self.calls > self.config.after and (not self.config.every_other or self.calls % 2 == 1)
        boom = student_out.depth.mean() * (float("nan") if bad else 0.0)
        return LossOutput.from_terms({"silog": silog_loss(student_out.depth, batch["depth"]), "boom": boom})


def test_nonfinite_loss_stops_with_step_and_term(tiny_data: Path, tmp_path: Path) -> None:
    overrides = tiny_overrides(tiny_data, tmp_path, "data.val=null", "method.name=test-nan-after")
    with pytest.raises(NonFiniteLossError, match=r"training step 3 \(batch 3\).*term 'boom' = nan"):
        distill(load_recipe(None, overrides))


def test_skip_nonfinite_skips_and_counts_batches(tiny_data: Path, tmp_path: Path) -> None:
    overrides = tiny_overrides(
        tiny_data,
        tmp_path,
        "data.val=null",
        "method.name=test-nan-after",
        "method.options.every_other=true",
        "trainer.skip_nonfinite=true",
        "trainer.max_steps=6",
    )
    result = distill(load_recipe(None, overrides))
    assert result.skipped_batches == 2  # calls 3 and 5 of 6
    weights = load_file(str(result.student_path))
    assert all(torch.isfinite(w).all() for w in weights.values())


@register_method("test-two-stages")
class TwoStages(Method):
    """Stage ``warm`` trains only the method's ``gain``; stage ``joint`` trains the student alone."""

    needs_teacher = False
    needs_ground_truth = True

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.gain = nn.Parameter(torch.ones(()))
        self.started: list[str] = []

    def stages(self) -> list[Stage]:
        return [
            Stage("warm", steps=2, optimizers=(OptimizerSpec(("method.gain",)),), validate=False),
            Stage("joint", steps=3, optimizers=(OptimizerSpec(("student",)),)),
        ]

    def owned_parameters(self, owner: str):  # noqa: ANN201
        if owner == "method.gain":
            return iter([self.gain])
        return super().owned_parameters(owner)

    def on_stage_start(self, stage, ctx) -> None:  # noqa: ANN001
        self.started.append(stage.name)

    def loss(self, batch, student_out, teacher_out, stage) -> LossOutput:  # noqa: ANN001
        return LossOutput.from_terms({"silog": silog_loss(student_out.depth * self.gain, batch["depth"])})


class Snapshot(L.Callback):
    """Student and gain values at the end of each stage."""

    def __init__(self) -> None:
        self.at_end: dict[str, tuple[torch.Tensor, float]] = {}

    def on_train_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        first = next(pl_module.student.parameters()).detach().clone()
        self.at_end[pl_module.stage.name] = (first, float(pl_module.method.gain.detach()))


class Crash(RuntimeError):
    pass


class StopAt(L.Callback):
    """Crash the run after optimiser step ``step`` of ``stage``."""

    def __init__(self, stage: str, step: int) -> None:
        self.stage, self.step = stage, step

    def on_train_batch_end(self, trainer, pl_module, *args: object) -> None:  # noqa: ANN001
        if pl_module.stage.name == self.stage and trainer.global_step >= self.step:
            raise Crash

def test_stages_run_in_order_with_their_own_optimisers(tiny_data: Path, tmp_path: Path) -> None:
    snapshot = Snapshot()
    overrides = tiny_overrides(tiny_data, tmp_path, "method.name=test-two-stages", "optim.scheduler=none")
    initial = next(build_student("mobilenetv2_050", decoder_channels=(16, 16, 8, 8)).parameters())
    result = distill(load_recipe(None, overrides), callbacks=[snapshot])
    assert result.stages == [{"name": "warm", "steps": 2}, {"name": "joint", "steps": 3}]
    warm_student, warm_gain = snapshot.at_end["warm"]
    joint_student, joint_gain = snapshot.at_end["joint"]
    assert warm_gain != 1.0  # stage 1 trained the gain ...
    assert joint_gain == warm_gain  # ... and stage 2 left it frozen
    assert not torch.equal(warm_student, joint_student)  # stage 2 trained the student
    assert initial.shape == warm_student.shape
    assert (tmp_path / "checkpoints" / "best.ckpt").is_file()  # validated in the last stage only
    assert not (tmp_path / "checkpoints" / "best-warm.ckpt").exists()


def test_resume_inside_a_later_stage_matches_the_uninterrupted_run(tiny_data: Path, tmp_path: Path) -> None:
    extra = ("method.name=test-two-stages", "data.val=null", "trainer.checkpoint_every_n_steps=1")
    straight = distill(load_recipe(None, tiny_overrides(tiny_data, tmp_path / "a", *extra)))
    overrides = tiny_overrides(tiny_data, tmp_path / "b", *extra)
    with pytest.raises(Crash):
        distill(load_recipe(None, overrides), callbacks=[StopAt("joint", 2)])  # before step 2 is checkpointed
    checkpoint = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["depthkd"]["stage_name"] == "joint" and checkpoint["global_step"] == 1
    resumed = distill(load_recipe(None, overrides))
    expected, actual = load_file(str(straight.student_path)), load_file(str(resumed.student_path))
    assert all(torch.equal(expected[k], actual[k]) for k in expected)


@register_method("test-alternate")
class Alternate(Method):
    """A manual stage with two optimisers stepping in turn (the data-free pattern)."""

    needs_teacher = False
    needs_ground_truth = True

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.generator = nn.Conv2d(3, 3, 1)
        self.order: list[str] = []

    def stages(self) -> list[Stage]:
        specs = (OptimizerSpec(("method.generator",)), OptimizerSpec(("student",)))
        return [Stage("alternate", optimizers=specs, manual=True)]

    def manual_step(self, module, batch, stage) -> LossOutput:  # noqa: ANN001
        images = batch["image"]
        generated = images + self.generator(images)
        generator_loss = (generated - images.flip(-1)).abs().mean()
        module.step_optimizer(0, generator_loss)
        self.order.append("generator")
        out = module.student(generated.detach())
        student_loss = silog_loss(out.depth, batch["depth"])
        module.step_optimizer(1, student_loss)
        self.order.append("student")
        return LossOutput.from_terms({"generator": generator_loss.detach(), "student": student_loss.detach()})


def test_manual_stage_alternates_two_optimisers(tiny_data: Path, tmp_path: Path) -> None:
    class Capture(L.Callback):
        def on_train_end(self, trainer, pl_module) -> None:  # noqa: ANN001
            self.steps = trainer.global_step
            self.order = list(pl_module.method.order)
            self.weight = pl_module.method.generator.weight.detach().clone()

    capture = Capture()
    overrides = tiny_overrides(tiny_data, tmp_path, "method.name=test-alternate", "data.val=null", "trainer.max_steps=3")
    distill(load_recipe(None, overrides), callbacks=[capture])
    assert capture.order == ["generator", "student"] * 3
    assert capture.steps == 6  # two optimiser steps per batch
    torch.manual_seed(0)
    assert not torch.equal(capture.weight, nn.Conv2d(3, 3, 1).weight)


def test_ema_weights_are_validated_checkpointed_and_exported(tiny_data: Path, tmp_path: Path) -> None:
    overrides = tiny_overrides(tiny_data, tmp_path, "data.val=null", "trainer.ema_decay=0.5", "trainer.max_steps=3")
    result = distill(load_recipe(None, overrides))
    checkpoint = torch.load(result.last_checkpoint, map_location="cpu", weights_only=True)
    assert "current_model_state" in checkpoint  # Lightning's EMA keeps both
    exported = load_file(str(result.student_path))
    averaged = {k.removeprefix("student."): v for k, v in checkpoint["state_dict"].items()}
    assert all(torch.equal(exported[k], averaged[k]) for k in exported)


@register_method("test-cache-spy")
class CacheSpy(Method):
    """Response-like MSE that records whether the teacher output came from the cached map."""

    needs_teacher = True

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.from_cache: list[bool] = []

    def loss(self, batch, student_out, teacher_out, stage) -> LossOutput:  # noqa: ANN001
        self.from_cache.append("teacher" in batch and teacher_out.depth is not None and torch.equal(teacher_out.depth, batch["teacher"]))
        return LossOutput.from_terms({"mse": ((student_out.depth - teacher_out.depth) ** 2).mean()})


def test_teacher_cache_is_built_once_and_feeds_training(tiny_data: Path, teacher_file: Path, tmp_path: Path) -> None:
    class Capture(L.Callback):
        def on_train_end(self, trainer, pl_module) -> None:  # noqa: ANN001
            self.from_cache = list(pl_module.method.from_cache)

    capture = Capture()
    cache_dir = tmp_path / "cache"
    overrides = tiny_overrides(
        tiny_data,
        tmp_path / "run",
        "data.val=null",
        "method.name=test-cache-spy",
        f"teacher.spec=torch:{teacher_file}",
        "cache.enabled=true",
        f"cache.dir={cache_dir}",
        "trainer.max_steps=2",
    )
    distill(load_recipe(None, overrides), callbacks=[capture])
    assert capture.from_cache == [True, True]
    index = json.loads((cache_dir / "index.json").read_text())
    assert len(index["entries"]) == 8 and index["kind"] == "metric_depth"


def test_teacher_cache_holds_only_what_the_budget_visits(teacher_file: Path, tmp_path: Path) -> None:
    """One step on 16 images caches the 4 it trains on, the 4 the loader looks ahead and the setup sample."""
    from depthkd.data import dataset_from_spec
    from depthkd.engine.data import visited_indices

    cache_dir = tmp_path / "cache"
    data = make_paired_folder(tmp_path / "data", count=16)

    def run(name: str, steps: int) -> set[str]:
        overrides = tiny_overrides(
            data, tmp_path / name, "data.val=null", "method.name=test-cache-spy", f"teacher.spec=torch:{teacher_file}",
            "cache.enabled=true", f"cache.dir={cache_dir}", f"trainer.max_steps={steps}", "run.seed=3",
        )
        distill(load_recipe(None, overrides))
        return set(json.loads((cache_dir / "index.json").read_text())["entries"])

    items = dataset_from_spec(f"folder:{data}")
    visited = set(visited_indices(len(items), seed=3, samples=8)) | {0, 1}
    assert len(visited) < len(items)  # the test means something only if one step leaves images out
    assert run("short", steps=1) == {items[i]["name"] for i in visited}
    assert run("long", steps=3) == {items[i]["name"] for i in range(len(items))}


def test_visited_indices_are_the_streams_first_positions() -> None:
    from depthkd.engine.data import StepSampler, visited_indices

    stream = iter(StepSampler(10, batch_size=3, seed=5))
    first = {next(stream)[0] for _ in range(6)}
    assert set(visited_indices(10, seed=5, samples=6)) == first and len(first) == 6
    assert visited_indices(10, seed=5, samples=25) == list(range(10))


def test_feature_kd_refuses_the_cache(tiny_data: Path, teacher_file: Path, tmp_path: Path) -> None:
    overrides = tiny_overrides(
        tiny_data, tmp_path, "method.name=feature", f"teacher.spec=torch:{teacher_file}", "cache.enabled=true"
    )
    with pytest.raises(ConfigError, match="features"):
        distill(load_recipe(None, overrides))


def test_feature_distillation_trains_adapters_that_stay_out_of_the_export(
    tiny_data: Path, teacher_file: Path, tmp_path: Path
) -> None:
    overrides = tiny_overrides(
        tiny_data,
        tmp_path,
        "data.val=null",
        "method.name=feature",
        "method.options.student_layers=[-1, -2]",
        "method.options.teacher_layers=[-1, -2]",
        "method.options.loss=cwd",
        f"teacher.spec=torch:{teacher_file}",
        "trainer.max_steps=2",
    )
    result = distill(load_recipe(None, overrides))
    checkpoint = torch.load(result.last_checkpoint, map_location="cpu", weights_only=True)
    adapter_keys = [k for k in checkpoint["state_dict"] if k.startswith("method.adapters.")]
    assert "method.adapters.1.0.weight" in adapter_keys
    assert not any(k.startswith("method.") for k in load_file(str(result.student_path)))


def test_bf16_channels_last_accumulation_and_clipping_run_on_cpu(tiny_data: Path, tmp_path: Path) -> None:
    overrides = tiny_overrides(
        tiny_data,
        tmp_path,
        "data.val=null",
        "trainer.precision=bf16-mixed",
        "trainer.channels_last=true",
        "trainer.accumulate_grad_batches=2",
        "trainer.gradient_clip_val=0.5",
        "trainer.max_steps=2",
    )

    class Count(L.Callback):
        batches = 0

        def on_train_batch_end(self, *args: object) -> None:
            Count.batches += 1

    result = distill(load_recipe(None, overrides), callbacks=[Count()])
    assert Count.batches == 4  # two optimiser steps of two batches each
    floats = [w for w in load_file(str(result.student_path)).values() if w.is_floating_point()]
    assert all(w.dtype == torch.float32 and torch.isfinite(w).all() for w in floats)  # fp32 master weights


def test_skipped_batches_do_not_move_the_weights(tiny_data: Path, tmp_path: Path) -> None:
    overrides = tiny_overrides(
        tiny_data,
        tmp_path,
        "data.val=null",
        "method.name=test-nan-after",
        "method.options.after=0",  # every batch is non-finite
        "trainer.skip_nonfinite=true",
        "trainer.max_steps=2",
    )
    config = load_recipe(None, overrides)
    result = distill(config)
    assert result.skipped_batches == 2
    torch.manual_seed(config.run.seed)  # the engine seeds the same way before building the student
    initial = build_student(**{"backbone": "mobilenetv2_050", "decoder_channels": (16, 16, 8, 8)})
    exported = load_file(str(result.student_path))
    for name, parameter in initial.named_parameters():  # buffers (BN statistics) do move in train mode
        assert torch.equal(exported[name], parameter.detach()), name


def test_uncached_prediction_teacher_refuses_augmentation(tmp_path) -> None:
    """Saved whole-image predictions cannot follow random crops: the recipe must say how to fix it."""
    from depthkd.config import load_recipe
    from depthkd.engine.inputs import training_dataset
    from depthkd.engine.run import build_recipe_method
    from depthkd.errors import ConfigError

    preds = tmp_path / "preds"
    preds.mkdir()
    config = load_recipe(
        None,
        [
            "method.name=response",
            f"teacher.spec=preds:{preds}",
            "data.train=sim:indoor?num=4&size=32x48",
            "data.crop=[32,32]",
            "cache.enabled=false",
        ],
    )
    with pytest.raises(ConfigError, match="cache.enabled=true"):
        training_dataset(config, build_recipe_method(config), teacher=object(), device="cpu")
