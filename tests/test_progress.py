"""Progress a person can follow: every phase on one line each when piped, estimates from
measured timings of earlier takes, and shots done / rate / ETA for long loops."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from ovi_studio import counting as progress_mod
from ovi_studio.render.inputs import RenderOptions
from ovi_studio.counting import CountProgress
from ovi_studio.render import progress as render_progress
from ovi_studio.render.progress import RenderProgress, RichRenderProgress
from ovi_studio.render.session import RenderSession
from ovi_studio.render.timings import TimingStore

STORY = """\
version: 1
model: 720x720_5s
shots:
  - id: lamp
    scene: The keeper polishes the brass lens.
    dialogue:
      - Nobody should be out tonight.
    audio: Rain on glass.
  - id: stairs
    extends: lamp
    scene: The keeper hurries down the iron stairs.
    audio: Footsteps on iron.
"""


def _session(tmp_path: Path, stream, engine="preview", **options) -> RenderSession:
    story = tmp_path / "s.yaml"
    story.write_text(STORY)
    session = RenderSession(RenderOptions(source=story, out_dir=tmp_path / "out", engine=engine, **options),
                            RenderProgress(stream))
    session.prepare()
    return session


@pytest.mark.slow
def test_a_piped_log_has_one_line_per_phase_of_every_take_and_the_cut(tmp_path, monkeypatch):
    monkeypatch.setenv("OVI_STUDIO_CACHE", str(tmp_path / "cache"))
    log = io.StringIO()
    _session(tmp_path, log).run()
    lines = log.getvalue().splitlines()
    for take in ("lamp/take0", "stairs/take0"):
        for phase in ("drawing frames", "guide speech", "writing files"):
            assert sum(line.strip() == f"{take}: {phase}" for line in lines) == 1, (take, phase)
    assert sum(line.strip() == "cut: assembling the cut" for line in lines) == 1
    assert "cut: 241 frames to encode for 2 shots" in [line.strip() for line in lines]
    assert any(line.strip().startswith("cut: 241/241 frames encoded, 2/2 shots (") for line in lines)
    assert not any("\r" in line or "\x1b" in line for line in lines)  # plain lines, no redraws
    again = io.StringIO()
    _session(tmp_path, again).run()
    assert "lamp/take0" not in again.getvalue()  # up to date: not shown as starting or finishing


@pytest.mark.slow
def test_the_model_shows_encoding_loading_each_step_and_decoding(tmp_path, tiny_ckpt_short, monkeypatch):
    monkeypatch.setenv("OVI_STUDIO_CACHE", str(tmp_path / "cache"))
    story = tmp_path / "s.yaml"
    story.write_text("version: 1\nmodel: 720x720_5s\nshots:\n  - id: one\n    scene: A cat.\n    audio: Purring.\n")
    proc = subprocess.run([sys.executable, "-m", "ovi_studio", "render", str(story), "-o", str(tmp_path / "out"),
                           "--engine", "ovi", "--ckpt-dir", str(tiny_ckpt_short), "--device", "cpu",
                           "--set", "steps=2", "--no-lint"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    phases = [line.strip() for line in proc.stdout.splitlines() if line.startswith("  one/take0: ")]
    assert phases[:2] == ["one/take0: encoding prompts", "one/take0: loading the model"] or \
        "one/take0: loading the model" in phases
    for phase in ("denoising", "decoding audio", "decoding video", "writing files"):
        assert phases.count(f"one/take0: {phase}") == 1, phases
    assert "  cut: assembling the cut" in proc.stdout


@pytest.mark.slow
def test_estimates_come_from_measured_takes_on_the_same_key(tmp_path, monkeypatch):
    monkeypatch.setenv("OVI_STUDIO_CACHE", str(tmp_path / "cache"))
    first = _session(tmp_path, io.StringIO())
    step = first.plan.steps[0]
    assert first.estimate(step) == pytest.approx(1.0)  # the preview's flat guess: nothing measured
    assert step.estimate_seconds == 0  # and no GPU time in the plan
    first.run()
    stored = json.loads((tmp_path / "cache" / "timings.json").read_text())
    (key, samples), = stored.items()
    assert key.startswith("cpu|preview|720x720_5s|") and len(samples) == 2
    again = _session(tmp_path, io.StringIO(), force=[])
    measured = TimingStore(tmp_path / "cache").estimate(key, 50)
    assert again.estimate(again.plan.steps[0]) == pytest.approx(measured) != pytest.approx(1.0)


def test_timing_store_scales_the_denoising_share_with_steps(tmp_path):
    store = TimingStore(tmp_path)
    store.record("k", 50, total_s=70.0, denoise_s=60.0)
    assert store.estimate("k", 50) == pytest.approx(70.0)
    assert store.estimate("k", 25) == pytest.approx(40.0)
    assert TimingStore(tmp_path).estimate("k", 50) == pytest.approx(70.0)  # kept on disk
    assert store.estimate("other", 50) is None


def test_the_cut_encode_logs_frames_shots_rate_and_eta_every_few_seconds(monkeypatch):
    log = io.StringIO()
    shown = RenderProgress(log)
    clock = iter([0.0, 1.0, 6.0, 7.0, 12.0])
    monkeypatch.setattr(render_progress, "time", SimpleNamespace(monotonic=lambda: next(clock)))
    for frames, shots in [(0, 0), (100, 1), (150, 1), (160, 2), (300, 3)]:
        shown.cut_encode(frames, 300, shots, 3)
    assert log.getvalue().splitlines() == [
        "  cut: 300 frames to encode for 3 shots",  # then nothing for a few seconds
        "  cut: 150/300 frames encoded, 1/3 shots (25.0 frames/s, elapsed 0m06s, ETA 0m06s)",
        "  cut: 300/300 frames encoded, 3/3 shots (25.0 frames/s, elapsed 0m12s, ETA 0m00s)"]
    monkeypatch.undo()
    quiet = RenderProgress(io.StringIO(), quiet=True)
    quiet.cut_encode(0, 10, 0, 1)
    quiet.cut_encode(10, 10, 1, 1)
    assert quiet.stream.getvalue() == ""
    assert render_progress.encode_line(0, 0, 3, 3, 1.0) == \
        "0 frames to encode, 3/3 shots (every piece reused)"


def test_the_cut_encode_draws_a_bar_on_a_terminal():
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    with RichRenderProgress(console) as shown:
        shown.cut_encode(0, 300, 0, 3)
        shown.cut_encode(150, 300, 1, 3)
        task = shown._progress.tasks[-1]
        assert (task.completed, task.total) == (150, 300)
        assert task.description.startswith("  cut: 150/300 frames encoded, 1/3 shots (")
        shown.cut_encode(300, 300, 3, 3)
    assert "cut: 300/300 frames encoded, 3/3 shots" in console.file.getvalue()


def test_count_progress_reports_done_rate_and_eta_only_for_large_jobs(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(progress_mod, "LOG_EVERY_S", 0.0)
    with CountProgress("check big.yaml", 300, log) as counter:
        for _ in range(300):
            counter.advance()
    lines = log.getvalue().splitlines()
    assert lines and lines[-1].startswith("check big.yaml: 300/300 shots (")
    assert "/s, elapsed " in lines[-1] and "ETA 0m00s" in lines[-1]
    quiet = io.StringIO()
    with CountProgress("check small.yaml", 10, quiet) as counter:
        for _ in range(10):
            counter.advance()
    assert quiet.getvalue() == ""


@pytest.mark.slow
def test_check_of_a_large_storyboard_shows_progress_on_stderr(tmp_path):
    shots = "".join(f"  - id: s{i}\n    scene: A harbour at dawn, boat {i}.\n    audio: Gulls.\n"
                    for i in range(progress_mod.LARGE))
    story = tmp_path / "big.yaml"
    story.write_text("version: 1\nmodel: 720x720_5s\nshots:\n" + shots)
    proc = subprocess.run([sys.executable, "-m", "ovi_studio", "check", str(story), "--format", "json"],
                          capture_output=True, text=True, timeout=300)
    json.loads(proc.stdout)  # stdout stays the report
    assert f"check big.yaml: {progress_mod.LARGE}/{progress_mod.LARGE} shots" in proc.stderr
    planned = subprocess.run([sys.executable, "-m", "ovi_studio", "plan", str(story), "--json"],
                             capture_output=True, text=True, timeout=300)
    assert f"plan: {progress_mod.LARGE}/{progress_mod.LARGE} shots" in planned.stderr
