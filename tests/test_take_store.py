"""The take store (store.py) and a take's folder (render/artifacts.py) on folders written by
hand: where takes live and how shots point at them, what `cache gc` finds, the atomic writes,
broken state set aside, meta.json's required shape, the files a new render of a take removes,
the latents file, and moving a link (with and without symbolic links). Fast (no render, no
model, no ffmpeg): mutmut runs these for every mutant of those modules (docs/testing.md).
Paths and names are the layout docs/render.md documents, written out."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from ovi_studio.render import artifacts
from ovi_studio.render.artifacts import (TakeLayout, atomic_target, begin_take, file_record,
                                         link_take, read_json, read_meta, work_folder,
                                         write_json_atomic, write_latents, write_text_atomic)
from ovi_studio.render.outdir import UnsafeWrite, hold
from ovi_studio.store import (StoredTake, link_text, linked_takes, stored_dir, stored_takes,
                              take_dir, unreferenced)

KEY = "ab" + "0" * 62
OTHER = "cd" + "1" * 62


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def held(out: Path, messages: list[str]):
    return hold(out, storyboard="story.yaml", log=messages.append)


def stored(out: Path, key: str, shot: str | None = "a", files: dict[str, bytes] | None = None) -> Path:
    folder = out / ".takes" / key[:2] / key
    folder.mkdir(parents=True)
    for name, data in (files or {"frames.mkv": b"12345"}).items():
        (folder / name).write_bytes(data)
    if shot is not None:
        (folder / "meta.json").write_text(json.dumps({"cache_key": key, "shot": shot}))
    return folder


def link(out: Path, shot: str, take: int, key: str) -> Path:
    path = out / "shots" / shot / f"take{take}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(f"../../.takes/{key[:2]}/{key}", target_is_directory=True)
    return path


# -- store.py -------------------------------------------------------------------------------------

def test_where_takes_live_and_how_a_shot_points_at_one():
    assert take_dir("/out", "intro", 3) == Path("/out/shots/intro/take3")
    assert take_dir(Path("/out"), "intro", 0) == Path("/out/shots/intro/take0")
    assert stored_dir("/out", KEY) == Path(f"/out/.takes/ab/{KEY}")
    assert stored_dir(Path("/o"), "xyz") == Path("/o/.takes/xy/xyz")
    assert link_text("/out", "intro", 3, KEY) == f"../../.takes/ab/{KEY}"  # relative: the folder can move
    assert link_text("/elsewhere/deeper", "b", 0, OTHER) == f"../../.takes/cd/{OTHER}"


def test_stored_takes_are_the_store_folders_two_levels_down(tmp_path):
    assert stored_takes(tmp_path) == []
    (tmp_path / ".takes").mkdir()
    assert stored_takes(tmp_path) == []
    second, first = stored(tmp_path, OTHER), stored(tmp_path, KEY)
    (tmp_path / ".takes" / "stray.txt").write_text("a file beside the prefixes")
    (tmp_path / ".takes" / "ab" / "note.txt").write_text("a file beside the takes")
    (tmp_path / ".takes" / "ee").symlink_to(tmp_path / ".takes" / "ab")  # a linked prefix
    (tmp_path / ".takes" / "cd" / "cdlink").symlink_to(first)  # a linked take
    assert stored_takes(tmp_path) == [first, second]
    assert stored_takes(str(tmp_path)) == [first, second]


def test_linked_takes_are_where_the_shots_links_lead(tmp_path):
    assert linked_takes(tmp_path) == set()
    first, second = stored(tmp_path, KEY), stored(tmp_path, OTHER)
    link(tmp_path, "a", 0, KEY)
    link(tmp_path, "b", 2, OTHER)
    (tmp_path / "shots" / "c" / "take0").mkdir(parents=True)  # an older output folder's own take
    (tmp_path / "shots" / "b" / "notes").symlink_to(first)  # not a take
    (tmp_path / "shots" / "readme.txt").write_text("a file among the shots")
    assert linked_takes(tmp_path) == {first.resolve(), second.resolve()}
    (tmp_path / "shots" / "b" / "take2").unlink()
    assert linked_takes(str(tmp_path)) == {first.resolve()}


def test_unreferenced_takes_with_their_size_and_shot(tmp_path):
    assert unreferenced(tmp_path) == []
    used = stored(tmp_path, KEY)
    link(tmp_path, "a", 0, KEY)
    loose = stored(tmp_path, OTHER, shot="b", files={"frames.mkv": b"1234567", "audio.wav": b"123"})
    (loose / "sub").mkdir()
    (loose / "sub" / "x.bin").write_bytes(b"12")
    (loose / "alias").symlink_to(loose / "frames.mkv")  # a link's target is counted once
    meta_bytes = (loose / "meta.json").stat().st_size
    assert unreferenced(tmp_path) == [StoredTake(loose, 7 + 3 + 2 + meta_bytes, "b")]
    assert used.is_dir()
    assert StoredTake(loose, 12, "b").to_json() == {"path": str(loose), "bytes": 12, "shot": "b"}


@pytest.mark.parametrize("meta, shot", [
    (None, None),  # no meta.json
    ("{garbled", None),
    ("[1, 2]", None),  # not an object
    ('{"shot": 3}', None),  # not a name
    ('{"shot": "intro"}', "intro"),
])
def test_an_unreferenced_take_names_its_shot_only_from_a_readable_meta_json(tmp_path, meta, shot):
    folder = stored(tmp_path, OTHER, shot=None)
    if meta is not None:
        (folder / "meta.json").write_text(meta)
    assert [(t.path, t.shot) for t in unreferenced(tmp_path)] == [(folder, shot)]


# -- a take's folder ------------------------------------------------------------------------------

def test_a_takes_files_by_name():
    layout = TakeLayout(Path("/t"))
    names = (layout.clip, layout.frames, layout.audio, layout.last_frame, layout.plate,
             layout.latents, layout.meta)
    assert [str(p) for p in names] == ["/t/clip.mp4", "/t/frames.mkv", "/t/audio.wav",
                                       "/t/last_frame.png", "/t/plate.png",
                                       "/t/latents.safetensors", "/t/meta.json"]


def test_file_record_is_the_relative_path_size_and_sha256(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "audio.wav").write_bytes(b"RIFF....")
    assert file_record(tmp_path / "sub" / "audio.wav", tmp_path) == {
        "path": "sub/audio.wav", "bytes": 8, "sha256": sha(b"RIFF....")}


def test_atomic_writes_outside_a_held_folder_go_beside_the_target(tmp_path):
    target = tmp_path / "new" / "report.json"
    with atomic_target(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".report.tmp-")
        tmp.write_text("x")
        assert not target.exists()
    assert target.read_text() == "x" and sorted(p.name for p in target.parent.iterdir()) == ["report.json"]
    write_text_atomic(target, "line\r\nnext")
    assert target.read_bytes() == b"line\r\nnext"
    write_json_atomic(target, {"b": 1, "a": [Path("/p")]})
    assert target.read_text() == '{\n  "b": 1,\n  "a": [\n    "/p"\n  ]\n}\n'


def test_atomic_writes_inside_a_held_folder_use_the_runs_own_temporary_folder(tmp_path):
    out, messages = tmp_path / "out", []
    with held(out, messages) as folder:
        target = out / "shots" / "a" / "meta.json"
        with atomic_target(target) as tmp:
            assert tmp.parent == folder.scratch and tmp.name.endswith("-meta.json")
            tmp.write_text("{}")
        assert target.read_text() == "{}"
        # a folder standing where the file goes is set aside, then the file is written
        (out / "report.json").mkdir()
        (out / "report.json" / "inside").write_text("kept aside")
        write_text_atomic(out / "report.json", "done")
        assert (out / "report.json").read_text() == "done"
        assert len(messages) == 1 and "is a folder where ovi-studio writes a file; moved to" in messages[0]
        with pytest.raises(UnsafeWrite):
            write_text_atomic(tmp_path / "outside.txt", "no")
    assert not (tmp_path / "outside.txt").exists()


def test_a_work_folder_is_removed_after_use_and_lives_in_the_held_folder(tmp_path):
    with work_folder(tmp_path / "anything") as work:
        assert work.is_dir() and work.name.startswith("ovi-studio-")
        assert not work.is_relative_to(tmp_path)
        (work / "piece.mkv").write_bytes(b"x")
    assert not work.exists()
    out = tmp_path / "out"
    with held(out, []) as folder:
        with work_folder(out / "final.mp4") as work:
            assert work.parent == folder.scratch and work.name.startswith("work-")
        assert not work.exists()


# -- state files: read or set aside ---------------------------------------------------------------

def test_read_json_reads_an_object_and_nothing_else(tmp_path):
    (tmp_path / "ok.json").write_text('{"a": [1]}')
    assert read_json(tmp_path / "ok.json") == {"a": [1]}
    assert read_json(str(tmp_path / "ok.json")) == {"a": [1]}
    assert read_json(tmp_path / "missing.json") is None
    assert read_json(tmp_path / "ok.json" / "under-a-file.json") is None
    for name, data in (("garbled.json", b"{nope"), ("list.json", b"[1]"), ("latin.json", b'{"a": "\xe9"}')):
        (tmp_path / name).write_bytes(data)
        assert read_json(tmp_path / name) is None
        assert (tmp_path / name).read_bytes() == data  # no render holds the folder: left alone
    (tmp_path / "dir.json").mkdir()
    assert read_json(tmp_path / "dir.json") is None and (tmp_path / "dir.json").is_dir()


@pytest.mark.parametrize("data, why", [
    (b"{nope", "is not readable JSON (JSONDecodeError)"),
    (b'{"a": "\xe9"}', "is not readable JSON (UnicodeDecodeError)"),
    (b"[1, 2]", "holds a JSON list, not an object"),
    (b'"text"', "holds a JSON str, not an object"),
    (None, "is a folder, not a JSON file"),
])
def test_broken_state_in_a_held_folder_is_set_aside_once(tmp_path, data, why):
    out, messages = tmp_path / "out", []
    with held(out, messages) as folder:
        path = out / "report.json"
        if data is None:
            path.mkdir()
        else:
            path.write_bytes(data)
        assert read_json(path) is None
        assert not path.exists()
        aside = list((folder.state / "set-aside").iterdir())
        assert len(aside) == 1 and aside[0].name.endswith("report.json")
        assert messages == [f"{path}: {why}; moved to {aside[0]} and going on without it"]


GOOD_META = {"cache_key": KEY, "shot": "a", "take": 0, "seed": 7,
             "files": {"frames": {"path": "frames.mkv", "bytes": 5, "sha256": "f" * 64}},
             "size": {"width": 704, "height": 704, "frames": 121},
             "parent": {"index": 120, "frames_sha256": "e" * 64}}


@pytest.mark.parametrize("change, why", [
    ({"cache_key": None}, "has no cache_key or shot"),
    ({"cache_key": 5}, "has no cache_key or shot"),
    ({"shot": None}, "has no cache_key or shot"),
    ({"shot": ["a"]}, "has no cache_key or shot"),
    ({"take": "0"}, "has no whole-number take and seed"),
    ({"seed": 7.0}, "has no whole-number take and seed"),
    ({"seed": None}, "has no whole-number take and seed"),
    ({"files": None}, "has a malformed `files` record"),
    ({"files": [{"path": "frames.mkv", "bytes": 5, "sha256": "f"}]}, "has a malformed `files` record"),
    ({"files": {"frames": "frames.mkv"}}, "has a malformed `files` record"),
    ({"files": {"frames": {"path": 3, "bytes": 5, "sha256": "f"}}}, "has a malformed `files` record"),
    ({"files": {"frames": {"path": "../x", "bytes": 5, "sha256": "f"}}}, "has a malformed `files` record"),
    ({"files": {"frames": {"path": "", "bytes": 5, "sha256": "f"}}}, "has a malformed `files` record"),
    ({"files": {"frames": {"path": ".", "bytes": 5, "sha256": "f"}}}, "has a malformed `files` record"),
    ({"files": {"frames": {"path": "..", "bytes": 5, "sha256": "f"}}}, "has a malformed `files` record"),
    ({"files": {"frames": {"path": "f", "bytes": "5", "sha256": "f"}}}, "has a malformed `files` record"),
    ({"files": {"frames": {"path": "f", "bytes": 5, "sha256": None}}}, "has a malformed `files` record"),
    ({"files": {"frames": {"path": "f", "bytes": 5}}}, "has a malformed `files` record"),
    ({"files": {"ok": {"path": "f", "bytes": 5, "sha256": "f"}, "bad": {"path": "g"}}},
     "has a malformed `files` record"),
    ({"size": None}, "has a malformed `size`"),
    ({"size": [704, 704, 121]}, "has a malformed `size`"),
    ({"size": {"width": 704, "height": 704}}, "has a malformed `size`"),
    ({"size": {"width": 704, "height": 704, "frames": 0}}, "has a malformed `size`"),
    ({"size": {"width": 0, "height": 704, "frames": 121}}, "has a malformed `size`"),
    ({"size": {"width": 704, "height": -1, "frames": 121}}, "has a malformed `size`"),
    ({"size": {"width": 704, "height": 704, "frames": 121.0}}, "has a malformed `size`"),
    ({"parent": {"frames_sha256": "e"}}, "has a malformed `parent`"),
    ({"parent": {"index": "120"}}, "has a malformed `parent`"),
    ({"parent": [120]}, "has a malformed `parent`"),
])
def test_a_meta_json_without_the_shape_a_render_relies_on_is_set_aside(tmp_path, change, why):
    out, messages = tmp_path / "out", []
    path = out / "shots" / "a" / "take0" / "meta.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({**GOOD_META, **change}))
    assert read_meta(path) is None and path.exists()  # outside a render: left alone
    with held(out, messages):
        assert read_meta(path) is None
    assert not path.exists() and len(messages) == 1
    assert messages[0].startswith(f"{path}: {why}; moved to ")


def test_a_meta_json_with_every_required_field_is_read(tmp_path):
    path = tmp_path / "meta.json"
    smallest = {"width": 1, "height": 1, "frames": 1}
    for meta in (GOOD_META, {**GOOD_META, "parent": None}, {**GOOD_META, "files": {}},
                 {**GOOD_META, "size": smallest},
                 {k: v for k, v in GOOD_META.items() if k != "parent"}):
        path.write_text(json.dumps(meta))
        assert read_meta(path) == meta
    assert read_meta(tmp_path / "none.json") is None


# -- rendering a take again -----------------------------------------------------------------------

TAKE_FILES = ("meta.json", "clip.mp4", "frames.mkv", "audio.wav", "last_frame.png", "plate.png",
              "latents.safetensors", "error.txt")


def test_begin_take_removes_the_takes_own_files_only(tmp_path):
    layout = TakeLayout(tmp_path / ".takes" / "ab" / KEY)
    begin_take(layout)  # a new take: the folder is made, and the store's folders above it
    assert layout.dir.is_dir() and list(layout.dir.iterdir()) == []
    for name in TAKE_FILES + ("notes.txt", "qc.json"):
        (layout.dir / name).write_text(name)
    begin_take(layout)
    assert sorted(p.name for p in layout.dir.iterdir()) == ["notes.txt", "qc.json"]


def test_begin_take_in_a_held_folder_sets_a_folder_aside_and_refuses_a_link_out(tmp_path):
    out, messages = tmp_path / "out", []
    layout = TakeLayout(out / ".takes" / "ab" / KEY)
    layout.dir.mkdir(parents=True)
    for name in TAKE_FILES:
        (layout.dir / name).write_text(name)
    (layout.dir / "frames.mkv").unlink()
    (layout.dir / "frames.mkv").mkdir()  # a folder where a file belongs
    (layout.dir / "mine.txt").write_text("the user's")
    with held(out, messages):
        begin_take(layout)
        assert sorted(p.name for p in layout.dir.iterdir()) == ["mine.txt"]
        assert len(messages) == 1 and "frames.mkv: is a folder where ovi-studio keeps a file" in messages[0]
        (tmp_path / "elsewhere").mkdir()
        (out / "shots").mkdir()
        (out / "shots" / "away").symlink_to(tmp_path / "elsewhere")
        with pytest.raises(UnsafeWrite, match="leads out of the output folder"):
            begin_take(TakeLayout(out / "shots" / "away" / "take0"))
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_latents_are_saved_as_named_tensors_from_numpy_or_torch(tmp_path):
    import torch
    from safetensors.numpy import load_file
    video = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)
    audio = np.array([[1.5, -2.0], [0.25, 4.0]], dtype=np.float32)
    write_latents(tmp_path / "n.safetensors", {"video": video, "audio": audio})
    loaded = load_file(str(tmp_path / "n.safetensors"))
    assert sorted(loaded) == ["audio", "video"]
    assert np.array_equal(loaded["video"], video) and np.array_equal(loaded["audio"], audio)
    # torch tensors: a strided view is saved as its values
    as_torch = {"video": torch.from_numpy(video).transpose(0, 1), "audio": torch.from_numpy(audio)}
    write_latents(tmp_path / "t.safetensors", as_torch)
    loaded = load_file(str(tmp_path / "t.safetensors"))
    assert np.array_equal(loaded["video"], video.transpose(1, 0, 2, 3))
    assert np.array_equal(loaded["audio"], audio)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.safetensors", "t.safetensors"]


# -- moving a shot's link -------------------------------------------------------------------------

def test_link_take_points_the_shot_at_the_stored_take_and_moves_it(tmp_path):
    out = tmp_path / "out"
    first, second = stored(out, KEY), stored(out, OTHER)
    link_take(out, "a", 1, KEY)
    path = out / "shots" / "a" / "take1"
    assert path.is_symlink() and os.readlink(path) == f"../../.takes/ab/{KEY}"
    assert path.resolve() == first.resolve()
    link_take(out, "a", 1, OTHER)
    assert os.readlink(path) == f"../../.takes/cd/{OTHER}" and first.is_dir() and second.is_dir()
    assert sorted(p.name for p in path.parent.iterdir()) == ["take1"]  # no temporary link left
    messages = []
    with held(out, messages):
        link_take(out, "a", 1, KEY)  # replacing a link by a link is no news
        assert os.readlink(path) == f"../../.takes/ab/{KEY}" and messages == []
        (tmp_path / "elsewhere").mkdir()
        (out / "shots" / "away").symlink_to(tmp_path / "elsewhere")
        with pytest.raises(UnsafeWrite, match="leads out of the output folder"):
            link_take(out, "away", 0, KEY)
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_an_older_take_folder_in_the_links_place_moves_into_the_store_under_its_key(tmp_path):
    out = tmp_path / "out"
    stored(out, KEY)
    old = out / "shots" / "a" / "take0"
    old.mkdir(parents=True)
    (old / "frames.mkv").write_bytes(b"old frames")
    (old / "meta.json").write_text(json.dumps({"cache_key": OTHER}))
    link_take(out, "a", 0, KEY)
    assert os.readlink(old) == f"../../.takes/ab/{KEY}"
    assert (stored_dir(out, OTHER) / "frames.mkv").read_bytes() == b"old frames"


def test_an_output_folder_from_before_the_store_gets_one_when_a_take_is_rendered_over(tmp_path):
    out = tmp_path / "out"
    old = out / "shots" / "a" / "take0"
    old.mkdir(parents=True)
    (old / "frames.mkv").write_bytes(b"old frames")
    (old / "meta.json").write_text(json.dumps({"cache_key": OTHER}))
    link_take(out, "a", 0, KEY)
    assert (out / ".takes" / "cd" / OTHER / "frames.mkv").read_bytes() == b"old frames"
    assert os.readlink(old) == f"../../.takes/ab/{KEY}"


@pytest.mark.parametrize("meta", ["", '{"cache_key": 5}', '{"cache_key": "../../x"}', "{garbled",
                                  "same"])
def test_an_older_take_folder_without_a_usable_key_is_removed(tmp_path, meta):
    out = tmp_path / "out"
    stored(out, KEY)
    old = out / "shots" / "a" / "take0"
    old.mkdir(parents=True)
    (old / "frames.mkv").write_bytes(b"old frames")
    if meta == "same":  # its key's store folder is taken already: the store's copy stays
        stored(out, OTHER, files={"frames.mkv": b"stored frames"})
        meta = json.dumps({"cache_key": OTHER})  # "cd…"
    if meta:
        (old / "meta.json").write_text(meta)
    link_take(out, "a", 0, KEY)
    assert os.readlink(old) == f"../../.takes/ab/{KEY}"
    frames = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("frames.mkv")}
    expected = {f".takes/ab/{KEY}/frames.mkv": b"12345"}
    if "cd" in meta:
        expected[f".takes/cd/{OTHER}/frames.mkv"] = b"stored frames"
    assert frames == expected


def test_in_a_held_folder_an_unusable_old_take_folder_is_set_aside(tmp_path):
    out, messages = tmp_path / "out", []
    stored(out, KEY)
    old = out / "shots" / "a" / "take0"
    old.mkdir(parents=True)
    (old / "frames.mkv").write_bytes(b"old frames")
    with held(out, messages) as folder:
        link_take(out, "a", 0, KEY)
        aside = list((folder.state / "set-aside").iterdir())
    assert len(aside) == 1 and (aside[0] / "frames.mkv").read_bytes() == b"old frames"
    assert messages == [f"{old}: is a take folder the store replaces; moved to {aside[0]} and going on without it"]
    assert os.readlink(old) == f"../../.takes/ab/{KEY}"


def test_without_symbolic_links_the_stored_take_itself_moves_to_the_shot(tmp_path, monkeypatch):
    def no_links(*args, **kwargs):
        raise OSError(1, "Operation not permitted")
    monkeypatch.setattr(os, "symlink", no_links)
    out = tmp_path / "out"
    stored(out, KEY, files={"frames.mkv": b"first"})
    stored(out, OTHER, files={"frames.mkv": b"second"})
    path = out / "shots" / "a" / "take0"
    link_take(out, "a", 0, KEY)
    assert not path.is_symlink() and (path / "frames.mkv").read_bytes() == b"first"
    assert not stored_dir(out, KEY).exists()
    link_take(out, "a", 0, OTHER)  # the first take goes back into the store under its key
    assert (path / "frames.mkv").read_bytes() == b"second"
    assert (stored_dir(out, KEY) / "frames.mkv").read_bytes() == b"first"
    assert sorted(p.name for p in path.parent.iterdir()) == ["take0"]


def test_without_symbolic_links_a_link_or_file_in_the_shots_place_is_replaced(tmp_path, monkeypatch):
    out = tmp_path / "out"
    stored(out, KEY, files={"frames.mkv": b"first"})
    stored(out, OTHER, files={"frames.mkv": b"second"})
    link_take(out, "a", 0, OTHER)  # a link made while links worked
    monkeypatch.setattr(os, "symlink", lambda *a, **k: (_ for _ in ()).throw(OSError(1, "no")))
    path = out / "shots" / "a" / "take0"
    link_take(out, "a", 0, KEY)
    assert not path.is_symlink() and (path / "frames.mkv").read_bytes() == b"first"
    assert (stored_dir(out, OTHER) / "frames.mkv").read_bytes() == b"second"
    (out / "shots" / "b").mkdir()
    (out / "shots" / "b" / "take0").write_text("a stray file")
    link_take(out, "b", 0, OTHER)
    assert ((out / "shots" / "b" / "take0") / "frames.mkv").read_bytes() == b"second"


def test_the_temporary_link_name_is_the_links_own_with_the_process_id(tmp_path, monkeypatch):
    out = tmp_path / "out"
    stored(out, KEY)
    made = []
    real = os.symlink
    monkeypatch.setattr(os, "symlink", lambda src, dst, **kw: (made.append(Path(dst).name), real(src, dst, **kw)))
    (out / "shots" / "a").mkdir(parents=True)
    stale = out / "shots" / "a" / f".take0.tmp-{os.getpid()}"
    stale.write_text("left by a killed render")
    link_take(out, "a", 0, KEY)
    assert made == [f".take0.tmp-{os.getpid()}"]
    assert sorted(p.name for p in (out / "shots" / "a").iterdir()) == ["take0"]
    assert artifacts.META == "meta.json" and artifacts.ERROR == "error.txt"
