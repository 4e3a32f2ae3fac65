"""The render touches only its own files and writes nowhere but its output folder: user files
in the folder stay byte-identical, hostile names and planted symlinks write nothing outside, one
render holds a folder at a time, broken state is set aside and the render goes on."""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ovi_studio.cli import app
from ovi_studio.errors import UserError
from ovi_studio.render import outdir

runner = CliRunner()

STORY = """\
version: 1
model: 720x720_5s
output:
  final: {final}
shots:
  - id: a
    scene: A quiet street.
    dialogue: ["Hello there."]
    audio: traffic
  - id: b
    scene: A park bench.
    audio: birds
"""


@pytest.fixture(autouse=True)
def _crash_logs_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("OVI_STUDIO_LOG_DIR", str(tmp_path / "crash-logs"))


def _story(folder: Path, final: str = "cut.mp4") -> Path:
    path = folder / "story.yaml"
    path.write_text(STORY.format(final=json.dumps(final)))
    return path


def render(*args) -> object:
    return runner.invoke(app, ["render", *map(str, args), "--engine", "preview", "-q"])


def tree(root: Path) -> dict[str, bytes | str]:
    """Every entry under root: file bytes, link targets, folders."""
    entries: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            key = path.relative_to(root).as_posix()
            if path.is_symlink():
                entries[key] = "-> " + os.readlink(path)
            elif path.is_dir():
                entries[key] = "dir"
            else:
                entries[key] = path.read_bytes()
    return entries


@pytest.mark.slow
def test_user_dot_files_in_the_output_folder_stay_byte_identical(tmp_path):
    out = tmp_path / "out"
    user_files = {".work": None, ".work-notes/keep.txt": b"mine", ".cut.tmp-1.mp4": b"\x00draft",
                  ".clip.tmp-7.mkv": b"x", "notes.txt": b"hello", "shots/.keep": b"",
                  "shots/a/take0/.my.tmp-3.wav": b"user's"}
    for name, data in user_files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir() if data is None else path.write_bytes(data)
    before = {k: v for k, v in tree(out).items()}
    story = _story(tmp_path)
    assert render(story, "-o", out).exit_code == 0
    assert render(story, "-o", out, "--force").exit_code == 0  # every take rewritten
    after = tree(out)
    take_folder = {"shots/a/take0", "shots/a/take0/.my.tmp-3.wav"}  # where the take store links now
    assert {k: after.get(k) for k in before if k not in take_folder} == \
        {k: v for k, v in before.items() if k not in take_folder}
    kept = [p for p in (out / ".ovi-studio" / "set-aside").rglob(".my.tmp-3.wav")]
    assert [p.read_bytes() for p in kept] == [b"user's"]  # set aside with the folder, not lost
    assert (out / "cut.mp4").is_file()
    assert list((out / ".ovi-studio" / "tmp").iterdir()) == []  # no temporary file left


@pytest.mark.parametrize("final", ["../escape.mp4", "/tmp/abs.mp4", "a/../../x.mp4", "shots/a.mp4",
                                   "report.json", ".ovi-studio/x.mp4", "sub\\x.mp4", "x\u0007.mp4"])
def test_hostile_final_names_are_check_errors_with_the_line_and_write_nothing(tmp_path, final):
    story = _story(tmp_path, final)
    checked = runner.invoke(app, ["check", str(story)])
    assert checked.exit_code == 1
    assert f"{story}:4:" in checked.output and "SB102" in checked.output
    before = tree(tmp_path)
    result = render(story, "-o", tmp_path / "out")  # refused by the lint gate (exit 1)
    assert result.exit_code in (1, 2) and "Traceback" not in result.output
    assert "final" in result.output
    assert tree(tmp_path) == before
    (tmp_path / "ok").mkdir()
    set_final = render(_story(tmp_path / "ok"), "-o", tmp_path / "out", "--set", f"final={final}")
    assert set_final.exit_code == 2 and "--set final=" in set_final.output
    assert not (tmp_path / "out").exists()


def test_a_planted_symlinked_folder_is_refused_before_anything_is_written(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep")
    out = tmp_path / "out"
    (out / "shots").mkdir(parents=True)
    (out / "shots" / "a").symlink_to(victim)
    story = _story(tmp_path)
    before = tree(tmp_path)
    result = render(story, "-o", out)
    assert result.exit_code == 2
    assert "symlink" in result.output and "shots/a" in result.output
    after = tree(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("out/.ovi-studio")} == before


@pytest.mark.slow
def test_a_planted_symlink_in_place_of_a_file_is_replaced_never_written_through(tmp_path):
    victim = tmp_path / "victim.json"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").symlink_to(victim)
    (out / "cut.srt").symlink_to(tmp_path / "elsewhere.srt")
    result = render(_story(tmp_path), "-o", out)
    assert result.exit_code == 0
    assert "symlink" in result.output
    assert victim.read_text() == "precious" and not (tmp_path / "elsewhere.srt").exists()
    assert not (out / "report.json").is_symlink() and json.loads((out / "report.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["-draft", "take:2", "file:x", "[red]x[/]"])
def test_output_folder_names_ffmpeg_could_misread(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    story = _story(tmp_path, "-cut.mp4")
    result = render(story, "-o", name)
    assert result.exit_code == 0, result.output
    assert (tmp_path / name / "-cut.mp4").stat().st_size > 0
    assert (tmp_path / name / "-cut.srt").is_file()


def test_bad_output_folders_are_clear_errors(tmp_path):
    story = _story(tmp_path)
    (tmp_path / "file").write_text("x")
    result = render(story, "-o", tmp_path / "file")
    assert result.exit_code == 2 and "is a file" in result.output and "Traceback" not in result.output
    result = render(story, "-o", "/dev/null/out")
    assert result.exit_code == 2 and "Traceback" not in result.output


@pytest.mark.slow
def test_broken_state_is_set_aside_once_and_the_render_goes_on(tmp_path):
    story, out = _story(tmp_path), tmp_path / "out"
    assert render(story, "-o", out).exit_code == 0
    (out / "shots" / "a" / "take0" / "meta.json").write_text('{"cache_key": 3, "files": [1]}')
    (out / "shots" / "b" / "take0" / "meta.json").unlink()
    (out / "shots" / "b" / "take0" / "meta.json").mkdir()
    (out / "report.json").write_text("[1, 2")
    result = render(story, "-o", out)
    assert result.exit_code == 0, result.output
    assert result.output.count("shots/a/take0/meta.json") == 1
    assert result.output.count("report.json: is not readable JSON") == 1
    aside = sorted(p.name.split("-", 4)[-1] for p in (out / ".ovi-studio" / "set-aside").iterdir())
    assert aside == ["report.json", "shots__a__take0__meta.json", "shots__b__take0__meta.json"]
    report = json.loads((out / "report.json").read_text())
    assert [t["status"] for s in report["shots"] for t in s["takes"]] == ["rendered", "rendered"]


def test_one_render_per_output_folder(tmp_path):
    out = tmp_path / "out"
    with outdir.hold(out, storyboard="first.yaml") as first:
        result = render(_story(tmp_path), "-o", out, "--no-wait")
        assert result.exit_code == 2
        assert f"render pid {os.getpid()}" in result.output and "first.yaml" in result.output
        assert first.scratch.is_dir()
    waited, log = [], []

    def second():
        with outdir.hold(out, storyboard="second.yaml", log=log.append):
            waited.append(time.monotonic())
    with outdir.hold(out, storyboard="first.yaml"):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.5)
        assert waited == [] and "in use by" in log[0]
        released = time.monotonic()
    thread.join(10)
    assert waited and waited[0] >= released


def test_the_lock_holder_sweeps_dead_runs_temporary_folders_only(tmp_path):
    out = tmp_path / "out"
    dead = out / ".ovi-studio" / "tmp" / "123-deadbeef"
    dead.mkdir(parents=True)
    (dead / "000001-frames.mkv").write_bytes(b"half")
    (out / ".frames.tmp-123.mkv").write_bytes(b"user")
    with outdir.hold(out, storyboard="s.yaml") as folder:
        assert not dead.exists() and folder.scratch.is_dir()
    assert (out / ".frames.tmp-123.mkv").read_bytes() == b"user"
    assert list((out / ".ovi-studio" / "tmp").iterdir()) == []


def test_writes_are_confined_to_the_held_folder(tmp_path):
    from ovi_studio.render.artifacts import atomic_target
    out = tmp_path / "out"
    with outdir.hold(out, storyboard="s.yaml"):
        with pytest.raises(UserError, match="outside the output folder"):
            with atomic_target(out / ".." / "x.txt") as tmp:
                tmp.write_text("x")
        (out / "link").symlink_to(tmp_path)
        with pytest.raises(UserError, match="symlink"):
            with atomic_target(out / "link" / "x.txt") as tmp:
                tmp.write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
