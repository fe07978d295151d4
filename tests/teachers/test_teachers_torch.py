"""``torch:`` teachers: a saved depthkd student and a TorchScript module."""

from __future__ import annotations

import contextlib
import warnings

import pytest
import torch
from torch import nn

from depthkd.errors import ModelError
from depthkd.models.teachers import load_teacher


def test_saved_student_teaches_its_own_depth_and_features(tmp_path, images):
    from depthkd.models import build_student, save_student

    student = build_student(max_depth=10.0).eval()
    path = save_student(student, tmp_path / "student.safetensors")
    teacher = load_teacher(f"torch:{path}")
    assert teacher.kind == "metric_depth" and teacher.max_depth == 10.0
    out = teacher(images, return_features=True)
    with torch.no_grad():
        expected = student(images)
    torch.testing.assert_close(out.depth, expected.depth)
    assert [f.shape for f in out.features] == [f.shape for f in expected.features]
    assert not any(p.requires_grad for p in teacher.parameters())


class _Scaled(nn.Module):
    """Depth = 2 + mean over channels of ((x - 0.5) / 0.25), returned as (B,H,W) in a tuple."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return 2.0 + x.mean(dim=1), x


def test_torchscript_with_preprocessing_and_kind(tmp_path, images):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.trace(_Scaled(), torch.rand(1, 3, 8, 8))
        torch.jit.save(scripted, str(tmp_path / "model.pt"))
    teacher = load_teacher(
        f"torch:{tmp_path / 'model.pt'}", kind="relative_depth", mean=[0.5] * 3, std=[0.25] * 3, size=[16, 24]
    )
    assert teacher.kind == "relative_depth"
    out = teacher(torch.full((1, 3, 32, 48), 0.75))
    torch.testing.assert_close(out.depth, torch.full((1, 1, 32, 48), 3.0))  # 2 + (0.75 - 0.5) / 0.25
    with pytest.raises(ModelError, match="no intermediate features"):
        teacher(images, return_features=True)


def test_not_a_model_file(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="neither a depthkd student"):
        load_teacher(f"torch:{tmp_path / 'junk.pt'}")
    with pytest.raises(ModelError, match="not found"):
        load_teacher(f"torch:{tmp_path / 'absent.safetensors'}")


def test_torch_export_program_with_dynamic_batch(tmp_path):
    batch = torch.export.Dim("batch")
    program = torch.export.export(_Scaled(), (torch.rand(2, 3, 16, 24),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(tmp_path / "model.pt2"))
    teacher = load_teacher(f"torch:{tmp_path / 'model.pt2'}", size=[16, 24], mean=[0.5] * 3, std=[0.25] * 3)
    teacher.train()
    assert not teacher.training
    torch.testing.assert_close(teacher(torch.full((3, 3, 32, 48), 0.75)).depth, torch.full((3, 1, 32, 48), 3.0))
    with pytest.raises(ModelError, match=r"failed on input \(1, 3, 8, 8\)"):
        load_teacher(f"torch:{tmp_path / 'model.pt2'}")(torch.rand(1, 3, 8, 8))


class _Payload:
    """Unpickling this touches a marker file: the stand-in for code a crafted file would run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (type(self.marker).touch, (self.marker,))


def _pt2_with_payload(tmp_path, marker):
    """A valid ``.pt2`` whose sample inputs are replaced by a pickle payload."""
    import io
    import zipfile

    program = torch.export.export(nn.Conv2d(3, 1, 1), (torch.rand(1, 3, 8, 8),))
    clean = tmp_path / "clean.pt2"
    torch.export.save(program, str(clean))
    payload = io.BytesIO()
    torch.save((_Payload(marker),), payload)
    crafted = tmp_path / "crafted.pt2"
    with zipfile.ZipFile(clean) as src, zipfile.ZipFile(crafted, "w") as dst:
        for info in src.infolist():
            data = payload.getvalue() if info.filename.endswith("sample_inputs/model.pt") else src.read(info)
            dst.writestr(info, data)
    return crafted


def test_pt2_with_a_pickle_payload_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    crafted = _pt2_with_payload(tmp_path, marker)
    with pytest.raises(ModelError, match="crafted.pt2.*unpickling can run code"):
        load_teacher(f"torch:{crafted}")
    assert not marker.exists()
    import os

    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ  # restored after the load
    # The payload is live: torch's own loader runs it (and may fail afterwards, logging the fallback).
    with warnings.catch_warnings(), contextlib.suppress(Exception):
        warnings.simplefilter("ignore")
        torch.export.load(str(crafted))
    assert marker.exists()


def test_pt2_with_opaque_python_objects_is_refused(tmp_path):
    import zipfile

    from torch.export.pt2_archive.constants import OPAQUE_OBJ_FILENAME_PREFIX

    program = torch.export.export(nn.Conv2d(3, 1, 1), (torch.rand(1, 3, 8, 8),))
    path = tmp_path / "opaque.pt2"
    torch.export.save(program, str(path))
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(f"opaque/data/constants/{OPAQUE_OBJ_FILENAME_PREFIX}0", b"\x80\x04N.")
    with pytest.raises(ModelError, match="opaque.pt2 holds pickled Python objects"):
        load_teacher(f"torch:{path}")
