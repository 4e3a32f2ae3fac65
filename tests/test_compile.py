"""The structured form and character references compile to the exact prompt each model expects."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.variants import format_prompt
from ovi_studio.storyboard import load_storyboard

STORY = """\
version: 1
model: {model}
characters:
  anna:
    look: a young woman with short red hair and a green raincoat
    voice: Warm, clear young female voice.
    name: Anna
  ben:
    look: a tall man in a grey suit
    voice: a deep male voice
shots:
  - id: one
    scene: "{{anna}} waits at a bus stop in the rain"
    dialogue:
      - speaker: anna
        line: "Is this the last bus?"
      - "Maybe I missed it."
    audio: Light rain, distant traffic
  - id: two
    scene: "{{ben}} walks up next to {{anna}}."
    dialogue:
      - {{speaker: ben, line: "It's late."}}
      - {{speaker: anna, line: "Too late."}}
      - {{speaker: The driver, line: "All aboard!"}}
  - id: three
    prompt: |
      {{anna}} laughs. Audio: {{anna.voice}} Rain.
"""


def load(tmp_path: Path, model: str):
    path = tmp_path / "story.yaml"
    path.write_text(STORY.format(model=model), encoding="utf-8")
    return path, load_storyboard(path)


def test_structured_form_for_960_models(tmp_path):
    _, loaded = load(tmp_path, "960x960_10s")
    assert loaded.diagnostics == []
    one, two, three = loaded.shots
    assert one.raw_prompt == (
        "A young woman with short red hair and a green raincoat waits at a bus stop in the rain. "
        "Anna says, <S>Is this the last bus?<E> Anna continues, <S>Maybe I missed it.<E> "
        "Audio: Warm, clear young female voice. Light rain, distant traffic.")
    assert two.raw_prompt == (
        "A tall man in a grey suit walks up next to a young woman with short red hair and a green "
        "raincoat. A tall man in a grey suit says, <S>It's late.<E> Anna replies, <S>Too late.<E> "
        "The driver replies, <S>All aboard!<E> "
        "Audio: A deep male voice. Warm, clear young female voice.")
    assert three.raw_prompt == ("A young woman with short red hair and a green raincoat laughs. "
                                "Audio: Warm, clear young female voice. Rain.\n")
    assert one.prompt == one.raw_prompt  # already in the model's caption form
    assert one.audio_caption == "Warm, clear young female voice. Light rain, distant traffic."
    assert [(d.speaker, d.text) for d in one.dialogue] == [("anna", "Is this the last bus?"),
                                                          (None, "Maybe I missed it.")]
    assert one.scene == "{anna} waits at a bus stop in the rain" and one.structured
    assert not three.structured


def test_structured_form_for_the_720_model_uses_audcap(tmp_path):
    _, loaded = load(tmp_path, "720x720_5s")
    one = loaded.shots[0]
    assert one.raw_prompt.endswith(
        "<AUDCAP>Warm, clear young female voice. Light rain, distant traffic.<ENDAUDCAP>")
    assert "Audio:" not in one.raw_prompt and one.prompt == one.raw_prompt
    three = loaded.shots[2]  # a raw prompt is formatted by the model's own rule
    assert three.prompt == format_prompt(three.raw_prompt, loaded.variant)
    assert "<AUDCAP>Warm, clear young female voice. Rain.\n<ENDAUDCAP>" in three.prompt


def test_a_voice_is_word_for_word_the_same_in_every_shot(tmp_path):
    _, loaded = load(tmp_path, "960x960_5s")
    voice = "Warm, clear young female voice."
    assert all(voice in shot.audio_caption for shot in loaded.shots if shot.structured)


def test_offsets_map_back_to_the_dialogue_and_scene(tmp_path):
    path, loaded = load(tmp_path, "960x960_5s")
    lines = path.read_text().splitlines()
    one, two, _ = loaded.shots
    for shot, needle in ((one, "Is this the last bus?"), (one, "Maybe I missed it."),
                         (two, "It's late."), (one, "bus stop"), (one, "Light rain")):
        line, col = shot.origin.locate(shot.raw_prompt.index(needle))
        assert lines[line - 1][col - 1:col - 1 + len(needle)] == needle
    # compiler glue and expansions point at where they came from
    assert one.origin.locate(0) == (13, 13)  # the {anna} reference in the scene
    line, col = one.origin.locate(one.raw_prompt.index("Anna says"))
    assert lines[line - 1][col - 1:].startswith("anna")  # the speaker


def test_unknown_character_references_are_sb110(tmp_path):
    path = tmp_path / "story.yaml"
    path.write_text("""\
version: 1
characters:
  anna: {look: a woman}
shots:
  - id: a
    scene: "{ana} waves."
    dialogue:
      - {speaker: annna, line: Hi}
      - {speaker: The old man, line: Hello}
""", encoding="utf-8")
    diags = load_storyboard(path).diagnostics
    assert [(d.code, d.line, d.column) for d in diags] == [("SB110", 6, 13), ("SB110", 8, 19)]
    assert all("did you mean `anna`" in d.message for d in diags)


@pytest.mark.parametrize("model, tag", [("720x720_5s", "<AUDCAP>"), ("960x960_5s", "Audio: ")])
def test_no_caption_when_there_is_nothing_to_hear(tmp_path, model, tag):
    path = tmp_path / "story.yaml"
    path.write_text(f"version: 1\nmodel: {model}\nshots:\n  - id: a\n    scene: A quiet room\n")
    shot = load_storyboard(path).shots[0]
    assert shot.raw_prompt == "A quiet room." and shot.audio_caption is None
    path.write_text(f"version: 1\nmodel: {model}\nshots:\n  - id: a\n    audio: Hum\n")
    assert tag in load_storyboard(path).shots[0].raw_prompt
