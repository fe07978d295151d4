"""The procedural texture bank: value ranges, seamless tiles, exact lookups."""

from __future__ import annotations

import torch

from depthkd.sim.textures import PATTERN_ID, PATTERN_NAMES, PATTERNS, POSITIVE, TILE_SIZE, texture_bank


def test_patterns_are_in_unit_range():
    gen = torch.Generator().manual_seed(0)
    for name in PATTERN_NAMES:
        value, cell = PATTERNS[name](32, gen)
        assert value.shape == (32, 32)
        assert 0.0 <= value.min() and value.max() <= 1.0, name
        assert 0.0 <= cell.min() and cell.max() <= 1.0, name


def test_lookup_at_texel_centres_is_exact_and_wraps():
    bank = texture_bank(torch.device("cpu"))
    layer = torch.tensor([PATTERN_ID["brick"]] * 3)
    texel = torch.tensor([3.0, 40.0, 100.0])
    u = (texel + 0.5) / TILE_SIZE
    v = (torch.tensor([7.0, 64.0, 127.0]) + 0.5) / TILE_SIZE
    values = bank.pattern(bank.atlas_x(layer), u, v)
    stored = bank.pattern_atlas[0, 0, 1:-1, PATTERN_ID["brick"] * (TILE_SIZE + 2) + 1:][:, :TILE_SIZE]
    expected = stored[(v * TILE_SIZE).long(), (u * TILE_SIZE).long()]
    assert torch.allclose(values, expected, atol=1e-5)
    shifted = bank.pattern(bank.atlas_x(layer), u + POSITIVE + 3.0, v + POSITIVE - 2.0)  # whole tiles away
    assert torch.allclose(values, shifted, atol=1e-3)


def test_tiles_are_seamless():
    """Bilinear lookups across a tile edge blend the last and first texels (no seam)."""
    bank = texture_bank(torch.device("cpu"))
    layer = torch.full((1,), PATTERN_ID["checker"])
    edge = bank.pattern(bank.atlas_x(layer), torch.tensor([0.0]), torch.tensor([0.25 + 0.5 / TILE_SIZE]))
    tile = bank.pattern_atlas[0, 0, 1:-1, PATTERN_ID["checker"] * (TILE_SIZE + 2) + 1:][:, :TILE_SIZE]
    row = int(0.25 * TILE_SIZE)
    assert torch.allclose(edge, 0.5 * (tile[row, 0] + tile[row, -1]), atol=1e-3)
    assert tile[row, 0] != tile[row, -1]  # the checker changes colour across the edge
