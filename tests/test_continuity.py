"""Seed-frame choice and colour anchoring of chained shots."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from ovi_studio.render import continuity as c


def _textured(seed=0, size=48):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _blurred(frame, radius):
    return np.asarray(Image.fromarray(frame).filter(ImageFilter.GaussianBlur(radius)))


def test_sharpest_frame_wins_and_last_is_last():
    sharp = _textured()
    tail = [_blurred(sharp, 2), sharp, _blurred(sharp, 1), _blurred(sharp, 3)]
    assert c.laplacian_variance(sharp) > c.laplacian_variance(tail[0])
    assert c.choose_seed_frame(tail, "sharpest") == 1
    assert c.choose_seed_frame(tail, "last") == 3


def test_ties_prefer_the_later_frame():
    frame = _textured()
    assert c.choose_seed_frame([frame, frame, frame], "sharpest") == 2


def test_lab_round_trip_is_within_one_level():
    frame = _textured(3)
    back = c.lab_to_srgb(c.srgb_to_lab(frame))
    assert np.abs(back.astype(int) - frame.astype(int)).max() <= 1


def test_white_is_L100_and_neutral():
    lab = c.srgb_to_lab(np.full((1, 1, 3), 255, np.uint8))[0, 0]
    assert lab == pytest.approx([100, 0, 0], abs=0.05)


def test_colour_match_moves_statistics_to_the_reference():
    rng = np.random.default_rng(0)
    reference = rng.integers(60, 200, (8, 32, 32, 3), dtype=np.uint8)
    drifted = np.clip(reference.astype(int) * [1.2, 1.0, 0.8] + [20, 0, -10], 0, 255).astype(np.uint8)
    target = c.color_stats(reference)
    before = c.color_stats(drifted)
    after = c.color_stats(c.match_color(drifted, target))
    gap = lambda s: np.abs(np.subtract(s.mean, target.mean)).max()  # noqa: E731
    assert gap(after) < 0.2 * gap(before)
    assert np.allclose(after.std, target.std, rtol=0.1)


def test_stats_round_trip_through_json():
    stats = c.color_stats(_textured()[None])
    assert c.ColorStats.from_json(stats.to_json()) == stats


@pytest.mark.slow  # tabulates all 2**24 colours (~5 s)
def test_tabulated_and_direct_colour_transforms_agree(monkeypatch):
    frames = np.random.default_rng(5).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    reference = c.ColorStats((55.0, 5.0, -3.0), (20.0, 8.0, 9.0))
    direct = c.match_color(frames, reference)
    monkeypatch.setattr(c, "TABULATE_ABOVE", 0)
    assert np.array_equal(c.match_color(frames, reference), direct)
