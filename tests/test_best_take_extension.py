"""An extension of a shot with several takes and no `pick:` starts from the best of them by the
quality checks (the take the cut holds), chosen once they are rendered and checked: a stand-in
engine renders pier's take 0 black and silent and take 1 normal, and walk, which extends pier,
must start from take 1's last frame. A re-run renders nothing; plan, dry run and render agree;
`--pick first` keeps take 0; a `pick:` makes the extension stale and the plan says why."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import ovi_studio
from ovi_studio.cli import app
from ovi_studio.cli.plan_table import plan_lines
from ovi_studio.render import quality
from ovi_studio.render.engines import ShotOutput
from ovi_studio.render.picking import record_pick
from ovi_studio.take_choice import QC_FILE

STORY = """\
version: 1
model: 720x720_5s
output: {loudness: off, subtitles: false}
shots:
  - id: pier
    takes: 2
    scene: A wooden pier in morning fog.
    audio: a foghorn far away
  - id: walk
    extends: pier
    scene: Someone walks to the end of the pier.
    audio: slow steps on planks
"""
SIZE = 64  # pixels: small frames keep the test fast
RATE = 16_000


class StandIn:
    """pier/take0 black and silent, every other take a moving colour ramp with a tone; an
    extension's frame 0 is the picture it was given (as the model's is)."""
    name = "stand-in"
    color_drift = False

    def __init__(self, log: list | None = None, fail: set | None = None):
        self.log, self.fail = log if log is not None else [], fail or set()

    def identity(self):
        return {"name": self.name}

    def prepare(self, jobs):
        pass

    def render(self, job, first_frame, on_step=None, on_phase=None):
        self.log.append(f"{job.shot_id}/take{job.take}")
        if (job.shot_id, job.take) in self.fail:
            raise RuntimeError("the stand-in fails this take")
        samples = int(job.frames / 24 * RATE)
        if (job.shot_id, job.take) == ("pier", 0):
            return ShotOutput(np.zeros((job.frames, SIZE, SIZE, 3), np.uint8), np.zeros(samples, np.float32))
        ramp = np.linspace(60, 200, SIZE, dtype=np.float32)
        frames = np.empty((job.frames, SIZE, SIZE, 3), np.uint8)
        for i in range(job.frames):
            frames[i] = np.stack([np.add.outer(ramp, ramp * 0 + i) % 256, np.tile(ramp, (SIZE, 1)),
                                  np.full((SIZE, SIZE), 90 + 40 * job.take)], -1).astype(np.uint8)
        if first_frame is not None:
            frames[0] = np.asarray(first_frame.convert("RGB"))
        tone = 0.1 * np.sin(2 * np.pi * 440 * np.arange(samples) / RATE)
        return ShotOutput(frames, tone.astype(np.float32))

    def close(self):
        pass


def never():
    raise AssertionError("nothing should render")


def options(out: Path, **kw) -> ovi_studio.RenderOptions:
    return ovi_studio.RenderOptions(out_dir=out, **kw)


def render(story: Path, out: Path, engine=StandIn, **kw):
    """(the plan's lines and the takes it renders as render saw it before it began, the
    outcome, report.json)."""
    seen = []
    outcome = ovi_studio.render(story, options(out, **kw), engine_factory=engine,
                                on_plan=lambda plan: seen.append((plan_lines(plan), keys(plan.to_render))) or True)
    return seen[0], outcome, json.loads((out / "report.json").read_text())


def keys(steps) -> set[str]:
    return {f"{s.shot.id}/take{s.take}" for s in steps}


def meta(out: Path, shot: str, take: int) -> dict:
    return json.loads((out / "shots" / shot / f"take{take}" / "meta.json").read_text())


def step(plan, shot: str, take: int = 0):
    return next(s for s in plan.steps if s.shot.id == shot and s.take == take)


def rendered(outcome) -> set[str]:
    return {f"{r.shot}/take{r.take}" for r in outcome.records if r.status == "rendered"}


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    folder = tmp_path_factory.mktemp("best")
    story = folder / "story.yaml"
    story.write_text(STORY, encoding="utf-8")
    planned = ovi_studio.build_plan(story, options(folder / "out"))
    plan, outcome, report = render(story, folder / "out")
    assert outcome.exit_code == 0
    return story, folder / "out", planned, plan, outcome, report


def test_the_extension_starts_from_the_best_take(first):
    story, out, _, _, _, report = first
    shots = {s["id"]: s for s in report["shots"]}
    assert shots["pier"]["pick"]["take"] == 1  # the cut holds take 1 ...
    extends = shots["walk"]["takes"][0]["extends"]  # ... and walk started from it, saying why
    assert extends["shot"] == "pier" and extends["take"] == 1
    assert extends["reason"].startswith("best by quality checks: take 1 passed")
    assert "(failed black" in extends["reason"]
    assert extends["scores"]["1"] > extends["scores"]["0"]
    seed = meta(out, "walk", 0)["parent"]
    assert seed["take"] == 1 and seed["frames_sha256"] == meta(out, "pier", 1)["files"]["frames"]["sha256"]
    last = np.asarray(Image.open(out / "shots/pier/take1/last_frame.png").convert("RGB"))
    first_frame = quality.frames_at(out / "shots/walk/take0/frames.mkv", SIZE, SIZE, [0])[0]
    assert np.array_equal(first_frame, last) and last.mean() > 40  # not take 0's black
    assert meta(out, "walk", 0)["key_inputs"]["parent"] == meta(out, "pier", 1)["cache_key"]


def test_plan_and_render_agree_before_the_takes_exist(first):
    _, _, planned, plan, outcome, _ = first
    lines, to_render = plan
    assert plan_lines(planned) == lines  # `plan` and `render --dry-run` print these
    walk = step(planned, "walk").to_json()
    assert walk["action"] == "render" and walk["cache_key"] == "" and walk["parent_take"] is None
    assert walk["reasons"] == ["extends the best of pier's 2 takes, chosen after they render"]
    assert rendered(outcome) == to_render == {"pier/take0", "pier/take1", "walk/take0"}


def test_a_rerun_plans_the_extension_from_the_best_take_and_renders_nothing(first):
    story, out, *_ = first
    planned = ovi_studio.build_plan(story, options(out))
    walk = step(planned, "walk")
    assert walk.status == "fresh" and walk.parent_take == 1
    assert walk.parent_choice.reason.startswith("best by quality checks: take 1")
    assert walk.cache_key == meta(out, "walk", 0)["cache_key"]
    (_, to_render), outcome, report = render(story, out, never)
    assert not to_render and not rendered(outcome) and outcome.exit_code == 0
    assert report["shots"][1]["takes"][0]["extends"]["take"] == 1


def test_unchecked_takes_are_checked_when_the_extension_is_dispatched_and_it_is_reused(first):
    story, out, *_ = first
    for take in (0, 1):
        (out / "shots/pier" / f"take{take}" / QC_FILE).unlink()
    planned = ovi_studio.build_plan(story, options(out))
    assert step(planned, "walk").reasons == ["extends the best of pier's 2 takes, chosen once they are checked"]
    _, outcome, report = render(story, out, never)
    assert not rendered(outcome) and outcome.exit_code == 0
    assert report["shots"][1]["takes"][0]["status"] == "cached"
    assert report["shots"][1]["takes"][0]["extends"]["take"] == 1


def test_a_pick_makes_the_extension_stale_and_the_plan_says_why(first, tmp_path):
    story, out, *_ = first
    picked = tmp_path / "story.yaml"
    picked.write_text(story.read_text(), encoding="utf-8")
    record_pick(picked, "pier", 0)
    planned = ovi_studio.build_plan(picked, options(out))
    walk = step(planned, "walk")
    assert walk.status == "stale" and walk.reasons == ["parent pier re-picked (take 1 -> take 0)"]
    assert walk.parent_choice.reason == "picked: `pick: 0` in the storyboard"


@pytest.mark.slow
def test_pick_first_keeps_take_zero(tmp_path):
    story = tmp_path / "story.yaml"
    story.write_text(STORY + "  - id: dock\n    scene: A dock.\n    audio: water\n", encoding="utf-8")
    planned = ovi_studio.build_plan(story, options(tmp_path / "out", pick="first"))
    assert step(planned, "walk").parent_take == 0 and step(planned, "walk").cache_key
    _, outcome, report = render(story, tmp_path / "out", pick="first")
    assert outcome.exit_code == 0
    assert report["shots"][0]["pick"] == {"take": 0, "reason": "take 0 (--pick first)"}
    assert report["shots"][1]["takes"][0]["extends"] == {"shot": "pier", "take": 0,
                                                        "reason": "take 0 (--pick first)"}
    assert meta(tmp_path / "out", "walk", 0)["parent"]["take"] == 0
    # a later `pick` of another shot chooses the others as that render did (walk stays current)
    picked = ovi_studio.pick(story, "dock", 0, tmp_path / "out")
    assert picked.exit_code == 0 and picked.chosen == {"pier": 0, "walk": 0, "dock": 0}


@pytest.mark.slow
def test_when_a_take_of_the_parent_fails_the_extension_starts_from_another(tmp_path):
    story = tmp_path / "story.yaml"
    story.write_text(STORY.replace("takes: 2", "takes: 3"), encoding="utf-8")
    log = []
    _, outcome, report = render(story, tmp_path / "out", lambda: StandIn(log, {("pier", 1)}))
    assert log[-1] == "walk/take0"  # after every take of pier
    walk = report["shots"][1]["takes"][0]
    assert walk["status"] == "rendered" and walk["extends"]["take"] == 2  # not the black take 0
    assert meta(tmp_path / "out", "walk", 0)["parent"]["take"] == 2


def test_the_cli_plan_dry_run_and_render_agree(tmp_path):
    """With the preview engine (takes of equal scores: the earlier one)."""
    story, out = tmp_path / "story.yaml", tmp_path / "out"
    story.write_text(STORY.replace("output:", "engine: preview\noutput:"), encoding="utf-8")
    runner = CliRunner()

    def invoke(*args):
        result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
        assert result.exit_code == 0 and "Traceback" not in result.output, result.output
        return result.output
    for expected in ({"pier/take0", "pier/take1", "walk/take0"}, set()):
        takes = json.loads(invoke("plan", story, "-o", out, "--json"))["takes"]
        planned = {f"{t['shot']}/take{t['take']}" for t in takes if t["action"] == "render"}
        dry = {line.split()[0] for line in invoke("render", story, "-o", out, "--dry-run").splitlines()
               if line.startswith("  ") and "  render" in line}
        invoke("render", story, "-o", out, "-q")
        report = json.loads((out / "report.json").read_text())
        done = {f"{s['id']}/take{t['take']}" for s in report["shots"] for t in s["takes"]
                if t["status"] == "rendered"}
        assert planned == dry == done == expected
    walk = json.loads(invoke("plan", story, "-o", out, "--json"))["takes"][2]
    assert walk["parent_take"] == 0 and walk["parent_choice"]["reason"].startswith("best by quality checks")
