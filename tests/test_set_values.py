"""`--set` values are read as the storyboard reads them (YAML 1.2): `--set aspect=16:9` is the
text "16:9" as `aspect: 16:9` is, and `--set fp8=yes` means what `fp8: yes` means (text, so
both are refused, naming the setting)."""
from __future__ import annotations

from typer.testing import CliRunner

import ovi_studio.cli  # noqa: F401  (registers the commands)
from ovi_studio.cli.app import app
from ovi_studio.source import parse_scalar

runner = CliRunner()
STORY = 'version: 1\nmodel: 720x720_5s\nengine: preview\nshots:\n  - id: a\n    prompt: "A cat. Audio: purr."\n'


def test_the_scalars_of_yaml_1_2():
    assert [parse_scalar(t) for t in ("yes", "16:9", "off", "true", "20", "-16", "1.5", "")] == \
        ["yes", "16:9", "off", True, 20, -16, 1.5, None]


def test_set_aspect_is_the_aspect_written_in_the_file(tmp_path):
    story = tmp_path / "s.yaml"
    story.write_text(STORY)
    given = runner.invoke(app, ["render", str(story), "--dry-run", "--set", "aspect=16:9", "-o", str(tmp_path / "o")])
    story.write_text(STORY.replace("shots:", 'defaults: {aspect: "16:9"}\nshots:'))
    written = runner.invoke(app, ["render", str(story), "--dry-run", "-o", str(tmp_path / "o")])
    assert given.exit_code == written.exit_code == 0, given.output + written.output
    assert "960x544" in given.output and "960x544" in written.output


def test_set_fp8_yes_means_what_fp8_yes_means_in_the_file(tmp_path):
    story = tmp_path / "s.yaml"
    story.write_text(STORY)
    given = runner.invoke(app, ["render", str(story), "--dry-run", "--set", "fp8=yes", "-o", str(tmp_path / "o")])
    assert given.exit_code == 2 and "fp8" in given.output and "Traceback" not in given.output
    story.write_text(STORY.replace("shots:", "defaults: {fp8: yes}\nshots:"))
    checked = runner.invoke(app, ["check", str(story)])
    assert checked.exit_code == 1 and "fp8" in checked.output
