"""The final encode: exact lengths, seams, crossfades, loudness, subtitles and chapters."""
from __future__ import annotations

import numpy as np
import pytest

from ovi_studio.media import audio, probe, video
from ovi_studio.render import assembly
from ovi_studio.render.assembly import (SAMPLES_PER_FRAME, AssemblySettings, Segment, assemble,
                                        segment_starts, write_programme_audio)

FAST = dict(preset="ultrafast")


def _segment(tmp_path, name, frames, *, width=32, height=32, audio_s=None, seed=0, **kw):
    """A segment with a flat colour per frame and a 16 kHz tone whose length is off by tens of
    milliseconds, the way Ovi's audio is."""
    colours = np.random.default_rng(seed).integers(0, 256, (frames, 1, 1, 3), dtype=np.uint8)
    video.write_lossless(tmp_path / f"{name}.mkv", np.broadcast_to(colours, (frames, height, width, 3)).copy())
    n = round((audio_s if audio_s is not None else frames / 24 - 0.018) * 16000)
    t = np.arange(n) / 16000
    audio.write_wav(tmp_path / f"{name}.wav", (0.25 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 16000)
    return Segment(name, tmp_path / f"{name}.mkv", tmp_path / f"{name}.wav", width, height, frames, **kw)


def test_timeline_accounts_for_seams_trims_and_crossfades(tmp_path):
    segs = [Segment("a", tmp_path, tmp_path, 8, 8, 121, end_frame=118),
            Segment("b", tmp_path, tmp_path, 8, 8, 121, start_frame=1),
            Segment("c", tmp_path, tmp_path, 8, 8, 121, transition_frames=12)]
    starts, total = segment_starts(segs)
    assert starts == [0, 118, 118 + 120 - 12]
    assert total == 118 + 120 + 121 - 12


def test_programme_audio_is_exactly_frames_times_2000(tmp_path):
    segs = [_segment(tmp_path, "a", 25, audio_s=1.0), _segment(tmp_path, "b", 25, audio_s=1.1, start_frame=1),
            _segment(tmp_path, "c", 13, transition_frames=4)]
    written = write_programme_audio(segs, AssemblySettings(), tmp_path / "programme.wav")
    samples, rate = audio.read_wav(tmp_path / "programme.wav")
    assert rate == 48_000 and written == samples.shape[0] == segment_starts(segs)[1] * SAMPLES_PER_FRAME
    assert abs(samples[0]) < 1e-6  # de-click ramp at the start


def test_final_cut_has_equal_streams_subtitles_chapters_and_loudness(tmp_path):
    segs = [_segment(tmp_path, "a", 24, dialogue=(("Anna", "hello there"),)),
            _segment(tmp_path, "b", 24, seed=1, start_frame=1, width=48),  # another size: padded
            _segment(tmp_path, "c", 24, seed=2, transition_frames=6, dialogue=((None, "bye now"),))]
    final = tmp_path / "out" / "final.mp4"
    result = assemble(segs, final, AssemblySettings(loudness_lufs=-20.0, **FAST), tmp_path / "work")
    assert result.frames == 24 + 23 + 24 - 6
    assert probe.count_video_frames(final) == result.frames
    decoded = probe.count_audio_samples(final)
    assert abs(decoded - result.frames * SAMPLES_PER_FRAME) <= SAMPLES_PER_FRAME
    info = probe.probe(final)
    assert info.first("video").pix_fmt == "yuv420p" and info.first("audio").sample_rate == 48000
    assert info.first("subtitle").codec == "mov_text"
    assert [title for *_, title in info.chapters] == ["a", "b", "c"]
    assert info.chapters[2][0] == pytest.approx(result.segment_starts[2] / 24, abs=0.002)
    assert result.srt.read_text().count("-->") == 2 and "Anna: hello there" in result.vtt.read_text()
    # delivery: stereo AAC at 48 kHz, and ffmpeg's own meter on the delivered file reads the target
    assert info.first("audio").codec == "aac" and info.first("audio").channels == "stereo"
    measured = audio.measure_loudness(final)
    assert measured["integrated_lufs"] == pytest.approx(-20.0, abs=0.5)
    assert measured["true_peak_dbtp"] <= -1.0
    assert result.loudness["integrated_lufs"] == pytest.approx(measured["integrated_lufs"], abs=0.05)
    assert result.loudness["true_peak_dbtp"] == pytest.approx(measured["true_peak_dbtp"], abs=0.05)
    # faststart: the moov atom precedes the media data
    head = final.read_bytes()[:4096]
    assert head.find(b"moov") != -1 and (head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat"))


def test_twenty_segments_do_not_drift(tmp_path):
    segs = [_segment(tmp_path, f"s{i}", 12, width=16, height=16, seed=i, audio_s=0.5 - 0.018 + 0.012 * (i % 3))
            for i in range(20)]
    result = assemble(segs, tmp_path / "final.mp4", AssemblySettings(loudness_lufs=None, subtitles=False,
                                                                      chapters=False, **FAST), tmp_path / "w")
    assert result.audio_samples == 240 * SAMPLES_PER_FRAME
    frames = probe.count_video_frames(tmp_path / "final.mp4")
    samples = probe.count_audio_samples(tmp_path / "final.mp4")
    assert frames == 240
    assert abs(samples / 48000 - frames / 24) < 1 / 24


def test_silence_is_not_normalised(tmp_path):
    seg = _segment(tmp_path, "a", 12)
    audio.write_wav(seg.audio_path, np.zeros(8000, np.float32), 16000)
    result = assemble([seg], tmp_path / "f.mp4", AssemblySettings(**FAST), tmp_path / "w")
    assert result.loudness["skipped"] == "silent programme"


def test_programme_audio_crossfades_are_equal_power_overlaps(tmp_path):
    segs = [_segment(tmp_path, "a", 12), _segment(tmp_path, "b", 12, seed=1, transition_frames=3),
            _segment(tmp_path, "c", 12, seed=2, start_frame=2)]
    write_programme_audio(segs, AssemblySettings(declick_ms=0), tmp_path / "p.wav")
    samples, _ = audio.read_wav(tmp_path / "p.wav")
    a, b, c = (assembly.segment_audio(seg) for seg in segs)
    overlap = 3 * SAMPLES_PER_FRAME
    t = (np.arange(overlap) + 0.5) / overlap
    mixed = a[-overlap:] * np.cos(t * np.pi / 2) + b[:overlap] * np.sin(t * np.pi / 2)
    expected = np.concatenate([a[:-overlap], mixed, b[overlap:], c])
    assert samples.shape == expected.shape == ((12 + 12 - 3 + 10) * SAMPLES_PER_FRAME,)
    assert np.allclose(samples, expected, atol=1e-6)


def _flat(colours, height, width):
    return np.broadcast_to(np.asarray(colours, np.uint8)[:, None, None, :],
                           (len(colours), height, width, 3)).copy()


def test_cut_of_many_pieces_is_frame_exact(tmp_path):
    """Pieces encoded one by one and joined without re-encoding, crossfades, a seam, a trim, a
    shot of another size: every frame of the cut is the frame (or the blend) it should be."""
    rng = np.random.default_rng(5)
    segs, colours = [], []
    for i in range(7):
        frames, width = 10, (32 if i != 4 else 48)
        c = rng.integers(40, 216, (frames, 3))
        video.write_lossless(tmp_path / f"v{i}.mkv", _flat(c, 32, width))
        audio.write_wav(tmp_path / f"v{i}.wav", np.zeros(6000, np.float32), 16000)
        colours.append(c)
        kw = {}
        if i in (2, 3, 5):
            kw["transition_frames"] = 3
        if i == 6:
            kw["start_frame"] = 1  # a seam
        if i == 1:
            kw["end_frame"] = 9  # a trim
        segs.append(Segment(f"v{i}", tmp_path / f"v{i}.mkv", tmp_path / f"v{i}.wav", width, 32, frames, **kw))
    assert len(assembly.cut_pieces(segs)) == 7 + 3
    starts, total = segment_starts(segs)
    expected = np.zeros((total, 3))
    for i, (seg, start) in enumerate(zip(segs, starts)):
        own = colours[i][seg.start_frame:seg.stop].astype(float)  # a padded picture too, mid-frame
        n = seg.transition_frames
        for k in range(len(own)):
            if k < n:  # xfade's fade: the outgoing frame's weight falls from 1 to 1/n
                progress = 1 - k / n
                expected[start + k] = expected[start + k] * progress + own[k] * (1 - progress)
            else:
                expected[start + k] = own[k]
    final = tmp_path / "cut.mp4"
    assemble(segs, final, AssemblySettings(loudness_lufs=None, subtitles=False, chapters=False,
                                           crf=0, **FAST), tmp_path / "w")
    decoded = video.read_frames(final, 32, 32)
    assert decoded.shape[0] == total
    centre = decoded[:, 12:20, 12:20].reshape(total, -1, 3).mean(axis=1)
    assert np.abs(centre - expected).max() < 4  # yuv420p rounding, nothing else
