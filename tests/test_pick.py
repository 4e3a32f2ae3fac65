"""Choosing takes: `pick` writes the choice into the storyboard and re-assembles the cut from
the takes already rendered without constructing an engine; the cut then holds the picked
take's frames; re-picking a parent makes its extensions stale (and the plan says why); without
a pick the best take by the quality checks goes in the cut."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ovi_studio import take_choice
from ovi_studio.plan import build_plan
from ovi_studio.render import picking, quality
from ovi_studio.render.engines import ShotOutput
from ovi_studio.render.inputs import RenderOptions
from ovi_studio.render.progress import RenderProgress
from ovi_studio.render.session import RenderSession
from ovi_studio.storyboard import load_storyboard

STORY = """\
version: 1
model: 720x720_5s
engine: preview
output: {loudness: off, subtitles: false}
shots:
  # the harbour, seen twice
  - id: harbour
    takes: 2
    scene: A fishing boat comes into a grey harbour.
    audio: a boat engine
  - id: pier
    takes: 2
    scene: An empty pier at dawn.
    audio: gulls and waves
  - id: walk
    extends: pier
    scene: The camera moves along the pier.
    audio: footsteps on wood
"""
COLOURS = {0: (200, 40, 40), 1: (40, 40, 200)}  # take -> the fake engine's solid colour
SIZE = 64  # pixels: small frames keep the test fast


class SolidEngine:
    """Renders each take as one small solid colour picture (by take number) with a tone."""
    name = "solid"
    color_drift = False

    def identity(self):
        return {"name": "solid"}

    def prepare(self, jobs):
        pass

    def render(self, job, first_frame, on_step=None, on_phase=None):
        frames = np.empty((job.frames, SIZE, SIZE, 3), np.uint8)
        frames[:] = COLOURS[job.take]
        t = np.arange(int(job.frames / 24 * 16000)) / 16000
        return ShotOutput(frames, (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))

    def close(self):
        pass


def session_for(story: Path, factory, **kw) -> RenderSession:
    session = RenderSession(RenderOptions(source=story, out_dir=story.parent / "out", **kw),
                            RenderProgress(quiet=True), factory)
    session.prepare()
    return session


def never():
    raise AssertionError("pick must not construct an engine")


def first_frame_colour(session) -> np.ndarray:
    final = json.loads((session.out_dir / "report.json").read_text())["final"]
    frame = quality.frames_at(session.out_dir / final["path"], SIZE, SIZE, [0])[0]
    return frame.reshape(-1, 3).mean(0)


@pytest.fixture()
def story(tmp_path):
    path = tmp_path / "story.yaml"
    path.write_text(STORY, encoding="utf-8")
    outcome = session_for(path, SolidEngine).run()
    assert outcome.exit_code == 0
    return path


@pytest.mark.slow
def test_pick_reassembles_without_an_engine(story):
    report = json.loads((story.parent / "out" / "report.json").read_text())
    assert report["shots"][0]["pick"]["take"] == 0  # equal scores: the earlier take
    assert "best by quality checks" in report["shots"][0]["pick"]["reason"]
    picking.record_pick(story, "harbour", 1)
    text = story.read_text()
    assert "  - id: harbour\n    pick: 1\n    takes: 2\n" in text and "# the harbour, seen twice" in text
    log = io.StringIO()
    session = RenderSession(RenderOptions(source=story, out_dir=story.parent / "out"), RenderProgress(log), never)
    session.prepare()
    outcome = session.assemble_existing()
    assert outcome.final["status"] == "done" and outcome.exit_code == 0
    # only the re-picked shot's frames are encoded again; the report and the log say so
    assert [(p["shots"], p["reused"]) for p in outcome.final["pieces"]] == [
        (["harbour"], False), (["pier"], True), (["walk"], True)]
    assert "cut: reused 2 of 3 encoded piece(s) of the cut; encoded 1: harbour" in log.getvalue()
    assert np.abs(first_frame_colour(session) - COLOURS[1]).max() < 6  # the picked take's frames
    picking.record_pick(story, "harbour", 0)  # replacing an existing pick
    assert "pick: 0" in story.read_text() and "pick: 1" not in story.read_text()
    outcome = session_for(story, never).assemble_existing()
    assert np.abs(first_frame_colour(session) - COLOURS[0]).max() < 6


@pytest.mark.slow
def test_repicking_a_parent_makes_extensions_stale(story):
    picking.record_pick(story, "pier", 1)
    loaded = load_storyboard(story)
    plan = build_plan(loaded, story.parent / "out")
    walk = next(s for s in plan.steps if s.shot.id == "walk")
    assert walk.status == "stale" and walk.reasons == ["parent pier re-picked (take 0 -> take 1)"]
    assert walk.parent_take == 1
    outcome = session_for(story, never).assemble_existing()
    assert outcome.final["status"] == "skipped" and "walk" in outcome.final["reason"]
    # rendering again continues the extension from the picked take
    outcome = session_for(story, SolidEngine).run()
    assert outcome.exit_code == 0
    meta = json.loads((story.parent / "out/shots/walk/take0/meta.json").read_text())
    assert meta["parent"]["take"] == 1


def test_a_pick_beyond_the_rendered_takes_is_an_error(story):
    picking.record_pick(story, "pier", 1)
    from ovi_studio.errors import UserError
    with pytest.raises(UserError, match=r"shot pier picks take 1, but only takes 0 to 0 are rendered"):
        session_for(story, never, takes=1)


def test_pick_first_and_best_policies(tmp_path):
    story = tmp_path / "story.yaml"
    story.write_text(STORY, encoding="utf-8")
    shot = load_storyboard(story).shot("harbour")
    good = [take_choice.Check("black", take_choice.PASS, "")]
    bad = [take_choice.Check("black", take_choice.FAIL, "black: 1.00 s from 0.00 s")]
    best = take_choice.choose(shot, {0: bad, 1: good})
    assert best.take == 1 and "take 0: 0% (failed black)" in best.reason
    assert best.scores == {0: 0.0, 1: 1.0} and best.to_json()["scores"] == {"0": 0.0, "1": 1.0}
    assert take_choice.choose(shot, {0: bad, 1: good}, "first").take == 0
    assert take_choice.choose(shot, {0: good, 1: good}).take == 0  # equal scores: the earlier take
    assert take_choice.choose(shot, {1: good}).take == 1  # take 0 failed


@pytest.mark.slow
def test_pick_cli_messages(story):
    run = lambda *a: subprocess.run([sys.executable, "-m", "ovi_studio", "pick", str(story), *a,  # noqa: E731
                                     "-o", str(story.parent / "out")], capture_output=True, text=True)
    bad = run("harbour", "5")
    assert bad.returncode == 2 and "numbered 0 to 1" in bad.stderr and "Traceback" not in bad.stderr
    assert run("nope", "0").returncode == 2
    stale = run("pier", "1")
    assert stale.returncode == 1
    assert "stale: walk/take0: parent pier re-picked (take 0 -> take 1)" in stale.stderr
