"""plan.py's decisions one function at a time, on folders and meta.json files written by hand:
the cache key's canonical form, why a key changed, when a take on disk is complete, when an
extension's parent makes it stale, the execution order and the graph errors, `--only` /
`--force`, and `plan --json`. Fast (no render, no model, no ffmpeg): mutmut runs these for
every mutant of plan.py (docs/testing.md). Expected values are written out from the formats
docs/render.md describes, never computed by the code under test."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from ovi_studio.errors import UserError
from ovi_studio.take_choice import Choice
from ovi_studio.plan import (Plan, PlannedTake, cache_key, changed_files, check_pick,
                             check_selection, execution_order, explain_changes, parent_problem,
                             read_take_meta, seeded_from, take_state, wanted_takes)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_take(folder: Path, key: str = "k1", files: dict[str, bytes] | None = None, **meta) -> dict:
    """A committed take as a render leaves it: each file, then meta.json recording its size and
    hash (the frames file unless `files` says otherwise)."""
    folder.mkdir(parents=True, exist_ok=True)
    records = {}
    for name, data in ({"frames": b"frame bytes"} if files is None else files).items():
        (folder / f"{name}.bin").write_bytes(data)
        records[name] = {"path": f"{name}.bin", "bytes": len(data), "sha256": sha(data)}
    meta = {"cache_key": key, "files": records, **meta}
    (folder / "meta.json").write_text(json.dumps(meta))
    return meta


def rewrite_same_size(path: Path, data: bytes) -> None:
    """Other content at the same size, with a new mtime (what an editor or a bad disk leaves)."""
    assert len(data) == path.stat().st_size
    path.write_bytes(data)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


# -- the cache key ------------------------------------------------------------------------------

def test_the_cache_key_is_the_sha256_of_sorted_compact_utf8_json():
    # docs/render.md: the key hashes its inputs; the canonical text sorts keys, has no spaces
    # and keeps non-ASCII text as UTF-8, so equal inputs give equal keys in any order
    canonical = '{"a":[1,null,true],"b":"café","c":{"x":0.5,"y":"z"}}'.encode("utf-8")
    inputs = {"c": {"y": "z", "x": 0.5}, "b": "café", "a": [1, None, True]}
    assert cache_key(inputs) == sha(canonical)
    assert sha(canonical) == "9b9330398545fd8097a1e9e1389722661f4a12534817aa41dbabb24599649485"  # sha256sum
    assert cache_key({}) == "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


# -- why a key changed --------------------------------------------------------------------------

@pytest.mark.parametrize("name, reason", [
    ("prompt", "prompt changed"),
    ("video_negative", "negative prompt changed"),
    ("audio_negative", "negative prompt changed"),
    ("seed", "seed changed"),
    ("first_frame", "first-frame image changed"),
    ("first_frame_aspect", "first-frame aspect (resolution/aspect) changed"),
    ("checkpoint", "checkpoint changed"),
    ("model", "model changed"),
    ("engine_version", "engine version changed"),
    ("height", "resolution changed"),
    ("width", "resolution changed"),
    ("frames", "duration changed"),
    ("fp8", "fp8 setting changed"),
    ("fp8_file", "fp8 file changed"),
    ("tiled_vae", "tiled VAE setting changed"),
    ("steps", "sampler settings changed (steps)"),
    ("solver", "sampler settings changed (solver)"),
    ("shift", "sampler settings changed (shift)"),
    ("video_guidance", "sampler settings changed (video_guidance)"),
    ("audio_guidance", "sampler settings changed (audio_guidance)"),
    ("slg_layer", "sampler settings changed (slg_layer)"),
    ("step_cache", "sampler settings changed (step_cache)"),
    ("cfg_batch", "sampler settings changed (cfg_batch)"),
    ("loras", "loras changed"),
    ("seed_frame", "seed_frame changed"),
    ("draft", "draft changed"),
])
def test_each_changed_input_is_named(name, reason):
    assert explain_changes({name: 1, "same": "x"}, {name: 2, "same": "x"}) == [reason]
    assert explain_changes({"same": "x"}, {name: 2, "same": "x"}) == [reason]  # newly keyed
    assert explain_changes({name: 1, "same": "x"}, {"same": "x"}) == [reason]  # no longer keyed


def test_reasons_follow_the_new_inputs_order_once_each_and_removed_inputs_last():
    old = {"gone": 1, "prompt": "a", "video_negative": "n", "audio_negative": "m", "seed": 1,
           "steps": 50, "parent_shot": "x"}
    new = {"seed": 2, "audio_negative": "m2", "prompt": "b", "video_negative": "n2", "steps": 50,
           "parent_shot": "y"}  # parent_shot changes only with `parent`, which says it
    assert explain_changes(old, new) == ["seed changed", "negative prompt changed",
                                         "prompt changed", "gone changed"]
    assert explain_changes(new, new) == []


def test_a_parent_key_change_is_a_re_pick_only_between_takes_of_the_same_parent():
    takes = {"key0": 0, "key1": 1}
    assert explain_changes({"parent": "key0", "parent_shot": "a"},
                           {"parent": "key1", "parent_shot": "a"}, takes) == [
        "parent a re-picked (take 0 -> take 1)"]
    assert explain_changes({"parent": "key1", "parent_shot": "a"},
                           {"parent": "key0", "parent_shot": "a"}, takes) == [
        "parent a re-picked (take 1 -> take 0)"]
    # the old parent key is no take of the parent any more: the parent itself changed
    assert explain_changes({"parent": "old", "parent_shot": "a"},
                           {"parent": "key1", "parent_shot": "a"}, takes) == ["upstream shot a changed"]
    assert explain_changes({"parent": "key0", "parent_shot": "a"},
                           {"parent": "new", "parent_shot": "a"}, takes) == ["upstream shot a changed"]
    assert explain_changes({"parent": "old", "parent_shot": "a"},
                           {"parent": "new", "parent_shot": "a"}) == ["upstream shot a changed"]
    # the shot extends another shot now: the reason names the new one
    assert explain_changes({"parent": "key0", "parent_shot": "a"},
                           {"parent": "xkey", "parent_shot": "x"}, takes) == ["upstream shot x changed"]
    # the shot no longer extends anything: the reason names the parent it had
    assert explain_changes({"parent": "key0", "parent_shot": "a"},
                           {"parent": None, "parent_shot": None}, takes) == ["upstream shot a changed"]


def test_an_engine_change_names_both_engines():
    assert explain_changes({"engine": "preview"}, {"engine": "ovi"}) == [
        "rendered by preview; this render uses ovi"]
    assert explain_changes({}, {"engine": "ovi"}) == [
        "rendered by an older ovi-studio; this render uses ovi"]


# -- a take on disk -----------------------------------------------------------------------------

def test_read_take_meta_says_why_there_is_none(tmp_path):
    assert read_take_meta(tmp_path / "nowhere") == (None, "not rendered yet")
    (tmp_path / "meta.json").write_text("{not json")
    assert read_take_meta(tmp_path) == (None, "meta.json is unreadable")
    (tmp_path / "meta.json").write_text("[1, 2]")
    assert read_take_meta(tmp_path) == (None, "meta.json is unreadable")
    (tmp_path / "meta.json").write_bytes(b'{"cache_key": "\xff"}')  # not UTF-8
    assert read_take_meta(tmp_path) == (None, "meta.json is unreadable")
    (tmp_path / "meta.json").unlink()
    (tmp_path / "meta.json").mkdir()
    assert read_take_meta(tmp_path) == (None, "meta.json is unreadable")
    (tmp_path / "meta.json").rmdir()
    (tmp_path / "meta.json").write_text('{"cache_key": "k", "n": 1}')
    assert read_take_meta(tmp_path) == ({"cache_key": "k", "n": 1}, None)


def test_changed_files_lists_missing_resized_and_rewritten_files(tmp_path):
    meta = write_take(tmp_path, files={"frames": b"0123456789", "audio": b"abc", "last": b"png"})
    assert changed_files(tmp_path, meta) == []
    (tmp_path / "audio.bin").write_bytes(b"abcd")  # another size
    rewrite_same_size(tmp_path / "frames.bin", b"0123456780")  # same size, other bytes
    assert changed_files(tmp_path, meta) == ["frames.bin", "audio.bin"]
    (tmp_path / "last.bin").unlink()
    (tmp_path / "audio.bin").write_bytes(b"abc")
    assert changed_files(tmp_path, meta) == ["frames.bin", "last.bin"]
    (tmp_path / "last.bin").mkdir()  # a folder where the file was
    assert changed_files(tmp_path, meta) == ["frames.bin", "last.bin"]


def test_changed_files_reads_no_size_or_hash_as_changed(tmp_path):
    meta = write_take(tmp_path, files={"frames": b"0123456789"})
    record = meta["files"]["frames"]
    assert changed_files(tmp_path, {"files": {"frames": {**record, "bytes": None}}}) == ["frames.bin"]
    assert changed_files(tmp_path, {"files": {"frames": {"path": "frames.bin", "bytes": 10}}}) == ["frames.bin"]
    assert changed_files(tmp_path, {"files": {"frames": {**record, "sha256": sha(b"other")}}}) == ["frames.bin"]


@pytest.mark.parametrize("files", [
    ["frames.bin"],  # a list, not a mapping
    {"frames": "frames.bin"},  # a record that is not an object
    {"frames": {"bytes": 10, "sha256": "x"}},  # a record without a path
    {"ok": {"path": "frames.bin", "bytes": 10}, "bad": {"bytes": 1}},  # one bad record of two
])
def test_a_malformed_files_record_is_a_changed_meta_json(tmp_path, files):
    write_take(tmp_path, files={"frames": b"0123456789"})
    assert changed_files(tmp_path, {"files": files}) == ["meta.json"]


def test_a_take_without_file_records_has_nothing_changed(tmp_path):
    assert changed_files(tmp_path, {}) == []
    assert changed_files(tmp_path, {"files": {}}) == []


def test_take_state_is_complete_only_for_its_key_with_every_file_and_the_frames(tmp_path):
    assert take_state(tmp_path / "none", "k1") == (None, ["not rendered yet"])
    meta = write_take(tmp_path / "t", key="k1")
    assert take_state(tmp_path / "t", "k1") == (meta, [])
    assert take_state(tmp_path / "t", "k2") == (meta, ["cache key changed"])
    (tmp_path / "t" / "frames.bin").write_bytes(b"shorter")
    assert take_state(tmp_path / "t", "k1") == (meta, ["file changed since render (frames.bin)"])
    audio_only = write_take(tmp_path / "u", key="k1", files={"audio": b"pcm"})
    assert take_state(tmp_path / "u", "k1") == (audio_only, ["meta.json records no frames"])
    no_files = {"cache_key": "k1"}
    assert take_state(tmp_path / "none", "k1", no_files) == (no_files, ["meta.json records no frames"])
    # the meta.json the caller already read is used, not the folder's
    assert take_state(tmp_path / "t", "k9", {**meta, "cache_key": "k9"})[1] == [
        "file changed since render (frames.bin)"]
    two = write_take(tmp_path / "v", key="k1", files={"frames": b"f", "audio": b"a"})
    (tmp_path / "v" / "frames.bin").unlink()
    (tmp_path / "v" / "audio.bin").unlink()
    assert take_state(tmp_path / "v", "k1") == (two, ["file changed since render (frames.bin, audio.bin)"])


# -- an extension and its parent ----------------------------------------------------------------

def parent_stub(status="fresh", renders=False, frames="f0") -> SimpleNamespace:
    return SimpleNamespace(status=status, renders=renders, frames_sha256=frames, shot=SimpleNamespace(id="a"))


def test_seeded_from_compares_the_recorded_parent_frames_hash():
    assert seeded_from({"parent": {"frames_sha256": "f0", "index": 120}}, "f0")
    assert not seeded_from({"parent": {"frames_sha256": "f0", "index": 120}}, "f1")
    assert not seeded_from({"parent": None}, "f0")
    assert not seeded_from({}, "f0")
    assert seeded_from({"parent": None}, None)


def test_parent_problem_names_the_parent_and_what_happened_to_it():
    seeded = {"parent": {"frames_sha256": "f0"}}
    assert parent_problem(seeded, parent_stub()) is None
    assert parent_problem(seeded, parent_stub(status="stored")) is None
    assert parent_problem(seeded, parent_stub(status="stale", renders=True)) == "upstream shot a renders"
    assert parent_problem(seeded, parent_stub(status="stale")) == "upstream shot a is out of date"
    assert parent_problem(seeded, parent_stub(status="blocked")) == "upstream shot a is out of date"
    assert parent_problem(seeded, parent_stub(frames="f1")) == "upstream shot a was rendered again since"
    assert parent_problem(seeded, parent_stub(status="stored", frames="f1")) == (
        "upstream shot a was rendered again since")


# -- the graph, the selection and picks ---------------------------------------------------------

def shot_stub(id, extends=None, line=1, takes=1, pick=None) -> SimpleNamespace:
    return SimpleNamespace(id=id, extends=extends, line=line, column=5, takes=takes, pick=pick,
                           origin=SimpleNamespace(file=Path("story.yaml")))


def board(*shots) -> SimpleNamespace:
    by_id = {}
    for s in shots:
        by_id.setdefault(s.id, s)
    return SimpleNamespace(shots=list(shots), shot=by_id.get)


def test_parents_go_before_their_extensions_otherwise_file_order():
    c, a, b, d = (shot_stub("c", "b"), shot_stub("a"), shot_stub("b", "a"), shot_stub("d"))
    assert [s.id for s in execution_order(board(c, a, b, d))] == ["a", "b", "c", "d"]
    # the earliest shot whose parent is placed goes next: b (index 0) before c (index 2)
    b2, a2, c2 = shot_stub("b", "a"), shot_stub("a"), shot_stub("c")
    assert [s.id for s in execution_order(board(b2, a2, c2))] == ["a", "b", "c"]
    x, y, z = shot_stub("x"), shot_stub("y", "x"), shot_stub("z", "x")
    assert [s.id for s in execution_order(board(z, y, x))] == ["x", "z", "y"]


@pytest.mark.parametrize("shots, text", [
    ([shot_stub("a"), shot_stub("a", line=7)], "story.yaml:7:5: shot id `a` is used twice"),
    ([shot_stub("a"), shot_stub("b", "zz", line=7)],
     "story.yaml:7:5: shot `b` extends `zz`, which is not a (valid) shot of this storyboard"),
    ([shot_stub("s"), shot_stub("a", "b", line=7), shot_stub("b", "a", line=9)],
     "story.yaml:7:5: these shots extend each other in a cycle: a, b"),
])
def test_graph_errors_point_at_the_shot_and_say_how_to_see_every_problem(shots, text):
    with pytest.raises(UserError) as raised:
        execution_order(board(*shots))
    assert str(raised.value) == text + "\n  hint: run `ovi-studio check` for every problem at once"


def test_only_and_force_must_name_shots():
    loaded = board(shot_stub("a"), shot_stub("b"))
    check_selection(loaded, ["a"], ["b"])
    check_selection(loaded, None, [])
    with pytest.raises(UserError) as raised:
        check_selection(loaded, ["a", "x", "y"], None)
    assert str(raised.value) == "--only: no shot named x, y\n  hint: shots: a, b"
    with pytest.raises(UserError) as raised:
        check_selection(loaded, None, ["z"])
    assert str(raised.value) == "--force: no shot named z\n  hint: shots: a, b"


def test_only_wants_every_take_of_the_named_shots_and_the_take_each_ancestor_continues_from():
    loaded = board(shot_stub("a", takes=3, pick=2), shot_stub("b", "a", takes=2, pick=1),
                   shot_stub("c", "b", takes=2), shot_stub("d"))
    assert wanted_takes(loaded, None) is None
    assert wanted_takes(loaded, []) is None
    assert wanted_takes(loaded, ["c"]) == {("c", 0), ("c", 1), ("b", 1), ("a", 2)}
    assert wanted_takes(loaded, ["d", "b"]) == {("d", 0), ("b", 0), ("b", 1), ("a", 2)}
    # an ancestor already wanted stops the walk (its own ancestors are in already)
    assert wanted_takes(loaded, ["b", "c"]) == {("b", 0), ("b", 1), ("c", 0), ("c", 1), ("a", 2)}


def test_a_pick_must_render():
    check_pick(shot_stub("a", takes=3, pick=2))
    check_pick(shot_stub("a", takes=1))
    with pytest.raises(UserError) as raised:
        check_pick(shot_stub("a", takes=2, pick=2, line=4))
    assert str(raised.value) == ("story.yaml:4:5: shot a picks take 2, but only takes 0 to 1 are "
                                 "rendered\n  hint: render more takes (--takes 3) or change `pick:`")


# -- plan --json ----------------------------------------------------------------------------------

def planned(status="stale", wanted=True, parent=None, estimate=12.34, take=1, reasons=("why",), choice=None):
    return PlannedTake(shot=SimpleNamespace(id="b"), take=take, seed=8, mode="extend" if parent else "t2v",
                       parent=parent, height=352, width=640, frames=121, cache_key="ab12cd",
                       key_inputs={"seed": 8}, status=status, reasons=list(reasons),
                       estimate_seconds=estimate, out_dir=Path("/out"), parent_take=2,
                       parent_choice=choice, wanted=wanted)


@pytest.mark.parametrize("status, wanted, action, renders", [
    ("stale", True, "render", True),
    ("stored", True, "reuse", False),
    ("fresh", True, "up to date", False),
    ("blocked", True, "blocked", False),
    ("stale", False, "not selected", False),
    ("fresh", False, "not selected", False),
    ("blocked", False, "blocked", False),
])
def test_what_a_render_does_with_each_take(status, wanted, action, renders):
    take = planned(status, wanted)
    assert (take.action, take.renders) == (action, renders)


def test_a_planned_take_in_json_and_its_folders():
    take = planned(parent="a", estimate=12.36)
    assert take.to_json() == {
        "shot": "b", "take": 1, "seed": 8, "mode": "extend", "parent": "a", "height": 352,
        "width": 640, "parent_take": 2, "parent_choice": None, "frames": 121, "status": "stale", "reasons": ["why"],
        "action": "render", "estimate_seconds": 12.4, "cache_key": "ab12cd",
        "artifact_dir": "/out/shots/b/take1", "key_inputs": {"seed": 8}}
    assert take.artifact_dir == Path("/out/shots/b/take1")
    chosen = planned(parent="a", choice=Choice(2, "picked: `pick: 2` in the storyboard"))
    assert chosen.to_json()["parent_choice"] == {"take": 2, "reason": "picked: `pick: 2` in the storyboard"}
    assert take.parent_dir == Path("/out/shots/a/take2")
    assert take.stored_dir == Path("/out/.takes/ab/ab12cd")
    alone = planned(status="fresh", estimate=12.34, take=0, reasons=())
    assert alone.parent_dir is None
    json_alone = alone.to_json()
    assert (json_alone["parent"], json_alone["parent_take"], json_alone["estimate_seconds"],
            json_alone["action"], json_alone["reasons"]) == (None, None, 12.3, "up to date", [])


def test_a_plan_in_json_counts_and_times_only_what_renders():
    steps = [planned("stale", estimate=10.04), planned("stale", wanted=False, estimate=100.0),
             planned("fresh", estimate=1000.0), planned("blocked", estimate=0.0),
             planned("stale", estimate=5.02), planned("stored", estimate=7.0)]
    loaded = SimpleNamespace(path=Path("/s/story.yaml"), variant=SimpleNamespace(name="960x960_10s"))
    plan = Plan(loaded, steps, Path("/out"), SimpleNamespace(name="ovi"), variant=None,
                checkpoint="sha256:cafe")
    assert plan.to_render == [steps[0], steps[4]]
    assert plan.blocked == [steps[3]]
    assert plan.total_seconds_estimate == pytest.approx(15.06)
    data = plan.to_json()
    assert data.pop("takes") == [step.to_json() for step in steps]
    assert data == {"storyboard": "/s/story.yaml", "model": "960x960_10s", "out_dir": "/out",
                    "checkpoint": "sha256:cafe", "engine": "ovi", "engine_version": "1",
                    "total_seconds_estimate": 15.1, "to_render": 2}
    assert Plan(loaded, [], Path("/out"), SimpleNamespace(name="ovi"), None).checkpoint == "no-checkpoint"
