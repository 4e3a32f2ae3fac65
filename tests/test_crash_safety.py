"""kill -9 at any point (mid-take, mid-assembly, at seeded random moments) loses nothing finished
and leaves no temporary file after the resume; two renders of one storyboard at once both end
well."""
from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from blocking_cli import start_blocked

STORY = """\
version: 1
model: 720x720_5s
shots:
  - id: one
    scene: A quiet street.
    dialogue: ["Good evening."]
    audio: distant traffic
  - id: two
    extends: one
    scene: The street, a little later.
    audio: distant traffic
  - id: three
    scene: A park bench.
    audio: birds
"""

def _render_args(story: Path, out: Path) -> list[str]:
    return ["render", str(story), "-o", str(out), "--engine", "preview", "-q"]


def _run(story: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ovi_studio", *_render_args(story, out)],
                          capture_output=True, text=True, timeout=600)


def _committed_takes(out: Path) -> dict[str, bytes]:
    """Every file of every committed take (one whose meta.json exists)."""
    files = {}
    for meta in out.glob("shots/*/take*/meta.json"):
        for path in meta.parent.iterdir():
            if path.is_file():
                files[path.relative_to(out).as_posix()] = path.read_bytes()
    return files


def _assert_resumed_cleanly(story: Path, out: Path, before: dict[str, bytes]) -> None:
    result = _run(story, out)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    after = _committed_takes(out)
    assert {name: after.get(name) for name in before} == before  # finished takes: same bytes
    assert list((out / ".ovi-studio" / "tmp").iterdir()) == []  # no temporary file left
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "ok" and (out / "final.mp4").stat().st_size > 0


@pytest.mark.slow
def test_kill_mid_assembly_then_resume(tmp_path):
    story, out = tmp_path / "story.yaml", tmp_path / "out"
    story.write_text(STORY)
    # blocks in the cut's mux (the run's temporary final.mp4): sidecars written, the cut not yet
    proc = start_blocked(tmp_path, "ovi_studio.media.ffmpeg", "run", '"-final.mp4" in repr(args)',
                         _render_args(story, out))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert any((out / ".ovi-studio" / "tmp").iterdir())  # the killed run's work folder
    before = _committed_takes(out)
    assert len([n for n in before if n.endswith("meta.json")]) == 3
    _assert_resumed_cleanly(story, out, before)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_kill_at_a_random_moment_then_resume(tmp_path, seed):
    story, out = tmp_path / "story.yaml", tmp_path / "out"
    story.write_text(STORY)
    started = time.monotonic()
    full = _run(story, tmp_path / "timing")  # how long a whole render takes on this machine
    assert full.returncode == 0, full.stderr
    moment = random.Random(seed).uniform(0.5, max(1.0, time.monotonic() - started))
    proc = subprocess.Popen([sys.executable, "-m", "ovi_studio", *_render_args(story, out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(moment)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    before = _committed_takes(out) if out.is_dir() else {}
    _assert_resumed_cleanly(story, out, before)


@pytest.mark.slow
def test_two_renders_of_one_storyboard_at_once_both_end_well(tmp_path):
    story, out = tmp_path / "story.yaml", tmp_path / "out"
    story.write_text(STORY)
    procs = [subprocess.Popen([sys.executable, "-m", "ovi_studio", *_render_args(story, out)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    report = json.loads((out / "report.json").read_text())
    statuses = [t["status"] for s in report["shots"] for t in s["takes"]]
    # whichever started second waited for the folder (or started after the first ended) and
    # found every take done: nothing rendered twice
    assert statuses == ["cached"] * 3
    assert list((out / ".ovi-studio" / "tmp").iterdir()) == []
