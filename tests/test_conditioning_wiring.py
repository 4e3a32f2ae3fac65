"""End-to-end wiring: every conditioning input of a shot reaches the model.

Unit tests of the engine cannot see a product that hands the engine the wrong value (the video
negative as the audio negative, the seed of another take, a guidance scale that is never read).
Here one storyboard renders through the command line on the tiny checkpoint: a baseline shot, a
second shot with the same inputs, and one shot per variant that changes one input. Each take's
lossless frames and audio (the files report.json names) must equal the baseline's for the
duplicate and differ where the changed input acts. Swapping two inputs must change the output
too, so a product that reads one in place of the other is caught.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from ovi_studio.cli import app
from ovi_studio.media import audio as audio_io
from ovi_studio.media.probe import count_video_frames
from ovi_studio.media.video import read_frames

pytestmark = pytest.mark.slow

BASE = {
    "prompt": "A lighthouse keeper says, <S>Who is there?<E> <AUDCAP>Wind and rain.<ENDAUDCAP>",
    "video_negative": "blur, distortion",
    "audio_negative": "robotic, muffled",
    "video_guidance": 4.0,
    "audio_guidance": 3.0,
    "slg_layer": 1,
    "seed": 42,
}
# Each variant: the inputs it changes, and the stream(s) that must change with them.
VARIANTS = {
    "prompt": ({"prompt": BASE["prompt"].replace("lighthouse keeper", "fisherman")}, "both"),
    "video-negative": ({"video_negative": "overexposed, static"}, "video"),
    "audio-negative": ({"audio_negative": "hiss, clipping"}, "audio"),
    "video-guidance": ({"video_guidance": 1.5}, "video"),
    "audio-guidance": ({"audio_guidance": 1.5}, "audio"),
    "slg-layer": ({"slg_layer": 0}, "both"),
    "seed": ({"seed": 43}, "both"),
    "negatives-swapped": ({"video_negative": BASE["audio_negative"],
                           "audio_negative": BASE["video_negative"]}, "both"),
    "guidances-swapped": ({"video_guidance": BASE["audio_guidance"],
                           "audio_guidance": BASE["video_guidance"]}, "both"),
}
FIRST_FRAMES = {"i2v-red": (200, 40, 40), "i2v-blue": (40, 40, 200)}


HEADER = ("version: 1\nmodel: 720x720_5s\noutput:\n  loudness: off\n  subtitles: false\n"
          "defaults:\n  steps: 1\nshots:\n")


def _render(story: Path, out: Path, ckpt: Path):
    return CliRunner().invoke(app, ["render", str(story), "-o", str(out), "--engine", "ovi",
                                    "--ckpt-dir", str(ckpt), "--device", "cpu", "-q"])


def shot_yaml(shot_id: str, values: dict, first_frame: str | None = None) -> str:
    lines = [f"  - id: {shot_id}"] + [f"    {key}: {json.dumps(value)}" for key, value in values.items()]
    if first_frame:
        lines.append(f"    first_frame: {first_frame}")
    return "\n".join(lines) + "\n"


def take_files(out: Path, report: dict, shot_id: str) -> tuple[np.ndarray, np.ndarray]:
    """A take's lossless frames and audio, read from the files its report entry names."""
    take = next(s for s in report["shots"] if s["id"] == shot_id)["takes"][0]
    assert take["status"] == ("cached" if shot_id == "duplicate" else "rendered"), take
    frames_path, audio_path = out / take["files"]["frames"], out / take["files"]["audio"]
    with Image.open(out / take["files"]["last_frame"]) as last:
        width, height = last.size
    frames = read_frames(frames_path, width, height)
    assert len(frames) == count_video_frames(frames_path)
    samples, _ = audio_io.read_wav(audio_path)
    return frames.astype(np.int16), np.asarray(samples, np.float64)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, tiny_ckpt_short):
    tmp = tmp_path_factory.mktemp("wiring")
    text = HEADER + shot_yaml("baseline", BASE) + shot_yaml("duplicate", BASE)
    text += "".join(shot_yaml(name, {**BASE, **edit}) for name, (edit, _) in VARIANTS.items())
    for name, colour in FIRST_FRAMES.items():
        Image.new("RGB", (64, 64), colour).save(tmp / f"{name}.png")
        text += shot_yaml(name, BASE, f"{name}.png")
    story = tmp / "story.yaml"
    story.write_text(text)
    out = tmp / "out"
    result = _render(story, out, tiny_ckpt_short)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    return {s["id"]: take_files(out, report, s["id"]) for s in report["shots"]}


def test_the_same_inputs_give_the_same_take(rendered, tmp_path, tiny_ckpt_short):
    """Within a render the duplicate shares the baseline's stored take (same cache key); rendered
    again into another output folder, it comes out bit-identical."""
    (video, audio), (again_video, again_audio) = rendered["baseline"], rendered["duplicate"]
    assert np.array_equal(video, again_video) and np.array_equal(audio, again_audio)
    story = tmp_path / "story.yaml"
    story.write_text(HEADER + shot_yaml("baseline", BASE))
    out = tmp_path / "out"
    assert _render(story, out, tiny_ckpt_short).exit_code == 0
    fresh_video, fresh_audio = take_files(out, json.loads((out / "report.json").read_text()), "baseline")
    assert np.array_equal(video, fresh_video) and np.array_equal(audio, fresh_audio)


@pytest.mark.parametrize("name", VARIANTS)
def test_each_input_changes_what_it_conditions(rendered, name):
    (video, audio), (new_video, new_audio) = rendered["baseline"], rendered[name]
    stream = VARIANTS[name][1]
    if stream in ("video", "both"):
        assert np.abs(video - new_video).mean() > 0.01, f"{name} did not reach the video"
    if stream in ("audio", "both"):
        assert np.abs(audio - new_audio).mean() > 0, f"{name} did not reach the audio"


def test_the_first_frame_conditions_the_shot(rendered):
    (red, _), (blue, _) = rendered["i2v-red"], rendered["i2v-blue"]
    assert np.abs(red - blue).mean() > 1.0
