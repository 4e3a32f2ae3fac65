"""`check` says everything at once, and `plan`/`render` count what `check` counts."""
from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from ovi_studio.cli import app

runner = CliRunner()

FOUR_ERRORS = """\
version: 1
model: 720x720_5s
shots:
  - id: storm
    sceen: A lighthouse in a storm.
    prompt: He calls out, <S>Who's there? <AUDCAP>Knocks.<ENDAUDCAP>
    duration: 7
    first_frame: missing.png
  - id: calm
    scene: A calm sea at dawn.
    audio: Waves.
"""


def _write(tmp_path: Path, text: str, name: str = "story.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _errors(output: str) -> list[str]:
    return re.findall(r":\d+:\d+: (\w+)(?: \[\*\])? error", output)


def test_a_misspelled_key_and_three_other_errors_of_the_shot_are_all_reported(tmp_path):
    story = _write(tmp_path, FOUR_ERRORS)
    checked = runner.invoke(app, ["check", str(story)])
    assert checked.exit_code == 1
    assert _errors(checked.output) == ["SB102", "OVI101", "OVI403", "OVI406"]
    assert "Found 4 errors" in checked.output
    planned = runner.invoke(app, ["plan", str(story)])
    rendered = runner.invoke(app, ["render", str(story), "--engine", "preview", "-o", str(tmp_path / "out")])
    for result in (planned, rendered):
        assert result.exit_code == 1 and "4 lint error(s)" in result.output, result.output
        assert _errors(result.output) == _errors(checked.output)
    assert not (tmp_path / "out").exists()


def test_nothing_says_all_checks_passed_when_a_file_could_not_be_checked(tmp_path):
    story = _write(tmp_path, "version: 1\nshots:\n  - id: a\n    prompt: A man says hello. Audio: wind, rain.\n")
    result = runner.invoke(app, ["check", str(story)])
    assert result.exit_code == 2 and "All checks passed" not in result.output
    both = runner.invoke(app, ["check", str(story), str(_write(tmp_path, FOUR_ERRORS, "other.yaml"))])
    assert "Found 4 errors" in both.output and "1 file(s) could not be checked" in both.output
    # the YAML error inside a prompt says how to write it, with the line
    assert ":4:" in result.output and "quote it" in result.output and "`prompt: |`" in result.output


def test_fix_renames_an_unambiguous_misspelled_key_and_keeps_the_rest(tmp_path):
    story = _write(tmp_path, """\
version: 1
model: 720x720_5s
defaults:
  stpes: 30   # a comment stays
shots:
  - id: a
    prompt: |
      A keeper in a lamp room polishes the brass lens while rain runs down the windows.
      <AUDCAP>Rain on glass, a deep calm male voice.<ENDAUDCAP>
      He says, <S>Nobody should be out tonight.<E>
    sed: 7
""")
    result = runner.invoke(app, ["check", str(story), "--fix"])
    text = story.read_text()
    assert "  steps: 30   # a comment stays\n" in text and "    seed: 7\n" in text
    assert "stpes" not in text and "sed:" not in text
    # the caption moved to the end without leaving an empty line behind
    assert "windows.\n      He says, <S>Nobody should be out tonight.<E> <AUDCAP>" in text
    assert "\n\n" not in text.split("prompt: |")[1]
    assert "SB102" not in result.output


def test_an_ambiguous_key_is_not_renamed(tmp_path):
    story = _write(tmp_path, "version: 1\nshots:\n  - id: a\n    prompt: A cat. Audio: purring.\n"
                             "    seed: 1\n    sed: 2\n")
    runner.invoke(app, ["check", str(story), "--fix"])
    assert "    sed: 2\n" in story.read_text()  # `seed` is already there: nothing to rename to
