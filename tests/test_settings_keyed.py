"""Every shot setting either changes the cache key or is declared output-neutral with a reason
(plan.OUTPUT_NEUTRAL): editing it in a rendered storyboard makes exactly the affected takes
stale, and their extensions, with a reason. The embedding cache's key holds the text, the
encoder's and the tokenizer's identity (by content) and the dtype."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from ovi_studio.plan import OUTPUT_NEUTRAL, build_plan
from ovi_studio.storyboard import ShotSettings, load_storyboard
from take_fakes import commit_plan

STORY = """\
version: 1
model: 720x720_5s
defaults: {seed: 5}
shots:
  - id: a
    prompt: "A kettle boils. Audio: whistle."
  - id: b
    extends: a
    prompt: "Steam rises. Audio: hiss."
  - id: c
    prompt: "A cat sleeps. Audio: purring."
"""

# An edited value for every field of ShotSettings: a new field must be added here, and then be
# keyed or declared output-neutral.
EDITS = {
    "resolution": [512, 896], "aspect": "4:3", "steps": 7, "solver": "euler", "shift": 3.0,
    "seed": 99, "video_guidance": 2.5, "audio_guidance": 1.5, "slg_layer": 3,
    "video_negative": "blurry", "audio_negative": "hum", "fp8": True, "fp8_file": "musubi-fp8.safetensors", "tiled_vae": True, "blocks_to_swap": 4,
    "seed_frame": "sharpest", "color_match": "previous", "fit": "pad",
    "transition": "crossfade", "transition_frames": 6,
    "loras": [{"path": "style.safetensors", "scale": 0.8}], "draft": True,
    "draft_loras": [{"path": "few-steps.safetensors"}], "step_cache": 0.1, "cfg_batch": True,
}
FIXED = {"duration": "each model makes one duration; another value is a check error"}


def test_every_setting_has_an_edit_here():
    names = {f.name for f in dataclasses.fields(ShotSettings)}
    assert names == set(EDITS) | set(FIXED), \
        "add the new setting to EDITS (and key it or declare it in plan.OUTPUT_NEUTRAL)"


def _write(path: Path, field: str | None = None, value=None) -> Path:
    yaml = YAML()
    data = yaml.load(STORY)
    if field is not None:
        data["shots"][0][field] = value
    with open(path, "w", encoding="utf-8") as f:
        yaml.dump(data, f)
    return path


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    story = _write(tmp_path_factory.mktemp("keyed") / "story.yaml")
    commit_plan(build_plan(load_storyboard(story)))
    assert {s.status for s in build_plan(load_storyboard(story)).steps} == {"fresh"}
    return story


@pytest.mark.parametrize("field", sorted(EDITS))
def test_editing_a_setting_stales_exactly_the_affected_takes(rendered, field):
    story = _write(rendered.with_name(f"{field}.yaml"), field, EDITS[field])
    board = load_storyboard(story)
    assert not [d for d in board.diagnostics if d.severity.value == "error"], board.diagnostics
    assert getattr(board.shots[0].settings, field) != getattr(
        load_storyboard(rendered).shots[0].settings, field), "the edit must change the setting"
    plan = build_plan(board, out_dir=build_plan(load_storyboard(rendered)).out_dir)
    status = {s.shot.id: (s.status, s.reasons) for s in plan.steps}
    if field in OUTPUT_NEUTRAL:
        assert OUTPUT_NEUTRAL[field]  # the reason it cannot change a take
        assert status == {"a": ("fresh", []), "b": ("fresh", []), "c": ("fresh", [])}
    else:
        assert status["a"][0] == "stale" and status["a"][1] and status["a"][1] != ["cache key changed"]
        assert status["b"][0] == "stale" and "upstream shot a changed" in status["b"][1]
        assert status["c"] == ("fresh", [])


# -- the embedding cache -------------------------------------------------------------------------

def _key(ckpt: Path, cache_dir: Path, text: str = "a cat", dtype=None) -> str:
    import torch
    from engine.arch import load_arch
    from engine.embedding_cache import EmbeddingCache
    from engine.text import PromptEmbeddings
    with EmbeddingCache(cache_dir) as cache:
        return PromptEmbeddings(ckpt, load_arch(ckpt).t5, cache, dtype=dtype or torch.bfloat16).key(text)


@pytest.mark.slow
def test_the_embedding_key_holds_text_encoder_tokenizer_and_dtype(tmp_path, tiny_ckpt):
    import torch
    from engine.layout import T5_WEIGHTS, TOKENIZER_DIR
    cache = tmp_path / "cache"
    copy = shutil.copytree(tiny_ckpt, tmp_path / "same")
    assert _key(copy, cache) == _key(tiny_ckpt, cache)  # identity by content, not by path
    tuned = shutil.copytree(tiny_ckpt, tmp_path / "tuned")
    data = bytearray((tuned / T5_WEIGHTS).read_bytes())
    data[len(data) // 2] ^= 0x01  # same size: another encoder
    (tuned / T5_WEIGHTS).write_bytes(bytes(data))
    retok = shutil.copytree(tiny_ckpt, tmp_path / "retok")
    tokenizer = next(p for p in sorted((retok / TOKENIZER_DIR).rglob("*")) if p.is_file())
    tokenizer.write_bytes(tokenizer.read_bytes() + b" ")
    keys = {"base": _key(tiny_ckpt, cache), "text": _key(tiny_ckpt, cache, "a dog"),
            "encoder": _key(tuned, cache), "tokenizer": _key(retok, cache),
            "dtype": _key(tiny_ckpt, cache, dtype=torch.float32)}
    assert len(set(keys.values())) == len(keys), keys
