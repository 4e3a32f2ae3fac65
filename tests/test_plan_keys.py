"""build_plan on small storyboards and output folders written by hand: every input of a take's
cache key with its value, the checkpoint's identity, sizes, seeds, estimates, and the status and
reasons of each take for each state of its folder, the take store and its parent. Fast (no
render, no model, no ffmpeg): mutmut runs these for every mutant of plan.py (docs/testing.md).
Expected values are literals from the storyboard's documented defaults (Ovi's inference
settings) and the formats of docs/render.md."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from engine import layout
from engine.variants import VARIANTS
from ovi_studio import cost
from ovi_studio.errors import UserError
from ovi_studio.plan import build_plan, cache_key, default_out_dir, start_extension
from ovi_studio.store import stored_dir
from ovi_studio.storyboard import QcThresholds, load_storyboard
from ovi_studio.take_choice import FAIL, PASS, QC_FILE, Check, Choice, qc_key
from take_fakes import commit_plan

V720 = VARIANTS["720x720_5s"]
A_PROMPT = "A lamp glows. Audio: hum."
STORY = """\
version: 1
model: 720x720_5s
engine: preview
defaults: {seed: 10}
shots:
  - id: a
    prompt: "A lamp glows. Audio: hum."
    pick: 0
    takes: 2
  - id: b
    extends: a
    prompt: "The lamp flickers. Audio: buzz."
  - id: c
    prompt: "Rain on glass. Audio: rain."
"""
# Ovi's inference defaults (the storyboard's built-in settings, README "defaults")
DEFAULT_INPUTS = {
    "engine_version": "1", "engine": "preview", "model": "720x720_5s", "checkpoint": "no-checkpoint",
    "video_negative": "jitter, bad hands, blur, distortion",
    "audio_negative": "robotic, muffled, echo, distorted",
    "steps": 50, "solver": "unipc", "shift": 5.0, "video_guidance": 4.0, "audio_guidance": 3.0,
    "slg_layer": 11, "frames": 121, "fp8": False, "first_frame": None, "seed_frame": "last", "fit": "crop",
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def story(tmp_path: Path, text: str = STORY, name: str = "story.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def plan_of(path: Path, **kwargs):
    return build_plan(load_storyboard(path), **kwargs)


def by_take(plan) -> dict[str, tuple[str, list[str]]]:
    return {f"{s.shot.id}/{s.take}": (s.status, s.reasons) for s in plan.steps}


def fake_checkpoint(folder: Path, fp8_file: bool = False) -> Path:
    """Every file a render of 720x720_5s reads (and the published fp8 file), as small stand-ins."""
    for rel in layout.required_files(V720) + ([layout.fusion_weights(V720, True)] if fp8_file else []):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(b"weights of " + rel.encode())
    return folder


# -- the key's inputs -----------------------------------------------------------------------------

def test_every_key_input_of_a_text_shot_its_takes_and_its_extension(tmp_path):
    plan = plan_of(story(tmp_path))
    a0, a1, b0, c0 = plan.steps
    assert (a0.shot.id, a1.shot.id, b0.shot.id, c0.shot.id) == ("a", "a", "b", "c")
    assert a0.key_inputs == {**DEFAULT_INPUTS, "prompt": "A lamp glows. <AUDCAP>hum.<ENDAUDCAP>",
                             "seed": 10, "take": 0, "height": 704, "width": 704, "parent": None,
                             "parent_shot": None, "color_match": "first"}
    assert list(a0.key_inputs)[:4] == ["engine_version", "engine", "model", "checkpoint"]
    assert a1.key_inputs == {**a0.key_inputs, "seed": 11, "take": 1}
    assert b0.key_inputs == {**DEFAULT_INPUTS, "prompt": "The lamp flickers. <AUDCAP>buzz.<ENDAUDCAP>",
                             "seed": 10, "take": 0, "height": 704, "width": 704,
                             "parent": a0.cache_key, "parent_shot": "a", "color_match": "first"}
    assert c0.key_inputs["color_match"] == "off"  # not in a chain
    for step in plan.steps:
        assert step.cache_key == cache_key(step.key_inputs)
    rows = [(s.take, s.seed, s.mode, s.parent, s.parent_take, s.height, s.width, s.frames) for s in plan.steps]
    assert rows == [(0, 10, "t2v", None, 0, 704, 704, 121), (1, 11, "t2v", None, 0, 704, 704, 121),
                    (0, 10, "extend", "a", 0, 704, 704, 121), (0, 10, "t2v", None, 0, 704, 704, 121)]


def test_an_extension_continues_from_the_picked_take_at_its_size(tmp_path):
    text = STORY.replace("pick: 0", "pick: 1").replace("defaults: {seed: 10}",
                                                       "defaults: {seed: 10, resolution: [720, 1280]}")
    plan = plan_of(story(tmp_path, text))
    a1, b0 = plan.steps[1], plan.steps[2]
    assert (a1.height, a1.width) == (544, 960)  # 720x1280 at the 720x720 area, sides of 32
    assert (b0.parent, b0.parent_take, b0.height, b0.width) == ("a", 1, 544, 960)
    assert (b0.key_inputs["height"], b0.key_inputs["width"]) == (544, 960)
    assert b0.key_inputs["parent"] == a1.cache_key
    assert b0.parent_dir == plan.out_dir / "shots" / "a" / "take1"


def test_an_image_shot_keys_the_file_and_the_asked_aspect(tmp_path):
    Image.new("RGB", (1280, 720), (40, 90, 160)).save(tmp_path / "frame.png")
    digest = "sha256:" + sha((tmp_path / "frame.png").read_bytes())
    text = """\
version: 1
model: 720x720_5s
shots:
  - {id: free, prompt: "x", first_frame: frame.png}
  - {id: square, prompt: "x", first_frame: frame.png, aspect: "1:1"}
  - {id: padded, prompt: "x", first_frame: frame.png, aspect: "1:1", fit: pad}
"""
    free, square, padded = plan_of(story(tmp_path, text)).steps
    assert (free.mode, free.height, free.width) == ("i2v", 544, 960)  # the image's 16:9
    assert free.key_inputs["first_frame"] == digest
    assert free.key_inputs["first_frame_aspect"] is None
    assert (square.height, square.width) == (704, 704)  # a 1:1 crop of the image
    assert square.key_inputs["first_frame_aspect"] == [720, 720]  # 1:1 at 720x720's area
    assert padded.key_inputs["fit"] == "pad" and padded.cache_key != square.cache_key
    assert "first_frame_aspect" not in plan_of(story(tmp_path)).steps[0].key_inputs  # t2v


def test_crop_and_pad_size_an_image_shot_differently(tmp_path):
    # a 16x10 image made 4:3 keeps 13x10 pixels cropped and becomes 16x12 padded: their nearest
    # sizes in multiples of 32 at the 720x720 area differ (docs/render.md, first frames)
    Image.new("RGB", (16, 10)).save(tmp_path / "small.png")
    text = """\
version: 1
model: 720x720_5s
shots:
  - {id: crop, prompt: "x", first_frame: small.png, aspect: "4:3"}
  - {id: pad, prompt: "x", first_frame: small.png, aspect: "4:3", fit: pad}
"""
    crop, pad = plan_of(story(tmp_path, text)).steps
    assert (crop.height, crop.width) == (640, 832) and (pad.height, pad.width) == (608, 832)


def test_opt_in_settings_are_keyed_only_when_on(tmp_path):
    (tmp_path / "style.safetensors").write_bytes(b"lora weights")
    (tmp_path / "fusion_fp8.safetensors").write_bytes(b"fp8 weights")
    text = """\
version: 1
model: 720x720_5s
engine: preview
shots:
  - id: plain
    prompt: "x"
  - id: dressed
    prompt: "x"
    loras:
      - {path: style.safetensors, scale: 0.5, tower: video}
      - {path: off.safetensors, scale: 0}
      - {path: gone.safetensors, scale: 1.0}
    fp8_file: fusion_fp8.safetensors
    tiled_vae: true
    step_cache: 0.1
    cfg_batch: true
  - id: draft
    prompt: "x"
    draft: true
  - id: zero
    prompt: "x"
    loras: [{path: style.safetensors, scale: 0}]
    step_cache: 0
    cfg_batch: false
    tiled_vae: false
"""
    plain, dressed, draft, zero = plan_of(story(tmp_path, text)).steps
    optional = {"loras", "fp8_file", "draft", "tiled_vae", "step_cache", "cfg_batch"}
    assert not optional & set(plain.key_inputs)
    assert zero.key_inputs == plain.key_inputs
    extra = {k: v for k, v in dressed.key_inputs.items() if k in optional}
    assert extra == {
        "loras": [{"file": "sha256:" + sha(b"lora weights"), "scale": 0.5, "tower": "video"},
                  {"file": "missing", "scale": 1.0, "tower": None}],
        "fp8_file": "sha256:" + sha(b"fp8 weights"), "tiled_vae": True, "step_cache": 0.1,
        "cfg_batch": True}
    assert dressed.key_inputs["fp8"] is True  # an fp8 file implies fp8
    assert draft.key_inputs["draft"] is True and draft.key_inputs["steps"] == 12  # the draft tier


def test_the_checkpoint_is_keyed_by_the_files_a_take_reads(tmp_path):
    ckpt = fake_checkpoint(tmp_path / "ckpts", fp8_file=True)
    (tmp_path / "mine_fp8.safetensors").write_bytes(b"my fp8 weights")
    text = """\
version: 1
model: 720x720_5s
shots:
  - {id: bf16, prompt: "x"}
  - {id: fp8, prompt: "x", fp8: true}
  - {id: own, prompt: "x", fp8_file: mine_fp8.safetensors}
"""
    path = story(tmp_path, text)
    plan = plan_of(path, ckpt_dir=ckpt)
    bf16, fp8, own = (s.key_inputs["checkpoint"] for s in plan.steps)
    assert bf16.startswith("sha256:") and fp8.startswith("sha256:")
    assert fp8 != bf16  # the published fp8 file replaces the bf16 fusion weights
    assert own == bf16  # an fp8_file replaces the fusion weights: the published one is not read
    assert plan.checkpoint == bf16 and plan.ckpt_dir == ckpt
    assert plan.engine.name == "ovi"  # auto: the checkpoints are complete
    (ckpt / layout.fusion_weights(V720, True)).write_bytes(b"other fp8 weights")
    again = plan_of(path, ckpt_dir=ckpt)
    assert [s.key_inputs["checkpoint"] for s in again.steps][:2] == [bf16, again.steps[1].key_inputs["checkpoint"]]
    assert again.steps[1].key_inputs["checkpoint"] not in (fp8, bf16)
    nowhere = plan_of(path, ckpt_dir=tmp_path / "nowhere", engine="preview")
    assert {s.key_inputs["checkpoint"] for s in nowhere.steps} == {"no-checkpoint"}
    assert nowhere.checkpoint == "no-checkpoint"


def test_the_checkpoints_arch_json_sizes_the_plan(tmp_path):
    from engine.testing.tiny_checkpoint import TINY_SHORT_ARCH
    ckpt = fake_checkpoint(tmp_path / "ckpts")
    (ckpt / "arch.json").write_text(json.dumps(TINY_SHORT_ARCH))  # 17 frames of 64x64
    plan = plan_of(story(tmp_path), ckpt_dir=ckpt)
    assert [(s.height, s.width, s.frames) for s in plan.steps] == [(64, 64, 17)] * 4
    assert plan.steps[0].key_inputs["frames"] == 17 and plan.variant.video_area == 4096


def test_a_large_plan_shows_its_progress(tmp_path, capsys):
    shots = "".join(f"  - {{id: s{i}, prompt: x}}\n" for i in range(200))  # LARGE: from 200 shots
    plan_of(story(tmp_path, "version: 1\nmodel: 720x720_5s\nshots:\n" + shots))
    assert capsys.readouterr().err.startswith("plan: 200/200 shots (")


def test_the_estimate_is_the_cost_model_for_the_model_engine_only(tmp_path):
    ckpt = fake_checkpoint(tmp_path / "ckpts")
    path = story(tmp_path, STORY.replace("engine: preview", "engine: auto").replace(
        "  - id: c\n", "  - id: c\n    steps: 20\n"))
    plan = plan_of(path, ckpt_dir=ckpt)
    assert plan.engine.name == "ovi"
    per_take = [s.estimate_seconds for s in plan.steps]
    assert per_take[:3] == [cost.take_seconds(704, 704, V720, 50)] * 3
    assert per_take[3] == cost.take_seconds(704, 704, V720, 20)
    assert all(seconds > 10 for seconds in per_take)  # 10 s of fixed cost and the steps
    assert plan.total_seconds_estimate == pytest.approx(sum(per_take))
    preview = plan_of(path, ckpt_dir=ckpt, engine="preview")
    assert [s.estimate_seconds for s in preview.steps] == [0.0] * 4


def test_a_shot_with_an_unreadable_first_frame_is_blocked_with_its_extensions(tmp_path):
    text = """\
version: 1
model: 720x720_5s
shots:
  - id: a
    prompt: "x"
    first_frame: nothere.png
  - id: b
    prompt: "y"
    extends: a
  - id: c
    prompt: "z"
"""
    path = story(tmp_path, text)
    ckpt = fake_checkpoint(tmp_path / "ckpts")
    plan = plan_of(path, ckpt_dir=ckpt)
    a, b, c = plan.steps
    assert (a.status, a.mode, a.height, a.width, a.cache_key, a.estimate_seconds) == (
        "blocked", "i2v", None, None, "", 0.0)
    assert a.reasons == [f"first frame {tmp_path / 'nothere.png'} does not exist; point `first_frame` "
                         f"at a readable image (PNG, JPEG, …) or video ({path}:4)"]
    assert (b.status, b.reasons, b.mode, b.height, b.cache_key, b.estimate_seconds) == (
        "blocked", ["extends a, which is blocked"], "extend", None, "", 0.0)
    assert a.key_inputs["first_frame"] is None and a.key_inputs["first_frame_aspect"] is None
    assert (c.status, c.reasons) == ("stale", ["not rendered yet"]) and c.estimate_seconds > 0
    assert plan.blocked == [a, b] and plan.to_render == [c]


def test_a_storyboard_that_does_not_load_has_nothing_to_plan(tmp_path):
    path = story(tmp_path, "version: 1\nshots: []\n")
    with pytest.raises(UserError) as raised:
        plan_of(path)
    assert str(raised.value) == (f"{path}: the storyboard has errors; nothing to plan\n"
                                 "  hint: run `ovi-studio check` to see them")


def test_only_and_force_names_are_checked_before_anything_is_planned(tmp_path):
    with pytest.raises(UserError, match="--only: no shot named zz"):
        plan_of(story(tmp_path), only=["zz"])
    with pytest.raises(UserError, match="--force: no shot named zz"):
        plan_of(story(tmp_path), force=["zz"])


def test_the_output_folder_is_output_dir_else_out_and_the_storyboard_name(tmp_path):
    assert plan_of(story(tmp_path)).out_dir == tmp_path / "out" / "story"
    moved = STORY.replace("shots:\n", "output: {dir: renders/x/../final}\nshots:\n", 1)
    plan = plan_of(story(tmp_path, moved))
    assert plan.out_dir == tmp_path / "renders" / "final"
    assert plan.steps[0].artifact_dir == tmp_path / "renders" / "final" / "shots" / "a" / "take0"
    assert plan_of(story(tmp_path), out_dir=str(tmp_path / "o")).out_dir == tmp_path / "o"
    broken = load_storyboard(story(tmp_path, "version: 1\nshots: []\n", name="broken.yaml"))
    assert broken.model is None and default_out_dir(broken) == tmp_path / "out" / "broken"


# -- status and reasons ---------------------------------------------------------------------------

def test_a_committed_plan_is_up_to_date_and_knows_each_takes_frames(tmp_path):
    path = story(tmp_path)
    first = plan_of(path)
    assert {s.status for s in first.steps} == {"stale"}
    assert all(s.reasons == ["not rendered yet"] and s.action == "render" for s in first.steps)
    commit_plan(first)
    again = plan_of(path)
    assert by_take(again) == {"a/0": ("fresh", []), "a/1": ("fresh", []), "b/0": ("fresh", []),
                              "c/0": ("fresh", [])}
    assert [s.frames_sha256 for s in again.steps] == [sha(f"{s.cache_key} frames".encode()) for s in again.steps]
    assert again.to_render == [] and again.total_seconds_estimate == 0


def test_force_renders_the_named_shots_and_what_extends_them(tmp_path):
    path = story(tmp_path)
    commit_plan(plan_of(path))
    assert by_take(plan_of(path, force=["a"])) == {
        "a/0": ("stale", ["forced (--force)"]), "a/1": ("stale", ["forced (--force)"]),
        "b/0": ("stale", ["upstream shot a renders"]), "c/0": ("fresh", [])}
    assert {s.reasons[0] for s in plan_of(path, force=[]).steps} == {"forced (--force)"}
    assert all(s.forced for s in plan_of(path, force=[]).steps)
    assert not any(s.forced for s in plan_of(path).steps)


def test_only_leaves_a_stale_parent_unrendered_and_says_its_extension_waits_for_it(tmp_path):
    path = story(tmp_path)
    commit_plan(plan_of(path))
    path.write_text(STORY.replace("A lamp glows", "A lamp dims"))
    plan = plan_of(path, only=["c"])
    assert [(s.shot.id, s.take, s.wanted, s.action) for s in plan.steps] == [
        ("a", 0, False, "not selected"), ("a", 1, False, "not selected"),
        ("b", 0, False, "not selected"), ("c", 0, True, "up to date")]
    assert by_take(plan)["b/0"] == ("stale", ["upstream shot a changed"])
    only_b = plan_of(path, only=["b"])
    assert [s.wanted for s in only_b.steps] == [True, False, True, False]


def test_an_extension_whose_own_take_is_complete_follows_its_parent(tmp_path):
    path = story(tmp_path)
    plan = plan_of(path)
    commit_plan(plan)
    a0 = plan.steps[0].artifact_dir
    # a's take 0 rendered again under the same key (other frames): b was seeded from the old ones
    (a0 / "frames.mkv").write_bytes(b"new frames")
    meta = json.loads((a0 / "meta.json").read_text())
    meta["files"]["frames"] = {"path": "frames.mkv", "bytes": 10, "sha256": sha(b"new frames")}
    (a0 / "meta.json").write_text(json.dumps(meta))
    assert by_take(plan_of(path))["b/0"] == ("stale", ["upstream shot a was rendered again since"])
    # a not selected and out of date: b waits for it
    (a0 / "meta.json").unlink()
    status = by_take(plan_of(path, only=["c"]))
    assert status["a/0"] == ("stale", ["not rendered yet"])
    assert status["b/0"] == ("stale", ["upstream shot a is out of date"])
    assert by_take(plan_of(path))["b/0"] == ("stale", ["upstream shot a renders"])


def test_a_re_pick_of_the_parent_is_named(tmp_path):
    path = story(tmp_path)
    commit_plan(plan_of(path))
    path.write_text(STORY.replace("pick: 0", "pick: 1"))
    status = by_take(plan_of(path))
    assert status["b/0"] == ("stale", ["parent a re-picked (take 0 -> take 1)"])
    assert status["a/0"] == ("fresh", []) and status["a/1"] == ("fresh", [])


def test_a_linked_take_of_another_key_explains_the_change_from_its_stored_inputs(tmp_path):
    path = story(tmp_path)
    commit_plan(plan_of(path))
    path.write_text(STORY.replace("Rain on glass", "Snow on glass").replace("{seed: 10}", "{seed: 10, steps: 30}"))
    status = by_take(plan_of(path))
    assert status["c/0"] == ("stale", ["prompt changed", "sampler settings changed (steps)"])
    assert status["b/0"] == ("stale", ["sampler settings changed (steps)", "upstream shot a changed"])
    # a meta.json without key_inputs still says the key changed
    c_meta = plan_of(path).steps[3].artifact_dir / "meta.json"
    meta = json.loads(c_meta.read_text())
    for broken in (None, ["not", "an", "object"]):
        meta["key_inputs"] = broken
        c_meta.write_text(json.dumps(meta))
        assert by_take(plan_of(path))["c/0"] == ("stale", ["cache key changed"])
    del meta["key_inputs"]
    c_meta.write_text(json.dumps(meta))
    assert by_take(plan_of(path))["c/0"] == ("stale", ["cache key changed"])


def test_a_damaged_take_of_the_planned_key_names_its_files_whatever_inputs_it_records(tmp_path):
    path = story(tmp_path)
    plan = plan_of(path)
    commit_plan(plan)
    c_meta = plan.steps[3].artifact_dir / "meta.json"
    meta = json.loads(c_meta.read_text())
    meta["key_inputs"] = {**meta["key_inputs"], "prompt": "recorded otherwise"}
    c_meta.write_text(json.dumps(meta))
    (plan.steps[3].artifact_dir / "frames.mkv").write_bytes(b"damaged")
    assert by_take(plan_of(path))["c/0"] == ("stale", ["file changed since render (frames.mkv)"])


def move_into_store(plan) -> None:
    """The takes of `plan` as the store keeps them once no shot points at them."""
    for step in plan.steps:
        step.stored_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(step.artifact_dir, step.stored_dir)


def test_a_complete_stored_take_is_re_linked_not_rendered(tmp_path):
    path = story(tmp_path)
    original = plan_of(path)
    commit_plan(original)
    move_into_store(original)
    plan = plan_of(path)
    reused = ["not rendered yet", "a stored take matches: re-linked, no render"]
    assert by_take(plan) == {"a/0": ("stored", reused), "a/1": ("stored", reused),
                             "b/0": ("stored", reused), "c/0": ("stored", reused)}
    assert [s.action for s in plan.steps] == ["reuse"] * 4 and plan.to_render == []
    assert [s.frames_sha256 for s in plan.steps] == [sha(f"{s.cache_key} frames".encode()) for s in plan.steps]
    assert plan.steps[3].stored_dir == stored_dir(plan.out_dir, plan.steps[3].cache_key)


def test_undoing_an_edit_finds_the_stored_takes_and_says_what_changed_back(tmp_path):
    path = story(tmp_path)
    original = plan_of(path)
    commit_plan(original)
    move_into_store(original)
    path.write_text(STORY.replace(A_PROMPT, "A lamp dims. Audio: hum."))
    commit_plan(plan_of(path))  # the edit rendered into the shots' folders
    path.write_text(STORY)
    status = by_take(plan_of(path))
    match = "a stored take matches: re-linked, no render"
    assert status == {"a/0": ("stored", ["prompt changed", match]), "a/1": ("stored", ["prompt changed", match]),
                      "b/0": ("stored", ["upstream shot a changed", match]), "c/0": ("fresh", [])}


def test_an_incomplete_stored_take_renders_with_the_linked_takes_reason(tmp_path):
    path = story(tmp_path)
    original = plan_of(path)
    commit_plan(original)
    move_into_store(original)
    c = original.steps[3]
    (c.stored_dir / "frames.mkv").write_bytes(b"")
    assert by_take(plan_of(path))["c/0"] == ("stale", ["not rendered yet"])
    (c.stored_dir / "meta.json").unlink()
    assert by_take(plan_of(path))["c/0"] == ("stale", ["not rendered yet"])


# -- an unpicked parent of several takes: its best take ---------------------------------------------

UNPICKED = STORY.replace("    pick: 0\n", "")


def keep_checks(step, folder: Path, checks: list[Check]) -> None:
    """qc.json beside a committed take, as the render keeps it (keyed by what it measured)."""
    meta = json.loads((folder / "meta.json").read_text())
    (folder / QC_FILE).write_text(json.dumps(
        {"key": qc_key(meta, step.shot, QcThresholds()), "checks": [c.to_json() for c in checks]}))


def test_the_best_of_stored_parent_takes_is_chosen_from_their_kept_checks(tmp_path):
    path = story(tmp_path, UNPICKED)
    first = plan_of(path, pick="first")
    commit_plan(first)
    a0, a1 = first.steps[0], first.steps[1]
    move_into_store(SimpleNamespace(steps=[a0, a1]))  # a's takes are stored, not linked
    keep_checks(a0, a0.stored_dir, [Check("black", FAIL, "black: 5.00 s from 0.00 s")])
    keep_checks(a1, a1.stored_dir, [Check("black", PASS, "no black stretch")])
    plan = plan_of(path)
    assert [s.status for s in plan.steps[:2]] == ["stored", "stored"]
    b = plan.steps[2]
    assert (b.parent_take, b.parent_choice.take, b.parent_choice.scores) == (1, 1, {0: 0.0, 1: 1.0})
    assert b.key_inputs["parent"] == plan.steps[1].cache_key and b.cache_key == cache_key(b.key_inputs)
    assert b.reasons == ["parent a re-picked (take 0 -> take 1)"]


def test_an_extension_keyed_at_dispatch_follows_a_parent_that_renders(tmp_path):
    picked = plan_of(story(tmp_path, STORY.replace("pick: 0", "pick: 1")))
    commit_plan(picked)  # b rendered from a's take 1
    path = story(tmp_path, UNPICKED)
    plan = plan_of(path, force=["a"])  # a renders again: b waits for its best take
    a0, a1, b = plan.steps[:3]
    assert b.cache_key == "" and a1.renders
    start_extension(b, a1, [a0, a1], Choice(1, "best by quality checks: take 1 passed 100%"))
    assert b.cache_key == picked.steps[2].cache_key  # b's own take is complete for this key
    assert (b.status, b.reasons) == ("stale", ["upstream shot a renders"])
