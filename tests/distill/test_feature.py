"""``feature`` KD: hooks by module path, adapters from real shapes, MSE and channel-wise distillation."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
import torch
from torch import nn

from depthkd.distill import SetupContext, Stage, build_method
from depthkd.distill.feature import channel_wise_distillation
from depthkd.distill.hooks import FeatureHooks, as_feature_map, token_grid
from depthkd.errors import ConfigError
from depthkd.models import build_student
from depthkd.models.outputs import TeacherOutput


class TokenTeacher(nn.Module):
    """A stand-in ViT teacher: patch embedding, one block producing (B, 1 + h*w, C) tokens."""

    kind = "metric_depth"

    def __init__(self, patch: int = 8, channels: int = 12) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, channels, patch, stride=patch)
        self.block = nn.Linear(channels, channels)
        self.cls = nn.Parameter(torch.zeros(1, 1, channels))
        self.head = nn.Conv2d(3, 1, 1)
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, images: torch.Tensor, names: Sequence[str] | None = None, return_features: bool = False) -> TeacherOutput:
        patches = self.embed(images).flatten(2).transpose(1, 2)
        tokens = self.block(torch.cat([self.cls.expand(images.shape[0], -1, -1), patches], 1))
        depth = torch.nn.functional.softplus(self.head(images)) + 0.1
        return TeacherOutput(depth=depth, kind="metric_depth", features=[tokens] if return_features else [])


def tiny_student() -> nn.Module:
    return build_student("mobilenetv2_050", decoder_channels=(16, 16, 8, 8))


def setup(options: dict, teacher: nn.Module, student: nn.Module, size: tuple[int, int] = (32, 48)):  # noqa: ANN201
    batch = {"image": torch.rand(2, 3, *size), "depth": torch.rand(2, 1, *size) + 1.0, "name": ["a", "b"]}
    method = build_method("feature", options)
    method.setup(SetupContext(student=student, teacher=teacher, sample_batch=batch))
    return method, batch


def test_channel_wise_distillation_hand_value() -> None:
    tau = 4.0
    teacher = torch.tensor([0.0, 0.0]).view(1, 1, 1, 2)
    student = torch.tensor([0.0, tau * math.log(3.0)]).view(1, 1, 1, 2)  # softmax -> [1/4, 3/4]
    expected = tau**2 * (0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75))
    assert channel_wise_distillation(student, teacher, tau).item() == pytest.approx(expected, rel=1e-5)
    assert channel_wise_distillation(teacher, teacher, tau).item() == pytest.approx(0.0, abs=1e-7)


def test_token_grid_finds_class_and_register_tokens() -> None:
    assert token_grid(197, (224, 224)) == (1, 14, 14)
    assert token_grid(192 + 5, (256, 192)) == (5, 16, 12)
    assert token_grid(24, (32, 48)) == (0, 4, 6)
    tokens = torch.arange(2 * 25 * 3, dtype=torch.float32).view(2, 25, 3)
    grid = as_feature_map(tokens, (64, 96))
    assert grid.shape == (2, 3, 4, 6)
    assert torch.equal(grid[:, :, 0, 1], tokens[:, 2, :])  # token 1 + 1 (after the class token)


def test_hooks_capture_named_modules_and_reject_unknown_names() -> None:
    student = tiny_student()
    name = next(n for n, m in student.named_modules() if isinstance(m, nn.Conv2d))
    with FeatureHooks(student, [name], "student") as hooks:
        student(torch.rand(2, 3, 32, 32))
        (captured,) = hooks.collect()
    assert captured.ndim == 4
    with pytest.raises(ConfigError, match="no module named 'encoder.nope'"):
        FeatureHooks(student, ["encoder.nope"], "student")


def test_adapters_follow_the_paired_shapes_and_only_student_side_learns() -> None:
    student, teacher = tiny_student(), TokenTeacher()
    method, batch = setup({"student_layers": [-1, "encoder"], "teacher_layers": [-1, "block"]}, teacher, student)
    features = student(batch["image"]).features
    # ``encoder`` returns a list of maps: a hook keeps its first tensor (the shallowest map)
    assert [a[0].in_channels for a in method.adapters] == [features[-1].shape[1], features[0].shape[1]]
    assert [a[0].out_channels for a in method.adapters] == [12, 12]
    assert method.teacher_features

    out = method.loss(batch, student(batch["image"]), teacher(batch["image"], return_features=True), Stage())
    assert out.terms.keys() == {"feature", "silog"}
    out.total.backward()
    assert method.adapters[0][0].weight.grad is not None
    assert next(student.parameters()).grad is not None
    assert all(p.grad is None for p in teacher.parameters())


def test_module_name_pairs_without_feature_lists() -> None:
    student, teacher = tiny_student(), TokenTeacher()
    method, batch = setup(
        {"student_layers": ["decoder"], "teacher_layers": ["embed"], "loss": "cwd", "gt_weight": 0.0}, teacher, student
    )
    assert not method.teacher_features and not method.needs_ground_truth
    out = method.loss(batch, student(batch["image"]), teacher(batch["image"]), Stage())
    assert out.terms.keys() == {"feature"}
    assert torch.isfinite(out.total) and out.total.item() >= 0


def test_mismatched_layer_lists_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="paired"):
        build_method("feature", {"student_layers": [-1, -2], "teacher_layers": [-1]})
