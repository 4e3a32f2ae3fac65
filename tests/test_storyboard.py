"""Loading storyboards: models, merged settings, positions, and safe failure on bad input."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from ovi_studio.errors import UserError
from ovi_studio.source import load_yaml, to_plain
from ovi_studio.storyboard import load_storyboard, storyboard_schema

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "storyboards").glob("*.yaml"))


def write(tmp_path: Path, text: str, name: str = "story.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def located(path: Path, line: int, col: int, length: int) -> str:
    return path.read_text().splitlines()[line - 1][col - 1:col - 1 + length]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_load_clean_and_match_the_schema(example):
    loaded = load_storyboard(example)
    assert loaded.diagnostics == []
    assert len(loaded.shots) >= 3
    jsonschema.validate(to_plain(load_yaml(example).data), storyboard_schema())


def test_quickstart_has_what_the_readme_promises():
    loaded = load_storyboard(REPO / "storyboards" / "quickstart.yaml")
    assert loaded.variant.name in ("720x720_5s", "960x960_5s")
    assert any(s.template for s in loaded.shots)
    assert any(s.extends for s in loaded.shots)
    assert any(s.structured and s.dialogue for s in loaded.shots)
    assert loaded.model.characters


def test_settings_merge_defaults_then_shot(tmp_path):
    path = write(tmp_path, """\
version: 1
model: 960x960_5s
defaults: {steps: 30, seed: 7, aspect: "16:9", solver: euler}
shots:
  - {id: a, prompt: "A cat. Audio: purring.", resolution: [704, 1280], seed: 9}
  - {id: b, prompt: "A dog. Audio: barking.", extends: a, transition: crossfade}
  - {id: c, prompt: "A cow. Audio: moo.", color_match: previous, fp8: true, blocks_to_swap: auto}
""")
    a, b, c = load_storyboard(path).shots
    assert (a.settings.steps, a.settings.seed, a.settings.solver) == (30, 9, "euler")
    assert a.settings.resolution == (704, 1280) and a.settings.aspect is None
    assert b.settings.aspect == "16:9" and b.settings.seed == 7
    assert a.settings.color_match == "first" and b.settings.color_match == "first"  # a chain
    assert c.settings.color_match == "previous"
    assert b.settings.transition_frames == 12 and a.settings.transition_frames == 0
    assert c.settings.fp8 is True and c.settings.blocks_to_swap == "auto"
    assert a.settings.video_negative == "jitter, bad hands, blur, distortion"  # Ovi's default
    assert a.settings.duration == 5.0


def test_unknown_key_has_position_and_suggestion(tmp_path):
    path = write(tmp_path, """\
version: 1
shots:
  - id: a
    prompt: "A cat. Audio: purring."
    sed: 3
  - id: b
    prompt: "A dog. Audio: barking."
""")
    loaded = load_storyboard(path)
    (diag,) = loaded.diagnostics
    assert (diag.code, diag.line, diag.column, diag.shot) == ("SB102", 5, 5, "a")
    assert "did you mean `seed`" in diag.message
    # the bad key is left out and the rest of the shot is still checked
    assert [s.id for s in loaded.shots] == ["a", "b"] and loaded.shots[0].settings.seed == 100


def test_a_misspelled_key_does_not_hide_the_other_errors_of_its_shot(tmp_path):
    from ovi_studio.lint.runner import lint_path
    (tmp_path / "x").mkdir()
    path = write(tmp_path, """\
version: 1
model: 720x720_5s
shots:
  - id: storm
    sceen: A lighthouse in a storm.
    prompt: He calls out, <S>Who's there? <AUDCAP>Knocks.<ENDAUDCAP>
    duration: 7
    first_frame: missing.png
  - id: calm
    scene: A calm sea.
""")
    errors = [(d.code, d.line) for d in lint_path(path) if d.severity.value == "error"]
    assert errors == [("SB102", 5), ("OVI101", 6), ("OVI403", 7), ("OVI406", 8)]


def test_wrong_types_and_missing_fields_are_diagnostics(tmp_path):
    path = write(tmp_path, """\
shots:
  - id: "bad id"
    prompt: 12
  - id: ok
    scene: A field.
    steps: "many"
    solver: dpmpp
defaults:
  resolution: [720, 1280]
  aspect: "16:9"
""")
    loaded = load_storyboard(path)
    messages = {(d.line, d.message.split(":")[0]) for d in loaded.diagnostics}
    assert (2, "`shots[#1].id`") in messages  # no valid id to name it by
    assert (3, "`shots[#1].prompt`") in messages
    assert (6, "`shots[ok].steps`") in messages  # shots by id, never by 0-based index
    assert (7, "`shots[ok].solver`") in messages
    assert any("`version` is required" in d.message for d in loaded.diagnostics)
    assert any("not both" in d.message and d.line == 8 for d in loaded.diagnostics)
    assert all(d.code == "SB102" for d in loaded.diagnostics)


def test_a_shot_needs_one_form(tmp_path):
    path = write(tmp_path, "version: 1\nshots:\n  - id: a\n    prompt: x\n    scene: y\n  - id: b\n"
                           "  - {id: c, prompt: x, with: {a: 1}}\n")
    messages = [d.message for d in load_storyboard(path).diagnostics]
    assert any("not both" in m for m in messages) and any("needs a `prompt`" in m for m in messages)
    assert any("add `use: <template>`" in m for m in messages)


@pytest.mark.parametrize("text", ["", "- 1\n- 2\n", "just a string\n", "42\n"])
def test_a_document_that_is_not_a_mapping(tmp_path, text):
    loaded = load_storyboard(write(tmp_path, text))
    assert loaded.model is None and loaded.shots == []
    assert loaded.diagnostics[0].code == "SB102"


@pytest.mark.parametrize("text, line, col, words", [
    ("version: 1\nshots:\n  - id: a\n    prompt: !!python/object:os.system x\n", 4, 13, "tags"),
    ("version: 1\nshots: !include other.yaml\n", 2, 8, "tags"),
    ("version: 1\nversion: 2\n", 2, 1, "duplicate key"),
    ("version: 1\nshots: [1, 2\n", 3, 1, "invalid YAML"),
    ("a: " + "[" * 100 + "]" * 100 + "\n", 1, 67, "nested"),
    ("a: &a [1,1,1,1,1,1,1,1,1]\n" + "".join(
        f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcde", "bcdef")), 6, 12, "too many"),
])
def test_unsafe_or_malformed_yaml_is_a_user_error_with_position(tmp_path, text, line, col, words):
    with pytest.raises(UserError) as info:
        load_storyboard(write(tmp_path, text))
    assert (info.value.location.line, info.value.location.column) == (line, col)
    assert words in info.value.message


@pytest.mark.parametrize("data, words", [
    (b"\x89PNG\r\n\x1a\n\x00\x00", "binary"),
    (b"version: 1\ntitle: caf\xe9\n", "UTF-8"),
])
def test_binary_and_undecodable_files(tmp_path, data, words):
    path = tmp_path / "story.yaml"
    path.write_bytes(data)
    with pytest.raises(UserError, match=words):
        load_storyboard(path)


def test_huge_and_missing_files(tmp_path):
    huge = tmp_path / "huge.yaml"
    huge.write_text("# " + "x" * (3 << 20))
    with pytest.raises(UserError, match="limit"):
        load_storyboard(huge)
    with pytest.raises(UserError, match="no such file"):
        load_storyboard(tmp_path / "absent.yaml")
    with pytest.raises(UserError, match="folder"):
        load_storyboard(tmp_path)


def test_block_literal_offsets_map_exactly(tmp_path):
    path = write(tmp_path, """\
version: 1
shots:
  - id: a
    prompt: |
      A lighthouse at night. The keeper says, <S>Who is there?<E>

        An indented line.
      Audio: wind and rain.
""")
    shot = load_storyboard(path).shots[0]
    lines = path.read_text().splitlines()
    for offset, ch in enumerate(shot.raw_prompt):
        line, col = shot.origin.locate(offset)
        if ch != "\n":
            assert lines[line - 1][col - 1] == ch, (offset, ch)
    assert shot.origin.exact


@pytest.mark.parametrize("scalar", ['"A cat says, <S>Hi \\"you\\"<E> Audio: purr."',
                                    "'A cat says, <S>it''s me<E> Audio: purr.'",
                                    "A cat says, <S>Hi<E> and purrs."])
def test_single_line_scalars_map_non_space_characters(tmp_path, scalar):
    path = write(tmp_path, f"version: 1\nshots:\n  - id: a\n    prompt: {scalar}\n")
    shot = load_storyboard(path).shots[0]
    offset = shot.raw_prompt.index("<S>")
    line, col = shot.origin.locate(offset)
    assert (line, located(path, line, col, 3)) == (4, "<S>")


def test_folded_scalar_maps_best_effort(tmp_path):
    path = write(tmp_path, """\
version: 1
shots:
  - id: a
    prompt: >-
      A long description that goes on
      and on, then the keeper says, <S>Hello<E>
      Audio: wind.
""")
    shot = load_storyboard(path).shots[0]
    line, col = shot.origin.locate(shot.raw_prompt.index("<S>"))
    assert (line, located(path, line, col, 3)) == (6, "<S>")
    assert not shot.origin.exact


def test_first_frame_resolves_against_the_storyboard_folder(tmp_path):
    sub = tmp_path / "story"
    sub.mkdir()
    path = write(sub, "version: 1\nshots:\n  - {id: a, prompt: x, first_frame: ../img/a.png}\n")
    shot = load_storyboard(path).shots[0]
    assert shot.first_frame == sub.absolute() / "../img/a.png"


def test_noqa_and_shot_position(tmp_path):
    path = write(tmp_path, "version: 1\nshots:\n  - id: a\n    prompt: x\n    noqa: [OVI301]\n")
    shot = load_storyboard(path).shots[0]
    assert shot.noqa == ["OVI301"] and (shot.line, shot.column) == (3, 5)


def test_schema_is_valid_json_schema_and_rejects_unknown_keys():
    schema = storyboard_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    json.dumps(schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"version": 1, "shots": [{"id": "a", "prompt": "x", "sed": 1}]}, schema)
    for key in ("fp8", "blocks_to_swap", "seed_frame", "color_match", "fit", "transition", "transition_frames"):
        assert key in schema["$defs"]["Settings"]["properties"]
    for key in ("loudness", "subtitles", "chapters"):
        assert key in schema["$defs"]["Output"]["properties"]


def test_bad_character_definitions_are_reported_once(tmp_path):
    path = write(tmp_path, """\
version: 1
characters:
  Anna Lee: {look: a woman}
  ben: {look: a man, vioce: deep}
shots:
  - {id: a, scene: "{ben} waits."}
""")
    diags = load_storyboard(path).diagnostics
    assert [(d.code, d.line, d.column) for d in diags] == [("SB102", 3, 3), ("SB102", 4, 22)]
    assert "letters, digits" in diags[0].message and "did you mean `voice`" in diags[1].message


def test_the_engine_key(tmp_path):
    base = "version: 1\nshots:\n  - {id: a, prompt: x}\n"
    assert load_storyboard(write(tmp_path, base)).model.engine == "auto"
    assert load_storyboard(write(tmp_path, "engine: ovi\n" + base)).model.engine == "ovi"
    bad = load_storyboard(write(tmp_path, "engine: gpu\n" + base))
    assert [(d.code, d.line) for d in bad.diagnostics] == [("SB102", 1)]
    assert storyboard_schema()["properties"]["engine"]["enum"] == ["auto", "ovi", "preview"]


def test_lone_surrogates_are_sb102_where_they_are_written(tmp_path):
    path = write(tmp_path, 'version: 1\nshots:\n  - id: a\n    prompt: "A cat \\ud800 meows."\n'
                           '  - {id: b, prompt: fine}\n  - {id: c, dialogue: ["hi \\udfff"]}\n')
    loaded = load_storyboard(path)
    found = [(d.code, d.line, d.column, d.shot) for d in loaded.diagnostics]
    assert found == [("SB102", 4, 5, "a"), ("SB102", 6, 13, "c")]  # at the key
    assert all("lone surrogate" in d.message and "\\ud" in d.message for d in loaded.diagnostics[:1])
    assert [s.id for s in loaded.shots] == ["b"]
    str(loaded.diagnostics[1]).encode("utf-8")  # printable: no surrogate reaches the terminal
