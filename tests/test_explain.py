"""``explain``: DPM entropy, pixel choice, the numbers behind the figure, and the PNG itself."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from depthkd.errors import ConfigError, DataError
from depthkd.explain import compute_explanation, default_pixels, dpm_entropy, explain
from depthkd.io import write_rgb
from depthkd.models import build_student, load_teacher, save_student

TINY = {"backbone": "mobilenetv2_050", "decoder_channels": (16, 16, 8, 8)}


@pytest.fixture(scope="module")
def dpm_student():  # noqa: ANN201
    torch.manual_seed(2)
    return build_student(head="dpm", max_depth=10.0, **TINY).eval()


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(3)
    return save_student(build_student(**TINY), tmp_path_factory.mktemp("teacher") / "teacher.safetensors")


def test_entropy_hand_values() -> None:
    probs = torch.zeros(1, 4, 1, 3)
    probs[0, :, 0, 0] = 0.25  # uniform
    probs[0, 2, 0, 1] = 1.0  # one-hot
    probs[0, :2, 0, 2] = 0.5  # two bins
    normalized = dpm_entropy(probs).flatten().tolist()
    assert normalized == pytest.approx([1.0, 0.0, 0.5], abs=1e-6)  # ln 2 / ln 4 = 0.5
    nats = dpm_entropy(probs, "nats").flatten().tolist()
    assert nats == pytest.approx([math.log(4), 0.0, math.log(2)], abs=1e-6)
    with pytest.raises(ConfigError, match="entropy units"):
        dpm_entropy(probs, "bits")  # type: ignore[arg-type]


def test_default_pixels_are_most_and_least_uncertain_cells_and_the_centre() -> None:
    entropy = torch.full((4, 4), 0.5)
    entropy[1, 2] = 0.9
    entropy[3, 0] = 0.1
    assert default_pixels(entropy, (8, 8)) == [(3, 5, "most uncertain"), (7, 1, "most certain"), (4, 4, "centre")]
    flat = torch.full((4, 4), 0.5)
    flat[2, 2] = 0.9  # its input pixel (5, 5) differs from the centre (4, 4); the argmin is cell (0, 0)
    assert [p[:2] for p in default_pixels(flat, (8, 8))] == [(5, 5), (1, 1), (4, 4)]


def test_explanation_numbers_match_the_student_and_teacher(dpm_student, teacher_file: Path) -> None:  # noqa: ANN001
    image = torch.rand(3, 32, 48)
    teacher = load_teacher(f"torch:{teacher_file}")
    result = compute_explanation(dpm_student, image, teacher, pixels=[(5, 7), (31, 47)], sigma=0.3)
    with torch.no_grad():
        out = dpm_student(image.unsqueeze(0))
        teacher_depth = teacher(image.unsqueeze(0)).depth[0, 0]
    centers = out.bin_centers[0].numpy()
    entropy = dpm_entropy(out.probs)[0, 0]
    assert result.entropy.shape == (16, 24) and result.depth.shape == (32, 48)
    for pixel, (row, col) in zip(result.pixels, [(5, 7), (31, 47)]):
        cell = (row // 2, col // 2)
        np.testing.assert_allclose(pixel.student_probs, out.probs[0, :, cell[0], cell[1]].numpy(), rtol=1e-5, atol=1e-7)
        assert pixel.student_depth == pytest.approx(float((pixel.student_probs * centers).sum()), rel=1e-5)
        assert pixel.entropy == pytest.approx(float(entropy[cell]), rel=1e-5)
        assert pixel.teacher_depth == pytest.approx(float(teacher_depth[row, col]), rel=1e-5)
        assert pixel.teacher_probs.sum() == pytest.approx(1.0, abs=1e-5)
        assert pixel.reason == "chosen"
    assert [p.label for p in result.pixels] == ["A", "B"]
    assert result.teacher_label.startswith("teacher torch:") and result.sigma == 0.3
    with pytest.raises(DataError, match="outside the 32x48 image"):
        compute_explanation(dpm_student, image, pixels=[(32, 0)])


def test_explain_writes_a_png_from_files_with_a_preds_teacher(dpm_student, tmp_path: Path) -> None:  # noqa: ANN001
    checkpoint = save_student(dpm_student, tmp_path / "student.safetensors")
    write_rgb(tmp_path / "photo.png", torch.rand(3, 48, 64))
    preds = tmp_path / "preds"
    preds.mkdir()
    np.save(preds / "photo.npy", np.linspace(1.0, 8.0, 48 * 64, dtype=np.float32).reshape(48, 64))
    (preds / "meta.json").write_text(json.dumps({"kind": "metric_depth"}))
    path = explain(str(checkpoint), tmp_path / "photo.png", f"preds:{preds}", output=tmp_path / "out" / "x.png")
    assert path == tmp_path / "out" / "x.png"
    with Image.open(path) as figure:
        width, height = figure.size
        assert figure.format == "PNG" and width > 800 and height > 400
        pixels = np.asarray(figure.convert("RGB"))
    assert pixels.std() > 10  # something was drawn


def test_relative_teacher_is_aligned_to_the_student_and_says_so(dpm_student, tmp_path: Path) -> None:  # noqa: ANN001
    preds = tmp_path / "preds"
    preds.mkdir()
    np.save(preds / "image.npy", np.linspace(0.1, 1.0, 32 * 48, dtype=np.float32).reshape(32, 48))
    (preds / "meta.json").write_text(json.dumps({"kind": "relative_disparity"}))
    result = compute_explanation(dpm_student, torch.rand(3, 32, 48), f"preds:{preds}")
    assert "aligned to the student by lstsq_disparity" in result.teacher_label
    assert np.isfinite(result.teacher_depth).all() and (result.teacher_depth > 0).all()
    assert len(result.pixels) == 3 and result.pixels[2].reason == "centre"


def test_wide_image_without_teacher_in_nats(dpm_student, tmp_path: Path) -> None:  # noqa: ANN001
    path = explain(dpm_student, torch.rand(3, 32, 96), output=tmp_path / "wide.png", entropy="nats")
    with Image.open(path) as figure:
        assert figure.size[0] > figure.size[1]


def test_students_without_a_dpm_are_refused(tmp_path: Path) -> None:
    regression = build_student(**TINY).eval()
    with pytest.raises(ConfigError, match="head='dpm'"):
        explain(regression, torch.rand(3, 32, 32), output=tmp_path / "no.png")
    assert not (tmp_path / "no.png").exists()
