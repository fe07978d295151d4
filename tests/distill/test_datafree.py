"""``data-free``: the transformation network, the BatchNorm statistics loss, the frozen teacher, the
schedules (alternate, pretrain, baseline), the KD loss, clear errors, a recipe smoke run and the preview."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from engine.conftest import TINY_STUDENT
from PIL import Image
from torch import nn

from depthkd.config import load_recipe
from depthkd.distill import SetupContext, Stage, build_method
from depthkd.distill.datafree import (
    ALTERNATE_STAGE,
    STUDENT_STAGE,
    TRANSFORM_STAGE,
    DataFree,
    log_grad_normal_terms,
    mixing_seed,
)
from depthkd.engine import distill
from depthkd.errors import ConfigError, DataError, ModelError
from depthkd.models import build_student, save_student
from depthkd.models.outputs import StudentOutput, TeacherOutput
from depthkd.models.teachers import Teacher
from depthkd.models.transformation import TransformationNet
from depthkd.preview_datafree import preview_datafree
from depthkd.sim import SimDataset

SIZE = (16, 16)


class TinyTeacher(Teacher):
    """A three-conv metric teacher; with BatchNorm, its running statistics come from bright images."""

    def __init__(self, batchnorm: bool = True, kind: str = "metric_depth") -> None:
        super().__init__(kind=kind, teacher_id="tiny", preprocess_id="tiny", spec="tiny-teacher")
        norm = (lambda c: nn.BatchNorm2d(c)) if batchnorm else (lambda c: nn.Identity())
        self.model = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), norm(8), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1), norm(8), nn.ReLU(),
            nn.Conv2d(8, 1, 3, padding=1),
        )  # fmt: skip
        self.model.train()
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for _ in range(30):  # "training data": bright, low-contrast images
                self.model(0.6 + 0.1 * torch.rand(8, 3, *SIZE, generator=generator))
        self.freeze()

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(self.device)

    def _predict(self, images, names, return_features) -> TeacherOutput:  # noqa: ANN001
        return TeacherOutput(depth=F.softplus(self.model(self.preprocess(images))) + 0.1, kind=self.kind)


class TinyStudent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 3, padding=1)
        self.inputs: list[torch.Tensor] = []

    def forward(self, images: torch.Tensor) -> StudentOutput:
        self.inputs.append(images.detach().clone())
        return StudentOutput(depth=F.softplus(self.conv(images)) + 0.1)


def ood_batch(batch: int = 4) -> dict[str, torch.Tensor]:
    """Dark, high-contrast images (unlike the teacher's data) with two boxes each, and depth."""
    generator = torch.Generator().manual_seed(1)
    instances = torch.zeros(batch, 1, *SIZE, dtype=torch.long)
    for b in range(batch):
        instances[b, 0, b : b + 5, 2 + b : 8 + b] = 1
        instances[b, 0, 9:14, 8:13] = 2
    return {
        "image": 0.3 * torch.rand(batch, 3, *SIZE, generator=generator),
        "instances": instances,
        "depth": 1.0 + instances.float() + torch.arange(batch).view(batch, 1, 1, 1),
        "name": [f"ood/{b}" for b in range(batch)],
    }


class FakeModule:
    """The parts of the engine's ``DistillModule`` that ``manual_step`` uses, with plain Adam optimisers."""

    def __init__(self, method: DataFree, student: nn.Module, teacher: nn.Module, stage: Stage) -> None:
        self.method, self.student, self.teacher = method, student, teacher
        self.batches_seen, self.global_rank = 1, 0
        self.stepped: list[int] = []
        self.optimizers = []
        for spec in stage.optimizers:
            params = [p for owner in spec.params for p in self._owned(owner)]
            lr = spec.optim.lr if spec.optim is not None else 1e-2
            self.optimizers.append(torch.optim.Adam(params, lr=lr))

    def _owned(self, owner: str) -> list[nn.Parameter]:
        return list(self.student.parameters()) if owner == "student" else list(self.method.owned_parameters(owner))

    def images_of(self, batch: dict[str, Any]) -> torch.Tensor:
        return batch["image"]

    def teacher_output(self, batch: dict[str, Any], images: torch.Tensor | None = None) -> TeacherOutput:
        if "teacher" in batch:
            return TeacherOutput(depth=batch["teacher"], kind="metric_depth")
        return self.teacher(batch["image"])

    def loss_is_usable(self, out: Any) -> bool:
        return out.first_nonfinite() is None

    def step_optimizer(self, index: int, loss: torch.Tensor) -> None:
        optimizer = self.optimizers[index]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        self.stepped.append(index)


def set_up(options: dict | None = None, teacher: nn.Module | None = None, batch: dict | None = None) -> tuple:
    method = build_method("data-free", options or {})
    teacher = teacher if teacher is not None else TinyTeacher()
    batch = batch if batch is not None else ood_batch()
    student = TinyStudent()
    method.setup(SetupContext(student=student, teacher=teacher, sample_batch=batch))
    return method, teacher, student, batch


def teacher_state(teacher: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in teacher.state_dict().items()}


# --- the transformation network and its loss ------------------------------------------------------


def test_transformation_network_is_the_identity_at_init_and_has_no_batchnorm() -> None:
    net = TransformationNet()
    images = torch.rand(2, 3, 17, 23)
    assert torch.equal(net(images), images)
    assert torch.count_nonzero(net.residual(images)) == 0
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    with torch.no_grad():
        net.out.bias.fill_(0.5)
    assert net(images).max() <= 1.0 and TransformationNet(clamp=False).residual(images).shape == images.shape


def test_a_g_step_lowers_the_batchnorm_statistics_loss() -> None:
    method, teacher, _, batch = set_up({"mixing": False, "content_weight": 0.0, "tv_weight": 0.0})
    images = batch["image"]
    before = method.transformation_loss(teacher, images)
    assert before.terms["content"].item() == 0.0 and before.terms["bn"].item() > 0
    optimizer = torch.optim.Adam(method.transform.parameters(), lr=1e-3)
    before.total.backward()
    optimizer.step()
    with torch.no_grad():
        after = method.transformation_loss(teacher, images)
        moved = method.transform.residual(images).abs().sum()
    assert after.terms["bn"].item() < before.terms["bn"].item()
    assert moved > 0  # G left the identity


@pytest.mark.parametrize("normalize", [False, True])
def test_batchnorm_loss_is_the_distance_to_the_running_statistics(normalize: bool) -> None:
    method, teacher, _, batch = set_up({"mixing": False, "bn_normalize": normalize})
    layers = [m for m in teacher.model if isinstance(m, nn.BatchNorm2d)]
    inputs: list[torch.Tensor] = []
    handles = [m.register_forward_pre_hook(lambda m, i: inputs.append(i[0].detach())) for m in layers]
    loss = method.transformation_loss(teacher, batch["image"]).terms["bn"]
    for handle in handles:
        handle.remove()
    distances = [
        torch.linalg.vector_norm(x.mean((0, 2, 3)) - m.running_mean)
        + torch.linalg.vector_norm(x.var((0, 2, 3), unbiased=False) - m.running_var)
        for x, m in zip(inputs, layers)
    ]
    expected = sum(distances) if not normalize else sum(d / math.sqrt(8) for d in distances) / len(layers)
    assert len(distances) == 2 and loss.item() == pytest.approx(float(expected), rel=1e-5)


# --- schedules, with the teacher frozen -------------------------------------------------------------


def test_alternate_step_trains_g_then_the_student_on_transformed_images_and_keeps_the_teacher() -> None:
    method, teacher, student, batch = set_up()
    stages = method.stages()
    assert [s.name for s in stages] == [ALTERNATE_STAGE] and stages[0].manual
    assert [spec.params for spec in stages[0].optimizers] == [("method.transform",), ("student",)]
    frozen, g_before = teacher_state(teacher), method.transform.out.weight.detach().clone()
    module = FakeModule(method, student, teacher, stages[0])
    out = method.manual_step(module, batch, stages[0])
    assert module.stepped == [0, 1]
    assert set(out.terms) == {"g/bn", "g/content", "g/tv", "kd/log", "kd/grad", "kd/normal"}
    assert not torch.equal(method.transform.out.weight, g_before)
    # The student learnt from G(mixed images) with the G just updated.
    generator = torch.Generator().manual_seed(mixing_seed(0, module.batches_seen, 0))
    expected = method.student_images(method.mix(batch, generator).image)
    assert torch.equal(student.inputs[-1], expected) and not torch.equal(expected, batch["image"])
    assert all(torch.equal(v, frozen[k]) for k, v in teacher.state_dict().items())
    assert not teacher.training and not any(m.training for m in teacher.modules())


def test_pretrain_schedule_trains_g_alone_then_freezes_it() -> None:
    method, teacher, student, batch = set_up({"transformation": "pretrain", "pretrain_steps": 3})
    first, second = method.stages()
    assert (first.name, first.steps, first.validate) == (TRANSFORM_STAGE, 3, False)
    assert second.name == STUDENT_STAGE and [s.params for s in second.optimizers] == [("student",)]
    student_before = student.conv.weight.detach().clone()
    module = FakeModule(method, student, teacher, first)
    out = method.manual_step(module, batch, first)
    assert module.stepped == [0] and set(out.terms) == {"g/bn", "g/content", "g/tv"}
    assert torch.equal(student.conv.weight, student_before) and not student.inputs
    g_after = {k: v.clone() for k, v in method.transform.state_dict().items()}
    module = FakeModule(method, student, teacher, second)
    out = method.manual_step(module, batch, second)
    assert module.stepped == [0] and set(out.terms) == {"kd/log", "kd/grad", "kd/normal"}
    assert not torch.equal(student.conv.weight, student_before)
    assert all(torch.equal(v, g_after[k]) for k, v in method.transform.state_dict().items())


def test_baseline_kd_uses_the_raw_images_and_accepts_cached_teacher_maps() -> None:
    batch = dict(ood_batch(), teacher=torch.full((4, 1, *SIZE), 2.0))
    method, teacher, student, batch = set_up({"mixing": False, "transformation": "none", "kd_loss": "l1"}, batch=batch)
    assert method.transform is None
    (stage,) = method.stages()
    module = FakeModule(method, student, teacher, stage)
    with torch.no_grad():
        expected = (student(batch["image"]).depth - 2.0).abs().mean()  # against the cached maps
    out = method.manual_step(module, batch, stage)
    assert torch.equal(student.inputs[-1], batch["image"]) and module.stepped == [0]
    assert set(out.terms) == {"kd/l1"} and out.terms["kd/l1"].item() == pytest.approx(expected.item())
    with pytest.raises(ConfigError, match="cache.enabled"):
        set_up({"transformation": "none"}, batch=batch)  # mixing: the teacher must see mixed images


# --- the KD loss ---------------------------------------------------------------------------------


def test_log_grad_normal_loss_hand_values() -> None:
    target = torch.full((1, 1, 6, 7), 2.0)
    terms = log_grad_normal_terms(target + 0.3, target)
    assert terms["log"].item() == pytest.approx(math.log(0.8))
    assert terms["grad"].item() == pytest.approx(2 * math.log(0.5))
    assert terms["normal"].item() == pytest.approx(0.0, abs=1e-7)
    # Ramps along x: t = 1 + x, p = 1 + 2x. Sobel d/dx of a unit slope is 8 (magnitude), so interior
    # gradients are 8 and 16, and the normals (-8, 0, 1) and (-16, 0, 1).
    x = torch.arange(7, dtype=torch.float32).view(1, 1, 1, 7).expand(1, 1, 6, 7)
    terms = log_grad_normal_terms(1 + 2 * x, 1 + x)
    assert terms["log"].item() == pytest.approx(float(torch.log(x + 0.5).mean()))
    assert terms["grad"].item() == pytest.approx(math.log(8.5) + math.log(0.5))
    assert terms["normal"].item() == pytest.approx(1 - 129 / math.sqrt(257 * 65), rel=1e-4)  # float32


def test_kd_loss_weights_and_l1() -> None:
    target = torch.full((1, 1, 6, 7), 2.0)
    heavy = build_method("data-free", {"grad_weight": 2.0, "normal_weight": 0.0}).kd_loss(target + 0.3, target)
    assert heavy.terms["grad"].item() == pytest.approx(4 * math.log(0.5))
    assert heavy.terms["normal"].item() == 0.0
    l1 = build_method("data-free", {"kd_loss": "l1"}).kd_loss(target + 0.3, target)
    assert l1.total.item() == pytest.approx(0.3)
    with pytest.raises(ModelError, match="differ in shape"):
        build_method("data-free").kd_loss(target, target[..., :3])


# --- clear errors --------------------------------------------------------------------------------


def test_a_teacher_without_batchnorm_is_a_clear_error() -> None:
    with pytest.raises(ModelError, match="needs a teacher with BatchNorm"):
        set_up(teacher=TinyTeacher(batchnorm=False))
    method, *_ = set_up({"transformation": "none"}, teacher=TinyTeacher(batchnorm=False))
    assert method.transform is None  # mixing and KD alone do not need BatchNorm


def test_other_setup_errors_name_the_fix() -> None:
    class Opaque(nn.Module):  # like an ONNX teacher: no PyTorch network to differentiate
        kind = "metric_depth"
        spec = "onnx:model.onnx"

    with pytest.raises(ModelError, match="transformation=none"):
        set_up(teacher=Opaque())
    with pytest.raises(ConfigError, match="metric"):
        set_up(teacher=TinyTeacher(kind="relative_disparity"))
    plain = {k: v for k, v in ood_batch().items() if k != "instances"}
    with pytest.raises(DataError, match="instance masks"):
        set_up(batch=plain)
    with pytest.raises(ConfigError, match="method.add"):
        build_method("data-free").loss(plain, None, None, Stage())
    with pytest.raises(ConfigError, match="transformation"):
        build_method("data-free", {"transformation": "sometimes"})


def test_teacher_in_training_mode_is_refused() -> None:
    method, teacher, _, batch = set_up({"mixing": False})
    nn.Module.train(teacher.model, True)  # bypass the adapter's guard
    with pytest.raises(ModelError, match="training mode"):
        method.transformation_loss(teacher, batch["image"])


# --- the recipe, end to end, and the preview --------------------------------------------------------


class TeacherWatch(L.Callback):
    """Snapshot the teacher's weights and statistics at the start and the end of training."""

    def on_train_start(self, trainer, pl_module) -> None:  # noqa: ANN001
        self.before = teacher_state(pl_module.teacher)

    def on_train_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        self.after = teacher_state(pl_module.teacher)
        self.eval_mode = not any(m.training for m in pl_module.teacher.modules())


def test_recipe_smoke_run_keeps_the_teacher_frozen_and_previews_what_the_student_sees(tmp_path: Path) -> None:
    teacher = build_student("mobilenetv2_050", decoder_channels=(16, 16, 8, 8))
    teacher_file = save_student(teacher, tmp_path / "teacher.safetensors")
    run_dir = tmp_path / "run"
    overrides = [
        "data.train=sim:ood_clutter?num=4&size=32x40&seed=0",
        "data.val=sim:indoor?num=2&size=32x40&seed=100000",
        "data.crop=[32,32]",
        "data.batch_size=2",
        "data.val_batch_size=2",
        "data.num_workers=0",
        *TINY_STUDENT,
        f"teacher.spec=torch:{teacher_file}",
        "trainer.accelerator=cpu",
        "trainer.max_steps=2",
        "trainer.val_every_n_steps=2",
        "trainer.loggers=[csv]",
        "trainer.log_every_n_steps=1",
        f"run.dir={run_dir}",
    ]
    watch = TeacherWatch()
    result = distill(load_recipe("configs/datafree-sim.yaml", overrides), callbacks=[watch])
    assert result.stages == [{"name": ALTERNATE_STAGE, "steps": 2}]
    assert result.student_path.is_file() and result.metrics is not None
    assert watch.before.keys() == watch.after.keys() and watch.eval_mode
    assert all(torch.equal(watch.before[k], watch.after[k]) for k in watch.before)  # running stats included
    state = torch.load(result.last_checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    assert state["method.transform.out.weight"].abs().sum() > 0  # G was trained from its zero init
    logged = (run_dir / "logs" / ALTERNATE_STAGE / "metrics.csv").read_text()
    assert "train/g/bn" in logged and "train/kd/log" in logged

    data = SimDataset("ood_shapes", length=3, size=(32, 40), seed=1)
    preview = preview_datafree(tmp_path / "preview.png", data, num_images=3, run=run_dir)
    assert preview.rows == ["raw OOD", "mixed", "transformed", "teacher depth"] and preview.num_images == 3
    with Image.open(preview.path) as png:
        assert png.width >= 3 * 40 and png.height >= 4 * 32  # every tile at least at its own resolution
    fitted = preview_datafree(tmp_path / "fit.png", data, num_images=2, teacher=TinyTeacher(), fit_steps=1)
    assert fitted.rows == ["raw OOD", "mixed", "transformed", "teacher depth"]
    plain = preview_datafree(tmp_path / "plain.png", data, num_images=2)
    assert plain.rows == ["raw OOD", "mixed"]
