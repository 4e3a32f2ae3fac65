"""How the cut names people and reads the lines they speak: a speaker's on-screen name, scene
text with character references expanded, and the (speaker, words) of every speech span."""
from __future__ import annotations

from ovi_studio.prompt import spoken_lines


def speaker_label(loaded, speaker: str | None) -> str | None:
    """How captions name a speaker: a character's `name`, else the character key capitalised,
    else the speaker as written."""
    if speaker is None:
        return None
    key = speaker.strip().strip("{}")
    character = loaded.model.characters.get(key) if loaded.model else None
    if character is None:
        return speaker.strip()
    return character.name or key.capitalize()


def display_text(loaded, text: str | None) -> str | None:
    """Scene text for captions and cards: `{anna}` becomes Anna's name (her look when she has
    none), `{anna.voice}` her voice."""
    from ovi_studio.compile import CHARACTER_REF
    if text is None or loaded.model is None:
        return text

    def expand(match):
        character = loaded.model.characters.get(match[1])
        if character is None:
            return match[0]
        if match[2] == "voice":
            return character.voice or ""
        return character.look if match[2] == "look" else (character.name or character.look)
    return CHARACTER_REF.sub(expand, text)


def dialogue_of(loaded, shot) -> tuple[tuple[str | None, str], ...]:
    """(speaker, words) of each speech span of the compiled prompt, whatever form the shot was
    written in (raw `prompt:`, structured, template, CSV import). Speakers are known only where
    the structured form names them; a raw prompt's lines have none."""
    lines = spoken_lines(shot.raw_prompt)
    speakers = [d.speaker for d in shot.dialogue]
    if len(speakers) != len(lines):
        speakers = [None] * len(lines)
    return tuple((speaker_label(loaded, who), text) for who, text in zip(speakers, lines))
