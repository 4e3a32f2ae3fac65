"""A render killed mid-shot (SIGKILL) or stopped with Ctrl-C resumes and loses nothing finished."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from blocking_cli import start_blocked
from ovi_studio.media import probe

STORY = """\
version: 1
model: 720x720_5s
shots:
  - id: one
    scene: A quiet street.
    audio: distant traffic
  - id: two
    extends: one
    scene: The street, a little later.
    audio: distant traffic
  - id: three
    scene: A park bench.
    audio: birds
"""

def _start(tmp_path: Path, out: Path) -> tuple[subprocess.Popen, Path]:
    """The render blocked in the middle of its second take: the take's frames written under a
    temporary name, its meta.json not yet."""
    story = tmp_path / "story.yaml"
    story.write_text(STORY)
    proc = start_blocked(tmp_path, "ovi_studio.media.video", "write_lossless", "calls == 2",
                         ["render", str(story), "-o", str(out), "--engine", "preview", "-q"],
                         call_first=True, timeout=120)
    return proc, story


def _snapshot(folder: Path) -> dict[str, bytes]:
    """The take's own files (qc.json is a cache of measurements made after it, not the take)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and p.name != "qc.json"}


def _temporary_files(out: Path) -> list[Path]:
    return sorted(p for p in (out / ".ovi-studio" / "tmp").rglob("*") if p.is_file())


def _finish(story: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ovi_studio", "render", str(story), "-o", str(out),
                           "--engine", "preview", "-q"], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_sigkill_mid_shot_then_resume(tmp_path):
    out = tmp_path / "out"
    proc, story = _start(tmp_path, out)
    done_before = _snapshot((out / "shots" / "one" / "take0").resolve())
    assert not (out / "shots" / "two" / "take0").exists()  # linked only once complete
    in_progress = [p for p in (out / ".takes").glob("*/*") if not (p / "meta.json").exists()]
    assert len(in_progress) == 1  # two's take, in the store, without its commit marker
    assert [p.name.split("-", 1)[1] for p in _temporary_files(out)] == ["frames.mkv"]  # the run's own folder
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    result = _finish(story, out)
    assert result.returncode == 0, result.stderr
    after = _snapshot((out / "shots" / "one" / "take0").resolve())
    assert {name: after.get(name) for name in done_before} == done_before  # same bytes
    report = json.loads((out / "report.json").read_text())
    assert [t["status"] for s in report["shots"] for t in s["takes"]] == ["cached", "rendered", "rendered"]
    assert _temporary_files(out) == []
    assert probe.count_video_frames(out / "final.mp4") == 3 * 121 - 1


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_saves_what_is_done(tmp_path):
    out = tmp_path / "out"
    proc, story = _start(tmp_path, out)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    assert proc.returncode == 130
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "interrupted"
    assert (out / "shots" / "one" / "take0" / "meta.json").is_file()
    take_two = out / "shots" / "two" / "take0"
    assert not (take_two / "meta.json").exists()
    assert _temporary_files(out) == []  # temporary file removed
    assert _finish(story, out).returncode == 0
