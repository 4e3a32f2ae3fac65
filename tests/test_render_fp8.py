"""fp8 through a render: what `fp8: true` loads in a given checkpoint folder, a memory preset's
fp8 as a keyed shot setting, and shots that differ in fp8 within one render."""
from __future__ import annotations

import json
import shutil

import pytest

import engine.networks as networks_module
from engine.arch import load_arch
from engine.layout import fp8_weights, fusion_weights
from engine.testing.tiny_fusion import write_fusion
from engine.variants import get_variant
from ovi_studio.render.inputs import RenderOptions
from ovi_studio.render.progress import RenderProgress
from ovi_studio.render.session import RenderSession

STORY = """\
version: 1
model: 720x720_5s
shots:
  - id: a
    scene: A paper boat on a stream.
    audio: water
  - id: b
    scene: The boat reaches a pond.
    audio: frogs
    fp8: {b_fp8}
"""


def render(tmp_path, ckpt, b_fp8=False, **options):
    story = tmp_path / "story.yaml"
    story.write_text(STORY.format(b_fp8=str(b_fp8).lower()))
    session = RenderSession(RenderOptions(source=story, out_dir=tmp_path / "out", engine="ovi",
                                          ckpt_dir=ckpt, device="cpu", overrides={"steps": 1},
                                          **options), RenderProgress(quiet=True))
    plan = session.prepare()
    outcome = session.run()
    assert outcome.exit_code == 0, [r.reason for r in outcome.records]
    return plan, outcome


def meta(tmp_path, shot):
    return json.loads((tmp_path / "out" / "shots" / shot / "take0" / "meta.json").read_text())


def test_fp8_means_the_published_file_where_there_is_one(tmp_path, tiny_ckpt_short):
    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_ckpt_short, folder)
    variant_720, variant_960 = get_variant("720x720_5s"), get_variant("960x960_5s")
    assert fp8_weights(folder, variant_720) == "scaled"  # only the bf16 file: converted at load
    assert fp8_weights(folder, variant_960) == "scaled"
    write_fusion(folder, load_arch(folder), "720x720_5s", seed=0, fp8=True)
    assert (folder / fusion_weights(variant_720, True)).is_file()
    assert fp8_weights(folder, variant_720) is True
    assert fp8_weights(folder, variant_960) == "scaled"  # the published file is a 720 model


@pytest.mark.slow
def test_a_preset_with_fp8_keys_the_takes_and_leaving_it_re_renders(tmp_path, tiny_ckpt_short):
    plan, _ = render(tmp_path, tiny_ckpt_short, preset="8gb")
    assert all(step.key_inputs["fp8"] is True for step in plan.steps)
    assert meta(tmp_path, "a")["engine_info"]["memory"]["fp8"] == "scaled"
    plan, outcome = render(tmp_path, tiny_ckpt_short)  # no preset: bf16 again, so stale
    assert [step.reasons for step in plan.steps] == [["fp8 setting changed", "tiled VAE setting changed"]] * 2
    assert {r.status for r in outcome.records} == {"rendered"}
    assert meta(tmp_path, "a")["engine_info"]["memory"]["fp8"] is False


@pytest.mark.slow
def test_shots_that_differ_in_fp8_reload_the_model_between_them(tmp_path, tiny_ckpt_short, monkeypatch):
    loads = []
    real_load = networks_module.load_fusion_model
    monkeypatch.setattr(networks_module, "load_fusion_model",
                        lambda *a, **kw: loads.append(kw["fp8"]) or real_load(*a, **kw))
    render(tmp_path, tiny_ckpt_short, b_fp8=True)
    assert loads == [False, "scaled"]
    assert meta(tmp_path, "a")["engine_info"]["memory"]["fp8"] is False
    assert meta(tmp_path, "b")["engine_info"]["memory"]["fp8"] == "scaled"
    # the engine identity in meta.json is the engine as it rendered each take
    assert meta(tmp_path, "a")["engine"]["fp8"] is False and meta(tmp_path, "b")["engine"]["fp8"] == "scaled"


def test_an_unknown_preset_is_refused_before_anything_renders(tmp_path, tiny_ckpt_short):
    from ovi_studio.errors import UserError
    with pytest.raises(UserError, match="unknown memory preset"):
        render(tmp_path, tiny_ckpt_short, preset="3gb")
    assert not (tmp_path / "out").exists()
