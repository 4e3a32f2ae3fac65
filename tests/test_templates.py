"""Shot templates: lookup, parameters, defaults, and diagnostics with positions."""
from __future__ import annotations

from pathlib import Path

import pytest

from ovi_studio import templates as tpl
from ovi_studio.storyboard import Shot, load_storyboard

SHIPPED = sorted(tpl.PROJECT_TEMPLATES.glob("*.yaml"))


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_at_least_four_templates_ship():
    names = {p.stem for p in SHIPPED}
    assert {"talking-head", "two-person-dialogue", "music-performance", "sfx-broll"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_template_expands_with_its_examples_into_a_valid_shot(path):
    template = tpl.load_template(path)
    assert template.description
    args = {name: spec.example for name, spec in template.params.items() if spec.default is None}
    assert all(value is not None for value in args.values()), "every required parameter has an example"
    shot, missing, unknown = tpl.expand(template, args)
    assert (missing, unknown) == ([], [])
    Shot.model_validate({"id": "x", **shot})
    assert not any("{" in text for text in _strings(shot))


def _strings(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif isinstance(node, str):
        yield node


def test_use_with_parameters_defaults_and_overrides(tmp_path):
    story = write(tmp_path, "story.yaml", """\
version: 1
model: 960x960_5s
shots:
  - id: hello
    use: talking-head
    with: {who: A chef in a white jacket, line: Taste this.}
    seed: 5
""")
    shot = load_storyboard(story).shots[0]
    assert shot.template == "talking-head" and shot.settings.seed == 5
    assert shot.prompt.startswith("A chef in a white jacket sits in a softly lit home office")
    assert "<S>Taste this.<E>" in shot.prompt
    assert shot.prompt.endswith("Audio: Quiet room tone, close microphone, no music.")
    assert shot.origin.locate(0) == (5, 10)  # template text points at the `use` value


def test_local_templates_folder_wins_and_numbers_stay_numbers(tmp_path):
    write(tmp_path, "templates/talking-head.yaml", """\
params:
  what: {}
  seed: {default: 11}
shot:
  prompt: "Local {what}. Audio: quiet."
  seed: "{seed}"
""")
    story = write(tmp_path, "story.yaml", """\
version: 1
shots:
  - {id: a, use: talking-head, with: {what: version}}
""")
    loaded = load_storyboard(story)
    assert loaded.diagnostics == []
    assert loaded.shots[0].raw_prompt == "Local version. Audio: quiet."
    assert loaded.shots[0].settings.seed == 11


def test_unknown_template_is_sb111_with_suggestion(tmp_path):
    story = write(tmp_path, "story.yaml", """\
version: 1
shots:
  - id: a
    use: talking-heads
  - {id: b, prompt: ok}
""")
    loaded = load_storyboard(story)
    (diag,) = loaded.diagnostics
    assert (diag.code, diag.line, diag.column, diag.shot) == ("SB111", 4, 10, "a")
    assert "did you mean `talking-head`" in diag.message
    assert [s.id for s in loaded.shots] == ["b"]


def test_missing_and_unknown_parameters_are_sb112(tmp_path):
    story = write(tmp_path, "story.yaml", """\
version: 1
shots:
  - id: a
    use: sfx-broll
    with:
      subjekt: waves
""")
    diags = load_storyboard(story).diagnostics
    assert {(d.code, d.line, d.column) for d in diags} == {("SB112", 6, 7), ("SB112", 4, 10)}
    messages = " ".join(d.message for d in diags)
    assert "did you mean `subject`" in messages and "needs parameter `sounds`" in messages


def test_broken_template_file_is_reported_at_the_use(tmp_path):
    write(tmp_path, "templates/bad.yaml", "params: {}\nshot: !!python/object:x {}\n")
    write(tmp_path, "templates/shapeless.yaml", "params: []\n")
    story = write(tmp_path, "story.yaml", """\
version: 1
shots:
  - {id: a, use: bad}
  - {id: b, use: shapeless}
""")
    diags = load_storyboard(story).diagnostics
    assert [(d.code, d.line) for d in diags] == [("SB111", 3), ("SB111", 4)]
    assert "tags" in diags[0].message and "invalid template" in diags[1].message


def test_template_values_with_schema_errors_point_at_the_shot(tmp_path):
    write(tmp_path, "templates/steps.yaml", "params: {n: {}}\nshot: {prompt: x, steps: '{n}'}\n")
    story = write(tmp_path, "story.yaml", "version: 1\nshots:\n  - {id: a, use: steps, with: {n: lots}}\n")
    (diag,) = load_storyboard(story).diagnostics
    assert (diag.code, diag.line, diag.column) == ("SB102", 3, 18)
    assert "steps" in diag.message
