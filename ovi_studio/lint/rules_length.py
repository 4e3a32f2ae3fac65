"""OVI3xx: how much speech fits the shot, and how much text fits the text encoder.

Thresholds come from speech norms (about 2.5 words/s conversational, ~4 syllables/s typical)
and the official examples (at most 3.8 words/s in 5 s clips, 5.2 in 10 s; at most 3 segments in
5 s and 4 in 10 s; segments up to 33 words, p90 18; 48-179 words per prompt).
"""
from __future__ import annotations

import re
from collections.abc import Iterator

from ovi_studio.diagnostics import Severity
from ovi_studio.lint.findings import Finding, PromptContext
from ovi_studio.lint.registry import rule
from ovi_studio.lint.tokens import CHARS_PER_TOKEN, TAG_TOKENS, TEXT_LEN
from ovi_studio.prompt import ParsedPrompt, count_words
from engine.variants import format_prompt

E, W, I = Severity.ERROR, Severity.WARNING, Severity.INFO

DENSITY_LEVELS = ((5.5, E), (4.0, W), (3.0, I))  # words per second, highest first
SEGMENTS_PER_5S, SEGMENTS_PER_10S = 3, 4
SEGMENT_WORDS = 20
TOKENS_WARN = 400
MIN_PROMPT_WORDS = 50
CAPTION_WORDS = (4, 45)

rule("OVI301", W, "too much speech for the shot's duration",
     "Speech words per second of the shot: info above 3.0 w/s, warning above 4.0, error above 5.5 "
     "(a 5 s clip holds about 15 words comfortably; the official examples peak at 3.8 w/s in 5 s "
     "and 5.2 w/s in 10 s). Rushed speech gets cut off or garbled. Shorten the lines or use a "
     "10 s model. Words in [brackets] (delivery cues) do not count; characters of CJK scripts "
     "count as one syllable each (1/1.5 word).")
rule("OVI302", W, "too many speech segments",
     f"More than {SEGMENTS_PER_5S} segments in a 5 s shot or {SEGMENTS_PER_10S} in a 10 s shot (the "
     "official maxima). Merge lines or split the shot.")
rule("OVI303", W, "overlong speech segment",
     f"One segment of more than {SEGMENT_WORDS} words (the examples' p90 is 18). Split it with an "
     "action beat: `… she says, <S>first half<E>, then adds, <S>second half<E>`.")
rule("OVI304", E, "prompt too long for the text encoder",
     f"umT5 reads at most {TEXT_LEN} tokens (including the end token) and silently cuts the rest — "
     f"the end of the prompt, i.e. the audio caption, goes first. Error above {TEXT_LEN}, warning "
     f"above {TOKENS_WARN}. The count is exact when the checkpoint folder is known (storyboard "
     f"`ckpt_dir` or `check --ckpt-dir`: the tokenizer of Wan2.2-TI2V-5B/google/umt5-xxl); "
     f"otherwise it is an estimate: tags removed, whitespace collapsed, {CHARS_PER_TOKEN} characters "
     f"per token, plus per tag " + ", ".join(f"{t} {n}" for t, n in TAG_TOKENS.items())
     + ", plus 1 end token.")
rule("OVI305", I, "prompt much shorter than the official prompts",
     f"Fewer than {MIN_PROMPT_WORDS} words; the official examples have 48-179 (median ~132). "
     "Short prompts are out of distribution: describe the people, the place, the motion and the "
     "sound.")
rule("OVI306", I, "audio caption very short or very long",
     f"The caption has fewer than {CAPTION_WORDS[0]} or more than {CAPTION_WORDS[1]} words (official: "
     "4-41). Describe voice quality, the acoustic space and non-speech sound in one sentence or two.")


def check(parsed: ParsedPrompt, ctx: PromptContext) -> Iterator[Finding]:
    yield from _density(parsed, ctx)
    yield from _segments(parsed, ctx)
    yield from _tokens(parsed, ctx)
    yield from _sizes(parsed)


def _density(parsed: ParsedPrompt, ctx: PromptContext) -> Iterator[Finding]:
    if not parsed.segments or ctx.duration <= 0:
        return
    words = parsed.speech_words
    rate = words / ctx.duration
    for limit, severity in DENSITY_LEVELS:
        if rate > limit:
            first, last = parsed.segments[0], parsed.segments[-1]
            yield Finding("OVI301", first.open_start, last.close_end or last.end,
                          f"{words:g} speech words in {ctx.duration:g} s is {rate:.1f} words/s "
                          f"(above {limit:g}): shorten the lines to about {int(3.0 * ctx.duration)} "
                          f"words or use a longer shot", severity=severity)
            return


def _segments(parsed: ParsedPrompt, ctx: PromptContext) -> Iterator[Finding]:
    allowed = SEGMENTS_PER_5S if ctx.duration <= 5 else SEGMENTS_PER_10S
    if len(parsed.segments) > allowed:
        extra = parsed.segments[allowed]
        yield Finding("OVI302", extra.open_start, parsed.segments[-1].close_end or len(parsed.text),
                      f"{len(parsed.segments)} speech segments in a {ctx.duration:g} s shot (at most "
                      f"{allowed}): merge lines or split the shot")
    for seg in parsed.segments:
        if seg.words > SEGMENT_WORDS:
            yield Finding("OVI303", seg.open_start, seg.close_end or seg.end,
                          f"a {seg.words:g}-word speech segment (more than {SEGMENT_WORDS}): split it "
                          "with an action beat between two <S>…<E> segments")


def _tokens(parsed: ParsedPrompt, ctx: PromptContext) -> Iterator[Finding]:
    formatted = format_prompt(parsed.text, ctx.variant)
    count = ctx.tokens.count(formatted)
    how = "tokens" if ctx.tokens.exact else "tokens (estimated; pass --ckpt-dir for an exact count)"
    end = len(parsed.text.rstrip())
    if count > TEXT_LEN:
        yield Finding("OVI304", 0, end, f"{count} {how}: umT5 keeps the first {TEXT_LEN} and drops the "
                      "rest, starting with the audio caption — shorten the description")
    elif count > TOKENS_WARN:
        yield Finding("OVI304", 0, end, f"{count} {how}, close to the {TEXT_LEN}-token limit: shorten "
                      "the description", severity=W)


def _sizes(parsed: ParsedPrompt) -> Iterator[Finding]:
    total = count_words(re.sub(r"<[^>]*>|Audio:", " ", parsed.text))
    if total < MIN_PROMPT_WORDS:
        yield Finding("OVI305", 0, len(parsed.text.rstrip()),
                      f"{total:g} words; the official prompts have 48-179: describe the people, the "
                      "place, the motion and the sound in more detail")
    caption = parsed.caption
    if caption is not None:
        words = count_words(caption.text)
        low, high = CAPTION_WORDS
        if words < low or words > high:
            yield Finding("OVI306", caption.start, caption.end,
                          f"the audio caption has {words:g} words (usual: {low}-{high}): describe "
                          "voice quality, the room and other sounds briefly")
