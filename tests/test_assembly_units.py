"""The assembly's decisions without encoding anything: the timeline, the pieces and their keys,
the filter graphs and ffmpeg command lines, the programme audio sample by sample, the loudness
passes and the delivery correction, the cues, and what `assemble` hands each stage. ffmpeg is
replaced by recorders here (milliseconds per test, so the mutation run can afford them); the
delivered files themselves are measured in tests/test_assembly.py and tests/test_cut_reuse.py.

Expected values are worked out by hand: at 24 fps a frame is 1/24 s and, at 48 kHz, exactly
2000 samples."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from ovi_studio.media import audio, ffmpeg
from ovi_studio.render import assembly
from ovi_studio.render.assembly import (AssemblySettings, Piece, PieceOutcome, Segment, cut_pieces,
                                        piece_graph, segment_starts)

RATE = 48_000
FRAME = 2000  # samples of one 24 fps frame at 48 kHz
EXE = ["-hide_banner", "-nostdin", "-y"]  # what ffmpeg.command puts before the arguments
OUTPUT_FORMAT = ("format=gbrp,scale=out_color_matrix=bt709:out_range=tv,format=yuv420p,"
                 "setparams=color_primaries=bt709:color_trc=bt709[vout]")


def seg(name="s", frames=10, *, width=32, height=32, path: Path = Path("/nowhere"), **kw) -> Segment:
    return Segment(name, path / f"{name}.mkv", path / f"{name}.wav", width, height, frames, **kw)


def wav48(path: Path, samples) -> Path:
    audio.write_wav(path, np.asarray(samples, np.float32), RATE)
    return path


def args_of(cmd: list[str]) -> list[str]:
    """An ffmpeg.command list without the executable and the flags every command has."""
    assert cmd[1:4] == EXE
    return cmd[4:]


# -- the timeline ------------------------------------------------------------------------------

def test_a_segment_keeps_the_frames_between_its_trims():
    assert (seg(frames=121).stop, seg(frames=121).kept_frames) == (121, 121)
    trimmed = seg(frames=121, start_frame=1, end_frame=118)
    assert (trimmed.stop, trimmed.kept_frames) == (118, 117)
    assert seg(frames=121, end_frame=0).stop == 0  # an explicit end, even 0, is the end


def test_starts_overlap_by_each_crossfade_and_ignore_the_first_shots_transition():
    segs = [seg("a", 10, transition_frames=5), seg("b", 10, transition_frames=3),
            seg("c", 10, start_frame=1)]
    assert segment_starts(segs) == ([0, 7, 17], 26)


def test_a_crossfade_may_be_as_long_as_both_clips_but_not_longer():
    assert segment_starts([seg("a", 10), seg("b", 10, transition_frames=10)]) == ([0, 0], 10)
    with pytest.raises(ValueError, match=r"shot a: its crossfades in and out overlap \(the shot keeps 10 frames\)"):
        segment_starts([seg("a", 10), seg("b", 12, transition_frames=11)])  # longer than a
    with pytest.raises(ValueError, match="shot b: transition of 11 frames is longer than a clip"):
        segment_starts([seg("a", 12), seg("b", 10, transition_frames=11)])  # longer than b


def test_crossfades_in_and_out_of_one_shot_may_meet_but_not_overlap():
    assert segment_starts([seg("a", 10), seg("b", 6, transition_frames=3),
                           seg("c", 10, transition_frames=3)]) == ([0, 7, 10], 20)
    with pytest.raises(ValueError, match=r"shot b: its crossfades in and out overlap \(the shot keeps 6 frames\)"):
        segment_starts([seg("a", 10), seg("b", 6, transition_frames=3), seg("c", 10, transition_frames=4)])
    with pytest.raises(ValueError, match=r"shot a: its crossfades in and out overlap \(the shot keeps 4 frames\)"):
        segment_starts([seg("a", 4), seg("b", 10, transition_frames=5)])  # only a's fade out


def test_pieces_are_solo_runs_and_crossfades_in_cut_order():
    segs = [seg("a", 10, end_frame=9), seg("b", 10, transition_frames=3), seg("c", 10, start_frame=1)]
    pieces = cut_pieces(segs)
    assert [p.parts for p in pieces] == [((0, 0, 6),), ((0, 6, 9), (1, 0, 3)), ((1, 3, 10),), ((2, 1, 10),)]
    assert [p.frames for p in pieces] == [6, 3, 7, 9]  # 25 frames: 9 + 10 - 3 + 9


def test_a_shot_made_only_of_crossfades_has_no_solo_piece():
    segs = [seg("a", 10), seg("b", 6, transition_frames=3), seg("c", 10, transition_frames=3)]
    assert [p.parts for p in cut_pieces(segs)] == [((0, 0, 7),), ((0, 7, 10), (1, 0, 3)),
                                                   ((1, 3, 6), (2, 0, 3)), ((2, 3, 10),)]


def test_the_first_shots_transition_makes_no_crossfade_piece():
    assert [p.parts for p in cut_pieces([seg("a", 5, transition_frames=2)])] == [((0, 0, 5),)]


# -- the filter graphs and the encode command --------------------------------------------------

def test_a_solo_piece_is_trimmed_retimed_and_converted_once():
    graph = piece_graph([seg("a", 10)], Piece(((0, 2, 7),)), 32, 32)
    assert graph == ("[0:v]trim=start_frame=2:end_frame=7,settb=1/24,setpts=N,setsar=1[i0];"
                     "[i0]" + OUTPUT_FORMAT)


@pytest.mark.parametrize("width, height", [(48, 32), (32, 24)])
def test_a_shot_of_another_size_is_fitted_inside_the_cut_and_padded(width, height):
    graph = piece_graph([seg("a", 10, width=width, height=height)], Piece(((0, 0, 5),)), 32, 32)
    assert graph == ("[0:v]trim=start_frame=0:end_frame=5,settb=1/24,setpts=N,"
                     "scale=32:32:force_original_aspect_ratio=decrease,pad=32:32:(ow-iw)/2:(oh-ih)/2,"
                     "setsar=1[i0];[i0]" + OUTPUT_FORMAT)


def test_a_crossfade_piece_blends_its_two_inputs_over_its_length():
    segs = [seg("a", 10), seg("b", 10, transition_frames=3, width=48)]
    graph = piece_graph(segs, Piece(((0, 7, 10), (1, 0, 3))), 32, 32)
    assert graph == ("[0:v]trim=start_frame=7:end_frame=10,settb=1/24,setpts=N,setsar=1[i0];"
                     "[1:v]trim=start_frame=0:end_frame=3,settb=1/24,setpts=N,"
                     "scale=32:32:force_original_aspect_ratio=decrease,pad=32:32:(ow-iw)/2:(oh-ih)/2,"
                     "setsar=1[i1];"
                     "[i0][i1]xfade=transition=fade:duration=0.125000:offset=0,settb=1/24,setpts=N,"
                     + OUTPUT_FORMAT)  # 3 frames = 0.125 s


def test_the_piece_command_encodes_exactly_its_frames_from_its_inputs(tmp_path):
    segs = [seg("a", 10, path=tmp_path), seg("b", 10, path=tmp_path, transition_frames=3)]
    piece = Piece(((0, 7, 10), (1, 0, 3)))
    out = tmp_path / "piece.mp4"
    cmd = assembly._piece_command(segs, piece, 32, 32, AssemblySettings(crf=7, preset="veryfast"), out)
    assert args_of(cmd) == [
        "-i", str(tmp_path / "a.mkv"), "-i", str(tmp_path / "b.mkv"),
        "-filter_complex", piece_graph(segs, piece, 32, 32), "-map", "[vout]", "-frames:v", "3",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "7", "-pix_fmt", "yuv420p", "-r", "24",
        "-fps_mode", "cfr", "-an", "-f", "mp4", str(out)]


# -- piece keys --------------------------------------------------------------------------------

@pytest.fixture()
def frames_files(tmp_path, monkeypatch):
    monkeypatch.setattr(ffmpeg, "version", lambda: "ffmpeg version test-build")
    for name, content in (("a", b"frames of a"), ("b", b"frames of b")):
        (tmp_path / f"{name}.mkv").write_bytes(content)
    return tmp_path


def test_a_piece_key_is_the_hash_of_its_frames_use_size_and_encoder(frames_files):
    segs = [seg("a", 10, path=frames_files, width=48)]
    key = assembly.piece_key(segs, Piece(((0, 2, 7),)), 32, 24, AssemblySettings(crf=7, preset="medium"))
    frames_sha = hashlib.sha256(b"frames of a").hexdigest()
    canonical = ('{"crf": 7, "cut_size": [32, 24], "ffmpeg": "ffmpeg version test-build", "format": 1, '
                 '"parts": [{"frames_sha256": "' + frames_sha + '", "size": [48, 32], "start": 2, '
                 '"stop": 7}], "preset": "medium"}')
    assert key == hashlib.sha256(canonical.encode()).hexdigest()


def test_a_piece_key_follows_what_the_encoded_file_depends_on_and_nothing_else(frames_files, monkeypatch):
    a, b = seg("a", 10, path=frames_files), seg("b", 10, path=frames_files)
    settings = AssemblySettings()
    key = assembly.piece_key([a], Piece(((0, 2, 7),)), 32, 32, settings)
    same = [assembly.piece_key([b, a], Piece(((1, 2, 7),)), 32, 32, settings),  # moved in the cut
            assembly.piece_key([a], Piece(((0, 2, 7),)), 32, 32, AssemblySettings(loudness_lufs=None))]
    assert same == [key, key]
    other = [assembly.piece_key([b], Piece(((0, 2, 7),)), 32, 32, settings),  # other frames
             assembly.piece_key([a], Piece(((0, 3, 7),)), 32, 32, settings),
             assembly.piece_key([a], Piece(((0, 2, 8),)), 32, 32, settings),
             assembly.piece_key([a], Piece(((0, 2, 7),)), 48, 32, settings),
             assembly.piece_key([a], Piece(((0, 2, 7),)), 32, 48, settings),
             assembly.piece_key([seg("a", 10, path=frames_files, width=48)], Piece(((0, 2, 7),)), 32, 32, settings),
             assembly.piece_key([seg("a", 10, path=frames_files, height=48)], Piece(((0, 2, 7),)), 32, 32, settings),
             assembly.piece_key([a], Piece(((0, 2, 7),)), 32, 32, AssemblySettings(crf=19)),
             assembly.piece_key([a], Piece(((0, 2, 7),)), 32, 32, AssemblySettings(preset="fast")),
             assembly.piece_key([a, b], Piece(((0, 7, 10), (1, 0, 3))), 32, 32, settings)]
    monkeypatch.setattr(ffmpeg, "version", lambda: "ffmpeg version another-build")
    other.append(assembly.piece_key([a], Piece(((0, 2, 7),)), 32, 32, settings))
    assert len({key, *other}) == 1 + len(other)


# -- encoding the pieces -----------------------------------------------------------------------

@pytest.fixture()
def fake_encoder(monkeypatch):
    """ffmpeg.run_reporting replaced: writes the output file, reports the piece's frames."""
    encoded = []

    def run_reporting(args, on_frames):
        frames = int(args[args.index("-frames:v") + 1])
        Path(args[-1]).write_bytes(b"encoded")
        on_frames(frames)
        encoded.append(frames)
    monkeypatch.setattr(ffmpeg, "run_reporting", run_reporting)
    return encoded


def test_shots_pass_when_their_last_piece_is_done():
    segs = [seg("a", 10), seg("b", 10, transition_frames=3), seg("c", 10)]
    assert assembly._shots_passed(cut_pieces(segs)) == [0, 1, 2, 3]
    segs = [seg("a", 10), seg("b", 6, transition_frames=3), seg("c", 10, transition_frames=3)]
    assert assembly._shots_passed(cut_pieces(segs)) == [0, 1, 2, 3]
    segs = [seg("a", 10), seg("b", 10)]
    assert assembly._shots_passed(cut_pieces(segs)) == [1, 2]
    segs = [seg("a", 10), seg("b", 3, transition_frames=3)]  # b is all crossfade: both end there
    assert assembly._shots_passed(cut_pieces(segs)) == [0, 2]


def test_encode_pieces_reports_progress_and_reuses_the_pieces_already_there(frames_files, fake_encoder):
    (frames_files / "c.mkv").write_bytes(b"frames of c")
    segs = [seg("a", 10, path=frames_files), seg("b", 10, path=frames_files, transition_frames=3),
            seg("c", 10, path=frames_files)]
    folder = frames_files / "pieces"
    reports = []
    done = assembly.encode_pieces(segs, AssemblySettings(), folder, lambda *r: reports.append(r))
    assert fake_encoder == [7, 3, 7, 10]
    assert reports == [(0, 27, 0, 3), (7, 27, 0, 3), (7, 27, 0, 3), (10, 27, 0, 3), (10, 27, 1, 3),
                       (17, 27, 1, 3), (17, 27, 2, 3), (27, 27, 2, 3), (27, 27, 3, 3)]
    keys = [assembly.piece_key(segs, p, 32, 32, AssemblySettings()) for p in cut_pieces(segs)]
    assert done == [(folder / f"{keys[0]}.mp4", PieceOutcome(("a",), 7, keys[0], False)),
                    (folder / f"{keys[1]}.mp4", PieceOutcome(("a", "b"), 3, keys[1], False)),
                    (folder / f"{keys[2]}.mp4", PieceOutcome(("b",), 7, keys[2], False)),
                    (folder / f"{keys[3]}.mp4", PieceOutcome(("c",), 10, keys[3], False))]
    assert all(path.read_bytes() == b"encoded" for path, _ in done)

    (folder / f"{keys[2]}.mp4").unlink()
    reports.clear()
    again = assembly.encode_pieces(segs, AssemblySettings(), folder, lambda *r: reports.append(r))
    assert fake_encoder == [7, 3, 7, 10, 7]
    assert [outcome.reused for _, outcome in again] == [True, True, False, True]
    assert reports == [(0, 7, 0, 3), (0, 7, 0, 3), (0, 7, 1, 3), (7, 7, 1, 3), (7, 7, 2, 3), (7, 7, 3, 3)]
    assert assembly.encode_pieces(segs, AssemblySettings(), folder) == [
        (path, PieceOutcome(o.shots, o.frames, o.key, True)) for path, o in again]  # no listener


def test_the_cut_is_encoded_at_the_first_shots_size(frames_files, fake_encoder, monkeypatch):
    graphs = []
    monkeypatch.setattr(assembly, "piece_graph", lambda s, p, w, h: graphs.append((w, h)) or "graph")
    segs = [seg("a", 10, path=frames_files, width=48, height=24), seg("b", 10, path=frames_files)]
    assembly.encode_pieces(segs, AssemblySettings(), frames_files / "p")
    assert graphs == [(48, 24), (48, 24)]


# -- joining and cleaning up -------------------------------------------------------------------

def test_the_concat_list_names_every_piece_absolute_and_quoted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assembly._concat_list([Path("a.mp4"), tmp_path / "it's.mp4"], tmp_path / "list.ffconcat")
    assert (tmp_path / "list.ffconcat").read_text(encoding="utf-8") == (
        f"ffconcat version 1.0\nfile '{tmp_path}/a.mp4'\nfile '{tmp_path}/it'\\''s.mp4'\n")


@pytest.fixture()
def ffmpeg_runs(monkeypatch):
    """ffmpeg.run replaced by a recorder that writes the output file (the last argument)."""
    runs = []

    def run(args, **kw):
        runs.append(args)
        if args[-1] not in ("-", "pipe:1"):
            Path(args[-1]).write_bytes(b"made")
        return SimpleNamespace(stderr=b"", stdout=b"", returncode=0)
    monkeypatch.setattr(ffmpeg, "run", run)
    return runs


def test_mux_copies_the_pieces_with_audio_subtitles_chapters_and_tags(tmp_path, ffmpeg_runs):
    out = tmp_path / "final.mp4"
    pieces = [tmp_path / "p1.mp4", tmp_path / "p2.mp4"]
    assembly.mux(pieces, tmp_path / "a.m4a", out, tmp_path, srt=tmp_path / "f.srt",
                 chapters=tmp_path / "f.chapters.txt", tags={"title": "The Harbour", "engine": "preview"})
    args = args_of(ffmpeg_runs[0])
    assert args[:-1] == [
        "-f", "concat", "-safe", "0", "-i", str(tmp_path / "pieces.ffconcat"), "-i", str(tmp_path / "a.m4a"),
        "-i", str(tmp_path / "f.srt"), "-f", "ffmetadata", "-i", str(tmp_path / "f.chapters.txt"),
        "-map", "0:v", "-map", "1:a", "-map", "2:s", "-c:s", "mov_text",
        "-map_metadata", "3", "-map_chapters", "3", "-metadata", "title=The Harbour", "-metadata", "engine=preview",
        "-c:v", "copy", "-c:a", "copy", "-movflags", "+faststart+use_metadata_tags", "-f", "mp4"]
    assert out.read_bytes() == b"made" and not Path(args[-1]).exists()  # written beside, renamed
    assert (tmp_path / "pieces.ffconcat").read_text().splitlines()[1:] == [
        f"file '{tmp_path}/p1.mp4'", f"file '{tmp_path}/p2.mp4'"]


def test_mux_without_subtitles_reads_the_chapters_from_the_third_input(tmp_path, ffmpeg_runs):
    assembly.mux([tmp_path / "p.mp4"], tmp_path / "a.m4a", tmp_path / "f.mp4", tmp_path,
                 chapters=tmp_path / "c.txt")
    assert args_of(ffmpeg_runs[0])[8:-1] == [
        "-f", "ffmetadata", "-i", str(tmp_path / "c.txt"), "-map", "0:v", "-map", "1:a",
        "-map_metadata", "2", "-map_chapters", "2",
        "-c:v", "copy", "-c:a", "copy", "-movflags", "+faststart+use_metadata_tags", "-f", "mp4"]
    assembly.mux([tmp_path / "p.mp4"], tmp_path / "a.m4a", tmp_path / "f.mp4", tmp_path)
    assert args_of(ffmpeg_runs[1])[8:-1] == [
        "-map", "0:v", "-map", "1:a",
        "-c:v", "copy", "-c:a", "copy", "-movflags", "+faststart+use_metadata_tags", "-f", "mp4"]


def test_forget_other_pieces_keeps_only_the_cuts_own(tmp_path):
    for name in ("k1.mp4", "k2.mp4", "old.mp4", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assembly.forget_other_pieces(tmp_path, [PieceOutcome(("a",), 3, "k1", True),
                                            PieceOutcome(("b",), 3, "k2", False)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k1.mp4", "k2.mp4", "notes.txt"]


def _outcomes(reused: list[bool]) -> list[PieceOutcome]:
    return [PieceOutcome((f"s{i}", f"s{i + 1}") if i == 1 else (f"s{i}",), 5, f"k{i}", r)
            for i, r in enumerate(reused)]


def test_the_reuse_summary_names_what_was_encoded():
    assert assembly.reuse_summary(_outcomes([False, False])) == "encoded all 2 piece(s) of the cut"
    assert assembly.reuse_summary(_outcomes([True] * 3)) == \
        "reused 3 of 3 encoded piece(s) of the cut; encoded none"
    assert assembly.reuse_summary(_outcomes([True, False, True])) == \
        "reused 2 of 3 encoded piece(s) of the cut; encoded 1: s1 -> s2"
    assert assembly.reuse_summary(_outcomes([True] + [False] * 8)) == (
        "reused 1 of 9 encoded piece(s) of the cut; encoded 8: s1 -> s2, s2, s3, s4, s5, s6, s7, s8")
    assert assembly.reuse_summary(_outcomes([True] + [False] * 9)) == (
        "reused 1 of 10 encoded piece(s) of the cut; encoded 9: s1 -> s2, s2, s3, s4, s5, s6, s7, s8, ...")


# -- the programme audio -----------------------------------------------------------------------

def test_segment_audio_is_the_kept_frames_times_2000_samples(tmp_path):
    ramp = np.arange(5000, dtype=np.float32) / 8192  # exact in float32
    s = Segment("a", tmp_path / "a.mkv", wav48(tmp_path / "a.wav", ramp), 8, 8, 3, start_frame=1, end_frame=2)
    assert np.array_equal(assembly.segment_audio(s), ramp[2000:4000])
    s = Segment("a", tmp_path / "a.mkv", s.audio_path, 8, 8, 3, start_frame=2)  # padded to 3 frames
    assert np.array_equal(assembly.segment_audio(s), np.concatenate([ramp[4000:], np.zeros(1000, np.float32)]))
    longer = wav48(tmp_path / "b.wav", np.arange(7000, dtype=np.float32) / 8192)
    assert np.array_equal(assembly.segment_audio(Segment("b", tmp_path, longer, 8, 8, 3)),
                          np.arange(6000, dtype=np.float32) / 8192)  # trimmed to 3 frames


def test_segment_audio_resamples_ovis_16khz_to_48khz(tmp_path):
    t = np.arange(16000) / 16000
    wav = tmp_path / "a.wav"
    audio.write_wav(wav, (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    out = assembly.segment_audio(Segment("a", tmp_path, wav, 8, 8, 24))  # 1 s
    assert out.shape == (48000,)
    mid = out[12000:36000]  # the tone, at 48 kHz: 440 cycles a second, amplitude 0.5
    assert np.abs(mid).max() == pytest.approx(0.5, abs=0.01)
    assert np.count_nonzero(np.diff(np.signbit(mid).astype(np.int8))) == pytest.approx(440, abs=2)


def _programme(tmp_path, segments_audio, settings, kws=None):
    segs = [Segment(f"s{i}", tmp_path / f"s{i}.mkv", wav48(tmp_path / f"s{i}.wav", samples), 8, 8,
                    len(samples) // FRAME, **(kws or {}).get(i, {}))
            for i, samples in enumerate(segments_audio)]
    written = assembly.write_programme_audio(segs, settings, tmp_path / "programme.wav")
    samples, rate = audio.read_wav(tmp_path / "programme.wav")
    assert rate == RATE and written == len(samples)
    return samples


def test_the_programme_is_cut_and_crossfaded_sample_exactly(tmp_path):
    a, b = np.full(2 * FRAME, 0.5, np.float32), np.full(2 * FRAME, 0.25, np.float32)
    c = np.arange(2 * FRAME, dtype=np.float32) / 8192
    out = _programme(tmp_path, [a, b, c], AssemblySettings(declick_ms=0),
                     {1: {"transition_frames": 1}, 2: {"start_frame": 1}})
    assert out.shape == (4 * FRAME,)  # 2 + 2 - 1 + 1 frames
    assert np.array_equal(out[:FRAME], a[:FRAME])
    t = (np.arange(FRAME) + 0.5) / FRAME  # the overlap: a fades out as b fades in, equal power
    assert np.allclose(out[FRAME:2 * FRAME], 0.5 * np.cos(t * np.pi / 2) + 0.25 * np.sin(t * np.pi / 2), atol=1e-7)
    assert np.array_equal(out[2 * FRAME:3 * FRAME], b[FRAME:])
    assert np.array_equal(out[3 * FRAME:], c[FRAME:])


def test_the_first_shots_transition_crossfades_from_nothing(tmp_path):
    a = np.full(2 * FRAME, 0.5, np.float32)
    out = _programme(tmp_path, [a], AssemblySettings(declick_ms=0), {0: {"transition_frames": 1}})
    assert np.array_equal(out, a)


def test_cuts_get_de_click_ramps_and_crossfades_do_not(tmp_path):
    a, b = np.full(2 * FRAME, 0.5, np.float32), np.full(2 * FRAME, 0.25, np.float32)
    out = _programme(tmp_path, [a, b, a], AssemblySettings(declick_ms=20), {1: {"transition_frames": 1}})
    ramp = np.arange(960) / 960  # 20 ms at 48 kHz
    assert np.allclose(out[:960], 0.5 * ramp) and out[960] == 0.5  # the start fades in
    assert out[FRAME - 1] == 0.5  # a's end is under the crossfade: no ramp
    t = (np.arange(FRAME) + 0.5) / FRAME
    assert np.allclose(out[FRAME:2 * FRAME], 0.5 * np.cos(t * np.pi / 2) + 0.25 * np.sin(t * np.pi / 2), atol=1e-7)
    assert np.allclose(out[3 * FRAME - 960:3 * FRAME], 0.25 * ramp[::-1])  # b's cut to the next shot
    assert out[3 * FRAME - 961] == 0.25
    assert np.allclose(out[3 * FRAME:3 * FRAME + 960], 0.5 * ramp) and out[3 * FRAME + 960] == 0.5
    assert np.allclose(out[-960:], 0.5 * ramp[::-1])
    assert len(out) == 5 * FRAME


def test_the_default_de_click_is_5_ms(tmp_path):
    out = _programme(tmp_path, [np.full(FRAME, 0.5, np.float32)], AssemblySettings())
    assert np.allclose(out[:240], 0.5 * np.arange(240) / 240) and out[240] == 0.5  # 5 ms = 240 samples
    assert np.allclose(out[-240:], 0.5 * np.arange(240)[::-1] / 240) and out[-241] == 0.5


def test_a_long_programme_reports_its_progress(tmp_path, capsys):
    _programme(tmp_path, [np.zeros(FRAME, np.float32)] * 200, AssemblySettings())
    assert "assembly: programme audio: 200/200 shots" in capsys.readouterr().err


# -- loudness ----------------------------------------------------------------------------------

MEASURED = ('[Parsed_loudnorm_0 @ 0x1] \n{\n "input_i" : "-30.12",\n "input_tp" : "-10.50",\n'
            ' "input_lra" : "3.20",\n "input_thresh" : "-40.50",\n "target_offset" : "0.30"\n}\n')
OUTPUT = ('[Parsed_loudnorm_0 @ 0x2] \n{\n "input_i" : "-30.12",\n "output_i" : "-16.20",\n'
          ' "output_tp" : "-1.60",\n "normalization_type" : "linear"\n}\n')


def test_the_loudnorm_filters_of_both_passes():
    settings = AssemblySettings(loudness_lufs=-23.0, true_peak_db=-2.0, loudness_range=7.0)
    assert assembly._loudnorm_filter(settings, None) == \
        "loudnorm=I=-23.0:TP=-2.0:LRA=7.0:dual_mono=true:print_format=json"
    assert assembly._loudnorm_filter(settings, json.loads(MEASURED[MEASURED.index("{"):])) == (
        "loudnorm=I=-23.0:TP=-2.0:LRA=7.0:dual_mono=true:print_format=json:measured_I=-30.12:"
        "measured_TP=-10.50:measured_LRA=3.20:measured_thresh=-40.50:offset=0.30:linear=true")


def test_loudnorm_measurements_are_read_from_the_last_json_block():
    assert assembly._loudnorm_json("x {\"a\": \"1\"} y\n" + OUTPUT)["output_i"] == "-16.20"
    with pytest.raises(ValueError, match="^loudnorm printed no measurement$"):
        assembly._loudnorm_json("no braces here")


def _stderr_runs(monkeypatch, *stderrs: str) -> list:
    runs, replies = [], iter(stderrs)

    def run(args, **kw):
        runs.append(args)
        # ffmpeg's log may hold bytes that are not UTF-8 (a file name, a tag): read past them
        return SimpleNamespace(stderr=b"[in#0] \xff.wav\n" + next(replies).encode(), stdout=b"", returncode=0)
    monkeypatch.setattr(ffmpeg, "run", run)
    return runs


def test_normalisation_measures_then_applies_the_measurement_exactly_as_long(tmp_path, monkeypatch):
    runs = _stderr_runs(monkeypatch, MEASURED, OUTPUT)
    programme, out = tmp_path / "p.wav", tmp_path / "n.wav"
    result = assembly.normalize_loudness(programme, 96_000, AssemblySettings(), out)
    assert args_of(runs[0]) == ["-i", str(programme), "-af",
                                "loudnorm=I=-16.0:TP=-1.5:LRA=11.0:dual_mono=true:print_format=json",
                                "-f", "null", "-"]
    assert args_of(runs[1]) == [
        "-i", str(programme), "-af",
        "loudnorm=I=-16.0:TP=-1.5:LRA=11.0:dual_mono=true:print_format=json:measured_I=-30.12:"
        "measured_TP=-10.50:measured_LRA=3.20:measured_thresh=-40.50:offset=0.30:linear=true,"
        "aresample=48000,apad=whole_len=96000,atrim=end_sample=96000",
        "-c:a", "pcm_f32le", "-f", "wav", str(out)]
    assert result == {"target_i": -16.0, "input_i": -30.12, "output_i": -16.2, "output_tp": -1.6,
                      "normalization_type": "linear"}
    _stderr_runs(monkeypatch, MEASURED, OUTPUT.replace(' "normalization_type" : "linear"\n', ' "x": "1"\n'))
    assert assembly.normalize_loudness(programme, 96_000, AssemblySettings(), out)["normalization_type"] is None


@pytest.mark.parametrize("input_i", ["-inf", "nan", "-70.01", "-99.00"])
def test_a_silent_programme_is_not_normalised(tmp_path, monkeypatch, input_i):
    runs = _stderr_runs(monkeypatch, MEASURED.replace("-30.12", input_i))
    result = assembly.normalize_loudness(tmp_path / "p.wav", 2000, AssemblySettings(), tmp_path / "n.wav")
    assert result == {"skipped": "silent programme", "input_i": input_i} and len(runs) == 1


def test_a_programme_at_the_gate_is_normalised(tmp_path, monkeypatch):
    runs = _stderr_runs(monkeypatch, MEASURED.replace("-30.12", "-70.00"), OUTPUT)
    assert assembly.normalize_loudness(tmp_path / "p.wav", 2000, AssemblySettings(),
                                       tmp_path / "n.wav")["input_i"] == -70.0
    assert len(runs) == 2


def test_the_delivered_track_is_stereo_aac_at_48khz(tmp_path, ffmpeg_runs):
    out = tmp_path / "a.m4a"
    assembly.encode_audio(tmp_path / "p.wav", out, AssemblySettings(audio_bitrate="96k"))
    args = args_of(ffmpeg_runs[0])
    assert args[:-1] == ["-i", str(tmp_path / "p.wav"), "-ac", "2", "-c:a", "aac", "-b:a", "96k",
                         "-ar", "48000", "-f", "mp4"]
    assert out.read_bytes() == b"made" and args[-1] != str(out)  # written beside, renamed
    assembly.encode_audio(tmp_path / "p.wav", out, AssemblySettings(), gain_db=-1.25)
    assert args_of(ffmpeg_runs[1])[:12] == ["-i", str(tmp_path / "p.wav"), "-af", "volume=-1.250000dB",
                                            "-ac", "2", "-c:a", "aac", "-b:a", "192k", "-ar", "48000"]


@pytest.fixture()
def meter(monkeypatch):
    """encode_audio and the meter replaced: the gains encoded, and readings given in turn."""
    gains, readings = [], []
    monkeypatch.setattr(assembly, "encode_audio", lambda programme, out, settings, gain_db=0.0: gains.append(gain_db))
    monkeypatch.setattr(audio, "measure_loudness", lambda path: readings.pop(0))
    return gains, readings


def _reading(lufs, tp=-6.0):
    return {"integrated_lufs": lufs, "true_peak_dbtp": tp, "loudness_range_lu": 4.0}


def test_delivery_without_a_target_is_encoded_once_and_not_measured(tmp_path, meter):
    gains, _ = meter
    assert assembly.deliver_audio(tmp_path / "p", tmp_path / "a", AssemblySettings(loudness_lufs=None)) is None
    assert gains == [0.0]


@pytest.mark.parametrize("lufs", [-16.25, -15.75, -70.0, -75.0, float("-inf")])
def test_delivery_within_tolerance_or_silent_is_not_corrected(tmp_path, meter, lufs):
    gains, readings = meter
    readings.append(_reading(lufs))
    assert assembly.deliver_audio(tmp_path / "p", tmp_path / "a", AssemblySettings()) == _reading(lufs)
    assert gains == [0.0]


@pytest.mark.parametrize("lufs, tp, gain, recorded", [
    (-18.0, -6.0, 2.0, 2.0), (-14.0, -2.0, -2.0, -2.0), (-20.0, -2.0, 0.8, 0.8), (-18.12345, -6.0, 2.12345, 2.123)])
def test_delivery_off_target_is_corrected_once_under_the_peak_limit(tmp_path, meter, lufs, tp, gain, recorded):
    gains, readings = meter
    readings += [_reading(lufs, tp), _reading(-16.1, -2.5)]
    assert assembly.deliver_audio(tmp_path / "p", tmp_path / "a", AssemblySettings()) == \
        {**_reading(-16.1, -2.5), "corrected_by_db": recorded}  # in thousandths of a dB
    assert gains[0] == 0.0 and gains[1] == pytest.approx(gain) and len(gains) == 2  # -1.2 dBTP ceiling


# -- cues and sidecars -------------------------------------------------------------------------

def test_cues_are_timed_from_each_takes_frame_0_and_kept_to_the_shots_own_stretch():
    segs = [seg("a", 48, dialogue=(("Anna", "one two three four five"),)),
            seg("b", 48, transition_frames=12, dialogue=((None, "Go now"),)),
            seg("c", 48, start_frame=1, dialogue=((None, "Hello there friend"),))]
    starts, total = segment_starts(segs)
    assert (starts, total) == ([0, 36, 84], 131)
    cues = assembly.timeline_cues(segs, starts, total)
    # a speaks 0.2-1.8 s (5 words at 2.5 a second, after a 0.2 s lead), cut where b starts (1.5 s);
    # b's take starts at 1.5 s and speaks 0.2-1.0 s into it, shown from the crossfade's end (2.0 s);
    # c's frame 0 is a seam frame dropped: its take starts at 83/24 s and speaks 0.2-1.4 s into it
    assert [(round(c.start, 4), round(c.end, 4), c.text) for c in cues] == [
        (0.2, 1.5, "Anna: one two three four five"), (2.0, 2.5, "Go now"),
        (round(83 / 24 + 0.2, 4), round(83 / 24 + 1.4, 4), "Hello there friend")]


def test_the_last_but_one_shots_cues_end_where_the_last_crossfades_in():
    segs = [seg("a", 48, dialogue=(("Anna", "one two three four five"),)), seg("b", 48, transition_frames=12)]
    cues = assembly.timeline_cues(segs, [0, 36], 84)
    assert [(round(c.start, 4), round(c.end, 4)) for c in cues] == [(0.2, 1.5)]


def test_a_short_shots_speech_fills_it_without_margins():
    segs = [seg("a", 12, dialogue=((None, "one two three four five"),)), seg("b", 48)]
    # 0.5 s is too short for 0.2 s margins: the line, compressed to fit, fills the shot
    assert [(c.start, c.end) for c in assembly.timeline_cues(segs, [0, 12], 60)] == [(0.0, 0.5)]


def test_sidecars_sit_beside_the_cut():
    assert assembly.sidecar(Path("/o/cut.v2.mp4"), ".srt") == Path("/o/cut.v2.srt")


def test_assembly_result_duration():
    assert assembly.AssemblyResult(Path("f"), 36, 72000, [0]).duration_s == 1.5


# -- assemble: what each stage is handed ---------------------------------------------------------

@pytest.fixture()
def stages(monkeypatch):
    """The ffmpeg stages of `assemble` replaced by recorders."""
    calls = {}

    def normalize(programme, samples, settings, out):
        calls["normalize"] = (programme, samples, out)
        return dict(calls.get("normalized", {"input_i": -30.0, "output_i": -16.0}))

    def deliver(programme, out, settings):
        calls["deliver"] = (programme, out)
        return {"integrated_lufs": -16.1, "true_peak_dbtp": -2.0} if settings.loudness_lufs is not None else None

    def encode(segments, settings, folder, on_progress):
        calls["encode"] = (folder, on_progress)
        return [(folder / f"k{i}.mp4", PieceOutcome((s.shot_id,), s.kept_frames, f"k{i}", False))
                for i, s in enumerate(segments)]

    monkeypatch.setattr(assembly, "normalize_loudness", normalize)
    monkeypatch.setattr(assembly, "deliver_audio", deliver)
    monkeypatch.setattr(assembly, "encode_pieces", encode)
    monkeypatch.setattr(assembly, "mux", lambda *a, **kw: calls.__setitem__("mux", (a, kw)))
    monkeypatch.setattr(assembly, "forget_other_pieces", lambda folder, kept: calls.__setitem__("forget", (folder, kept)))
    return calls


def _shots(tmp_path):
    return [Segment("a", tmp_path / "a.mkv", wav48(tmp_path / "a.wav", np.full(48 * FRAME, 0.1)), 8, 8, 48,
                    dialogue=(("Anna", "one two three"),), title="Opening"),
            Segment("b", tmp_path / "b.mkv", wav48(tmp_path / "b.wav", np.full(24 * FRAME, 0.1)), 8, 8, 24,
                    transition_frames=12)]


def test_assemble_hands_each_stage_its_files_and_writes_the_sidecars(tmp_path, stages):
    final, work, cache = tmp_path / "out" / "final.mp4", tmp_path / "work", tmp_path / "cache"
    listener = object()
    result = assembly.assemble(_shots(tmp_path), final, AssemblySettings(), work, tags={"t": "v"},
                               piece_cache=cache, on_progress=listener)
    assert (result.final, result.frames, result.audio_samples, result.segment_starts) == (final, 60, 120_000, [0, 36])
    assert stages["normalize"] == (work / "programme.wav", 120_000, work / "programme-normalised.wav")
    assert len(audio.read_wav(work / "programme.wav")[0]) == 120_000  # 60 frames x 2000
    assert stages["deliver"] == (work / "programme-normalised.wav", work / "programme.m4a")
    assert result.loudness == {"target_i": -16.0, "true_peak_limit": -1.0,
                               "normaliser": {"input_i": -30.0, "output_i": -16.0},
                               "integrated_lufs": -16.1, "true_peak_dbtp": -2.0}
    assert stages["encode"] == (cache, listener)
    srt, vtt, chapters = (tmp_path / "out" / name for name in ("final.srt", "final.vtt", "final.chapters.txt"))
    assert (result.srt, result.vtt, result.chapters) == (srt, vtt, chapters)
    assert srt.read_text() == "1\n00:00:00,200 --> 00:00:01,400\nAnna: one two three\n"
    assert vtt.read_text() == "WEBVTT\n\n00:00:00.200 --> 00:00:01.400\nAnna: one two three\n"
    assert [(c.start, c.end, c.text) for c in result.cues] == [(0.2, pytest.approx(1.4), "Anna: one two three")]
    assert chapters.read_text() == (";FFMETADATA1\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=1500\ntitle=Opening\n"
                                    "[CHAPTER]\nTIMEBASE=1/1000\nSTART=1500\nEND=2500\ntitle=b\n")
    args, kw = stages["mux"]
    assert args == ([cache / "k0.mp4", cache / "k1.mp4"], work / "programme.m4a", final, work)
    assert kw == {"srt": srt, "chapters": chapters, "tags": {"t": "v"}}
    assert stages["forget"] == (cache, result.pieces) and [p.key for p in result.pieces] == ["k0", "k1"]


def test_assemble_without_loudness_subtitles_chapters_or_cache(tmp_path, stages):
    work = tmp_path / "not" / "yet" / "work"  # made, with its parents
    result = assembly.assemble(_shots(tmp_path), tmp_path / "f.mp4", AssemblySettings(
        loudness_lufs=None, subtitles=False, chapters=False), work)
    assert "normalize" not in stages and result.loudness is None
    assert stages["deliver"] == (work / "programme.wav", work / "programme.m4a")
    assert (result.srt, result.vtt, result.chapters, result.cues) == (None, None, None, [])
    assert stages["encode"] == (work / "pieces", None)
    assert stages["mux"][1] == {"srt": None, "chapters": None, "tags": None}
    assert "forget" not in stages and not (tmp_path / "f.srt").exists()


def test_a_cut_without_speech_has_no_subtitle_track(tmp_path, stages):
    shots = [Segment("a", tmp_path / "a.mkv", wav48(tmp_path / "a.wav", np.zeros(FRAME)), 8, 8, 1)]
    result = assembly.assemble(shots, tmp_path / "f.mp4", AssemblySettings(), tmp_path / "w")
    assert result.srt.read_text() == "" and stages["mux"][1]["srt"] is None


def test_a_silent_programme_is_delivered_unnormalised_and_says_so(tmp_path, stages):
    stages["normalized"] = {"skipped": "silent programme", "input_i": "-inf"}
    result = assembly.assemble(_shots(tmp_path), tmp_path / "f.mp4", AssemblySettings(), tmp_path / "w")
    assert stages["deliver"][0] == tmp_path / "w" / "programme.wav"
    assert result.loudness == {"target_i": -16.0, "true_peak_limit": -1.0,
                               "normaliser": {"skipped": "silent programme", "input_i": "-inf"},
                               "integrated_lufs": -16.1, "true_peak_dbtp": -2.0, "skipped": "silent programme"}


def test_nothing_to_assemble(tmp_path):
    with pytest.raises(ValueError, match="^nothing to assemble$"):
        assembly.assemble([], tmp_path / "f.mp4", AssemblySettings(), tmp_path)
