"""The preview engine (an animatic without the model) and the quickstart rendered with it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ovi_studio.media import probe
from ovi_studio.render.engines import ShotJob
from ovi_studio.render.preview import PREVIEW_HEIGHT, PreviewEngine, preview_size
from ovi_studio.render.inputs import RenderOptions, display_text
from ovi_studio.render.session import RenderSession
from ovi_studio.render.progress import RenderProgress

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
