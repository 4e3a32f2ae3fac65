"""The cut's decisions without encoding: its encode settings (the storyboard's `output:` under
the render's overrides), its segments (each shot's chosen take, trimmed at a chain's seams,
crossfaded where asked), its mp4 tags, its key, whether it is assembled again, and the
report.json object it writes. `assemble` is a recorder here; tests/test_only_and_cut.py and
tests/test_cut_reuse.py make real cuts."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from ovi_studio.render import cut as cut_module
from ovi_studio.render.assembly import AssemblyResult, AssemblySettings, PieceOutcome, Segment
from ovi_studio.render.cut import Cut, assemble_cut, assembly_key, final_json, reassembly_note
from ovi_studio.render.subtitles import Cue
from ovi_studio.storyboard import load_storyboard
from ovi_studio.store import take_dir

STORY = """\
version: 1
model: 720x720_5s
{title}
{output}
shots:
  - id: a
    prompt: "Anna waves. <S>Hello there.<E> Audio: gulls."
  - id: b
    extends: a
    prompt: "Anna walks on. Audio: gulls."
  - id: c
    prompt: "A boat. <S>All aboard!<E> <S>Mind the gap.<E> Audio: horn."
    transition: crossfade
    transition_frames: 6
  - id: d
    extends: b
    prompt: "Anna boards. Audio: horn."
    transition: crossfade
"""


def loaded_story(tmp_path, title="title: Harbour", output=""):
    path = tmp_path / "harbour.yaml"
    path.write_text(STORY.format(title=title, output=output), encoding="utf-8")
    return load_storyboard(path)


def commit(out: Path, shot: str, take: int, *, width=64, height=48, frames=121, parent_index=None,
           frames_sha="f" * 64, audio_sha="a" * 64) -> Path:
    """A take's meta.json as a render commits it (only what the cut reads)."""
    folder = take_dir(out, shot, take)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"cache_key": f"key-{shot}-{take}", "shot": shot, "take": take, "seed": 1,
            "files": {"frames": {"path": "frames.mkv", "bytes": 1, "sha256": frames_sha},
                      "audio": {"path": "audio.wav", "bytes": 1, "sha256": audio_sha}},
            "size": {"width": width, "height": height, "frames": frames},
            "parent": None if parent_index is None else {"index": parent_index}}
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


# -- settings, names, tags ---------------------------------------------------------------------

def test_the_cut_settings_are_the_storyboards_output_under_the_renders_overrides(tmp_path):
    loaded = loaded_story(tmp_path, output="output: {loudness: -23, subtitles: false, chapters: false}")
    assert Cut(loaded, tmp_path, {}, "ovi").settings() == AssemblySettings(
        loudness_lufs=-23.0, subtitles=False, chapters=False, crf=18, preset="slow")
    assert Cut(loaded, tmp_path, {"loudness": -14, "subtitles": True, "chapters": True, "crf": "22",
                                  "preset": "medium"}, "preview").settings() == AssemblySettings(
        loudness_lufs=-14.0, subtitles=True, chapters=True, crf=22, preset="medium")
    plain = loaded_story(tmp_path)
    assert Cut(plain, tmp_path, {}, "preview").settings() == AssemblySettings(
        loudness_lufs=-16.0, subtitles=True, chapters=True, crf=18, preset="ultrafast")  # an animatic: fast
    for off in ("off", None, False):
        assert Cut(plain, tmp_path, {"loudness": off}, "ovi").settings().loudness_lufs is None
    assert Cut(loaded_story(tmp_path, output="output: {loudness: 'off'}"), tmp_path, {}, "ovi").settings().loudness_lufs is None
    assert isinstance(Cut(plain, tmp_path, {"loudness": -20}, "ovi").settings().loudness_lufs, float)


def test_the_final_name_is_the_override_then_the_storyboards_then_final_mp4(tmp_path):
    assert Cut(loaded_story(tmp_path), tmp_path / "o", {}, "ovi").final_path() == tmp_path / "o" / "final.mp4"
    named = loaded_story(tmp_path, output="output: {final: cuts/harbour.mp4}")
    assert Cut(named, tmp_path / "o", {}, "ovi").final_path() == tmp_path / "o" / "cuts" / "harbour.mp4"
    assert Cut(named, tmp_path / "o", {"final": "v2.mp4"}, "ovi").final_path() == tmp_path / "o" / "v2.mp4"


def test_the_tags_say_what_made_the_cut(tmp_path):
    loaded = loaded_story(tmp_path)
    assert Cut(loaded, tmp_path, {}, "ovi").tags({"a": 0, "b": 2}, "k123") == {
        "storyboard": str(tmp_path / "harbour.yaml"), "title": "Harbour", "engine": "ovi",
        "takes": "a:0,b:2", "cache_key": "k123"}
    untitled = loaded_story(tmp_path, title="")
    assert Cut(untitled, tmp_path, {}, "preview").tags({}, "k")["title"] == "harbour"  # the file's stem


# -- segments ----------------------------------------------------------------------------------

CHOSEN = {"a": 0, "b": 1, "c": 0, "d": 2}


def test_segments_trim_seams_end_where_the_next_shot_continues_and_crossfade_where_asked(tmp_path):
    out = tmp_path / "out"
    commit(out, "a", 0)
    commit(out, "b", 1, parent_index=117, width=80, height=40, frames=241)
    commit(out, "c", 0)
    commit(out, "d", 2, parent_index=200)
    segments, missing = Cut(loaded_story(tmp_path), out, {}, "ovi").segments(CHOSEN, lambda shot, take: True)
    assert missing == []
    a, b, c, d = (take_dir(out, s, t) for s, t in CHOSEN.items())
    assert segments == [
        Segment("a", a / "frames.mkv", a / "audio.wav", 64, 48, 121, 0, 118, 0, ((None, "Hello there."),), "a"),
        Segment("b", b / "frames.mkv", b / "audio.wav", 80, 40, 241, 1, None, 0, (), "b"),
        Segment("c", c / "frames.mkv", c / "audio.wav", 64, 48, 121, 0, None, 6,
                ((None, "All aboard!"), (None, "Mind the gap.")), "c"),
        Segment("d", d / "frames.mkv", d / "audio.wav", 64, 48, 121, 0, None, 12, (), "d")]  # b is not just before


def _two_shots(tmp_path, shots: str):
    path = tmp_path / "two.yaml"
    path.write_text("version: 1\nmodel: 720x720_5s\ncharacters:\n  anna: {name: Anna, look: a woman}\n"
                    "shots:\n" + shots, encoding="utf-8")
    return load_storyboard(path)


def test_a_chain_of_two_shots_in_cut_order(tmp_path):
    loaded = _two_shots(tmp_path, "  - id: a\n    scene: '{anna} waves.'\n    dialogue: [{speaker: anna, line: Hello.}]\n"
                                  "  - id: b\n    extends: a\n    prompt: 'She goes. Audio: steps.'\n"
                                  "    transition: crossfade\n")
    out = tmp_path / "out"
    commit(out, "a", 0)
    commit(out, "b", 0, parent_index=100)
    a, b = Cut(loaded, out, {}, "ovi").segments({"a": 0, "b": 0}, lambda s, t: True)[0]
    assert (a.start_frame, a.end_frame, a.transition_frames, a.dialogue) == (0, 101, 0, (("Anna", "Hello."),))
    assert (b.start_frame, b.end_frame, b.transition_frames) == (1, None, 12)  # a crossfade of 0.5 s


def test_an_extension_listed_before_its_parent_keeps_its_first_frame(tmp_path):
    loaded = _two_shots(tmp_path, "  - id: tail\n    extends: head\n    prompt: 'She goes. Audio: steps.'\n"
                                  "  - id: head\n    prompt: 'She waves. Audio: gulls.'\n")
    out = tmp_path / "out"
    commit(out, "tail", 0, parent_index=100)
    commit(out, "head", 0)
    tail, head = Cut(loaded, out, {}, "ovi").segments({"tail": 0, "head": 0}, lambda s, t: True)[0]
    assert (tail.shot_id, tail.start_frame, tail.end_frame) == ("tail", 0, None)  # head does not play before it
    assert (head.start_frame, head.end_frame) == (0, None)


def test_the_first_shots_crossfade_is_no_crossfade(tmp_path):
    out = tmp_path / "out"
    path = tmp_path / "one.yaml"
    path.write_text("version: 1\nmodel: 720x720_5s\nshots:\n  - id: a\n    prompt: 'Sea. Audio: waves.'\n"
                    "    transition: crossfade\n", encoding="utf-8")
    commit(out, "a", 0)
    segments, _ = Cut(load_storyboard(path), out, {}, "ovi").segments({"a": 0}, lambda s, t: True)
    assert segments[0].transition_frames == 0


def test_segments_name_the_shots_without_a_usable_take(tmp_path):
    out = tmp_path / "out"
    for shot, take in CHOSEN.items():
        commit(out, shot, take, parent_index=100 if shot in "bd" else None)
    cut = Cut(loaded_story(tmp_path), out, {}, "ovi")
    assert cut.segments(CHOSEN, lambda shot, take: (shot, take) != ("c", 0)) == ([], ["c"])
    (take_dir(out, "a", 0) / "meta.json").unlink()
    assert cut.segments(CHOSEN, lambda shot, take: shot != "d") == ([], ["a", "d"])


# -- the key, the note, the report object ------------------------------------------------------

def _segment(out: Path, shot="a", take=0, **kw) -> Segment:
    folder = take_dir(out, shot, take)
    return Segment(shot, folder / "frames.mkv", folder / "audio.wav", 64, 48, 121, **kw)


def test_the_cut_key_is_the_hash_of_version_settings_name_and_segments_with_their_files(tmp_path):
    out = tmp_path / "out"
    commit(out, "a", 0, frames_sha="1" * 64, audio_sha="2" * 64)
    seg = _segment(out, dialogue=(("Anna", "Hi."),), title="Opening")
    folder = take_dir(out, "a", 0)
    canonical = json.dumps({
        "final": "final.mp4", "version": 3,
        "settings": {"audio_bitrate": "192k", "chapters": True, "crf": 18, "declick_ms": 5.0,
                     "loudness_lufs": -16.0, "loudness_range": 11.0, "preset": "slow", "subtitles": True,
                     "true_peak_db": -1.5},
        "segments": [{"audio_path": str(folder / "audio.wav"), "audio_sha256": "2" * 64,
                      "dialogue": [["Anna", "Hi."]], "end_frame": None, "frames_path": str(folder / "frames.mkv"),
                      "frames_sha256": "1" * 64, "height": 48, "shot_id": "a", "start_frame": 0,
                      "title": "Opening", "total_frames": 121, "transition_frames": 0, "width": 64}]},
        sort_keys=True)
    assert assembly_key([seg], AssemblySettings(), tmp_path / "final.mp4") == hashlib.sha256(canonical.encode()).hexdigest()


def test_the_cut_key_follows_the_takes_files_and_a_take_without_meta_has_none(tmp_path):
    out = tmp_path / "out"
    seg = _segment(out)
    assert cut_module._file_hashes(seg) == {"frames_sha256": None, "audio_sha256": None}
    commit(out, "a", 0)
    assert cut_module._file_hashes(seg) == {"frames_sha256": "f" * 64, "audio_sha256": "a" * 64}
    before = assembly_key([seg], AssemblySettings(), Path("final.mp4"))
    commit(out, "a", 0, audio_sha="b" * 64)
    after = assembly_key([seg], AssemblySettings(), Path("final.mp4"))
    assert before != after
    assert assembly_key([seg], AssemblySettings(), Path("other.mp4")) != after
    assert assembly_key([seg], AssemblySettings(crf=20), Path("final.mp4")) != after


def _timeline(out, shot, take, start=0, end=121, transition=0):
    return {"shot": shot, "take_dir": take_dir(out, shot, take).relative_to(out).as_posix(),
            "start_frame": start, "end_frame": end, "transition_frames": transition}


def test_the_reassembly_note_names_the_shots_that_changed(tmp_path):
    out = tmp_path / "out"
    segs = [_segment(out, "a"), _segment(out, "b", 1, start_frame=1), _segment(out, "c", transition_frames=6)]
    same = [_timeline(out, "a", 0), _timeline(out, "b", 1, start=1), _timeline(out, "c", 0, transition=6)]
    assert reassembly_note(None, segs, out) == "" and reassembly_note([], segs, out) == ""
    assert reassembly_note(same, segs, out) == " (the settings or the takes' files changed)"
    changed = [_timeline(out, "a", 1), _timeline(out, "b", 1), _timeline(out, "c", 0, transition=6, end=120)]
    assert reassembly_note(changed, segs, out) == " (3 shot(s) changed (a, b, c))"
    many = [_segment(out, f"s{i}") for i in range(6)]
    assert reassembly_note([_timeline(out, "s0", 0)], many, out) == " (5 shot(s) changed (s1, s2, s3, s4, s5))"
    assert reassembly_note([_timeline(out, "x", 0)], many, out) == " (6 shot(s) changed (s0, s1, s2, s3, s4, …))"


def _result(out: Path) -> AssemblyResult:
    out.mkdir(parents=True, exist_ok=True)
    final = out / "final.mp4"
    final.write_bytes(b"12345")
    return AssemblyResult(final, 233, 466000, [0, 118], cues=[Cue(0.2, 1.0, "Hi")], srt=out / "final.srt",
                          vtt=out / "final.vtt", chapters=out / "final.chapters.txt", loudness={"integrated_lufs": -16.0},
                          pieces=[PieceOutcome(("a",), 112, "k1", True), PieceOutcome(("a", "b"), 6, "k2", False)])


def test_the_report_object_of_a_cut(tmp_path):
    out = tmp_path / "out"
    segs = [_segment(out, "a", dialogue=(("Anna", "Hi."),)), _segment(out, "b", 1, start_frame=1, end_frame=119,
                                                                       transition_frames=6)]
    assert final_json(_result(out), out, "key1", 12.3456, segs) == {
        "status": "done", "path": "final.mp4", "srt": "final.srt", "vtt": "final.vtt",
        "chapters": "final.chapters.txt",
        "frames": 233, "duration_s": 9.7083, "audio_samples_48k": 466000, "segment_starts": [0, 118],
        "loudness": {"integrated_lufs": -16.0}, "bytes": 5, "key": "key1", "seconds": 12.35,
        "segments": [
            {"shot": "a", "take_dir": "shots/a/take0", "frames": 121, "start_frame": 0, "end_frame": 121,
             "transition_frames": 0, "cut_start": 0, "dialogue": [["Anna", "Hi."]]},
            {"shot": "b", "take_dir": "shots/b/take1", "frames": 121, "start_frame": 1, "end_frame": 119,
             "transition_frames": 6, "cut_start": 118, "dialogue": []}],
        "pieces": [{"shots": ["a"], "frames": 112, "reused": True}, {"shots": ["a", "b"], "frames": 6, "reused": False}]}
    bare = dataclasses.replace(_result(out), srt=None, vtt=None, chapters=None)  # no speech, no chapters
    assert [final_json(bare, out, "key1", 1.0, segs)[k] for k in ("srt", "vtt", "chapters")] == [None, None, None]


# -- assemble_cut ------------------------------------------------------------------------------

@pytest.fixture()
def assembler(monkeypatch):
    calls = []

    def assemble(segments, final, settings, work, tags, piece_cache=None, on_progress=None):
        calls.append(dict(segments=segments, final=final, settings=settings, work=work, tags=tags,
                          piece_cache=piece_cache, on_progress=on_progress))
        if final.name == "broken.mp4":
            raise RuntimeError("ffmpeg broke")
        return _result(final.parent)
    monkeypatch.setattr(cut_module, "assemble", assemble)
    return calls


def test_assemble_cut_assembles_with_the_cuts_settings_tags_and_piece_cache(tmp_path, assembler, monkeypatch):
    clock = iter([100.0, 102.5])
    monkeypatch.setattr(cut_module.time, "perf_counter", lambda: next(clock))
    out = tmp_path / "out"
    commit(out, "a", 0)
    cut = Cut(loaded_story(tmp_path), out, {"crf": 20}, "ovi")
    segs = [_segment(out, "a")]
    logs, phases, listener = [], [], object()
    final = assemble_cut(cut, segs, {"a": 0}, logs.append, lambda *p: phases.append(p), listener)
    key = assembly_key(segs, cut.settings(), out / "final.mp4")
    call = assembler[0]
    assert (call["segments"], call["final"], call["settings"], call["tags"], call["piece_cache"], call["on_progress"]) == \
        (segs, out / "final.mp4", cut.settings(), cut.tags({"a": 0}, key), out / ".ovi-studio" / "cut-pieces", listener)
    assert isinstance(call["work"], Path)
    assert phases == [("cut", "assembly")]
    assert logs == [f"assembling 1 shot(s) -> {out / 'final.mp4'}",
                    "cut: reused 1 of 2 encoded piece(s) of the cut; encoded 1: a -> b"]
    assert final["status"] == "done" and final["key"] == key and final["bytes"] == 5 and final["seconds"] == 2.5
    assert final["segments"][0]["take_dir"] == "shots/a/take0"


def test_an_unchanged_cut_is_not_assembled_again(tmp_path, assembler):
    out = tmp_path / "out"
    commit(out, "a", 0)
    cut = Cut(loaded_story(tmp_path), out, {}, "ovi")
    segs = [_segment(out, "a")]
    first = assemble_cut(cut, segs, {"a": 0}, print, lambda *p: None)
    (out / "report.json").write_text(json.dumps({"final": first}))
    logs, phases = [], []
    again = assemble_cut(cut, segs, {"a": 0}, logs.append, lambda *p: phases.append(p))
    assert again == {**first, "status": "cached"} and len(assembler) == 1 and phases == []
    assert logs == [f"final cut up to date: {out / 'final.mp4'}"]
    (out / "final.mp4").write_bytes(b"123")  # not the file the report describes
    assemble_cut(cut, segs, {"a": 0}, logs.append, lambda *p: None)
    assert len(assembler) == 2
    assert logs[-2] == f"assembling 1 shot(s) -> {out / 'final.mp4'} (the settings or the takes' files changed)"
    (out / "final.mp4").unlink()
    assemble_cut(cut, segs, {"a": 0}, logs.append, lambda *p: None)
    assert len(assembler) == 3
    commit(out, "a", 0, frames_sha="0" * 64)  # the take's frames changed: another key
    (out / "report.json").write_text(json.dumps({"final": {**first, "key": assembly_key(segs, cut.settings(), out / "final.mp4")}}))
    assemble_cut(cut, segs, {"a": 0}, logs.append, lambda *p: None)
    assert len(assembler) == 3  # the same key and file: cached


def test_a_report_without_a_final_object_is_no_previous_cut(tmp_path, assembler):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text(json.dumps({"final": "final.mp4"}))
    logs = []
    assemble_cut(Cut(loaded_story(tmp_path), out, {}, "ovi"), [_segment(out, "a")], {"a": 0}, logs.append,
                 lambda *p: None)
    assert len(assembler) == 1 and logs[0] == f"assembling 1 shot(s) -> {out / 'final.mp4'}"


def test_a_failed_assembly_is_reported_not_raised(tmp_path, assembler):
    out = tmp_path / "out"
    logs = []
    result = assemble_cut(Cut(loaded_story(tmp_path), out, {"final": "broken.mp4"}, "ovi"), [_segment(out)],
                          {"a": 0}, logs.append, lambda *p: None)
    assert result == {"status": "failed", "reason": "ffmpeg broke"}
    assert logs[-1] == "assembly failed: ffmpeg broke"
