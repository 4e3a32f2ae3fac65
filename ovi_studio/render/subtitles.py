"""Timed captions and chapters from the dialogue (the speech spans of each shot's prompt).

Ovi gives no word timings, so each line's time is estimated from its words at a conversational
speaking rate: the lines follow one another from a short lead-in, each as long as its words take
to say (a shot with more speech than fits is compressed to fit). A cue is never on screen
longer than its speech: a long line is split into cues of at most two subtitle lines, each
timed by its share of the words. The preview engine places its captions and guide speech in
the same windows, so the animatic shows where the cut's subtitles will fall.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ovi_studio.prompt import count_words

LEAD_S = 0.2  # silence before the first line of a shot
TAIL_S = 0.2  # and after the last
GAP_S = 0.15  # between two lines
SPEECH_WORDS_PER_S = 2.5  # conversational English (~150 words a minute)
MIN_LINE_S = 0.6  # even "No." takes a moment to say and to read
MAX_CUE_CHARS = 84  # two subtitle lines of 42 characters
MIN_CUE_GAP_S = 0.04  # one frame between two cues: never overlapping


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str


def speech_windows(lines: list[str], duration_s: float) -> list[tuple[float, float]]:
    """(start, end) seconds within a shot where each line is estimated to be spoken."""
    if not lines:
        return []
    needed = [max(MIN_LINE_S, count_words(text) / SPEECH_WORDS_PER_S) for text in lines]
    lead, tail, gap = LEAD_S, TAIL_S, GAP_S
    if lead + tail + gap * (len(lines) - 1) >= duration_s / 2:  # a very short shot: no margins
        lead = tail = gap = 0.0
    room = duration_s - lead - tail - gap * (len(lines) - 1)
    scale = min(1.0, room / sum(needed))
    windows, t = [], lead
    for length in needed:
        windows.append((t, t + length * scale))
        t += length * scale + gap
    return windows


def caption_text(speaker: str | None, text: str) -> str:
    return f"{speaker}: {text}" if speaker else text


def split_line(text: str, limit: int = MAX_CUE_CHARS) -> list[str]:
    """A line in pieces of at most `limit` characters, cut after a sentence or clause where
    possible, else between words (a single longer word stays whole)."""
    pieces: list[str] = []
    for sentence in re.split(r"(?<=[.!?…;:,])\s+", text.strip()):
        if pieces and len(pieces[-1]) + 1 + len(sentence) <= limit:
            pieces[-1] += " " + sentence
            continue
        current = ""
        for word in sentence.split():
            if current and len(current) + 1 + len(word) > limit:
                pieces.append(current)
                current = word
            else:
                current = f"{current} {word}" if current else word
        if current:
            pieces.append(current)
    return pieces


def line_cues(speaker: str | None, text: str, start: float, end: float) -> list[Cue]:
    """One line's cues across its speech window, each piece timed by its share of the words."""
    pieces = split_line(caption_text(speaker, text))
    weights = [max(1.0, count_words(p)) for p in pieces]
    cues, t = [], start
    for piece, weight in zip(pieces, weights):
        length = (end - start) * weight / sum(weights)
        cues.append(Cue(t, t + length, piece))
        t += length
    return cues


def shot_cues(lines: list[tuple[str | None, str]], clip_start_s: float, duration_s: float,
              visible: tuple[float, float] | None = None) -> list[Cue]:
    """Cues of one shot on the cut's timeline. `clip_start_s` is where the take's own frame 0
    falls (speech is timed from it); `visible` limits the cues to the part of the timeline the
    shot owns alone (after the crossfade into it, before the next shot begins)."""
    windows = speech_windows([text for _, text in lines], duration_s)
    cues = [cue for (speaker, text), (a, b) in zip(lines, windows)
            for cue in line_cues(speaker, text, clip_start_s + a, clip_start_s + b)]
    if visible is None:
        return cues
    lo, hi = visible
    return [Cue(max(c.start, lo), min(c.end, hi), c.text) for c in cues
            if min(c.end, hi) - max(c.start, lo) >= MIN_CUE_GAP_S]


def without_overlaps(cues: list[Cue]) -> list[Cue]:
    """Cues in time order, each ending at least a frame before the next one starts."""
    ordered = sorted(cues, key=lambda c: c.start)
    out = []
    for cue, nxt in zip(ordered, ordered[1:] + [None]):
        end = cue.end if nxt is None else min(cue.end, nxt.start - MIN_CUE_GAP_S)
        if end - cue.start >= MIN_CUE_GAP_S:
            out.append(Cue(cue.start, end, cue.text))
    return out


def _clock(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_srt(cues: list[Cue]) -> str:
    blocks = [f"{i}\n{_clock(c.start, ',')} --> {_clock(c.end, ',')}\n{c.text}\n"
              for i, c in enumerate(cues, 1)]
    return "\n".join(blocks)


def to_webvtt(cues: list[Cue]) -> str:
    blocks = [f"{_clock(c.start, '.')} --> {_clock(c.end, '.')}\n{c.text}\n" for c in cues]
    return "WEBVTT\n\n" + "\n".join(blocks)


def _escape_meta(value: str) -> str:
    out = value
    for ch in "\\=;#":
        out = out.replace(ch, "\\" + ch)
    return out.replace("\n", "\\\n")


def chapters_ffmetadata(chapters: list[tuple[float, float, str]], title: str | None = None) -> str:
    """An ffmetadata file with one chapter per (start_s, end_s, title), TIMEBASE=1/1000."""
    lines = [";FFMETADATA1"]
    if title:
        lines.append(f"title={_escape_meta(title)}")
    for start, end, name in chapters:
        lines += ["[CHAPTER]", "TIMEBASE=1/1000", f"START={round(start * 1000)}",
                  f"END={round(end * 1000)}", f"title={_escape_meta(name)}"]
    return "\n".join(lines) + "\n"
