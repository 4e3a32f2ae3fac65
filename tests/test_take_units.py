"""Rendering one take with a stand-in engine that records what it is given: the job a planned
take becomes (every text, size, seed and setting in its place), the first frame it starts from
(the shot's image, or the parent's plate, last or sharpest frame) and where that came from, the
out-of-memory retry, colour matching along a chain, and the files and meta.json it commits.
Frames are a few 16x16 pictures, so each test takes milliseconds of ffmpeg at most."""
from __future__ import annotations

import calendar
import json
import os
import time

import numpy as np
import pytest
from PIL import Image

from ovi_studio.media import audio as audio_io
from ovi_studio.media import video
from ovi_studio.plan import build_plan, extend_take
from ovi_studio.render import continuity, take
from ovi_studio.render.artifacts import TakeLayout, read_meta
from ovi_studio.render.engines import OutOfMemory, ShotOutput, memory_saving
from ovi_studio.render.take import TakeContext, first_frame, render_take, shot_job
from ovi_studio.storyboard import load_storyboard
from ovi_studio.take_choice import Choice

STORY = """\
version: 1
model: 720x720_5s
defaults: {{seed: 7, video_negative: "blurry, warped", audio_negative: "hiss, robotic voice"}}
characters:
  anna: {{name: Anna, look: a woman in a red coat, voice: A calm low voice.}}
shots:
  - id: dock
    scene: "{{anna}} stands on the dock."
    dialogue:
      - {{speaker: anna, line: The boat is late.}}
    audio: Gulls and waves.
    takes: 2
  - id: walk
    extends: dock
    prompt: "She walks away. Audio: footsteps."
    seed_frame: {seed_frame}
    color_match: {color_match}
  - id: away
    extends: walk
    prompt: "She is gone. Audio: waves."
    color_match: {color_match}
  - id: still
    prompt: "A still sea. Audio: waves."
    first_frame: sea.png
    fit: pad
    aspect: "1:1"
"""

SIZE = 16


def planned(tmp_path, seed_frame="last", color_match="first"):
    Image.new("RGB", (64, 32), (10, 80, 160)).save(tmp_path / "sea.png")
    (tmp_path / "story.yaml").write_text(STORY.format(seed_frame=seed_frame, color_match=color_match),
                                         encoding="utf-8")
    loaded = load_storyboard(tmp_path / "story.yaml")
    plan = build_plan(loaded, out_dir=tmp_path / "out", pick="first")  # walk continues dock's take 0
    return loaded, {(s.shot.id, s.take): s for s in plan.steps}


def frames_of(*colours) -> np.ndarray:
    return np.broadcast_to(np.asarray(colours, np.uint8)[:, None, None, :], (len(colours), SIZE, SIZE, 3)).copy()


class Engine:
    """A stand-in engine: records each job and first frame, returns flat frames (a different
    colour per take, plus a detail in the last frames), may run out of memory first."""
    name = "stand-in"

    def __init__(self, color_drift=True, out_of_memory=0, frames=None, plate=None, latents=None):
        self.color_drift, self.out_of_memory = color_drift, out_of_memory
        self.frames, self.plate, self.latents = frames, plate, latents
        self.jobs, self.firsts = [], []

    def identity(self):
        return {"name": self.name, "weights": "none"}

    def render(self, job, first_frame, on_step, on_phase):
        self.jobs.append(job)
        self.firsts.append(first_frame)
        if self.out_of_memory:
            self.out_of_memory -= 1
            raise OutOfMemory("no room")
        on_step(1, 1)
        on_phase("denoise")
        frames = self.frames if self.frames is not None else frames_of(*[(20 * job.take + 10 * i, 50, 90) for i in range(3)])
        sound = np.linspace(-0.5, 0.5, 800, dtype=np.float64 if self.frames is not None else np.float32)
        return ShotOutput(frames.copy(), sound, self.latents,
                          {"timings": {"denoise_s": 1.5}, "peak_memory_bytes": 77, "steps_run": 1, "when": object()},
                          self.plate)


def run(ctx, step, engine, phases=None, logs=None):
    return render_take(ctx, step, engine, lambda done, total: None,
                       lambda label, phase: (phases if phases is not None else []).append((label, phase)),
                       (logs if logs is not None else []).append)


# -- the job -----------------------------------------------------------------------------------

def test_the_job_carries_every_conditioning_input_in_its_place(tmp_path):
    loaded, steps = planned(tmp_path)
    step = steps["dock", 1]
    job = shot_job(step, loaded)
    assert (job.shot_id, job.take, job.seed, job.mode, job.height, job.width, job.frames) == \
        ("dock", 1, 8, "t2v", step.height, step.width, 121)
    assert (step.height, step.width) == (704, 704)
    assert job.prompt == step.shot.prompt and "<S>The boat is late.<E>" in job.prompt
    assert (job.video_negative, job.audio_negative) == ("blurry, warped", "hiss, robotic voice")
    assert job.dialogue == (("Anna", "The boat is late."),)
    assert job.scene == "Anna stands on the dock."  # the character's name, as captions show it
    assert job.audio_caption == step.shot.audio_caption and "Gulls and waves." in job.audio_caption
    assert job.settings["seed_frame"] == "last" and job.settings["video_negative"] == "blurry, warped"
    assert job.settings["steps"] == step.shot.settings.steps


# -- first frames ------------------------------------------------------------------------------

def test_t2v_starts_from_nothing_and_i2v_from_the_shots_image(tmp_path):
    loaded, steps = planned(tmp_path)
    ctx = TakeContext(loaded, tmp_path / "out", None)
    assert first_frame(ctx, steps["dock", 0]) == (None, None)
    image, provenance = first_frame(ctx, steps["still", 0])
    assert image.size == (64, 64) and image.getpixel((32, 32)) == (10, 80, 160)  # padded to 1:1
    assert image.getpixel((32, 4)) == (0, 0, 0)
    assert provenance == {"source": str(tmp_path / "sea.png"), "fit": "pad", "size": [64, 64], "aspect_from": (720, 720)}


def _commit_parent(ctx, step, engine=None, **engine_kw):
    return run(ctx, step, engine or Engine(**engine_kw))


def test_an_extension_starts_from_its_parents_last_frame(tmp_path):
    loaded, steps = planned(tmp_path)
    ctx = TakeContext(loaded, tmp_path / "out", None)
    frames = frames_of((10, 50, 90), (20, 50, 90), (30, 50, 90))
    frames[1, ::2, ::2] = 255  # the sharpest is not the last
    parent = _commit_parent(ctx, steps["dock", 0], frames=frames)
    frame, provenance = first_frame(ctx, steps["walk", 0])
    assert frame.mode == "RGB" and np.array_equal(np.asarray(frame), frames[2])
    assert provenance == {"shot": "dock", "take": 0, "index": 2, "of": 3, "mode": "last",
                          "frames_sha256": parent["files"]["frames"]["sha256"]}


@pytest.mark.parametrize("seed_frame, picture", [("last", "last_frame"), ("sharpest", "plate")])
def test_a_parent_picture_of_another_mode_is_handed_on_as_rgb(tmp_path, seed_frame, picture):
    loaded, steps = planned(tmp_path, seed_frame=seed_frame)
    ctx = TakeContext(loaded, tmp_path / "out", None)
    _commit_parent(ctx, steps["dock", 0], plate=np.zeros((SIZE, SIZE, 3), np.uint8) if picture == "plate" else None)
    layout = TakeLayout(steps["dock", 0].artifact_dir)
    getattr(layout, picture).unlink()
    Image.new("RGBA", (SIZE, SIZE), (200, 100, 50, 255)).save(getattr(layout, picture))
    frame, _ = first_frame(ctx, steps["walk", 0])
    assert frame.mode == "RGB" and frame.getpixel((3, 3)) == (200, 100, 50)


@pytest.mark.parametrize("plate", [None, np.zeros((SIZE, SIZE, 3), np.uint8)])
def test_a_parent_without_its_record_still_seeds_and_says_what_is_unknown(tmp_path, plate):
    loaded, steps = planned(tmp_path)
    ctx = TakeContext(loaded, tmp_path / "out", None)
    _commit_parent(ctx, steps["dock", 0], plate=plate)
    TakeLayout(steps["dock", 0].artifact_dir).meta.unlink()
    frame, provenance = first_frame(ctx, steps["walk", 0])
    assert frame.size == (SIZE, SIZE)
    assert provenance == {"shot": "dock", "take": 0, "index": 0, "of": 1, "mode": "last", "frames_sha256": None}


def test_an_extension_of_a_preview_starts_from_its_plate_not_its_drawn_frames(tmp_path):
    loaded, steps = planned(tmp_path, seed_frame="sharpest")
    ctx = TakeContext(loaded, tmp_path / "out", None)
    plate = np.full((SIZE, SIZE, 3), 123, np.uint8)
    _commit_parent(ctx, steps["dock", 0], plate=plate)
    frame, provenance = first_frame(ctx, steps["walk", 0])
    assert np.array_equal(np.asarray(frame), plate)
    assert (provenance["index"], provenance["of"], provenance["mode"]) == (2, 3, "sharpest")


def test_sharpest_picks_the_most_detailed_of_the_last_frames(tmp_path):
    loaded, steps = planned(tmp_path, seed_frame="sharpest")
    ctx = TakeContext(loaded, tmp_path / "out", None)
    frames = frames_of(*[(100, 100, 100)] * 9)
    frames[1, ::2, ::2] = 255  # outside the last six frames: not considered
    frames[1, ::3, 1::2] = 0
    frames[6, ::2, ::2] = 255  # frame 6 of 9: a fine checker, the sharpest of the last six
    frames[8, :8] = 0  # the last: one soft edge
    _commit_parent(ctx, steps["dock", 0], frames=frames)
    frame, provenance = first_frame(ctx, steps["walk", 0])
    assert np.array_equal(np.asarray(frame), frames[6])
    assert (provenance["index"], provenance["of"]) == (6, 9)


# -- rendering and committing -------------------------------------------------------------------

@pytest.fixture()
def far_time_zone(monkeypatch):
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_take_is_rendered_committed_and_linked(tmp_path, far_time_zone):
    loaded, steps = planned(tmp_path)
    step = steps["dock", 1]
    ctx = TakeContext(loaded, tmp_path / "out", tmp_path / "ckpts")
    engine, phases = Engine(latents={"video": np.zeros((2, 1, 2, 2), np.float32), "audio": np.ones((3, 2), np.float32)}), []
    meta = run(ctx, step, engine, phases)
    assert engine.jobs == [shot_job(step, loaded)] and engine.firsts == [None]
    assert phases == [("dock/take1", "denoise"), ("dock/take1", "write")]
    layout = TakeLayout(step.artifact_dir)
    assert os.path.realpath(step.artifact_dir) == os.path.realpath(step.stored_dir)  # linked to the store
    assert read_meta(layout.meta) == meta
    assert np.array_equal(video.read_frames(layout.frames, SIZE, SIZE), frames_of(*[(20 + 10 * i, 50, 90) for i in range(3)]))
    samples, rate = audio_io.read_wav(layout.audio)
    assert rate == 16000 and np.array_equal(samples, np.linspace(-0.5, 0.5, 800, dtype=np.float32))
    assert np.array_equal(np.asarray(Image.open(layout.last_frame)), frames_of((40, 50, 90))[0])
    assert sorted(meta["files"]) == ["audio", "frames", "last_frame", "latents"] and not layout.plate.exists()
    for name, record in meta["files"].items():
        assert record["bytes"] == (layout.dir / record["path"]).stat().st_size
    expected = {
        "schema": 1, "shot": "dock", "take": 1, "status": "done", "cache_key": step.cache_key,
        "key_inputs": step.key_inputs, "mode": "t2v", "seed": 8, "prompt": step.shot.prompt,
        "raw_prompt": step.shot.raw_prompt, "video_negative": "blurry, warped",
        "audio_negative": "hiss, robotic voice", "dialogue": [{"speaker": "anna", "text": "The boat is late."}],
        "variant": "720x720_5s", "planned": {"height": 704, "width": 704, "frames": 121},
        "size": {"height": SIZE, "width": SIZE, "frames": 3}, "audio": {"sample_rate": 16000, "samples": 800},
        "first_frame": None, "parent": None, "color_match": None,
        "color_stats": continuity.color_stats(video.read_frames(layout.frames, SIZE, SIZE)).to_json(),
        "engine": {"name": "stand-in", "weights": "none"}, "ckpt_dir": str(tmp_path / "ckpts"),
        "timings": {"denoise_s": 1.5}, "peak_memory_bytes": 77, "ovi_studio": meta["ovi_studio"]}
    assert {k: meta[k] for k in expected} == expected
    assert meta["settings"] == json.loads(json.dumps(shot_job(step, loaded).settings, default=str))
    assert set(meta["engine_info"]) == {"steps_run", "when"} and meta["engine_info"]["steps_run"] == 1
    assert isinstance(meta["engine_info"]["when"], str)  # anything the engine says is kept as text
    assert meta["created"].endswith("Z") and len(meta["created"]) == 20
    created = calendar.timegm(time.strptime(meta["created"], "%Y-%m-%dT%H:%M:%SZ"))
    assert abs(created - time.time()) < 120  # UTC, whatever the machine's time zone (set below)
    assert meta["ovi_studio"] == __import__("ovi_studio").__version__


def test_a_preview_take_keeps_its_plate_and_an_i2v_take_records_its_image(tmp_path):
    loaded, steps = planned(tmp_path)
    ctx = TakeContext(loaded, tmp_path / "out", None)
    plate = np.full((SIZE, SIZE, 3), 9, np.uint8)
    wide = frames_of((1, 2, 3), (4, 5, 6)).astype(np.int64)  # whatever types an engine hands back,
    engine = Engine(plate=plate, frames=wide)  # the take keeps uint8 frames and float32 audio
    meta = run(ctx, steps["still", 0], engine)
    layout = TakeLayout(steps["still", 0].artifact_dir)
    assert np.array_equal(video.read_frames(layout.frames, SIZE, SIZE), wide)
    assert audio_io.read_wav(layout.audio)[0].dtype == np.float32
    assert np.array_equal(np.asarray(Image.open(layout.plate)), plate) and "plate" in meta["files"]
    assert meta["ckpt_dir"] is None and "latents" not in meta["files"]
    assert engine.firsts[0].size == (64, 64)
    assert read_meta(layout.meta)["first_frame"] == {"source": str(tmp_path / "sea.png"), "fit": "pad",
                                                     "size": [64, 64], "aspect_from": [720, 720]}
    assert meta["parent"] is None


def test_an_extension_records_its_parent_and_matches_its_chains_colours(tmp_path):
    loaded, steps = planned(tmp_path)
    ctx = TakeContext(loaded, tmp_path / "out", None)
    root = run(ctx, steps["dock", 0], Engine())
    phases = []
    walk = run(ctx, steps["walk", 0], Engine(frames=frames_of(*[(200, 40, 40)] * 3)), phases)
    assert phases == [("walk/take0", "denoise"), ("walk/take0", "color_match"), ("walk/take0", "write")]
    assert walk["parent"] == {"shot": "dock", "take": 0, "index": 2, "of": 3, "mode": "last",
                              "frames_sha256": root["files"]["frames"]["sha256"]}
    assert walk["first_frame"] is None
    assert walk["color_match"]["mode"] == "first" and walk["color_match"]["reference_shot"] == "dock"
    assert walk["color_match"]["reference"] == root["color_stats"]
    assert walk["color_match"]["before"] == continuity.color_stats(frames_of(*[(200, 40, 40)] * 3)).to_json()
    assert walk["color_stats"]["mean"] == pytest.approx(root["color_stats"]["mean"], abs=1.0)  # anchored
    away = run(ctx, steps["away", 0], Engine(frames=frames_of(*[(40, 200, 40)] * 3)))
    assert away["color_match"]["reference_shot"] == "dock"  # the chain's first shot, two levels up


def test_previous_matches_the_parent_and_off_or_a_driftless_engine_matches_nothing(tmp_path):
    loaded, steps = planned(tmp_path, color_match="previous")
    ctx = TakeContext(loaded, tmp_path / "out", None)
    run(ctx, steps["dock", 0], Engine())
    walk = run(ctx, steps["walk", 0], Engine(frames=frames_of(*[(200, 40, 40)] * 3)))
    assert walk["color_match"]["reference_shot"] == "dock"
    away = run(ctx, steps["away", 0], Engine(frames=frames_of(*[(40, 200, 40)] * 3)))
    assert away["color_match"]["reference_shot"] == "walk" and away["color_match"]["reference"] == walk["color_stats"]
    loaded, steps = planned(tmp_path, color_match="off")
    phases = []
    off = run(TakeContext(loaded, tmp_path / "out", None), steps["walk", 0], Engine(), phases)
    assert off["color_match"] is None and ("walk/take0", "color_match") not in phases
    loaded, steps = planned(tmp_path)
    phases = []
    still = run(TakeContext(loaded, tmp_path / "out", None), steps["walk", 0], Engine(color_drift=False), phases)
    assert still["color_match"] is None and ("walk/take0", "color_match") not in phases


def test_a_reference_without_colour_statistics_is_not_matched(tmp_path):
    loaded, steps = planned(tmp_path)
    ctx = TakeContext(loaded, tmp_path / "out", None)
    run(ctx, steps["dock", 0], Engine())
    meta_path = TakeLayout(steps["dock", 0].artifact_dir).meta
    meta = json.loads(meta_path.read_text())
    del meta["color_stats"]
    meta_path.write_text(json.dumps(meta))
    frames = frames_of(*[(200, 40, 40)] * 3)
    walk = run(ctx, steps["walk", 0], Engine(frames=frames))
    assert walk["color_match"] is None
    assert np.array_equal(video.read_frames(TakeLayout(steps["walk", 0].artifact_dir).frames, SIZE, SIZE), frames)


def test_first_anchors_to_the_take_the_chain_started_from(tmp_path):
    loaded, steps = planned(tmp_path)
    ctx = TakeContext(loaded, tmp_path / "out", None)
    first = run(ctx, steps["dock", 0], Engine())
    chosen = run(ctx, steps["dock", 1], Engine())
    assert chosen["color_stats"] != first["color_stats"]
    extend_take(steps["walk", 0], 1, steps["dock", 1].cache_key, Choice(1, "best by quality checks"))
    run(ctx, steps["walk", 0], Engine(frames=frames_of(*[(200, 40, 40)] * 3)))
    away = run(ctx, steps["away", 0], Engine(frames=frames_of(*[(40, 200, 40)] * 3)))
    assert away["color_match"]["reference_shot"] == "dock"
    assert away["color_match"]["reference"] == chosen["color_stats"]  # dock's take 1, not take 0


def test_out_of_memory_is_retried_once_with_more_memory_saving_when_asked(tmp_path):
    loaded, steps = planned(tmp_path)
    step = steps["still", 0]
    with pytest.raises(OutOfMemory):
        run(TakeContext(loaded, tmp_path / "out", None), step, Engine(out_of_memory=1))
    engine, logs = Engine(out_of_memory=1), []
    meta = run(TakeContext(loaded, tmp_path / "out", None, oom_retry=True), step, engine, logs=logs)
    assert logs == ["still: out of memory; retrying once with more memory saving"]
    assert engine.firsts[1] is engine.firsts[0] and engine.firsts[0].size == (64, 64)  # the same image again
    first, second = engine.jobs
    assert second.settings == memory_saving(first.settings) and second.settings["tiled_vae"] is True
    assert meta["settings"]["blocks_to_swap"] == 20 and meta["settings"]["tiled_vae"] is True
    with pytest.raises(OutOfMemory):  # once only
        run(TakeContext(loaded, tmp_path / "out", None, oom_retry=True), step, Engine(out_of_memory=2))


def test_a_failed_takes_traceback_is_kept_beside_it(tmp_path):
    take.record_error(tmp_path / "t", "Traceback: boom \udcff")
    assert (tmp_path / "t" / "error.txt").read_text(encoding="utf-8") == "Traceback: boom \\udcff"
    (tmp_path / "file").write_text("x")
    take.record_error(tmp_path / "file", "Traceback")  # the folder itself is what failed: nothing raised
    assert (tmp_path / "file").read_text() == "x"
