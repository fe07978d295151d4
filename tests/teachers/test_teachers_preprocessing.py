"""Hand-computed geometry of the processor reproductions and of the generic black-box preprocessing."""

from __future__ import annotations

import pytest
import torch

from depthkd.models.teachers.hf_preprocessing import HFPreprocessing, Layout, constrain_to_multiple
from depthkd.models.teachers.preprocessing import ImagePreprocessing, nearest_multiple


def _settings(**overrides) -> HFPreprocessing:
    values = dict(
        family="DPTImageProcessor",
        resize="target",
        size=(518, 518),
        keep_aspect_ratio=True,
        multiple=14,
        interpolation="bicubic",
        antialias=True,
        align_corners=False,
        pixel_scale=1.0,
        mean=None,
        std=None,
        pad="none",
        pad_multiple=1,
    )
    values.update(overrides)
    return HFPreprocessing(**values)


def test_constrain_to_multiple_rounds_half_to_even_and_never_to_zero():
    assert constrain_to_multiple(518.0, 14) == 518
    assert constrain_to_multiple(690.6, 14) == 686  # 49.33 -> 49
    assert constrain_to_multiple(21.0, 14) == 28  # 1.5 -> 2 (half to even)
    assert constrain_to_multiple(35.0, 14) == 28  # 2.5 -> 2 (half to even)
    assert constrain_to_multiple(3.0, 14) == 14  # would be 0


def test_depth_anything_rule_scales_as_little_as_possible():
    settings = _settings()
    # 480x640 to 518: height scale 1.079 is closer to 1 than width scale 0.809 -> fit height.
    assert settings.resized_size(480, 640) == (518, 686)  # 640*518/480 = 690.67 -> 686
    assert _settings(keep_aspect_ratio=False).resized_size(480, 640) == (518, 518)
    # GLPN floors each side to a multiple of 32.
    glpn = _settings(resize="floor_multiple", multiple=32, size=None)
    assert glpn.resized_size(480, 650) == (480, 640)


def test_zoedepth_reflect_padding_size_and_removal():
    assert HFPreprocessing.reflect_padding(480, 640) == (46, 53)  # int(sqrt(240)*3), int(sqrt(320)*3)
    settings = _settings(
        family="ZoeDepthImageProcessor",
        size=(8, 8),
        multiple=1,
        pad="reflect_sqrt",
        interpolation="bilinear",
        antialias=False,
        align_corners=True,
    )
    images = torch.rand(1, 3, 8, 18)
    pixels, layout = settings.prepare(images)
    assert layout == Layout(input_size=(8, 18), frame=(8 + 12, 18 + 18), crop=(6, 6, 9, 9))
    # An output that is the padded frame's column index: after restoring, column j of the image is j + 9.
    columns = torch.arange(36.0).expand(1, 1, 20, 36)
    restored = settings.restore(columns, layout)
    assert restored.shape == (1, 1, 8, 18)
    torch.testing.assert_close(restored[0, 0, 0], torch.arange(9.0, 27.0))
    assert pixels.shape[-2:] == settings.resized_size(20, 36)


def test_dpt_center_padding_is_zero_after_normalisation_and_removed():
    settings = _settings(size=(28, 28), keep_aspect_ratio=False, multiple=1, pad="center_multiple", pad_multiple=8,
                         mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    pixels, layout = settings.prepare(torch.ones(1, 3, 10, 10))
    assert pixels.shape[-2:] == (32, 32) and layout.crop == (2, 2, 2, 2)
    assert pixels[..., :2, :].abs().max() == 0 and pixels[..., :, 30:].abs().max() == 0
    torch.testing.assert_close(pixels[..., 2:30, 2:30], torch.ones(1, 3, 28, 28))  # (1 - 0.5) / 0.5
    rows = torch.arange(32.0)[:, None].expand(1, 1, 32, 32)
    restored = settings.restore(rows, layout)
    assert restored.shape == (1, 1, 10, 10)
    # Rows 2..29 of the frame survive the crop and are resized 28 -> 10.
    assert 2.0 <= float(restored.min()) and float(restored.max()) <= 29.0


def test_generic_preprocessing_normalises_and_resizes():
    prep = ImagePreprocessing.from_options(mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25], size_multiple=32)
    out = prep(torch.full((1, 3, 40, 70), 0.75))
    assert out.shape[-2:] == (32, 64)  # 40 -> 32, 70 -> 64 (nearest multiples)
    torch.testing.assert_close(out, torch.ones_like(out))  # (0.75 - 0.5) / 0.25
    assert ImagePreprocessing.from_options(size=[16, 24]).input_size(100, 100) == (16, 24)
    assert nearest_multiple(5, 32) == 32


def test_generic_preprocessing_rejects_bad_values():
    from depthkd.errors import ModelError

    with pytest.raises(ModelError, match="std"):
        ImagePreprocessing.from_options(std=[0.0, 1.0, 1.0])
    with pytest.raises(ModelError, match="interpolation"):
        ImagePreprocessing.from_options(interpolation="lanczos")
