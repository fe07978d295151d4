"""Tiny on-disk RGB-D data and recipe overrides shared by the engine tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from depthkd.io import write_depth_png, write_rgb

TINY_STUDENT = ["student.backbone=mobilenetv2_050", "student.decoder_channels=[16,16,8,8]"]


def make_paired_folder(root: Path, count: int = 8, size: tuple[int, int] = (32, 48), seed: int = 0) -> Path:
    """``root/rgb`` + ``root/depth``: planar depth ramps whose colours encode the depth (learnable)."""
    generator = torch.Generator().manual_seed(seed)
    height, width = size
    yy, xx = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    for i in range(count):
        a = torch.rand(3, generator=generator)
        depth = 1.0 + 4.0 * (a[0] * yy + a[1] * xx) + a[2]
        image = torch.stack([depth / 6, 1 - depth / 6, (xx + yy) / 2]).clamp(0, 1)
        write_rgb(root / "rgb" / f"{i:03d}.png", image)
        write_depth_png(root / "depth" / f"{i:03d}.png", depth)
    return root


def tiny_overrides(data: Path, run_dir: Path, *extra: str) -> list[str]:
    """Overrides for a seconds-long CPU run on ``data`` written to ``run_dir``."""
    return [
        f"data.train=folder:{data}",
        f"data.val=folder:{data}",
        "data.batch_size=4",
        "data.val_batch_size=4",
        "data.crop=[32,32]",
        *TINY_STUDENT,
        "trainer.accelerator=cpu",
        "trainer.max_steps=4",
        "trainer.checkpoint_every_n_steps=2",
        "trainer.loggers=[csv]",
        "optim.lr=1e-3",
        f"run.dir={run_dir}",
        *extra,
    ]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_paired_folder(tmp_path_factory.mktemp("tiny-rgbd"))
