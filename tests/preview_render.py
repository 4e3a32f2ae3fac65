"""A small preview (animatic) render for the delivery tests: three shots with dialogue, an
extension and a crossfade, two takes of the first shot; seconds on a CPU."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ovi_studio.render.inputs import RenderOptions
from ovi_studio.render.progress import RenderProgress
from ovi_studio.render.session import RenderSession

STORY = """\
version: 1
title: The pier
model: 720x720_5s
engine: preview
characters:
  ada: {name: Ada, look: a woman in a green coat, voice: A calm low voice.}
shots:
  - id: harbour
    takes: 2
    scene: A fishing boat comes into a grey harbour.
    audio: a boat engine
  - id: pier
    scene: "{ada} stands on a pier at dawn."
    dialogue:
      - {speaker: ada, line: The boats are late today.}
      - {speaker: ada, line: They are always late.}
    audio: gulls and waves
  - id: walk
    extends: pier
    transition: cut
    scene: "{ada} walks along the pier."
    audio: footsteps on wood
  - id: boat
    transition: crossfade
    transition_frames: 6
    scene: The boat ties up at the pier.
    audio: ropes creaking
"""


def rendered_fixture(name: str):
    """A module-scoped fixture: (output folder, report.json) of one clean render of STORY."""
    @pytest.fixture(scope="module")
    def rendered(tmp_path_factory):
        session, outcome, report = render(tmp_path_factory.mktemp(name))
        assert outcome.exit_code == 0
        return session.out_dir, report
    return rendered


def render(folder: Path, text: str = STORY, **options):
    story = folder / "story.yaml"
    story.write_text(text, encoding="utf-8")
    session = RenderSession(RenderOptions(source=story, out_dir=folder / "out", **options),
                            RenderProgress(quiet=True))
    session.prepare()
    outcome = session.run()
    return session, outcome, json.loads((folder / "out" / "report.json").read_text())
