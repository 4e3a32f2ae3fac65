"""Property-based: any prompt string lints without an exception, and any file given to
`check` ends in diagnostics or a clean exit 2 — never a traceback."""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from engine.variants import VARIANTS
from ovi_studio.cli import app
from ovi_studio.lint import PromptContext, fix_prompt, lint_prompt
from ovi_studio.lint.tokens import TokenCounter
from ovi_studio.prompt import canonicalize_tags, parse_prompt

PIECES = ["<S>", "<E>", "<AUDCAP>", "<ENDAUDCAP>", "Audio:", "</S>", "< s >", "＜S＞", "</AUDCAP>",
          "<div>", "<", ">", "/", '"', "“", "says, ", " ", "\n", ".", "word", "你好", "[whisper]"]
prompts = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=8)), max_size=40).map("".join)
contexts = st.builds(lambda name, duration: PromptContext(VARIANTS[name], duration, TokenCounter()),
                     st.sampled_from(sorted(VARIANTS)), st.sampled_from([0.5, 5.0, 10.0]))
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FILES = settings(max_examples=40, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
runner = CliRunner()


@FAST
@given(prompts)
def test_spans_partition_any_text(text):
    parsed = parse_prompt(text)
    assert "".join(span.content for span in parsed.spans) == text
    assert all(0 <= p.start <= p.end <= len(text) for p in parsed.problems)
    assert canonicalize_tags(canonicalize_tags(text)) == canonicalize_tags(text)


@FAST
@given(prompts, contexts)
def test_lint_and_fix_any_prompt(text, ctx):
    for finding in lint_prompt(text, ctx):
        assert 0 <= finding.start <= finding.end <= len(text)
    fixed = fix_prompt(text, ctx)
    # fixes converge: once applied, none is left to apply
    assert not [f for f in lint_prompt(fixed, ctx) if f.fix is not None and f.fix != fixed]
    parsed = parse_prompt(text)
    if parsed.well_formed:  # moving or converting the caption never touches the speech
        assert parse_prompt(fixed).speech == parsed.speech


def _no_traceback(result) -> None:
    assert result.exit_code in (0, 1, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output


@FILES
@given(st.binary(max_size=400), st.sampled_from(["story.yaml", "prompts.csv"]))
def test_random_bytes_files(tmp_path, data, name):
    path = tmp_path / name
    path.write_bytes(data)
    _no_traceback(runner.invoke(app, ["check", str(path)]))


yaml_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False),
              prompts),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.sampled_from(["id", "prompt", "shots", "extends",
                                                                "first_frame", "duration", "noqa",
                                                                "resolution", "model", "version",
                                                                "defaults", "fp8", "x"]),
                                               children, max_size=5)),
    max_leaves=20)


@FILES
@given(yaml_values)
def test_random_storyboard_shapes(tmp_path, value):
    path = tmp_path / "story.yaml"
    path.write_text(json.dumps(value), encoding="utf-8")  # JSON is YAML
    _no_traceback(runner.invoke(app, ["check", str(path), "--format", "json"]))


@FILES
@given(st.lists(st.tuples(prompts, st.sampled_from(["0", "1", "-1", "x", "7", "yes"])), min_size=1, max_size=4),
       st.sampled_from(sorted(VARIANTS)))
def test_random_shots_lint_and_fix(tmp_path, shots, model):
    body = {"version": 1, "model": model,
            "shots": [{"id": f"s{i}", "prompt": p, **({"extends": f"s{e}"} if e.isdigit() else {})}
                      for i, (p, e) in enumerate(shots)]}
    path = tmp_path / "story.yaml"
    path.write_text(json.dumps(body), encoding="utf-8")
    _no_traceback(runner.invoke(app, ["check", str(path), "--fix"]))


def test_lone_surrogates_from_yaml_escapes_are_printable(tmp_path):
    """`"\\ud800"` in a YAML double-quoted string is a lone surrogate; reports must still print."""
    path = tmp_path / "story.yaml"
    path.write_text('version: 1\nshots:\n  - id: "\\ud800"\n    prompt: "x \\ud800 <s>"\n', encoding="utf-8")
    for fmt in ("text", "json", "sarif", "github"):
        result = runner.invoke(app, ["check", str(path), "--format", fmt])
        _no_traceback(result)
        assert result.exit_code == 1
