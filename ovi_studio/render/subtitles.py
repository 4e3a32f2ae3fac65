"""Timed captions and chapters from the storyboard's dialogue.

Ovi gives no word timings, so each line's position is estimated: a shot's duration (minus a
short lead-in and tail) is shared among its speech segments in proportion to their word
counts, with a small gap between lines. The preview engine draws the same timings on screen,
so the animatic shows where the cut's subtitles will fall.
"""
from __future__ import annotations

from dataclasses import dataclass

LEAD_S = 0.2  # silence before the first line of a shot
TAIL_S = 0.2  # and after the last
GAP_S = 0.15  # between two lines


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str


def speech_windows(word_counts: list[int], duration_s: float) -> list[tuple[float, float]]:
    """(start, end) seconds within a shot for lines with these word counts."""
    if not word_counts:
        return []
    gaps = GAP_S * (len(word_counts) - 1)
    lead, tail = LEAD_S, TAIL_S
    if lead + tail + gaps >= duration_s:  # a very short shot: no margins, gaps only if they fit
        lead = tail = 0.0
        gaps = min(gaps, duration_s / 2)
    speech = duration_s - lead - tail - gaps
    weights = [max(1, n) for n in word_counts]
    total = sum(weights)
    gap = gaps / (len(word_counts) - 1) if len(word_counts) > 1 else 0.0
    windows, t = [], lead
    for w in weights:
        length = speech * w / total
        windows.append((t, t + length))
        t += length + gap
    return windows


def caption_text(speaker: str | None, text: str) -> str:
    return f"{speaker}: {text}" if speaker else text


def shot_cues(lines: list[tuple[str | None, str]], start_s: float, duration_s: float) -> list[Cue]:
    """Cues for one shot placed at `start_s` on the cut's timeline."""
    windows = speech_windows([len(text.split()) for _, text in lines], duration_s)
    return [Cue(start_s + a, start_s + b, caption_text(speaker, text))
            for (speaker, text), (a, b) in zip(lines, windows)]


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
