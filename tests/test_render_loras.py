"""LoRAs and the draft tier through the product: `loras:` in defaults or per shot (keyed by file
content and scale; scale 0 renders bit-identical to no LoRA), `check` flags LoRAs that cannot be
applied, shots that differ in LoRAs reload the model, drafts are fewer steps with the same seeds,
keyed apart and marked in report.json."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import engine.networks as networks_module
from engine.arch import load_arch
from engine.testing.tiny_lora import write_tiny_lora
from ovi_studio.lint.runner import LintOptions, lint_path
from ovi_studio.plan import build_plan
from ovi_studio.render.inputs import RenderOptions
from ovi_studio.render.progress import RenderProgress
from ovi_studio.render.session import RenderSession
from ovi_studio.storyboard import DISTILLED_DRAFT_STEPS, DRAFT_STEPS, load_storyboard

STORY = """\
version: 1
model: 720x720_5s
defaults:
  steps: 2
  loras: [{{path: loras/style.safetensors, scale: {scale}}}]
shots:
  - id: styled
    scene: A paper boat on a stream.
    audio: water
  - id: plain
    scene: A paper boat on a stream.
    audio: water
    loras: []
"""


def _story(tmp_path, ckpt, scale=1.0, text=STORY):
    story = tmp_path / "story.yaml"
    story.write_text(text.format(scale=scale))
    if not (tmp_path / "loras" / "style.safetensors").exists():
        write_tiny_lora(tmp_path / "loras" / "style.safetensors", load_arch(ckpt), "comfyui", seed=3)
    return story


def _render(story, ckpt, **overrides):
    session = RenderSession(RenderOptions(source=story, out_dir=story.parent / "out", engine="ovi",
                                          ckpt_dir=ckpt, device="cpu", overrides=overrides),
                            RenderProgress(quiet=True))
    plan = session.prepare()
    outcome = session.run()
    assert outcome.exit_code == 0, [r.reason for r in outcome.records]
    return plan


def _latents(root, shot):
    return load_file(str(root / "out" / "shots" / shot / "take0" / "latents.safetensors"))["video"]


def _key(story, ckpt, shot):
    plan = build_plan(load_storyboard(story), ckpt_dir=ckpt, engine="ovi")
    return next(s for s in plan.steps if s.shot.id == shot)


def test_loras_are_keyed_by_content_and_scale_and_scale_zero_keys_nothing(tmp_path, tiny_ckpt_short):
    story = _story(tmp_path, tiny_ckpt_short)
    styled, plain = _key(story, tiny_ckpt_short, "styled"), _key(story, tiny_ckpt_short, "plain")
    assert "loras" in styled.key_inputs and "loras" not in plain.key_inputs
    assert styled.key_inputs["loras"][0]["scale"] == 1.0
    before = styled.cache_key
    _story(tmp_path, tiny_ckpt_short, scale=0.5)
    assert _key(story, tiny_ckpt_short, "styled").cache_key != before
    _story(tmp_path, tiny_ckpt_short, scale=0)
    assert "loras" not in _key(story, tiny_ckpt_short, "styled").key_inputs
    _story(tmp_path, tiny_ckpt_short, scale=1.0)
    write_tiny_lora(tmp_path / "loras" / "style.safetensors", load_arch(tiny_ckpt_short), "comfyui", seed=4)
    assert _key(story, tiny_ckpt_short, "styled").cache_key != before  # same name, new content


@pytest.mark.slow
def test_a_render_merges_the_lora_per_shot_and_scale_zero_is_bit_identical(tmp_path, tiny_ckpt_short,
                                                                              monkeypatch):
    loads = []
    real_load = networks_module.load_fusion_model
    monkeypatch.setattr(networks_module, "load_fusion_model",
                        lambda *a, **kw: loads.append(kw["loras"]) or real_load(*a, **kw))
    story = _story(tmp_path, tiny_ckpt_short, scale=2.0)
    _render(story, tiny_ckpt_short)
    assert [len(loras) for loras in loads] == [1, 0]  # the next shot's other LoRAs reload
    meta = json.loads((tmp_path / "out/shots/styled/take0/meta.json").read_text())
    assert meta["engine"]["loras"][0]["scale"] == 2.0
    styled, plain = (_latents(tmp_path, s) for s in ("styled", "plain"))
    assert not torch.equal(styled, plain)

    zero = tmp_path / "zero"
    zero.mkdir()
    story = _story(zero, tiny_ckpt_short, scale=0)
    _render(story, tiny_ckpt_short)
    assert torch.equal(_latents(zero, "styled"), plain) and torch.equal(_latents(zero, "plain"), plain)


def test_check_flags_missing_and_unfitting_loras(tmp_path, tiny_ckpt_short):
    write_tiny_lora(tmp_path / "ovi_audio.safetensors", load_arch(tiny_ckpt_short), "kohya",
                    ("audio_model.blocks.1.cross_attn.k_fusion",))
    story = tmp_path / "story.yaml"
    story.write_text("""\
version: 1
model: 720x720_5s
shots:
  - id: missing
    scene: A boat.
    loras: [{path: nowhere.safetensors}]
  - id: wrong_tower
    scene: A boat.
    loras: [{path: ovi_audio.safetensors, tower: video}]
  - id: fine
    scene: A boat.
    loras: [{path: ovi_audio.safetensors}]
""")
    found = lint_path(story, LintOptions(ckpt_dir=str(tiny_ckpt_short)))
    lora = {d.shot: d.message for d in found if d.code == "OVI407"}
    assert set(lora) == {"missing", "wrong_tower"}
    assert "nowhere.safetensors: LoRA file not found" in lora["missing"]
    assert "nothing to apply to the video tower" in lora["wrong_tower"]
    # the same tiny LoRA against the published sizes: a LoRA for another model
    published = {d.shot: d.message for d in lint_path(story) if d.code == "OVI407"}
    assert "wrong size" in published["fine"]


DRAFT_STORY = """\
version: 1
model: 720x720_5s
defaults:
  steps: 30
  seed: 7
shots:
  - id: a
    scene: A paper boat on a stream.
  - id: b
    scene: A paper boat on a pond.
    draft: true
    draft_loras: [{{path: loras/style.safetensors}}]
"""


def test_drafts_take_fewer_steps_same_seeds_and_are_keyed_apart(tmp_path, tiny_ckpt_short):
    story = _story(tmp_path, tiny_ckpt_short, text=DRAFT_STORY)
    final = {s.shot.id: s for s in build_plan(load_storyboard(story), ckpt_dir=tiny_ckpt_short).steps}
    assert final["a"].key_inputs["steps"] == 30 and "draft" not in final["a"].key_inputs
    b = final["b"].key_inputs  # distilled draft: its LoRA, few steps, no guidance
    assert b["draft"] is True and b["steps"] == DISTILLED_DRAFT_STEPS
    assert (b["video_guidance"], b["audio_guidance"], b["slg_layer"]) == (1.0, 1.0, -1)
    assert len(b["loras"]) == 1

    session = RenderSession(RenderOptions(source=story, out_dir=tmp_path / "out", engine="ovi",
                                          ckpt_dir=tiny_ckpt_short, device="cpu",
                                          overrides={"draft": True}),
                            RenderProgress(quiet=True))
    drafts = {s.shot.id: s for s in session.prepare().steps}
    assert drafts["a"].key_inputs["steps"] == DRAFT_STEPS and drafts["a"].key_inputs["draft"] is True
    assert drafts["a"].seed == final["a"].seed and drafts["a"].cache_key != final["a"].cache_key


@pytest.mark.slow
def test_a_draft_render_is_marked_in_the_report(tmp_path, tiny_ckpt_short):
    story = _story(tmp_path, tiny_ckpt_short, text=DRAFT_STORY)
    _render(story, tiny_ckpt_short, steps=2)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    marks = {shot["id"]: shot["takes"][0].get("draft", False) for shot in report["shots"]}
    assert marks == {"a": False, "b": True}
