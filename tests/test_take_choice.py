"""Which take is chosen (take_choice.py) and the plan's side of it, one function at a time on
takes and qc.json files written by hand: the rules and their reasons, when kept checks count,
and how the plan keys an extension whose parent's best take is known, not known yet, or chosen
later (start_extension). Fast (no render, no ffmpeg): test_best_take_extension.py renders."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from ovi_studio.errors import UserError
from ovi_studio.plan import build_plan, start_extension, wanted_takes
from ovi_studio.storyboard import QcThresholds, load_storyboard
from ovi_studio.take_choice import (FAIL, PASS, QC_FILE, SKIP, Check, Choice, check_policy, choose,
                                    draws_stills, failures, fixed_choice, qc_key, score, stored_checks)
from take_fakes import commit_plan

STORY = """\
version: 1
model: 720x720_5s
shots:
  - id: pier
    takes: 2{pick}
    prompt: "A pier in fog. Audio: a foghorn."
  - id: walk
    extends: pier
    prompt: "Someone walks along it. <S>Nearly there.<E> Audio: steps."
"""
GOOD = [Check("black", PASS, "no black stretch"), Check("speech", SKIP, "no speech")]
BAD = [Check("black", FAIL, "black: 5.00 s from 0.00 s"), Check("clipping", PASS, "0.000% clipped")]


def shot(takes=2, pick=None, prompt="A pier. Audio: waves."):
    return SimpleNamespace(takes=takes, pick=pick, prompt=prompt)


def story(tmp_path: Path, pick: int | None = None) -> Path:
    path = tmp_path / "story.yaml"
    path.write_text(STORY.format(pick="" if pick is None else f"\n    pick: {pick}"), encoding="utf-8")
    return path


def plan_of(path: Path, **kw):
    return build_plan(load_storyboard(path), path.parent / "out", **kw)


def steps(plan) -> dict[str, object]:
    return {f"{s.shot.id}/{s.take}": s for s in plan.steps}


def keep_checks(step, checks, thresholds=QcThresholds()) -> None:
    """qc.json beside a committed take, as the render keeps it."""
    meta = json.loads((step.artifact_dir / "meta.json").read_text())
    (step.artifact_dir / QC_FILE).write_text(json.dumps(
        {"key": qc_key(meta, step.shot, thresholds), "checks": [c.to_json() for c in checks]}))


# -- the rule ---------------------------------------------------------------------------------

def test_a_pick_the_only_take_and_first_need_no_checks():
    assert fixed_choice(shot(pick=1), "first") == Choice(1, "picked: `pick: 1` in the storyboard")
    assert fixed_choice(shot(takes=1), "best") == Choice(0, "the only take")
    assert fixed_choice(shot(), "first") == Choice(0, "take 0 (--pick first)")
    assert fixed_choice(shot(), "best") is None
    assert choose(shot(), {0: BAD, 1: GOOD}, "first").take == 0
    assert choose(shot(pick=0), {0: BAD, 1: GOOD}).take == 0


def test_the_best_take_has_the_highest_share_of_passed_checks_and_the_reason_says_so():
    best = choose(shot(takes=3), {0: BAD, 1: GOOD, 2: BAD + GOOD})
    assert best == Choice(1, "best by quality checks: take 1 passed 100%; take 0: 50% (failed black); "
                             "take 2: 67% (failed black)", {0: 0.5, 1: 1.0, 2: 2 / 3})
    assert best.to_json() == {"take": 1, "reason": best.reason, "scores": {"0": 0.5, "1": 1.0, "2": 0.667}}
    assert choose(shot(), {1: GOOD, 0: GOOD}) == Choice(
        0, "best by quality checks: take 0 passed 100%; take 1: 100%", {0: 1.0, 1: 1.0})  # ties: earlier
    assert choose(shot(), {1: BAD}).take == 1  # take 0 failed: not a candidate
    assert choose(shot(), {}) == Choice(0, "take 0: no take rendered")
    assert Choice(0, "the only take").to_json() == {"take": 0, "reason": "the only take"}


def test_scores_failures_and_policies():
    assert score([Check("speech", SKIP, "")]) == 1.0 and score([]) == 1.0
    assert score(BAD + [Check("speech", SKIP, "")]) == 0.5
    assert failures(BAD) == BAD[:1] and failures(BAD, {"clipping"}) == []
    check_policy("best")
    check_policy("first")
    with pytest.raises(UserError, match=r"--pick worst: expected best or first"):
        check_policy("worst")


def test_kept_checks_count_only_for_the_take_as_it_was_checked(tmp_path):
    meta = {"files": {"frames": {"path": "frames.mkv", "sha256": "aa"}}, "parent": None,
            "engine": {"name": "ovi"}}
    speaking = shot(prompt="<S>Hello.<E> Audio: room.")
    th = QcThresholds()
    assert stored_checks(tmp_path, meta, speaking, th) is None  # never checked
    (tmp_path / QC_FILE).write_text(json.dumps({"key": qc_key(meta, speaking, th),
                                                "checks": [c.to_json() for c in BAD]}))
    assert stored_checks(tmp_path, meta, speaking, th) == BAD
    other_files = {**meta, "files": {"frames": {"path": "frames.mkv", "sha256": "bb"}}}
    for changed in (stored_checks(tmp_path, other_files, speaking, th),
                    stored_checks(tmp_path, {**meta, "parent": {"take": 1}}, speaking, th),
                    stored_checks(tmp_path, meta, shot(prompt="<S>Goodbye.<E> Audio: room."), th),
                    stored_checks(tmp_path, meta, speaking, QcThresholds(black_min_s=1.0)),
                    stored_checks(tmp_path, {**meta, "engine": {"name": "preview"}}, speaking, th)):
        assert changed is None
    assert draws_stills({"engine": {"name": "preview"}}) and not draws_stills(meta) and not draws_stills({})
    (tmp_path / QC_FILE).write_text("{broken")
    assert stored_checks(tmp_path, meta, speaking, th) is None


# -- the plan ---------------------------------------------------------------------------------

def test_before_the_takes_are_checked_the_extension_has_no_key(tmp_path):
    walk = steps(plan_of(story(tmp_path)))["walk/0"]
    assert (walk.cache_key, walk.parent_take, walk.parent_choice, walk.parent_dir) == ("", None, None, None)
    assert (walk.status, walk.action) == ("stale", "render")
    assert walk.reasons == ["extends the best of pier's 2 takes, chosen after they render"]
    assert walk.to_json()["parent_take"] is None and walk.to_json()["parent_choice"] is None
    assert (walk.height, walk.width) == (704, 704)  # sized as every take of pier is
    forced = steps(plan_of(story(tmp_path), force=["walk"]))["walk/0"]
    assert forced.reasons == ["forced (--force)"] and forced.cache_key == ""
    keyed = steps(plan_of(story(tmp_path), pick="first"))
    assert keyed["walk/0"].parent_take == 0 and keyed["walk/0"].key_inputs["parent"] == keyed["pier/0"].cache_key


def test_takes_rendered_and_checked_let_the_plan_choose_the_best(tmp_path):
    path = story(tmp_path)
    commit_plan(plan_of(path, pick="first"))  # walk rendered from take 0
    first = steps(plan_of(path))
    assert first["walk/0"].reasons == ["extends the best of pier's 2 takes, chosen once they are checked"]
    keep_checks(first["pier/0"], BAD)
    assert steps(plan_of(path))["walk/0"].cache_key == ""  # take 1 is not checked yet
    keep_checks(first["pier/1"], GOOD)
    chosen = steps(plan_of(path))
    walk = chosen["walk/0"]
    assert walk.parent_take == 1 and walk.parent_choice.scores == {0: 0.5, 1: 1.0}
    assert walk.key_inputs["parent"] == chosen["pier/1"].cache_key and walk.cache_key
    assert walk.status == "stale" and walk.reasons == ["parent pier re-picked (take 0 -> take 1)"]
    assert steps(plan_of(path, pick="first"))["walk/0"].status == "fresh"


def test_an_extension_keyed_when_dispatched_is_keyed_as_a_plan_would_key_it(tmp_path):
    picked = steps(plan_of(story(tmp_path, pick=1)))
    commit_plan(SimpleNamespace(steps=list(picked.values())))  # walk rendered from take 1
    pending = steps(plan_of(story(tmp_path)))  # no pick, no checks kept
    walk, takes = pending["walk/0"], [pending["pier/0"], pending["pier/1"]]
    start_extension(walk, takes[1], takes, Choice(1, "best by quality checks: take 1 passed 100%"))
    assert (walk.parent_take, walk.cache_key) == (1, picked["walk/0"].cache_key)
    assert (walk.status, walk.reasons) == ("fresh", [])  # reused, not rendered
    start_extension(walk, takes[0], takes, Choice(0, "best by quality checks: take 0 passed 100%"))
    assert walk.status == "stale" and walk.reasons == ["parent pier re-picked (take 1 -> take 0)"]
    assert walk.parent_choice.take == 0 and walk.parent_dir.name == "take0"


def test_only_wants_the_take_an_ancestor_is_known_to_continue_from_else_take_0(tmp_path):
    assert wanted_takes(load_storyboard(story(tmp_path)), ["walk"]) == {("walk", 0), ("pier", 0)}
    assert wanted_takes(load_storyboard(story(tmp_path, pick=1)), ["walk"]) == {("walk", 0), ("pier", 1)}
