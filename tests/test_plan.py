"""`plan`: execution order, geometry, seeds, cache keys, staleness reasons and the cost model."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from engine import layout
from engine.variants import VARIANTS, best_i2v_size, snap_t2v_size
from ovi_studio import cost
from ovi_studio.cli import app
from ovi_studio.errors import UserError
from ovi_studio.media import video
from ovi_studio.plan import build_plan, cache_key, explain_changes
from ovi_studio.storyboard import load_storyboard
from take_fakes import commit_plan

runner = CliRunner()

STORY = """\
version: 1
model: 720x720_5s
defaults: {{seed: 10, resolution: [704, 1280]}}
shots:
  - id: tail
    extends: head
    prompt: "The car drives away. Audio: engine."
  - id: head
    prompt: "{head_prompt}"
    first_frame: frame.png
    takes: 2
  - id: solo
    prompt: "A bird sings. Audio: birdsong."
    seed: 3
    blocks_to_swap: {swap}
"""


def make(tmp_path: Path, head_prompt="A car starts. Audio: engine.", swap=0) -> Path:
    Image.new("RGB", (1280, 720), (40, 90, 160)).save(tmp_path / "frame.png")
    path = tmp_path / "story.yaml"
    path.write_text(STORY.format(head_prompt=head_prompt, swap=swap), encoding="utf-8")
    return path


def plan_of(path: Path, **kwargs):
    """The plan as `plan --pick first` makes it: tail extends head's take 0, keyed from the start
    (the best of head's takes, chosen once they are checked: test_best_take_extension.py)."""
    return build_plan(load_storyboard(path), **{"pick": "first", **kwargs})


def test_order_modes_sizes_seeds(tmp_path):
    plan = plan_of(make(tmp_path))
    rows = [(s.shot.id, s.take, s.mode, s.parent, (s.height, s.width), s.seed) for s in plan.steps]
    assert rows == [
        ("head", 0, "i2v", None, (544, 960), 10),  # 720x1280 image -> 544x960 at 720²
        ("head", 1, "i2v", None, (544, 960), 11),
        ("tail", 0, "extend", "head", (544, 960), 10),
        ("solo", 0, "t2v", None, snap_t2v_size(704, 1280, VARIANTS["720x720_5s"].video_area), 3),
    ]
    assert plan.steps[3].height == 544 and plan.steps[3].width == 960  # the variants' size table (docs/model.md)
    assert all(s.frames == 121 for s in plan.steps)
    assert plan.out_dir == tmp_path / "out" / "story"
    assert plan.steps[0].artifact_dir == tmp_path / "out" / "story" / "shots" / "head" / "take0"
    assert len({s.cache_key for s in plan.steps}) == 4
    assert plan.steps[2].key_inputs["parent"] == plan.steps[0].cache_key


def test_everything_is_stale_then_fresh_after_render(tmp_path):
    path = make(tmp_path)
    plan = plan_of(path)
    assert {(s.status, tuple(s.reasons)) for s in plan.steps} == {("stale", ("not rendered yet",))}
    commit_plan(plan)
    again = plan_of(path)
    assert all(s.status == "fresh" and not s.reasons for s in again.steps)
    assert again.total_seconds_estimate == 0


def test_a_prompt_change_cascades_down_the_chain(tmp_path):
    path = make(tmp_path)
    commit_plan(plan_of(path))
    plan = plan_of(make(tmp_path, head_prompt="A truck starts. Audio: engine."))
    status = {(s.shot.id, s.take): (s.status, s.reasons) for s in plan.steps}
    assert status[("head", 0)] == ("stale", ["prompt changed"])
    assert status[("tail", 0)] == ("stale", ["upstream shot head changed"])
    assert status[("solo", 0)] == ("fresh", [])


def test_seed_and_image_changes_are_explained(tmp_path):
    path = make(tmp_path)
    commit_plan(plan_of(path))
    path.write_text(path.read_text().replace("seed: 3", "seed: 4"))
    Image.new("RGB", (1280, 720), (0, 0, 0)).save(tmp_path / "frame.png")
    status = {(s.shot.id, s.take): s.reasons for s in plan_of(path).steps}
    assert status[("solo", 0)] == ["seed changed"]
    assert status[("head", 1)] == ["first-frame image changed"]


def test_placement_and_output_folder_do_not_change_the_key(tmp_path):
    first = plan_of(make(tmp_path))
    second = plan_of(make(tmp_path, swap=12), out_dir=tmp_path / "elsewhere")
    assert [s.cache_key for s in first.steps] == [s.cache_key for s in second.steps]
    assert second.steps[0].artifact_dir.is_relative_to(tmp_path / "elsewhere")


def test_checkpoint_identity_enters_the_key(tmp_path):
    path = make(tmp_path)
    ckpt = tmp_path / "ckpts"
    for rel in layout.required_files(VARIANTS["720x720_5s"]):
        target = ckpt / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"weights " + rel.encode())
    with_ckpt = plan_of(path, ckpt_dir=ckpt)
    assert with_ckpt.steps[0].key_inputs["checkpoint"].startswith("sha256:")
    assert plan_of(path).steps[0].key_inputs["checkpoint"] == "no-checkpoint"
    commit_plan(with_ckpt)
    (ckpt / "Ovi" / "model.safetensors").write_bytes(b"other weights")
    assert plan_of(path, ckpt_dir=ckpt).steps[0].reasons == ["checkpoint changed"]


def test_unreadable_meta_and_explain_changes(tmp_path):
    plan = plan_of(make(tmp_path))
    meta = plan.steps[0].artifact_dir / "meta.json"
    meta.parent.mkdir(parents=True)
    meta.write_text("{not json")
    assert plan_of(make(tmp_path)).steps[0].reasons == ["meta.json is unreadable"]
    old = {"steps": 50, "solver": "unipc", "prompt": "a"}
    assert explain_changes(old, {"steps": 30, "solver": "euler", "prompt": "a"}) == [
        "sampler settings changed (steps)", "sampler settings changed (solver)"]
    assert cache_key({"a": 1, "b": 2}) == cache_key({"b": 2, "a": 1})


@pytest.mark.parametrize("shots, words", [
    ("  - {id: a, prompt: x, extends: zz}\n", "which is not a"),
    ("  - {id: a, prompt: x, extends: b}\n  - {id: b, prompt: y, extends: a}\n", "cycle"),
    ("  - {id: a, prompt: x}\n  - {id: a, prompt: y}\n", "used twice"),
])
def test_graph_problems_are_user_errors(tmp_path, shots, words):
    path = tmp_path / "s.yaml"
    path.write_text("version: 1\nshots:\n" + shots)
    with pytest.raises(UserError, match=words):
        plan_of(path)


def test_cost_model_matches_the_performance_anchors():
    v720, v10 = VARIANTS["720x720_5s"], VARIANTS["960x960_10s"]
    assert cost.layer_flops(15_004, 157) / 1e12 == pytest.approx(7.92, rel=0.01)
    assert cost.layer_flops(54_900, 314) / 1e12 == pytest.approx(55.9, rel=0.01)
    assert cost.denoise_flops(15_004, 157, 50) / 1e15 == pytest.approx(23.6, rel=0.02)
    seconds = cost.take_seconds(704, 704, v720, 50)
    assert seconds == pytest.approx(23.36e15 / (0.4 * 989e12) + 10, rel=0.01)
    assert cost.take_seconds(960, 960, v10, 50) > 2.5 * cost.take_seconds(960, 960, VARIANTS["960x960_5s"], 50)
    assert cost.take_seconds(704, 704, v720, 25) < seconds


def test_estimate_seconds_for_a_resolved_shot(tmp_path):
    path = make(tmp_path)
    loaded = load_storyboard(path)
    head = loaded.shot("head")
    assert cost.estimate_seconds(head, loaded.variant, (544, 960)) == pytest.approx(
        2 * cost.take_seconds(544, 960, loaded.variant, 50))
    plan = build_plan(loaded)
    assert plan.total_seconds_estimate == pytest.approx(sum(s.estimate_seconds for s in plan.steps))


def test_plan_cli_text_and_json(tmp_path):
    path = make(tmp_path)
    text = runner.invoke(app, ["plan", str(path)], env={"COLUMNS": "200"})
    assert text.exit_code == 0, text.output
    assert "extends head" in text.output and "not rendered yet" in text.output
    data = json.loads(runner.invoke(app, ["plan", "--json", str(path)]).output)
    assert [t["shot"] for t in data["takes"]] == ["head", "head", "tail", "solo"]
    assert set(data["takes"][0]) >= {"mode", "height", "width", "frames", "seed", "cache_key",
                                     "status", "reasons", "estimate_seconds", "key_inputs"}
    path.write_text("version: 1\nshots:\n  - {id: a, prompt: x, sed: 1}\n")
    bad = runner.invoke(app, ["plan", str(path)])
    assert bad.exit_code == 1 and "did you mean `seed`" in bad.output and "Traceback" not in bad.output


@pytest.mark.parametrize("frame, words", [
    (None, "frame.png does not exist"),
    (b"\x89PNG\r\n\x1a\n truncated", "frame.png is not a readable image"),
])
def test_an_unreadable_first_frame_blocks_its_shot_and_descendants_only(tmp_path, frame, words):
    path = make(tmp_path)
    (tmp_path / "frame.png").unlink()
    if frame is not None:
        (tmp_path / "frame.png").write_bytes(frame)
    plan = plan_of(path)
    status = {(s.shot.id, s.take): s.status for s in plan.steps}
    assert status == {("head", 0): "blocked", ("head", 1): "blocked", ("tail", 0): "blocked",
                      ("solo", 0): "stale"}
    head, tail = plan.steps[0], plan.steps[2]
    assert words in head.reasons[0] and "point `first_frame` at a readable image" in head.reasons[0]
    assert tail.reasons == ["extends head, which is blocked"] and tail.height is None
    assert plan.total_seconds_estimate == pytest.approx(plan.steps[3].estimate_seconds)
    text = runner.invoke(app, ["plan", str(path)], env={"COLUMNS": "300"})
    assert text.exit_code == 1 and "blocked" in text.output and "frame.png" in text.output
    data = runner.invoke(app, ["plan", "--json", str(path)])
    assert data.exit_code == 1 and json.loads(data.output)["takes"][0]["status"] == "blocked"


def test_a_video_first_frame_is_planned_from_its_last_frame(tmp_path):
    frames = np.zeros((3, 48, 80, 3), np.uint8)
    frames[-1] = 200  # only the last frame is read
    video.write_lossless(tmp_path / "prev.mkv", frames)
    path = tmp_path / "s.yaml"
    path.write_text("version: 1\nmodel: 720x720_5s\nshots:\n  - {id: a, prompt: x, first_frame: prev.mkv}\n")
    step = plan_of(path).steps[0]
    assert (step.mode, step.status) == ("i2v", "stale")
    assert (step.height, step.width) == best_i2v_size(48, 80, VARIANTS["720x720_5s"].video_area)
    assert step.key_inputs["first_frame"].startswith("sha256:")
    (tmp_path / "prev.mkv").write_bytes(b"not a video")
    assert plan_of(path).steps[0].status == "blocked"


def test_a_take_rendered_by_another_engine_is_stale(tmp_path, tiny_ckpt):
    path = make(tmp_path)
    preview = plan_of(path, ckpt_dir=tiny_ckpt, engine="preview")
    commit_plan(preview)
    assert {s.status for s in plan_of(path, ckpt_dir=tiny_ckpt, engine="preview").steps} == {"fresh"}
    model = plan_of(path, ckpt_dir=tiny_ckpt)  # auto: the checkpoints are complete
    assert model.engine.name == "ovi"
    assert model.steps[0].reasons == ["rendered by preview; this render uses ovi"]
    with pytest.raises(UserError, match="checkpoints are incomplete"):
        plan_of(path, ckpt_dir=tmp_path / "nowhere", engine="ovi")
    assert plan_of(path, ckpt_dir=tmp_path / "nowhere").engine.fell_back


def test_the_checkpoint_arch_json_sizes_the_plan(tmp_path, tiny_ckpt):
    """The tiny checkpoint renders 128x128 (arch.json `variant.video_area`): so does the plan.
    test_render_session checks the rendered size equals the planned one."""
    from engine.arch import load_arch
    tiny = load_arch(tiny_ckpt).variant.apply(VARIANTS["720x720_5s"])
    plan = plan_of(make(tmp_path), ckpt_dir=tiny_ckpt)
    solo = plan.steps[-1]
    assert plan.variant.video_area == tiny.video_area == 128 * 128
    assert (solo.height, solo.width) == snap_t2v_size(704, 1280, tiny.video_area)
    assert solo.frames == tiny.frames and solo.height * solo.width <= tiny.video_area
