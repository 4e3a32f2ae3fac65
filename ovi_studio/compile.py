"""Turn a shot into the exact prompt text Ovi expects.

Two forms reach here. A raw `prompt` is copied as written, with character references expanded.
The structured form (`scene` + `dialogue` + `audio`) is written the way the official example
prompts are: the scene first, each speech segment preceded by who speaks
("Anna says, <S>…<E>"), the audio caption last — `Audio: …` for the 960 models,
`<AUDCAP>…<ENDAUDCAP>` for 720x720_5s.

Characters keep a person identical across shots: `{anna}` in any text becomes anna's `look`
(`{anna.voice}` her voice), and in the structured form every character who speaks adds their
`voice` to the audio caption, word for word.

Every piece of the output is recorded in a `TextOrigin`, so a lint finding at an offset of the
compiled prompt points at the YAML text it came from.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from ovi_studio.source import Position, ScalarSource, TextOrigin

CHARACTER_REF = re.compile(r"\{([A-Za-z_][A-Za-z0-9_-]*)(?:\.(look|voice))?\}")
_SENTENCE_END = (".", "!", "?", "…", '"', "'")


@dataclass(frozen=True)
class Text:
    """A piece of storyboard text and where it is in the file (source None: not in the file,
    e.g. from a template; then it maps to `anchor`)."""
    value: str
    anchor: Position
    source: ScalarSource | None = None


@dataclass(frozen=True)
class CharacterInfo:
    look: str
    voice: str | None = None
    name: str | None = None  # how the prompt refers to them when they speak; default: look


@dataclass(frozen=True)
class DialogueLine:
    speaker: str | None
    text: str


@dataclass
class UnknownCharacter:
    name: str
    position: Position
    suggestion: str | None

    @property
    def message(self) -> str:
        hint = f"; did you mean `{self.suggestion}`?" if self.suggestion else ""
        return f"unknown character `{self.name}`{hint}"


@dataclass
class Compiled:
    text: str
    origin: TextOrigin
    dialogue: list[DialogueLine] = field(default_factory=list)
    scene: str | None = None
    audio_caption: str | None = None
    unknown: list[UnknownCharacter] = field(default_factory=list)


class _Writer:
    """Accumulates prompt text and its origin piece by piece."""

    def __init__(self, origin: TextOrigin, characters: dict[str, CharacterInfo]):
        self.parts: list[str] = []
        self.origin = origin
        self.characters = characters
        self.unknown: list[UnknownCharacter] = []
        self.referenced: list[str] = []

    def glue(self, text: str, anchor: Position | None = None) -> None:
        self.parts.append(text)
        self.origin.add(len(text), anchor=anchor)

    def copy(self, text: Text, start: int = 0, end: int | None = None) -> None:
        """Copy text[start:end] with character references expanded."""
        value = text.value[start:end] if end is not None else text.value[start:]
        cursor = 0
        for match in CHARACTER_REF.finditer(value):
            self._literal(text, start + cursor, value[cursor:match.start()])
            expansion = self._expand(match, text, start + match.start())
            if _at_sentence_start(self.text):
                expansion = _capitalize(expansion)
            self.parts.append(expansion)
            self.origin.add(len(expansion), anchor=self._position(text, start + match.start()))
            cursor = match.end()
        self._literal(text, start + cursor, value[cursor:])

    def _literal(self, text: Text, offset: int, value: str) -> None:
        self.parts.append(value)
        if text.source is not None:
            self.origin.add(len(value), text.source, offset)
        else:
            self.origin.add(len(value), anchor=text.anchor)

    def _expand(self, match: re.Match, text: Text, offset: int) -> str:
        name, field_name = match.group(1), match.group(2) or "look"
        character = self.characters.get(name)
        if character is None:
            close = difflib.get_close_matches(name, list(self.characters), n=1)
            self.unknown.append(UnknownCharacter(name, self._position(text, offset),
                                                 close[0] if close else None))
            return match.group(0)
        if name not in self.referenced:
            self.referenced.append(name)
        if field_name == "voice":
            return character.voice or ""
        return character.look

    @staticmethod
    def _position(text: Text, offset: int) -> Position:
        return text.source.locate(offset) if text.source is not None else text.anchor

    @property
    def text(self) -> str:
        return "".join(self.parts)


def compile_raw(prompt: Text, characters: dict[str, CharacterInfo], origin: TextOrigin) -> Compiled:
    """A raw Ovi prompt: written by the user, only character references are expanded."""
    writer = _Writer(origin, characters)
    writer.copy(prompt)
    return Compiled(writer.text, origin, unknown=writer.unknown)


def compile_structured(scene: Text | None, dialogue: list[tuple[str | None, Text, Position]],
                       audio: Text | None, characters: dict[str, CharacterInfo],
                       caption_style: str, origin: TextOrigin) -> Compiled:
    """scene + attributed speech + caption, in the order and style of the official examples.
    `dialogue` holds (speaker as written, the line, the position of the speaker)."""
    writer = _Writer(origin, characters)
    if scene is not None and scene.value.strip():
        _copy_sentence(writer, scene)

    previous: str | None = None
    speakers: list[str] = []  # characters who speak, in order of first line
    lines: list[DialogueLine] = []
    for speaker, line, speaker_at in dialogue:
        key = _resolve_speaker(speaker, writer, speaker_at)
        if key in characters and key not in speakers:
            speakers.append(key)
        subject = _subject(key, characters)
        verb = "says" if previous is None else ("continues" if key == previous else "replies")
        if writer.parts:
            writer.glue(" ")
        writer.glue(f"{_capitalize(subject)} {verb}, <S>", anchor=speaker_at)
        writer.copy(line, *_stripped_range(line.value))
        writer.glue("<E>", anchor=speaker_at)
        lines.append(DialogueLine(speaker, line.value.strip()))
        previous = key

    caption = _caption(writer, speakers, audio, caption_style)
    scene_text = scene.value.strip() if scene is not None else None
    return Compiled(writer.text, origin, lines, scene_text, caption, writer.unknown)


def _resolve_speaker(speaker: str | None, writer: _Writer, at: Position) -> str | None:
    """A speaker is a character when it names one (`anna` or `{anna}`); a single word that
    names none while characters exist is most likely a typo."""
    if speaker is None:
        return writer.referenced[0] if len(writer.referenced) == 1 else None
    name = speaker.strip()
    if name.startswith("{") and name.endswith("}"):
        name = name[1:-1]
    if name in writer.characters:
        if name not in writer.referenced:
            writer.referenced.append(name)
        return name
    if writer.characters and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", name) and name.islower():
        close = difflib.get_close_matches(name, list(writer.characters), n=1)
        writer.unknown.append(UnknownCharacter(name, at, close[0] if close else None))
    return speaker.strip()


def _subject(key: str | None, characters: dict[str, CharacterInfo]) -> str:
    if key is None:
        return "a voice"
    character = characters.get(key)
    if character is None:
        return key
    return character.name or character.look


def _caption(writer: _Writer, speakers: list[str], audio: Text | None, style: str) -> str | None:
    """The audio caption: each speaking character's voice verbatim, then the `audio` text."""
    voices = [writer.characters[name].voice for name in speakers if writer.characters[name].voice]
    has_audio = audio is not None and audio.value.strip()
    if not voices and not has_audio:
        return None
    if writer.parts:
        writer.glue(" ")
    writer.glue("<AUDCAP>" if style == "audcap" else "Audio: ",
                anchor=audio.anchor if audio is not None else None)
    body_start = len(writer.text)
    for index, voice in enumerate(voices):
        if index:
            writer.glue(" ")
        writer.glue(_as_sentence(voice.strip()))
    if has_audio:
        if voices:
            writer.glue(" ")
        _copy_sentence(writer, audio)
    body = writer.text[body_start:]
    if style == "audcap":
        writer.glue("<ENDAUDCAP>", anchor=audio.anchor if audio is not None else None)
    return body


def _copy_sentence(writer: _Writer, text: Text) -> None:
    start, end = _stripped_range(text.value)
    writer.copy(text, start, end)
    if not text.value[start:end].endswith(_SENTENCE_END):
        writer.glue(".", anchor=text.anchor)


def _stripped_range(value: str) -> tuple[int, int]:
    start = len(value) - len(value.lstrip())
    return start, len(value.rstrip())


def _as_sentence(text: str) -> str:
    text = _capitalize(text)
    return text if text.endswith(_SENTENCE_END) else text + "."


def _at_sentence_start(written: str) -> bool:
    stripped = written.rstrip()
    return not stripped or stripped.endswith((".", "!", "?"))


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]
