"""The delivered cut measured as a viewer's player reads it, against the formats' own numbers.

Expected values are facts of the formats, written as literals (at 24 fps and 48 kHz one frame is
exactly 2000 samples), never the module's own constants, and every measurement is taken on the
encoded mp4 by decoding it with ffmpeg, not on the intermediate the code computed.
"""
from __future__ import annotations

import subprocess

import numpy as np
import pytest

from ovi_studio.media import audio, video
from ovi_studio.media.ffmpeg import ffmpeg_exe
from ovi_studio.media.probe import count_video_frames
from ovi_studio.render.assembly import AssemblySettings, Segment, assemble

QUIET = dict(loudness_lufs=None, subtitles=False, chapters=False, preset="ultrafast")


def segment(tmp_path, name, frames, tone_hz, **kw):
    """Flat grey frames and a 16 kHz sine that runs 30 ms short, as Ovi's audio does."""
    video.write_lossless(tmp_path / f"{name}.mkv", np.full((frames, 32, 32, 3), 128, np.uint8))
    t = np.arange(round((frames / 24 - 0.03) * 16000)) / 16000
    audio.write_wav(tmp_path / f"{name}.wav", (0.3 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32), 16000)
    return Segment(name, tmp_path / f"{name}.mkv", tmp_path / f"{name}.wav", 32, 32, frames, **kw)


def delivered_audio(path) -> np.ndarray:
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1",
                          "-ar", "48000", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.float32)


def test_the_cut_carries_exactly_2000_samples_a_frame(tmp_path):
    segs = [segment(tmp_path, "a", 25, 300), segment(tmp_path, "b", 25, 400, start_frame=1),
            segment(tmp_path, "c", 13, 500, transition_frames=4)]
    final = tmp_path / "cut.mp4"
    assemble(segs, final, AssemblySettings(**QUIET), tmp_path / "work")
    assert count_video_frames(final) == 25 + 24 + 13 - 4
    assert delivered_audio(final).shape[0] == (25 + 24 + 13 - 4) * 2000


def test_a_crossfade_keeps_the_power_of_two_different_sounds(tmp_path):
    """Equal-power: two uncorrelated tones keep their level through the overlap (a linear fade
    dips by 3 dB in the middle)."""
    segs = [segment(tmp_path, "a", 48, 440), segment(tmp_path, "b", 48, 620, transition_frames=24)]
    final = tmp_path / "cut.mp4"
    assemble(segs, final, AssemblySettings(**QUIET), tmp_path / "work")
    samples = delivered_audio(final).astype(np.float64)
    overlap_start, overlap_end = (48 - 24) * 2000, 48 * 2000

    def level_db(start: int, end: int) -> float:
        return 10 * np.log10(np.mean(samples[start:end] ** 2))

    middle = (overlap_start + overlap_end) // 2
    inside = level_db(middle - 4000, middle + 4000)
    outside = level_db(8000, 40000)
    assert inside - outside == pytest.approx(0.0, abs=1.0)
