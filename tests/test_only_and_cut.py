"""`render --only` and the cut: the cut is assembled from the current takes of the other shots
(stale ones with a warning), the exit code is 1 only when a shot of the cut has no take at all,
and --only renders nothing that nothing asked for."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ovi_studio.cli import app

runner = CliRunner()

STORY = """\
version: 1
model: 720x720_5s
output:
  loudness: off
shots:
  - id: harbour
    scene: A harbour at dawn, fishing boats rocking on grey water.
    audio: Gulls and waves.
    takes: 2
  - id: pier
    extends: harbour
    scene: The camera moves along the pier toward a red boat.
    audio: Footsteps on wooden planks.
  - id: market
    scene: {market}
    audio: A busy fish market, voices and ice.
"""


def _render(story: Path, out: Path, *args: str):
    return runner.invoke(app, ["render", str(story), "-o", str(out), "--engine", "preview", *args])


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


@pytest.mark.slow
def test_only_assembles_the_cut_from_the_other_shots_even_when_stale(tmp_path):
    story, out = tmp_path / "s.yaml", tmp_path / "out"
    story.write_text(STORY.format(market="A fish market at noon."))
    assert _render(story, out).exit_code == 0
    story.write_text(STORY.format(market="A fish market at dusk, lamps being lit."))  # market is stale
    result = _render(story, out, "--only", "pier")
    assert result.exit_code == 0, result.output
    assert "out-of-date takes of market" in result.output
    report = _report(out)
    assert report["final"]["status"] in ("done", "cached") and report["final"]["outdated_shots"] == ["market"]
    status = {s["id"]: s["takes"][0]["status"] for s in report["shots"]}
    assert status == {"harbour": "cached", "pier": "cached", "market": "outdated"}


@pytest.mark.slow
def test_only_exits_1_naming_the_shots_of_the_cut_that_have_no_take(tmp_path):
    story, out = tmp_path / "s.yaml", tmp_path / "out"
    story.write_text(STORY.format(market="A fish market at noon."))
    result = _render(story, out, "--only", "pier")
    assert result.exit_code == 1
    assert "no usable take of market" in result.output
    assert _report(out)["final"]["missing"] == ["market"]


def test_only_renders_nothing_that_nothing_asked_for(tmp_path):
    story, out = tmp_path / "s.yaml", tmp_path / "out"
    story.write_text(STORY.format(market="A fish market at noon."))
    _render(story, out, "--only", "pier")
    rendered = sorted(p.parent.relative_to(out / "shots").as_posix()
                      for p in (out / "shots").glob("*/*/meta.json"))
    assert rendered == ["harbour/take0", "pier/take0"]  # not harbour/take1, not market
