"""Optimisers and learning-rate schedules for a stage, from the recipe's ``optim`` section."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from depthkd.config import OptimConfig
from depthkd.errors import ConfigError


def _student_groups(student: nn.Module, owner: str, cfg: OptimConfig) -> list[dict[str, Any]]:
    if owner == "student":
        encoder = getattr(student, "encoder", None)
        encoder_params = list(encoder.parameters()) if isinstance(encoder, nn.Module) else []
        encoder_ids = {id(p) for p in encoder_params}
        rest = [p for p in student.parameters() if id(p) not in encoder_ids]
        return [
            {"params": encoder_params, "lr": cfg.lr * cfg.encoder_lr_scale, "name": "student.encoder"},
            {"params": rest, "lr": cfg.lr, "name": "student"},
        ]
    path = owner.removeprefix("student.")
    try:
        module = student.get_submodule(path)
    except AttributeError:
        names = [n for n, _ in student.named_children()]
        raise ConfigError(f"the student has no part {path!r} (parts: {', '.join(names)})") from None
    scale = cfg.encoder_lr_scale if path == "encoder" or path.startswith("encoder.") else 1.0
    return [{"params": list(module.parameters()), "lr": cfg.lr * scale, "name": owner}]


def param_groups(student: nn.Module, method: Any, owners: tuple[str, ...], cfg: OptimConfig) -> list[dict[str, Any]]:
    """Parameter groups for the named owners; each parameter appears once, empty groups are dropped."""
    groups: list[dict[str, Any]] = []
    for owner in owners:
        if owner == "student" or owner.startswith("student."):
            groups += _student_groups(student, owner, cfg)
        elif owner == "method" or owner.startswith("method."):
            groups.append({"params": list(method.owned_parameters(owner)), "lr": cfg.lr, "name": owner})
        else:
            raise ConfigError(
                f"unknown parameter owner {owner!r}: expected 'student', 'student.<part>', 'method' or "
                "'method.<part>'"
            )
    seen: set[int] = set()
    for group in groups:
        unique = [p for p in group["params"] if id(p) not in seen]
        seen.update(id(p) for p in unique)
        group["params"] = unique
    return [g for g in groups if g["params"]]


def build_optimizer(groups: list[dict[str, Any]], cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW, Adam or SGD over ``groups`` (weight decay applies to every parameter, our default)."""
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int) -> Any:
    """A per-step schedule over ``total_steps`` optimiser steps, or ``None`` for a constant rate.

    ``onecycle`` peaks at each group's own rate (the encoder group keeps its scale).
    """
    if cfg.scheduler == "none":
        return None
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))
    cycle_momentum = cfg.name != "sgd" or cfg.momentum > 0
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=[group["lr"] for group in optimizer.param_groups],
        total_steps=max(2, total_steps),
        pct_start=cfg.pct_start,
        div_factor=cfg.div_factor,
        final_div_factor=cfg.final_div_factor,
        cycle_momentum=cycle_momentum,
    )
