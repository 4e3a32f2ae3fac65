"""Re-assembly encodes only what changed: the cut's pieces are encoded one by one, kept under
their content key, and joined without re-encoding; after a pick or a transition change only the
pieces that hold other frames are encoded again, and the delivered cut is the same, frame for
frame, as one encoded from scratch."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ovi_studio.media import audio, ffmpeg, probe, video
from ovi_studio.render import assembly
from ovi_studio.render.assembly import SAMPLES_PER_FRAME, AssemblySettings, Segment, assemble, segment_starts

SIZE = 32
SETTINGS = AssemblySettings(loudness_lufs=None, subtitles=False, chapters=False, crf=0, preset="ultrafast")


def _take(tmp_path, name: str, seed: int, frames: int = 10) -> tuple[Segment, np.ndarray]:
    """A take of flat colours (one per frame) and a quiet tone."""
    colours = np.random.default_rng(seed).integers(40, 216, (frames, 3))
    video.write_lossless(tmp_path / f"{name}.mkv", np.broadcast_to(
        colours[:, None, None, :].astype(np.uint8), (frames, SIZE, SIZE, 3)).copy())
    t = np.arange(round(frames / 24 * 16000)) / 16000
    audio.write_wav(tmp_path / f"{name}.wav", (0.2 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 16000)
    return Segment(name, tmp_path / f"{name}.mkv", tmp_path / f"{name}.wav", SIZE, SIZE, frames), colours


def _expected(segments: list[Segment], colours: list[np.ndarray]) -> np.ndarray:
    """Each frame's colour on the cut: the kept frames, crossfades as xfade blends them."""
    starts, total = segment_starts(segments)
    expected = np.zeros((total, 3))
    for seg, start, own in zip(segments, starts, colours):
        own = own[seg.start_frame:seg.stop].astype(float)
        for k in range(len(own)):
            if k < seg.transition_frames:
                weight = 1 - k / seg.transition_frames  # the outgoing frame's
                expected[start + k] = expected[start + k] * weight + own[k] * (1 - weight)
            else:
                expected[start + k] = own[k]
    return expected


@pytest.fixture()
def encodes(monkeypatch):
    """The pieces the assembly encodes (their output paths), counted at the encoder."""
    seen = []
    original = ffmpeg.run_reporting

    def counting(args, on_frames):
        seen.append(args[-1])
        return original(args, on_frames)
    monkeypatch.setattr(ffmpeg, "run_reporting", counting)
    return seen


@pytest.fixture()
def takes(tmp_path):
    """Shots a, b (two takes), c crossfading in from b over 3 frames, d."""
    made = {name: _take(tmp_path, name, seed) for seed, name in enumerate(["a", "b0", "b1", "c", "d"])}
    made["c"] = (dataclasses.replace(made["c"][0], transition_frames=3), made["c"][1])
    return made


def _cut(takes, names):
    return [takes[n][0] for n in names], [takes[n][1] for n in names]


def _pieces_on_disk(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.mp4")}


def test_a_pick_change_encodes_only_its_pieces_and_the_cut_matches_a_full_encode(tmp_path, takes, encodes):
    cache, work = tmp_path / "the cut's pieces", tmp_path / "work"  # quoted in the concat list
    first, _ = _cut(takes, ["a", "b0", "c", "d"])
    result = assemble(first, tmp_path / "first.mp4", SETTINGS, work, piece_cache=cache)
    assert [p.label for p in result.pieces] == ["a", "b0", "b0 -> c", "c", "d"]
    assert len(encodes) == 5 and not any(p.reused for p in result.pieces)
    before = _pieces_on_disk(cache)
    assert len(before) == 5

    encodes.clear()
    picked, colours = _cut(takes, ["a", "b1", "c", "d"])  # shot b now uses its other take
    final = tmp_path / "final.mp4"
    result = assemble(picked, final, SETTINGS, work, piece_cache=cache)
    assert [(p.label, p.reused) for p in result.pieces] == [
        ("a", True), ("b1", False), ("b1 -> c", False), ("c", True), ("d", True)]
    assert len(encodes) == 2  # the encoder ran for b's own frames and its crossfade into c only
    after = _pieces_on_disk(cache)
    kept = {name for name in before if after.get(name) == before[name]}
    assert len(kept) == 3 and len(after) == 5  # three files untouched; b0's two pieces forgotten
    assert assembly.reuse_summary(result.pieces) == \
        "reused 3 of 5 encoded piece(s) of the cut; encoded 2: b1, b1 -> c"

    # the same cut encoded from scratch: same frames, bit for bit, and the expected pictures
    full = tmp_path / "full.mp4"
    assemble(picked, full, SETTINGS, tmp_path / "work-full")
    total = segment_starts(picked)[1]
    reassembled, scratch = video.read_frames(final, SIZE, SIZE), video.read_frames(full, SIZE, SIZE)
    assert reassembled.shape[0] == scratch.shape[0] == total == probe.count_video_frames(final)
    assert np.array_equal(reassembled, scratch)
    centre = reassembled[:, 12:20, 12:20].reshape(total, -1, 3).mean(axis=1)
    assert np.abs(centre - _expected(picked, colours)).max() < 4  # yuv420p rounding only
    assert abs(probe.count_audio_samples(final) - total * SAMPLES_PER_FRAME) <= SAMPLES_PER_FRAME


def test_a_transition_change_encodes_the_pieces_around_it(tmp_path, takes, encodes):
    cache = tmp_path / "pieces"
    segments, colours = _cut(takes, ["a", "b0", "c", "d"])
    assemble(segments, tmp_path / "one.mp4", SETTINGS, tmp_path / "w", piece_cache=cache)
    encodes.clear()
    segments[2] = dataclasses.replace(segments[2], transition_frames=5)
    result = assemble(segments, tmp_path / "two.mp4", SETTINGS, tmp_path / "w", piece_cache=cache)
    assert [(p.label, p.reused) for p in result.pieces] == [
        ("a", True), ("b0", False), ("b0 -> c", False), ("c", False), ("d", True)]
    assert len(encodes) == 3
    total = segment_starts(segments)[1]
    decoded = video.read_frames(tmp_path / "two.mp4", SIZE, SIZE)
    assert decoded.shape[0] == total
    centre = decoded[:, 12:20, 12:20].reshape(total, -1, 3).mean(axis=1)
    assert np.abs(centre - _expected(segments, colours)).max() < 4


def test_removing_a_shot_reuses_every_remaining_piece(tmp_path, takes, encodes):
    """A piece's frames are timed from its own start: moved along the cut, it is the same file."""
    cache = tmp_path / "pieces"
    segments, _ = _cut(takes, ["a", "b0", "c", "d"])
    assemble(segments, tmp_path / "one.mp4", SETTINGS, tmp_path / "w", piece_cache=cache)
    encodes.clear()
    shorter = segments[1:]
    result = assemble(shorter, tmp_path / "two.mp4", SETTINGS, tmp_path / "w", piece_cache=cache)
    assert encodes == [] and all(p.reused for p in result.pieces)
    assert assembly.reuse_summary(result.pieces) == "reused 4 of 4 encoded piece(s) of the cut; encoded none"
    assert probe.count_video_frames(tmp_path / "two.mp4") == segment_starts(shorter)[1]
    assert len(list(cache.glob("*.mp4"))) == 4


def test_other_encoder_settings_are_other_pieces(tmp_path, takes, encodes):
    segments, _ = _cut(takes, ["a", "d"])
    cache = tmp_path / "pieces"
    assemble(segments, tmp_path / "one.mp4", SETTINGS, tmp_path / "w", piece_cache=cache)
    result = assemble(segments, tmp_path / "two.mp4", dataclasses.replace(SETTINGS, crf=23),
                      tmp_path / "w", piece_cache=cache)
    assert len(encodes) == 4 and not any(p.reused for p in result.pieces)


def test_the_encode_reports_frames_and_shots_as_it_goes(tmp_path, takes):
    """Encoded frames only count towards the frames to encode; reused pieces pass shots."""
    calls = []
    segments, _ = _cut(takes, ["a", "b0", "c", "d"])
    cache = tmp_path / "pieces"
    assemble(segments, tmp_path / "one.mp4", SETTINGS, tmp_path / "w", piece_cache=cache,
             on_progress=lambda *args: calls.append(args))
    total = segment_starts(segments)[1]
    assert calls[0] == (0, total, 0, 4) and calls[-1] == (total, total, 4, 4)
    assert all(a[0] <= b[0] and a[2] <= b[2] for a, b in zip(calls, calls[1:]))  # never backwards
    calls.clear()
    segments[1] = takes["b1"][0]
    assemble(segments, tmp_path / "two.mp4", SETTINGS, tmp_path / "w", piece_cache=cache,
             on_progress=lambda *args: calls.append(args))
    changed = 10 - 3 + 3  # b's own frames and the crossfade into c
    assert calls[0] == (0, changed, 0, 4) and calls[-1] == (changed, changed, 4, 4)
