"""The Ovi prompt grammar: one parser for plain text, speech segments and the audio caption.

An Ovi prompt is free text in which `<S>…<E>` marks speech and the audio caption is either
`Audio: …` (960 models; it runs to the end of the prompt) or `<AUDCAP>…<ENDAUDCAP>` (the
720x720_5s model). `parse_prompt` splits a prompt into spans that keep their character offsets,
so the linter can point at a column, the structured-form compiler can check what it built, and
the per-variant rewrite can move the caption without touching anything else.

Tags are read leniently: `</S>`, `<s>`, `< S >` or fullwidth `＜S＞` are understood as the tag
they were meant to be (and reported as malformed), so one typo gives one problem, not a cascade.
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

SPEECH_OPEN, SPEECH_CLOSE = "<S>", "<E>"
CAPTION_OPEN, CAPTION_CLOSE = "<AUDCAP>", "<ENDAUDCAP>"
AUDIO_LABEL = "Audio:"
CANONICAL_TAGS = {"S": SPEECH_OPEN, "E": SPEECH_CLOSE, "AUDCAP": CAPTION_OPEN, "ENDAUDCAP": CAPTION_CLOSE}

# Anything bracketed that starts like a tag name: `<S>`, `</ S>`, `<div class="x">`, `＜Ｓ＞`.
# Fullwidth letters are folded below, so `[^\W\d_]` (any letter) starts the name.
_TAG = re.compile(r"[<＜](?P<inner>\s*[/／]?\s*[^\W\d_][^<>＜＞\n]{0,63}?)[>＞]")
_AUDIO_LABEL = re.compile(re.escape(AUDIO_LABEL))
_SENTENCE_END = re.compile(r"[.!?…](?:[\"'”’)\]]*)(?=\s)")
_WORD = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*")
_DELIVERY_CUE = re.compile(r"\[[^\]]*\]")  # `[soft whisper]` inside speech is direction, not words
# Scripts written without spaces: one character is about one spoken syllable.
_UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
SYLLABLES_PER_WORD = 1.5  # English averages about 1.5 syllables per word
# Problems that make the caption's extent uncertain; rewrites wait until they are fixed.
_STRUCTURAL = {"OVI101", "OVI102", "OVI103", "OVI105", "OVI203", "OVI204"}


@dataclass(frozen=True)
class Tag:
    """One bracketed tag as written. `canonical` is the tag it stands for (None: unknown tag)."""
    start: int
    end: int
    raw: str
    canonical: str | None

    @property
    def malformed(self) -> bool:
        return self.canonical is not None and self.raw != self.canonical


@dataclass(frozen=True)
class Span:
    """A run of the prompt. kind: text | speech | caption | tag | malformed_tag.

    The spans of a ParsedPrompt cover the text exactly once, in order. `tag` also covers the
    `Audio:` label; `malformed_tag` is a misspelt known tag or an unknown one; speech and caption
    spans hold what sits between their markers."""
    kind: str
    start: int
    end: int
    content: str


@dataclass(frozen=True)
class Segment:
    """A speech segment: `open_start` is where <S> starts, `close_end` where <E> ends;
    `start`..`end` is the spoken text between them."""
    open_start: int
    start: int
    end: int
    close_end: int | None  # None when the segment is never closed
    text: str

    @property
    def words(self) -> float:
        return count_words(self.text)


@dataclass(frozen=True)
class Caption:
    """An audio caption. form: "audcap" (<AUDCAP>…<ENDAUDCAP>) or "audio" (`Audio: …`).

    start..end covers the markers too; content_start..content_end only the caption words."""
    form: str
    start: int
    end: int
    content_start: int
    content_end: int
    text: str
    closed: bool = True


@dataclass(frozen=True)
class Problem:
    """A structural problem the grammar found. `code` is the lint rule it belongs to."""
    code: str
    start: int
    end: int
    message: str


@dataclass
class ParsedPrompt:
    text: str
    spans: list[Span] = field(default_factory=list)
    tags: list[Tag] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    captions: list[Caption] = field(default_factory=list)
    audio_labels: list[int] = field(default_factory=list)  # offsets of every `Audio:`
    problems: list[Problem] = field(default_factory=list)

    @property
    def caption(self) -> Caption | None:
        """The caption the model will see (the first one; OVI204 reports any others)."""
        return self.captions[0] if self.captions else None

    @property
    def caption_text(self) -> str | None:
        return self.caption.text.strip() if self.caption else None

    @property
    def speech(self) -> list[str]:
        return [seg.text.strip() for seg in self.segments]

    @property
    def speech_words(self) -> float:
        return sum(seg.words for seg in self.segments)

    @property
    def well_formed(self) -> bool:
        """Tags balanced and canonical, one caption, no speech in it: safe to move things."""
        return not any(p.code in _STRUCTURAL for p in self.problems)

    def description(self) -> str:
        """The prompt without speech, caption and tags (what the scene looks like)."""
        return " ".join(s.content.strip() for s in self.spans if s.kind == "text" and s.content.strip())


# Fullwidth ASCII (U+FF01..U+FF5E) to ASCII, so `＜Ｓ＞` reads as `<S>`.
_FULLWIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}


def _classify(inner: str) -> str | None:
    """The canonical tag a bracketed token stands for, or None when it is some other tag."""
    folded = inner.translate(_FULLWIDTH)
    closing = folded.lstrip().startswith("/")
    name = re.sub(r"[\s/_\-]", "", folded).upper()
    if name not in CANONICAL_TAGS:
        return None
    if closing and name == "S":
        return SPEECH_CLOSE  # `</S>` is written where `<E>` was meant (Ovi issue #20)
    if closing and name == "AUDCAP":
        return CAPTION_CLOSE
    return CANONICAL_TAGS[name]


# An unknown tag looks like markup: `<name>`, `</name>`, `<name attr="v">` with nothing before
# the name — so `a < b and c > d` in prose is not a tag.
_MARKUP = re.compile(r"[/／]?[^\W\d_][\w:-]*(?:\s+[\w:-]+(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s\"'>]+))?)*\s*/?")


def find_tags(text: str) -> list[Tag]:
    tags = []
    for m in _TAG.finditer(text):
        canonical = _classify(m.group("inner"))
        if canonical is None and not _MARKUP.fullmatch(m.group("inner")):
            continue
        tags.append(Tag(m.start(), m.end(), m.group(0), canonical))
    return tags


def parse_prompt(text: str) -> ParsedPrompt:
    """Split `text` into spans and collect what is structurally wrong with it."""
    parsed = ParsedPrompt(text=text, tags=find_tags(text))
    starts = [t.start for t in parsed.tags]

    def inside_tag(pos: int) -> bool:
        i = bisect.bisect_right(starts, pos) - 1
        return i >= 0 and pos < parsed.tags[i].end
    parsed.audio_labels = [m.start() for m in _AUDIO_LABEL.finditer(text) if not inside_tag(m.start())]
    events = sorted([(t.start, "tag", t) for t in parsed.tags]
                    + [(pos, "label", None) for pos in parsed.audio_labels], key=lambda e: e[0])
    _walk(parsed, events)
    parsed.spans = _spans(parsed)
    for tag in parsed.tags:
        if tag.malformed:
            parsed.problems.append(Problem("OVI103", tag.start, tag.end,
                                           f"malformed tag `{tag.raw}`: write `{tag.canonical}`"))
        elif tag.canonical is None:
            parsed.problems.append(Problem(
                "OVI106", tag.start, tag.end,
                f"unknown tag `{tag.raw}`: Ovi knows only <S>…<E> and the audio caption; T5 reads "
                "this as text and the model may voice it — remove it or write it as words"))
    parsed.problems.sort(key=lambda p: (p.start, p.code))
    return parsed


def _walk(parsed: ParsedPrompt, events: list) -> None:
    """One pass over tags and `Audio:` labels in order: speech and caption state and problems."""
    text, problems = parsed.text, parsed.problems
    speech: tuple[int, int] | None = None  # (tag start, content start) of the open segment
    audcap: tuple[int, int] | None = None  # same for an open <AUDCAP>
    audio: tuple[int, int] | None = None  # the first `Audio:` label (start, end)

    for pos, kind, tag in events:
        if kind == "label":
            end = pos + len(AUDIO_LABEL)
            if speech:
                problems.append(Problem("OVI203", pos, end,
                                        "`Audio:` inside a speech segment: the caption would swallow "
                                        "the rest of the speech — close the segment with <E> first"))
            elif audcap:
                problems.append(Problem("OVI204", pos, end,
                                        "`Audio:` inside <AUDCAP>…<ENDAUDCAP>: this is a second caption "
                                        "label — drop it"))
            if audio is None and audcap is None:
                audio = (pos, end)
            continue
        meaning = tag.canonical
        if meaning == SPEECH_OPEN:
            if speech:
                problems.append(Problem("OVI102", tag.start, tag.end,
                                        "nested speech tag: a segment is already open — close it with "
                                        "<E> before starting another"))
                continue
            if audcap:
                problems.append(Problem("OVI203", tag.start, tag.end,
                                        "speech inside the audio caption: the caption describes sound; "
                                        "move the speech before the caption"))
            speech = (tag.start, tag.end)
        elif meaning == SPEECH_CLOSE:
            if not speech:
                problems.append(Problem("OVI101", tag.start, tag.end,
                                        "stray <E> without an opening <S>: add <S> where the speech "
                                        "starts or remove it"))
                continue
            _close_segment(parsed, speech, tag.start, tag.end)
            speech = None
        elif meaning == CAPTION_OPEN:
            if audcap:
                problems.append(Problem("OVI105", tag.start, tag.end,
                                        "nested <AUDCAP>: close the open caption with <ENDAUDCAP> first"))
                continue
            audcap = (tag.start, tag.end)
        elif meaning == CAPTION_CLOSE:
            if not audcap:
                problems.append(Problem("OVI105", tag.start, tag.end,
                                        "<ENDAUDCAP> without an opening <AUDCAP>: add <AUDCAP> before "
                                        "the caption or remove it"))
                continue
            parsed.captions.append(Caption("audcap", audcap[0], tag.end, audcap[1], tag.start,
                                           text[audcap[1]:tag.start]))
            audcap = None
    if speech:
        problems.append(Problem("OVI101", speech[0], speech[1],
                                "unclosed <S>: end the spoken text with <E>"))
        _close_segment(parsed, speech, len(text), None)
    if audcap:
        problems.append(Problem("OVI105", audcap[0], audcap[1],
                                "unclosed <AUDCAP>: end the caption with <ENDAUDCAP>"))
        parsed.captions.append(Caption("audcap", audcap[0], len(text), audcap[1], len(text),
                                       text[audcap[1]:], closed=False))
    if audio:
        parsed.captions.append(_audio_caption(parsed, audio))
    parsed.captions.sort(key=lambda c: c.start)
    _check_captions(parsed)


def _spans(parsed: ParsedPrompt) -> list[Span]:
    """Partition the text: markers become tag spans, the runs between them take the kind of the
    segment or caption they fall in."""
    text = parsed.text
    markers = [(t.start, t.end, "tag" if t.canonical and not t.malformed else "malformed_tag")
               for t in parsed.tags]
    markers += [(pos, pos + len(AUDIO_LABEL), "tag") for pos in parsed.audio_labels]
    cuts = sorted({c.content_end for c in parsed.captions} | {s.end for s in parsed.segments})
    spans, cursor, next_cut = [], 0, 0
    speech = _Intervals((seg.start, seg.end) for seg in parsed.segments)
    caption = _Intervals((c.content_start, c.content_end) for c in parsed.captions)

    def kind_at(pos: int) -> str:
        return "speech" if speech.contains(pos) else "caption" if caption.contains(pos) else "text"

    def runs(upto: int) -> None:
        nonlocal cursor, next_cut
        while next_cut < len(cuts) and cuts[next_cut] <= cursor:
            next_cut += 1
        while next_cut < len(cuts) and cuts[next_cut] < upto:
            spans.append(Span(kind_at(cursor), cursor, cuts[next_cut], text[cursor:cuts[next_cut]]))
            cursor = cuts[next_cut]
            next_cut += 1
        if upto > cursor:
            spans.append(Span(kind_at(cursor), cursor, upto, text[cursor:upto]))
            cursor = upto

    for start, end, kind in sorted(markers):
        runs(start)
        spans.append(Span(kind, start, end, text[start:end]))
        cursor = end
    runs(len(text))
    return spans


class _Intervals:
    """Membership in a set of half-open intervals, by binary search over their starts."""

    def __init__(self, intervals):
        self._spans = sorted(intervals)
        self._starts = [start for start, _ in self._spans]
        self._reach = []  # furthest end among the intervals up to each index (they may overlap)
        for _, end in self._spans:
            self._reach.append(max(end, self._reach[-1]) if self._reach else end)

    def contains(self, pos: int) -> bool:
        i = bisect.bisect_right(self._starts, pos) - 1
        return i >= 0 and pos < self._reach[i]


def _close_segment(parsed: ParsedPrompt, opened: tuple[int, int], close_start: int,
                   close_end: int | None) -> None:
    segment = Segment(opened[0], opened[1], close_start, close_end, parsed.text[opened[1]:close_start])
    parsed.segments.append(segment)
    if close_end is not None and not segment.text.strip():
        parsed.problems.append(Problem("OVI104", opened[0], close_end,
                                       "empty speech segment: put the spoken words between <S> and "
                                       "<E> or remove the tags"))


def _audio_caption(parsed: ParsedPrompt, label: tuple[int, int]) -> Caption:
    """An `Audio:` caption runs to the end of the prompt — unless speech follows it; then it ends
    at the last sentence end before that speech (the words leading into the speech stay text)."""
    text = parsed.text
    later_speech = [s.open_start for s in parsed.segments if s.open_start > label[1]]
    end = len(text)
    if later_speech:
        end = later_speech[0]
        boundaries = [m.end() for m in _SENTENCE_END.finditer(text, label[1], end)]
        if boundaries:
            end = boundaries[-1]
    return Caption("audio", label[0], end, label[1], end, text[label[1]:end])


def _check_captions(parsed: ParsedPrompt) -> None:
    text, problems = parsed.text, parsed.problems
    for extra in parsed.captions[1:]:
        problems.append(Problem("OVI204", extra.start, extra.end,
                                "a second audio caption: Ovi reads one caption — merge them into one "
                                "at the end of the prompt"))
    caption_starts = {c.start for c in parsed.captions}
    for pos in parsed.audio_labels[1:]:
        if pos not in caption_starts:
            problems.append(Problem("OVI204", pos, pos + len(AUDIO_LABEL),
                                    "`Audio:` appears again: the 720 model's formatter starts the "
                                    "caption at the first `Audio:` — reword this one (e.g. 'sound:')"))
    caption = parsed.caption
    if caption and caption.closed and not is_trailing_noise(text[caption.end:]):
        problems.append(Problem("OVI202", caption.start, caption.end,
                                "the audio caption is not the last part of the prompt: Ovi was trained "
                                "with the caption at the end — move it after everything else"))


def is_trailing_noise(rest: str) -> bool:
    """Whitespace and punctuation after the caption (`<ENDAUDCAP>.`) change nothing."""
    return not re.search(r"[^\W_]", rest)


def count_words(speech: str) -> float:
    """Spoken words in `speech`: delivery cues in brackets do not count; characters of unspaced
    scripts (CJK, kana, hangul) count as one syllable each, i.e. 1/1.5 of an English word."""
    spoken = _DELIVERY_CUE.sub(" ", speech)
    unspaced = len(_UNSPACED.findall(spoken))
    words = len(_WORD.findall(_UNSPACED.sub(" ", spoken)))
    return words + unspaced / SYLLABLES_PER_WORD


def spoken_lines(text: str) -> list[str]:
    """What a prompt has said aloud, whatever form it was written in: the words of each
    `<S>…<E>` span in order, delivery cues (`[whispers]`) dropped, whitespace collapsed; spans
    with nothing to say are skipped. Subtitles, captions, guide speech, the report and quality
    checks all take the dialogue from here."""
    lines = []
    for segment in parse_prompt(text).segments:
        words = " ".join(_DELIVERY_CUE.sub(" ", segment.text).split())
        if count_words(words):
            lines.append(words)
    return lines


def canonicalize_tags(text: str) -> str:
    """Rewrite every malformed speech/caption tag to its canonical form; nothing else changes."""
    out, cursor = [], 0
    for tag in find_tags(text):
        if tag.malformed:
            out += [text[cursor:tag.start], tag.canonical]
            cursor = tag.end
    return "".join(out) + text[cursor:]


def _join(head: str, tail: str) -> str:
    head = head.rstrip()
    return f"{head} {tail}" if head else tail


def _cut(text: str, start: int, end: int) -> str:
    """Remove text[start:end] and the spaces around it, keeping line breaks where they are."""
    before, after = text[:start].rstrip(" \t"), text[end:]
    if after.startswith(("\n", "\r")):
        if not before or before.endswith("\n"):  # the cut text was a whole line: drop the line
            after = after[2:] if after.startswith("\r\n") else after[1:]
        return before + after
    after = after.lstrip(" \t")
    if not before or before.endswith("\n") or not after:
        return before + after
    return before + " " + after


def move_caption_to_end(text: str) -> str:
    """Move the (first) caption, markers included, after everything else. Keeps trailing
    whitespace (a block scalar's final newline) and the other line breaks where they were."""
    parsed = parse_prompt(text)
    caption = parsed.caption
    if caption is None or is_trailing_noise(text[caption.end:]):
        return text
    body = text[caption.start:caption.end].strip()
    trailing = text[len(text.rstrip()):]
    return _join(_cut(text, caption.start, caption.end), body) + trailing


def with_caption_form(text: str, form: str) -> str:
    """Rewrite the caption(s) into `form` ("audio" → `Audio: X` at the end, "audcap" →
    `<AUDCAP>X<ENDAUDCAP>` at the end). Text without a caption is returned unchanged."""
    parsed = parse_prompt(text)
    captions = [c for c in parsed.captions if c.closed]
    if not captions or all(c.form == form for c in captions):
        return text
    body = " ".join(b for b in (c.text.strip() for c in captions) if b)
    rest = text
    for c in sorted(captions, key=lambda c: c.start, reverse=True):
        rest = _cut(rest, c.start, c.end)
    trailing = text[len(text.rstrip()):]
    caption = f"{AUDIO_LABEL} {body}" if form == "audio" else f"{CAPTION_OPEN}{body}{CAPTION_CLOSE}"
    return _join(rest, caption) + trailing
