"""`ovi-studio check` through Typer's runner and through the real entry script."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ovi_studio.cli import app

REPO = Path(__file__).resolve().parent.parent
GOOD = ("A young woman with short silver hair sits at a wooden desk in a quiet library, warm lamp "
        "light falling across stacks of old books and a green reading lamp. She looks up from an open "
        "notebook, smiles softly toward the camera and says, <S>We found the missing page at last.<E> "
        "She taps the paper twice with her pen and leans back in her chair as dust drifts through the "
        "light. Audio: Clear, calm female voice, soft paper rustle, quiet library room tone.")
UNATTRIBUTED = GOOD.replace("says,", "nods.")  # OVI207, info only

runner = CliRunner()


def write(tmp_path: Path, text: str, name: str = "story.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def story(tmp_path: Path, prompt: str = GOOD, extra: str = "") -> Path:
    return write(tmp_path, f"version: 1\nshots:\n  - id: a\n    prompt: {json.dumps(prompt)}\n{extra}")


def check(*args: str):
    return runner.invoke(app, ["check", *map(str, args)])


def test_clean_file_exits_0(tmp_path):
    result = check(story(tmp_path))
    assert result.exit_code == 0, result.output
    assert "All checks passed!" in result.output


def test_info_and_warnings_exit_0_unless_strict(tmp_path):
    info = check(story(tmp_path, UNATTRIBUTED))
    assert info.exit_code == 0 and "OVI207" in info.output
    warning = story(tmp_path, GOOD.split(" Audio:")[0])  # no caption: OVI201 warning
    assert check(warning).exit_code == 0
    assert check(warning, "--strict").exit_code == 1


def test_errors_exit_1(tmp_path):
    result = check(story(tmp_path, GOOD.replace("<E>", "</S>")))
    assert result.exit_code == 1
    assert "OVI103" in result.output


def test_usage_and_io_errors_exit_2(tmp_path):
    assert check(tmp_path / "missing.yaml").exit_code == 2
    assert check(write(tmp_path, "x", "notes.txt")).exit_code == 2
    assert check(story(tmp_path), "--select", "XYZ9").exit_code == 2
    assert check(story(tmp_path), "--format", "xml").exit_code == 2
    assert check(story(tmp_path), "--model", "1080p").exit_code == 2
    broken = write(tmp_path, "version: 1\nshots: [\n", "broken.yaml")
    result = check(broken)
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_one_bad_file_does_not_hide_the_others(tmp_path):
    result = check(tmp_path / "missing.yaml", story(tmp_path, GOOD.replace("<E>", "</S>")))
    assert result.exit_code == 2
    assert "OVI103" in result.output


def test_json_format_and_select(tmp_path):
    path = story(tmp_path, UNATTRIBUTED.replace("<E>", "</S>"))
    data = json.loads(check(path, "--format", "json").stdout)
    assert {d["code"] for d in data} == {"OVI103", "OVI207"}
    data = json.loads(check(path, "-f", "json", "--select", "OVI2").stdout)
    assert {d["code"] for d in data} == {"OVI207"}
    data = json.loads(check(path, "-f", "json", "--ignore", "OVI1,OVI207").stdout)
    assert data == []


def test_output_file_and_sarif(tmp_path):
    report = tmp_path / "report.sarif"
    result = check(story(tmp_path, UNATTRIBUTED), "-f", "sarif", "-o", report)
    assert result.exit_code == 0 and result.stdout == ""
    doc = json.loads(report.read_text())
    assert doc["version"] == "2.1.0" and doc["runs"][0]["results"][0]["ruleId"] == "OVI207"


def test_github_format(tmp_path):
    result = check(story(tmp_path, GOOD.replace("<E>", "</S>")), "--format", "github")
    assert result.stdout.startswith("::error file=")
    assert "title=OVI103" in result.stdout


FIXABLE = """\
version: 1
model: 960x960_10s   # the 10 s model
defaults:
    resolution: [720, 1280]  # comment after a flow list

shots:
    # the opening shot
    -   id: opening
        prompt: |
          A young woman with short silver hair sits at a wooden desk in a quiet library.
          Warm lamp light falls across old books. <AUDCAP>Calm female voice, paper rustle, room tone.<ENDAUDCAP>
          She looks up and says, <s>We found the missing page at last.</S> She leans back in her chair.

        seed: 7        # keep this seed
    -   id: second
        prompt: 'Another shot, a man says, < S >Hello again.<E> Audio: male voice, quiet street noise.'
"""


@pytest.fixture
def fixed_story(tmp_path):
    path = write(tmp_path, FIXABLE)
    result = check(path, "--fix")
    return path, result


def test_fix_keeps_comments_layout_and_block_style(fixed_story):
    path, result = fixed_story
    after = path.read_text()
    for kept in ("model: 960x960_10s   # the 10 s model", "    # the opening shot",
                 "        seed: 7        # keep this seed", "    -   id: second",
                 "  # comment after a flow list", "        prompt: |"):
        assert kept in after
    assert "resolution: [704, 1280]" in after  # OVI404 snapped in place
    expected_prompt = (
        "          A young woman with short silver hair sits at a wooden desk in a quiet library.\n"
        "          Warm lamp light falls across old books.\n"
        "          She looks up and says, <S>We found the missing page at last.<E> She leans back in her "
        "chair. Audio: Calm female voice, paper rustle, room tone.\n"
        "\n"
        "        seed: 7")
    assert expected_prompt in after
    assert "'Another shot, a man says, <S>Hello again.<E> Audio: male voice, quiet street noise.'" in after
    # only the fixed lines differ
    diff = [(a, b) for a, b in zip(FIXABLE.splitlines(), after.splitlines()) if a != b]
    assert len(diff) == 4  # resolution, two lines of the literal prompt, the quoted prompt
    assert result.exit_code == 0  # what is left is info only


def test_fix_is_idempotent(fixed_story):
    path, _ = fixed_story
    once = path.read_text()
    result = check(path, "--fix")
    assert path.read_text() == once
    assert "fixed" not in result.output


def test_fix_respects_noqa_and_ignore(tmp_path):
    path = story(tmp_path, GOOD.replace("<E>", "</S>"), "    noqa: [OVI103]\n")
    before = path.read_text()
    assert check(path, "--fix").exit_code == 0
    assert path.read_text() == before
    other = story(tmp_path, GOOD.replace("<E>", "</S>"))
    assert check(other, "--fix", "--ignore", "OVI103").exit_code == 0
    assert "</S>" in other.read_text()


def test_check_does_not_import_torch(tmp_path):
    """Linting must stay cheap: no torch, no engine model in the process."""
    path = story(tmp_path, UNATTRIBUTED)
    code = textwrap.dedent(f"""
        import sys
        from typer.testing import CliRunner
        from ovi_studio.cli import app
        result = CliRunner().invoke(app, ["check", {str(path)!r}, "--format", "json"])
        assert result.exit_code == 0, result.output
        allowed = {"engine", "engine.variants", "engine.arch", "engine.layout", "engine.lora_keys",
                   "engine.fp8_files", "engine.errors"}  # the model's facts, no torch
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "diffusers")
                       or (m.startswith("engine") and m not in allowed))
        print("heavy:", heavy)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "heavy: []" in out.stdout


@pytest.mark.slow
def test_real_entry_script(tmp_path):
    path = story(tmp_path, GOOD.replace("<E>", "</S>"))
    # tests/run installs the `test` extra; asking for the same keeps the script from reinstalling
    env = {"OVI_STUDIO_EXTRAS": "test", **os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run([str(REPO / "ovi-studio"), "check", str(path), "--format", "json"],
                         capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert out.returncode == 1, out.stderr
    assert [d["code"] for d in json.loads(out.stdout)] == ["OVI103"]
    assert "Traceback" not in out.stderr


def test_explain_prints_rule_help():
    result = check("--explain", "OVI30")
    assert result.exit_code == 0
    assert "OVI301 (warning" in result.output and "OVI306" in result.output and "OVI201" not in result.output
    assert check("--explain", "NOPE1").exit_code == 2


def test_select_all(tmp_path):
    path = story(tmp_path, UNATTRIBUTED)
    data = json.loads(check(path, "-f", "json", "--select", "ALL", "--ignore", "OVI1").stdout)
    assert [d["code"] for d in data] == ["OVI207"]


@pytest.mark.parametrize("written, expected", [
    ("prompt: |-\n      He says, <s>hi</S>.\n      Audio: calm voice.\n    seed: 1\n",
     "prompt: |-\n      He says, <S>hi<E>.\n      Audio: calm voice.\n    seed: 1\n"),
    ("prompt: >\n      He says,\n      <s>hi</S> twice.\n\n    seed: 1\n",
     "prompt: >\n      He says, <S>hi<E> twice.\n\n    seed: 1\n"),
    ("prompt: He says, <s>hi</S> loudly  # a comment\n",
     "prompt: He says, <S>hi<E> loudly  # a comment\n"),
    ("prompt: \"He says, <s>hi</S>\\n twice\"\n",
     "prompt: \"He says, <S>hi<E>\\n twice\"\n"),
])
def test_fix_keeps_each_scalar_style(tmp_path, written, expected):
    from ovi_studio.lint import LintOptions, Selection, apply_fixes
    path = write(tmp_path, "version: 1\nshots:\n  - id: a\n    " + written)
    report = apply_fixes(path, LintOptions(Selection(("OVI103",))))
    assert report.changed
    assert path.read_text() == "version: 1\nshots:\n  - id: a\n    " + expected
