"""CSV prompt files: reading with line numbers, and `import` into a storyboard that loads clean."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ovi_studio.cli import app
from ovi_studio.csvprompts import read_prompt_csv
from ovi_studio.errors import UserError
from ovi_studio.importer import import_csv
from ovi_studio.storyboard import load_storyboard

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "ovi-examples"
CSVS = sorted(CORPUS.glob("*.csv"))
runner = CliRunner()


def test_read_prompt_csv_keeps_start_lines_and_skips_blank_rows(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text('text_prompt,image_path\n"first, with comma",a.png\n\n"multi\nline ""quoted""",\n'
                    'last,\n', encoding="utf-8")
    rows = read_prompt_csv(path)
    assert [(r.line, r.text, r.image_path) for r in rows] == [
        (2, "first, with comma", "a.png"), (4, 'multi\nline "quoted"', None), (6, "last", None)]


@pytest.mark.parametrize("content, words", [
    (b"prompt\nhello\n", "no `text_prompt` column"),
    (b"", "empty"),
    (b"text_prompt\ncaf\xe9\n", "UTF-8"),
    (b"text_prompt\n\x00\x01", "binary"),
])
def test_read_prompt_csv_errors(tmp_path, content, words):
    path = tmp_path / "p.csv"
    path.write_bytes(content)
    with pytest.raises(UserError, match=words):
        read_prompt_csv(path)


@pytest.mark.skipif(not CSVS, reason="example corpus not available")
@pytest.mark.parametrize("csv_path", CSVS, ids=lambda p: p.name)
def test_every_official_example_imports_and_loads_clean(tmp_path, csv_path):
    out = tmp_path / "nested" / "story.yaml"
    result = runner.invoke(app, ["import", str(csv_path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    loaded = load_storyboard(out)
    rows = read_prompt_csv(csv_path)
    assert loaded.diagnostics == []
    assert loaded.variant.name == "720x720_5s"  # the examples use <AUDCAP>
    assert [s.raw_prompt for s in loaded.shots] == [r.text for r in rows]
    lines = out.read_text().splitlines()
    for shot in loaded.shots:
        assert shot.origin.exact
        for needle in ("<S>", "<AUDCAP>"):
            if needle in shot.raw_prompt:
                line, col = shot.origin.locate(shot.raw_prompt.index(needle))
                assert lines[line - 1][col - 1:col - 1 + len(needle)] == needle
        if shot.first_frame is not None:
            assert shot.first_frame.is_file()
            assert not Path(shot.node["first_frame"]).is_absolute()


def test_model_guess_override_and_image_relocation(tmp_path):
    (tmp_path / "data" / "img").mkdir(parents=True)
    (tmp_path / "data" / "img" / "a.png").write_bytes(b"png")
    csv_path = tmp_path / "data" / "p.csv"
    csv_path.write_text("text_prompt,image_path\n\"A cat says, <S>Hi<E> Audio: purr.\",img/a.png\n")
    result = import_csv(csv_path, tmp_path / "out" / "s.yaml")
    assert result.model == "960x960_10s" and result.warnings == []
    assert "first_frame: ../data/img/a.png" in result.yaml_text
    assert "prompt: |-\n" in result.yaml_text
    assert import_csv(csv_path, tmp_path / "s.yaml", model="960x960_5s").model == "960x960_5s"
    with pytest.raises(UserError, match="unknown model"):
        import_csv(csv_path, tmp_path / "s.yaml", model="1080p")
    csv_path.write_text("text_prompt,image_path\nA dog.,img/missing.png\n")
    assert "not found" in import_csv(csv_path, tmp_path / "s.yaml").warnings[0]


def test_import_cli_refuses_to_overwrite_and_reports_bad_csv(tmp_path):
    csv_path = tmp_path / "p.csv"
    csv_path.write_text("text_prompt\nA dog barks. Audio: barking.\n")
    out = tmp_path / "s.yaml"
    assert runner.invoke(app, ["import", str(csv_path), "-o", str(out)]).exit_code == 0
    again = runner.invoke(app, ["import", str(csv_path), "-o", str(out)])
    assert again.exit_code == 2 and "already exists" in again.output
    assert runner.invoke(app, ["import", str(csv_path), "-o", str(out), "--force"]).exit_code == 0
    csv_path.write_text("prompt\nx\n")
    bad = runner.invoke(app, ["import", str(csv_path), "-o", str(tmp_path / "t.yaml")])
    assert bad.exit_code == 2 and "text_prompt" in bad.output and "Traceback" not in bad.output


def test_import_plan_and_schema_never_import_torch(tmp_path):
    csv_path = tmp_path / "p.csv"
    csv_path.write_text("text_prompt\nA dog barks. Audio: barking.\n")
    script = f"""
import sys
from typer.testing import CliRunner
from ovi_studio.cli import app
r = CliRunner()
for args in (["import", {str(csv_path)!r}, "-o", {str(tmp_path / 's.yaml')!r}],
             ["plan", {str(tmp_path / 's.yaml')!r}], ["plan", "--json", {str(tmp_path / 's.yaml')!r}],
             ["schema"]):
    result = r.invoke(app, args)
    assert result.exit_code == 0, (args, result.output)
assert "torch" not in sys.modules, "torch was imported"
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr + done.stdout
