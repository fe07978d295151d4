"""Stage optimisers: parameter owners, the encoder's learning-rate scale and the schedules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from depthkd.config import OptimConfig
from depthkd.distill.base import Method
from depthkd.engine.optim import build_optimizer, build_scheduler, param_groups
from depthkd.errors import ConfigError


class TinyStudent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(2, 2)
        self.decoder = nn.Linear(2, 1)


class WithPart(Method):
    def __init__(self) -> None:
        super().__init__()
        self.part = nn.Linear(1, 1)


def test_student_groups_scale_the_encoder_and_owners_do_not_overlap() -> None:
    student, method = TinyStudent(), WithPart()
    cfg = OptimConfig(lr=1e-3, encoder_lr_scale=0.1)
    groups = param_groups(student, method, ("student", "student.encoder", "method.part"), cfg)
    assert [g["name"] for g in groups] == ["student.encoder", "student", "method.part"]  # duplicates dropped
    assert [g["lr"] for g in groups] == pytest.approx([1e-4, 1e-3, 1e-3])
    assert sum(len(g["params"]) for g in groups) == 6
    with pytest.raises(ConfigError, match="no part 'nope'"):
        param_groups(student, method, ("method.nope",), cfg)
    with pytest.raises(ConfigError, match="unknown parameter owner"):
        param_groups(student, method, ("teacher",), cfg)


def test_onecycle_peaks_at_each_groups_rate_and_ends_low() -> None:
    student, method = TinyStudent(), WithPart()
    cfg = OptimConfig(lr=1e-3, encoder_lr_scale=0.1, pct_start=0.5, div_factor=10, final_div_factor=100)
    optimizer = build_optimizer(param_groups(student, method, ("student",), cfg), cfg)
    scheduler = build_scheduler(optimizer, cfg, total_steps=10)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([1e-5, 1e-4])  # start at max / 10
    used = []  # the rates the 10 optimiser steps of a 10-step stage run with
    for _ in range(10):
        used.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    assert [max(step[i] for step in used) for i in range(2)] == pytest.approx([1e-4, 1e-3])
    assert used[-1][1] == pytest.approx(1e-3 / 10 / 100, rel=1e-3)  # the last step runs at max / 1000


def test_optimiser_choice_and_constant_schedule() -> None:
    params = [{"params": [nn.Parameter(torch.zeros(1))], "lr": 0.5}]
    assert isinstance(build_optimizer(params, OptimConfig(name="sgd")), torch.optim.SGD)
    assert isinstance(build_optimizer(params, OptimConfig(name="adam")), torch.optim.Adam)
    assert build_scheduler(build_optimizer(params, OptimConfig()), OptimConfig(scheduler="none"), 5) is None
