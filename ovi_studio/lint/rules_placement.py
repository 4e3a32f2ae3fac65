"""OVI2xx: where speech and the caption sit in the prompt, and whether they are there at all."""
from __future__ import annotations

import re
from collections.abc import Iterator

from ovi_studio.diagnostics import Severity
from ovi_studio.lint.findings import Finding, PromptContext
from ovi_studio.lint.registry import rule
from ovi_studio.prompt import ParsedPrompt, is_trailing_noise, move_caption_to_end

E, W, I = Severity.ERROR, Severity.WARNING, Severity.INFO

rule("OVI201", W, "no audio caption",
     "The prompt has no audio caption (`Audio: …` at the end, or <AUDCAP>…<ENDAUDCAP> for "
     "720x720_5s). 46 of the 47 official examples have one: it tells the audio tower what the "
     "voices and the room sound like. Add one at the end, e.g. `Audio: calm male voice, quiet "
     "room tone.` (When there is no speech either, OVI206 is reported instead.)")
rule("OVI202", E, "audio caption is not last",
     "Text follows the audio caption. The 720x720_5s formatter turns everything after the first "
     "`Audio:` into the caption (swallowing later speech and description), and the 960 models "
     "were trained with the caption last. `--fix` moves the caption to the end.", fixable=True)
rule("OVI203", E, "speech inside the audio caption",
     "A <S>…<E> segment inside the caption (or `Audio:` inside speech). The caption describes "
     "sound; speech belongs before it, in the scene description.")
rule("OVI204", E, "several audio captions",
     "More than one caption, both caption forms, or the literal `Audio:` twice (e.g. in a "
     "described sign). The 720 formatter starts the caption at the first `Audio:`. Keep one "
     "caption at the end and reword other `Audio:` text.")
rule("OVI205", W, "quoted dialogue outside speech tags",
     "A speech verb followed by quoted words (`says \"Hello\"`) outside <S>…<E>: the line will not "
     "be spoken as speech. Write it as `says, <S>Hello<E>`.")
rule("OVI206", W, "bare description: no speech and no caption",
     "Without speech tags or a caption the model may vocalise the description itself (Ovi issue "
     "#40). Add an audio caption describing the sound; add <S>…<E> for any speech.")
rule("OVI207", I, "unattributed speech",
     "No speaker or speech verb near this segment (\"The older woman says, <S>…<E>\"). The official "
     "prompts always say who speaks; with two voices the model otherwise guesses.")
rule("OVI208", I, "prompt starts with speech",
     "The official prompts describe the scene first and introduce speech with a narrative cue. "
     "Start with who is where, then `… says, <S>…<E>`.")

_CODES = ("OVI202", "OVI203", "OVI204")
_SAY = (r"says|said|say|asks|asked|shouts|shouted|yells|yelled|whispers|whispered|replies|replied|"
        r"exclaims|exclaimed|answers|answered|calls|called|cries|cried|mutters|muttered|murmurs|"
        r"murmured|declares|declared|announces|announced|adds|added|continues|continued|explains|"
        r"explained|sings|sang|screams|screamed|tells|told|speaks|spoke|responds|responded")
_QUOTED = re.compile(rf"\b(?:{_SAY})\b[^\"“«„<>]{{0,24}}?[,:]?\s*([\"“«„])([^\"“”«»„<>]{{1,400}}?)[\"”»“]",
                     re.I)
# Attribution cues: speech verbs and the verbs the official prompts use to lead into speech.
_CUE = re.compile(r"\b(?:say|said|speak|spoke|ask|tell|told|repl|answer|shout|yell|scream|whisper|"
                  r"murmur|mutter|exclaim|add|continu|explain|declar|announc|sing|sang|call|cri|"
                  r"respond|remark|stat|chant|rap|narrat|utter|begin|began|voice|read|recit|plead|"
                  r"insist|interject|laugh|sigh|grumbl|warn|conclud|proclaim|confess|promis|quip|"
                  r"hiss|growl|mumbl|demand|greet|introduc|bark|bellow|roar|shriek|pray|preach|"
                  r"comment|suggest|question|wonder|reassur|cheer|retort|agree|talk|discuss|"
                  r"lyric|verse|word|line|dialog|convers|mouth|lip|enunciat|articulat|pronounc|intone|recount|"
                  r"drawl|lisp|stammer|stutter|rant|vent|cheer|plea|pitch|yell)\w*", re.I)
CUE_BEFORE, CUE_AFTER = 60, 40


def check(parsed: ParsedPrompt, ctx: PromptContext) -> Iterator[Finding]:
    text = parsed.text
    for problem in parsed.problems:
        if problem.code == "OVI202":
            # only once the tags are sound (OVI103's fix comes first) and there is one caption
            fix = move_caption_to_end(text) if parsed.well_formed else None
            yield Finding(problem.code, problem.start, problem.end, problem.message,
                          fix=fix, fix_description="move the caption to the end")
        elif problem.code in _CODES:
            yield Finding(problem.code, problem.start, problem.end, problem.message)
    yield from _presence(parsed)
    yield from _quoted_dialogue(parsed)
    yield from _attribution(parsed)


def _presence(parsed: ParsedPrompt) -> Iterator[Finding]:
    end = len(parsed.text.rstrip())
    if parsed.captions:
        return
    if not parsed.segments:
        yield Finding("OVI206", 0, end, "no speech and no audio caption: the model may voice the "
                      "description — add a caption (`Audio: …`) and tag any speech with <S>…<E>")
    else:
        yield Finding("OVI201", end, end, "no audio caption: end the prompt with one describing the "
                      "voices and sounds, e.g. `Audio: clear female voice, quiet room tone.`")


def _quoted_dialogue(parsed: ParsedPrompt) -> Iterator[Finding]:
    for span in parsed.spans:
        if span.kind != "text":
            continue
        for m in _QUOTED.finditer(span.content):
            words = m.group(2).strip()
            yield Finding("OVI205", span.start + m.start(1), span.start + m.end(),
                          f"quoted dialogue outside speech tags: to have it spoken write "
                          f"<S>{words}<E> instead of the quotes")


def _attribution(parsed: ParsedPrompt) -> Iterator[Finding]:
    text = parsed.text
    if parsed.segments:
        first = parsed.segments[0]
        if is_trailing_noise(text[:first.open_start]):
            yield Finding("OVI208", first.open_start, first.start,
                          "the prompt starts with speech: describe the scene and who speaks first, "
                          "then `… says, <S>…<E>`")
    outside = _outside_speech(parsed)
    for seg in parsed.segments:
        before = outside[max(0, seg.open_start - CUE_BEFORE):seg.open_start]
        after_start = seg.close_end if seg.close_end is not None else seg.end
        after = outside[after_start:after_start + CUE_AFTER]
        if not _CUE.search(before) and not _CUE.search(after):
            yield Finding("OVI207", seg.open_start, seg.start,
                          "no speaker or speech verb near this segment: say who speaks, e.g. "
                          "`The man says, <S>…<E>`")


def _outside_speech(parsed: ParsedPrompt) -> str:
    """The prompt with speech contents blanked (same length), so cues are only found in text."""
    chars = list(parsed.text)
    for seg in parsed.segments:
        chars[seg.start:seg.end] = " " * (seg.end - seg.start)
    return "".join(chars)
