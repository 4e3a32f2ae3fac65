"""The prompt grammar: spans with positions, tag reading, structural problems, rewrites."""
from __future__ import annotations

import pytest

from engine.variants import format_prompt, get_variant
from ovi_studio.prompt import (canonicalize_tags, count_words, find_tags, move_caption_to_end,
                               parse_prompt, with_caption_form)


def kinds(text: str) -> list[tuple[str, str]]:
    return [(s.kind, s.content) for s in parse_prompt(text).spans]


def codes(text: str) -> list[str]:
    return [p.code for p in parse_prompt(text).problems]


def test_spans_of_a_well_formed_prompt():
    text = "A man says, <S>Hello there.<E> He waves. <AUDCAP>Male voice, wind.<ENDAUDCAP>"
    assert kinds(text) == [
        ("text", "A man says, "), ("tag", "<S>"), ("speech", "Hello there."), ("tag", "<E>"),
        ("text", " He waves. "), ("tag", "<AUDCAP>"), ("caption", "Male voice, wind."),
        ("tag", "<ENDAUDCAP>"),
    ]
    parsed = parse_prompt(text)
    assert parsed.problems == []
    assert parsed.speech == ["Hello there."]
    assert parsed.caption.form == "audcap" and parsed.caption_text == "Male voice, wind."
    assert parsed.description() == "A man says, He waves."


def test_spans_keep_offsets_and_cover_the_text():
    text = "Scene. She says, <S>one<E> then <S>two<E>. Audio: voices, rain."
    parsed = parse_prompt(text)
    assert "".join(s.content for s in parsed.spans) == text
    for span in parsed.spans:
        assert text[span.start:span.end] == span.content
    first = parsed.segments[0]
    assert text[first.start:first.end] == "one"
    assert text[first.open_start:first.close_end] == "<S>one<E>"


def test_audio_label_caption_runs_to_the_end():
    parsed = parse_prompt("A street at night. Audio: distant traffic, a dog barks.")
    caption = parsed.caption
    assert caption.form == "audio"
    assert caption.text.strip() == "distant traffic, a dog barks."
    assert caption.end == len(parsed.text)
    assert parsed.problems == []


@pytest.mark.parametrize("raw, canonical", [
    ("<S>", "<S>"), ("<s>", "<S>"), ("< S >", "<S>"), ("<S >", "<S>"), ("＜S＞", "<S>"),
    ("＜Ｓ＞", "<S>"), ("</S>", "<E>"), ("</E>", "<E>"), ("<e>", "<E>"), ("</AUDCAP>", "<ENDAUDCAP>"),
    ("<audcap>", "<AUDCAP>"), ("<END AUDCAP>", "<ENDAUDCAP>"), ("<End_AudCap>", "<ENDAUDCAP>"),
])
def test_tag_reading(raw, canonical):
    (tag,) = find_tags(f"x {raw} y")
    assert tag.canonical == canonical
    assert tag.malformed == (raw != canonical)


def test_unknown_tags_and_non_tags():
    tags = find_tags('<speech> <div class="x"> a < b and 3 > 2, <3')
    assert [t.raw for t in tags] == ["<speech>", '<div class="x">']
    assert all(t.canonical is None for t in tags)


@pytest.mark.parametrize("text, expected", [
    ("He says, <S>hi", ["OVI101"]),
    ("He says, hi<E>", ["OVI101"]),
    ("<S>a <S>b<E>", ["OVI102"]),
    ("He says, <s>hi</S>", ["OVI103", "OVI103"]),
    ("He says, <S>  <E>", ["OVI104"]),
    ("x <AUDCAP>rain", ["OVI105"]),
    ("x rain<ENDAUDCAP>", ["OVI105"]),
    ("x <AUDCAP>a <AUDCAP>b<ENDAUDCAP>", ["OVI105"]),
    ("x <speech>hi</speech>", ["OVI106", "OVI106"]),
    ("x <AUDCAP>rain<ENDAUDCAP> then more text", ["OVI202"]),
    ("x Audio: rain. He says, <S>hi<E>.", ["OVI202"]),
    ("x <AUDCAP>rain, <S>hi<E><ENDAUDCAP>", ["OVI203"]),
    ("x <S>hi Audio: rain<E>", ["OVI203"]),
    ("x <AUDCAP>a<ENDAUDCAP> <AUDCAP>b<ENDAUDCAP>", ["OVI204", "OVI202"]),
    ("A sign reads Audio: yes. Audio: rain.", ["OVI204"]),
])
def test_structural_problems(text, expected):
    assert sorted(codes(text)) == sorted(expected)


@pytest.mark.parametrize("text", [
    "He says, <S>hi<E>. <AUDCAP>Male voice.<ENDAUDCAP>.",  # `<E>.` and trailing `.` are harmless
    "He says, <S>hi<E>.. Audio: male voice..",
    "Just a description with no tags at all.",
])
def test_harmless_prompts_have_no_problems(text):
    assert codes(text) == []


def test_one_typo_gives_one_problem():
    """`</S>` is read as the <E> it stands for: the segment is still balanced."""
    parsed = parse_prompt("He says, <S>hello</S> and leaves.")
    assert [p.code for p in parsed.problems] == ["OVI103"]
    assert parsed.speech == ["hello"]


def test_canonicalize_tags_changes_only_tags():
    assert canonicalize_tags("a <s>b</S> c ＜AUDCAP＞d< ENDAUDCAP >") == "a <S>b<E> c <AUDCAP>d<ENDAUDCAP>"
    assert canonicalize_tags("<div> stays") == "<div> stays"


def test_move_caption_to_end_keeps_words_and_trailing_newline():
    text = "A kitchen. <AUDCAP>Hum.<ENDAUDCAP> He says, <S>hi<E>.\n"
    moved = move_caption_to_end(text)
    assert moved == "A kitchen. He says, <S>hi<E>. <AUDCAP>Hum.<ENDAUDCAP>\n"
    assert codes(moved) == []
    assert move_caption_to_end(moved) == moved


def test_move_audio_caption_keeps_the_lead_in_of_later_speech():
    moved = move_caption_to_end("A kitchen. Audio: hum. He turns and says, <S>hi<E>.")
    assert moved == "A kitchen. He turns and says, <S>hi<E>. Audio: hum."


@pytest.mark.parametrize("form, expected", [
    ("audio", "He says, <S>hi<E>. Audio: Male voice."),
    ("audcap", "He says, <S>hi<E>. <AUDCAP>Male voice.<ENDAUDCAP>"),
])
def test_with_caption_form(form, expected):
    for source in ("He says, <S>hi<E>. Audio: Male voice.",
                   "He says, <S>hi<E>. <AUDCAP>Male voice.<ENDAUDCAP>"):
        assert with_caption_form(source, form) == expected


def test_caption_form_agrees_with_the_engine_formatter():
    """What the fix writes is what the reference formatter would produce for a caption-last prompt."""
    audcap = "Scene, he says, <S>hi<E>. <AUDCAP>Male voice.<ENDAUDCAP>"
    assert format_prompt(audcap, get_variant("960x960_10s")) == with_caption_form(audcap, "audio")
    audio = with_caption_form(audcap, "audio")
    assert format_prompt(audio, get_variant("720x720_5s")) == with_caption_form(audio, "audcap")


def test_count_words():
    assert count_words("We found the missing page.") == 5
    assert count_words("[soft whisper] don't go") == 2  # delivery cues do not count
    assert count_words("你好世界") == pytest.approx(4 / 1.5)  # one syllable per CJK character
    assert count_words("  ") == 0


def test_spoken_lines_are_the_speech_spans_in_any_form():
    from ovi_studio.prompt import spoken_lines
    raw = ("He turns to the door. He calls out, <S>Who's  there?<E> A pause. <S>[whispers] Show\n"
           "yourself.<E> <S> <E> Audio: knocks, wind.")
    assert spoken_lines(raw) == ["Who's there?", "Show yourself."]
    assert spoken_lines("A lighthouse at night. <AUDCAP>Wind.<ENDAUDCAP>") == []
