"""The official Ovi example prompts (a corpus beside the checkout, skipped where absent) check with no errors."""
from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ovi_studio.cli import app
from ovi_studio.csvprompts import read_prompt_csv
from ovi_studio.diagnostics import Severity
from ovi_studio.lint import lint_path
from ovi_studio.prompt import parse_prompt

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "ovi-examples"
FILES = sorted(CORPUS.glob("*.csv"))
pytestmark = pytest.mark.skipif(not FILES, reason=f"the example corpus is not at {CORPUS}")


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_examples_have_no_errors(path):
    diagnostics = lint_path(path)
    errors = [str(d) for d in diagnostics if d.severity == Severity.ERROR]
    assert errors == []
    assert len(read_prompt_csv(path)) >= 12


def test_the_truncated_i2v_prompt_is_a_warning_not_an_error():
    diagnostics = lint_path(CORPUS / "gpt_examples_i2v.csv")
    missing = [d for d in diagnostics if d.code == "OVI201"]
    assert [d.severity for d in missing] == [Severity.WARNING]


def test_every_example_parses_into_speech_and_one_caption():
    prompts = [row.text for path in FILES for row in read_prompt_csv(path)]
    parsed = [parse_prompt(text) for text in prompts]
    assert all(not p.problems for p in parsed)
    assert sum(1 for p in parsed if p.caption is None) == 1
    assert all(p.caption is None or p.caption.form == "audcap" for p in parsed)
    assert sum(len(p.segments) for p in parsed) > len(prompts)


def test_check_cli_exits_0_on_the_corpus():
    result = CliRunner().invoke(app, ["check", *map(str, FILES)])
    assert result.exit_code == 0, result.output
