"""The preview engine (an animatic without the model) and the quickstart rendered with it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ovi_studio.media import probe
from ovi_studio.render.engines import ShotJob
from ovi_studio.render.preview import PREVIEW_HEIGHT, PreviewEngine, preview_size
from ovi_studio.render.captions import display_text
from ovi_studio.render.inputs import RenderOptions
from ovi_studio.render.session import RenderSession
from ovi_studio.render.progress import RenderProgress
from ovi_studio.render.subtitles import speech_windows

REPO = Path(__file__).resolve().parents[1]


def _job(**kw):
    base = dict(shot_id="s1", take=0, seed=1, mode="t2v", prompt="A harbour at dawn.", height=704,
                width=1280, frames=121, dialogue=(("Anna", "Good morning to you all"),),
                scene="A harbour at dawn.", audio_caption="gulls and waves")
    return ShotJob(**{**base, **kw})


def test_preview_size_keeps_the_aspect_at_256_px():
    assert preview_size(704, 1280) == (PREVIEW_HEIGHT, 466)
    assert preview_size(960, 960) == (256, 256)


@pytest.mark.parametrize("frames", [121, 241])
def test_exact_duration_and_timed_captions(frames):
    out = PreviewEngine(speech=False).render(_job(frames=frames), None)
    assert out.frames.shape == (frames, 256, 466, 3) and out.frames.dtype == np.uint8
    assert out.audio.shape[0] == round(frames / 24 * 16000)
    # the caption is on screen while the line is spoken (its words at a speaking rate, from
    # the lead-in), not at the very start and not for the rest of the shot
    assert not np.array_equal(out.frames[0], out.frames[24])
    assert np.array_equal(out.frames[0], out.frames[1])
    assert np.array_equal(out.frames[0], out.frames[4 * 24])
    # a tone stands in for the line while it is spoken, silence before it
    assert np.abs(out.audio[:1000]).max() == 0 and np.abs(out.audio[16000:32000]).max() > 0.05


def test_first_frame_is_the_picture():
    red = Image.new("RGB", (640, 360), (200, 20, 20))
    out = PreviewEngine(speech=False).render(_job(dialogue=()), red)
    centre = out.frames[0, 128, 233]
    assert tuple(centre) == (200, 20, 20)


@pytest.mark.slow
def test_quickstart_renders_with_the_planned_duration_and_subtitles(tmp_path):
    options = RenderOptions(source=REPO / "storyboards" / "quickstart.yaml", out_dir=tmp_path, engine="preview")
    session = RenderSession(options, RenderProgress(quiet=True))
    plan = session.prepare()
    outcome = session.run()
    assert outcome.exit_code == 0
    seams = sum(1 for i, s in enumerate(session.loaded.shots)
                if s.extends and i and session.loaded.shots[i - 1].id == s.extends)
    planned = sum(step.frames for step in plan.steps if step.take == 0) - seams
    final = tmp_path / outcome.final["path"]
    assert probe.count_video_frames(final) == planned == outcome.final["frames"]
    assert probe.probe(final).first("subtitle").codec == "mov_text"
    lines = sum(len(s.dialogue) for s in session.loaded.shots)
    srt = (tmp_path / outcome.final["srt"]).read_text()
    assert srt.count("-->") == lines and "The keeper: Nobody should be out" in srt
    assert display_text(session.loaded, "{keeper} waves at {girl}") == "The keeper waves at The girl"


CHAIN = """\
version: 1
model: 720x720_5s
characters:
  keeper:
    look: an old lighthouse keeper
    name: Keeper
shots:
  - id: lamp
    scene: The keeper polishes the brass lens in the lamp room.
    dialogue:
      - speaker: keeper
        line: Nobody should be out tonight.
    audio: Rain on glass.
  - id: stairs
    extends: lamp
    scene: The keeper hurries down the iron stairs with a lantern.
    audio: Footsteps on iron steps.
"""


@pytest.mark.slow
def test_an_extension_preview_shows_its_own_text_on_its_parents_picture_not_its_captions(tmp_path):
    from ovi_studio.media import video
    from ovi_studio.render.preview import overlay, with_scene_text
    story = tmp_path / "s.yaml"
    story.write_text(CHAIN)
    session = RenderSession(RenderOptions(source=story, out_dir=tmp_path / "out", engine="preview"),
                            RenderProgress(quiet=True))
    session.prepare()
    assert session.run().exit_code == 0
    take = {s: tmp_path / "out" / "shots" / s / "take0" for s in ("lamp", "stairs")}
    parent_plate = np.asarray(Image.open(take["lamp"] / "plate.png"))
    assert np.array_equal(np.asarray(Image.open(take["stairs"] / "plate.png")), parent_plate)
    meta = json.loads((take["stairs"] / "meta.json").read_text())
    h, w = meta["size"]["height"], meta["size"]["width"]
    child = video.read_frames(take["stairs"] / "frames.mkv", w, h)
    job = _job(shot_id="stairs", mode="extend", dialogue=(), audio_caption="Footsteps on iron steps.")
    expected = overlay(with_scene_text(Image.fromarray(parent_plate), CHAIN.split("scene: ")[2].split("\n")[0]),
                       job, None)
    # exactly one header and the child's own texts: nothing of the parent's drawn layers
    assert np.array_equal(child[0], np.asarray(expected))
    parent_last = np.asarray(Image.open(take["lamp"] / "last_frame.png"))
    assert not np.array_equal(parent_last, parent_plate)  # the parent's frames do carry drawings


@pytest.mark.slow
def test_the_report_says_when_guide_speech_is_tones(tmp_path, monkeypatch):
    import shutil as _shutil
    real_which = _shutil.which
    monkeypatch.setattr("ovi_studio.render.preview.shutil.which",
                        lambda name: None if name == "espeak-ng" else real_which(name))
    story = tmp_path / "s.yaml"
    story.write_text(CHAIN)
    session = RenderSession(RenderOptions(source=story, out_dir=tmp_path / "out", engine="preview"),
                            RenderProgress(quiet=True))
    session.prepare()
    outcome = session.run()
    engine = json.loads(outcome.report_path.read_text())["engine"]
    assert engine["speech"] == "tones" and "apt-get install espeak-ng" in engine["speech_note"]


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_with_espeak_the_guide_track_speaks_in_the_speech_window():
    out = PreviewEngine().render(_job(), None)
    assert PreviewEngine().identity()["speech"] == "espeak-ng"
    (a, b), = speech_windows(["Good morning to you all"], 121 / 24)
    voiced = np.abs(out.audio[int(a * 16000):int(b * 16000)]).max()
    assert voiced > 0.05 and np.abs(out.audio[int(b * 16000) + 800:]).max() == 0
