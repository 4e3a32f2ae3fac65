"""`step_cache` and `cfg_batch` in a storyboard: validated, passed to the engine's sampler, and
part of the take's cache key only when on (takes rendered before these settings existed keep
their keys)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from engine.sampling import SamplerSettings
from ovi_studio.plan import build_plan
from ovi_studio.render.engines import ShotJob, _sampler_fields
from ovi_studio.storyboard import load_storyboard

STORY = """\
version: 1
model: 720x720_5s
shots:
  - id: plain
    prompt: "A bird sings. Audio: birdsong."
  - id: cached
    prompt: "A bird sings. Audio: birdsong."
    {extra}
"""


def plan_of(tmp_path: Path, extra: str):
    path = tmp_path / "story.yaml"
    path.write_text(STORY.format(extra=extra), encoding="utf-8")
    return build_plan(load_storyboard(path))


def test_keyed_only_when_on_and_explained(tmp_path):
    off = plan_of(tmp_path, "seed: 100")
    on = plan_of(tmp_path, "step_cache: 0.2")
    plain_off, cached_off = off.steps
    plain_on, cached_on = on.steps
    assert "step_cache" not in cached_off.key_inputs and "cfg_batch" not in cached_off.key_inputs
    assert plain_on.cache_key == plain_off.cache_key  # a shot without it keeps its key
    assert cached_on.key_inputs["step_cache"] == 0.2 and cached_on.cache_key != cached_off.cache_key
    cached_off.artifact_dir.mkdir(parents=True, exist_ok=True)
    (cached_off.artifact_dir / "meta.json").write_text(json.dumps(
        {"cache_key": cached_off.cache_key, "key_inputs": cached_off.key_inputs}))
    again = plan_of(tmp_path, "step_cache: 0.2").steps[1]
    assert again.status == "stale" and "sampler settings changed (step_cache)" in again.reasons
    batched = plan_of(tmp_path, "cfg_batch: true").steps[1]
    assert batched.key_inputs["cfg_batch"] is True


def test_the_engine_sampler_receives_them(tmp_path):
    shot = plan_of(tmp_path, "step_cache: 0.2\n    cfg_batch: true").steps[1].shot
    job = ShotJob(shot_id="cached", take=0, seed=1, mode="t2v", prompt="p", height=64, width=64,
                  frames=121, settings=dataclasses.asdict(shot.settings))
    sampler = SamplerSettings(**_sampler_fields(SamplerSettings, job))
    assert sampler.step_cache == 0.2 and sampler.cfg_batch is True


@pytest.mark.parametrize("extra", ["step_cache: -1", "step_cache: fast", "cfg_batch: sometimes"])
def test_bad_values_are_positioned_errors(tmp_path, extra):
    path = tmp_path / "story.yaml"
    path.write_text(STORY.format(extra=extra), encoding="utf-8")
    errors = [d for d in load_storyboard(path).diagnostics if d.severity.name.lower() == "error"]
    assert errors and errors[0].line == 8 and extra.split(":")[0] in errors[0].message
