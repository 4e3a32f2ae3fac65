"""`fp8_file:` chooses another tool's fp8_scaled fusion file (musubi-tuner, ComfyUI/kijai): it is
resolved against the storyboard's folder, reaches the engine as the weights a shot loads, is
keyed by its content (another file makes the takes stale: "fp8 file changed"), recorded in
meta.json, and linted by `check` (OVI408)."""
from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file, save_file

import engine.networks as networks_module
import ovi_studio
from engine.fingerprint import stat_cache
from engine.layout import fusion_weights
from engine.testing.tool_fp8 import write_kijai_fp8, write_musubi_fp8
from engine.variants import get_variant
from ovi_studio.render.inputs import RenderOptions

STORY = """\
version: 1
model: 720x720_5s
shots:
  - id: a
    scene: A paper boat on a stream.
    audio: water
{extra}"""


@pytest.fixture
def fusion_state(tiny_ckpt_short):
    return load_file(str(tiny_ckpt_short / fusion_weights(get_variant("720x720_5s"))))


def story(tmp_path, extra: str = ""):
    path = tmp_path / "story.yaml"
    path.write_text(STORY.format(extra=extra))
    return path


@pytest.mark.slow
def test_a_shot_renders_with_the_chosen_file_and_a_new_file_stales_it(tmp_path, tiny_ckpt_short,
                                                                       fusion_state, monkeypatch):
    write_musubi_fp8(fusion_state, tmp_path / "musubi.safetensors")
    path = story(tmp_path, "    fp8_file: musubi.safetensors\n")  # relative to the storyboard
    options = RenderOptions(out_dir=tmp_path / "out", engine="ovi", ckpt_dir=tiny_ckpt_short,
                            device="cpu", overrides={"steps": 1})
    loads = []
    real_load = networks_module.load_fusion_model
    monkeypatch.setattr(networks_module, "load_fusion_model",
                        lambda *a, **kw: loads.append((kw["fp8"], kw["fp8_file"])) or real_load(*a, **kw))
    outcome = ovi_studio.render(path, options)
    assert outcome.exit_code == 0, [r.reason for r in outcome.records]
    chosen = tmp_path / "musubi.safetensors"
    assert loads == [("scaled", chosen)]  # the file, read as scaled fp8 (fp8_file implies fp8)
    meta = json.loads((tmp_path / "out/shots/a/take0/meta.json").read_text())
    assert meta["engine"]["fp8_file"] == str(chosen)  # the engine as it rendered the take
    assert meta["engine_info"]["memory"]["fp8"] == "scaled"
    assert meta["key_inputs"]["fp8_file"] == "sha256:" + stat_cache().sha256(chosen)
    assert meta["key_inputs"]["fp8"] is True
    assert [s.status for s in ovi_studio.build_plan(path, options).steps] == ["fresh"]

    tuned = dict(fusion_state)
    layer = "video_model.blocks.0.self_attn.q.weight"
    tuned[layer] = tuned[layer] * 1.01  # a fine-tune of the same model, same file size
    write_musubi_fp8(tuned, chosen)
    [take] = ovi_studio.build_plan(path, options).steps
    assert (take.status, take.reasons) == ("stale", ["fp8 file changed"])


def test_set_chooses_the_file_for_every_shot(tmp_path, fusion_state):
    write_kijai_fp8(fusion_state, tmp_path / "kijai.safetensors")
    path = story(tmp_path)
    plain, chosen = (ovi_studio.build_plan(path, RenderOptions(engine="preview", overrides=o)).steps[0]
                     for o in ({}, {"fp8_file": "kijai.safetensors"}))
    assert "fp8_file" not in plain.key_inputs  # takes without one keep their keys
    assert chosen.key_inputs["fp8_file"].startswith("sha256:") and chosen.key_inputs["fp8"] is True
    assert chosen.cache_key != plain.cache_key


def _codes(tmp_path, ckpt, fp8_file: str) -> dict[str, str]:
    path = story(tmp_path, f"    fp8_file: {fp8_file}\n")
    path.write_text(f"ckpt_dir: {ckpt}\n" + path.read_text())  # check against the tiny model's sizes
    return {d.code: d.message for d in ovi_studio.check(path)}


def test_check_flags_a_missing_file_or_one_that_is_not_an_fp8_scaled_ovi_model(tmp_path, tiny_ckpt_short,
                                                                               fusion_state):
    missing = _codes(tmp_path, tiny_ckpt_short, "nowhere.safetensors")["OVI408"]
    assert "no such file" in missing and "nowhere.safetensors" in missing

    save_file(dict(fusion_state), str(tmp_path / "bf16.safetensors"))  # no scales: not fp8_scaled
    assert "no fp8 scales" in _codes(tmp_path, tiny_ckpt_short, "bf16.safetensors")["OVI408"]

    write_musubi_fp8({k: v for k, v in fusion_state.items() if ".blocks.1." not in k},
                     tmp_path / "partial.safetensors")
    partial = _codes(tmp_path, tiny_ckpt_short, "partial.safetensors")["OVI408"]
    assert "missing key(s)" in partial and ".blocks.1." in partial

    write_musubi_fp8(fusion_state, tmp_path / "good.safetensors")
    good = _codes(tmp_path, tiny_ckpt_short, "good.safetensors")
    assert "OVI408" not in good and "OVI405" not in good
    # the published model's sizes are not the tiny model's: a file of another model
    other = tmp_path / "other"
    other.mkdir()
    (other / "story.yaml").write_text(STORY.format(extra=f"    fp8_file: {tmp_path / 'good.safetensors'}\n"))
    assert "OVI408" in {d.code for d in ovi_studio.check(other / "story.yaml")}
