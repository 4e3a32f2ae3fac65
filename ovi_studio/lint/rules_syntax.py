"""OVI1xx: the tags themselves — balanced, not nested, well formed, not empty, known."""
from __future__ import annotations

from collections.abc import Iterator

from ovi_studio.diagnostics import Severity
from ovi_studio.lint.findings import Finding, PromptContext
from ovi_studio.lint.registry import rule
from ovi_studio.prompt import ParsedPrompt, canonicalize_tags

E, W = Severity.ERROR, Severity.WARNING

rule("OVI101", E, "unbalanced speech tags",
     "Every <S> needs a matching <E>, and every <E> an <S> before it. An unclosed segment makes "
     "the model speak the description that follows (Ovi issues #40, #42). Close the segment with "
     "<E> or remove the stray tag.")
rule("OVI102", E, "nested speech tags",
     "A second <S> while a segment is still open: speech segments do not nest. Close the first "
     "segment with <E> before the next <S>.")
rule("OVI103", E, "malformed tag",
     "A tag that was meant to be <S>, <E>, <AUDCAP> or <ENDAUDCAP> but is written differently: "
     "`</S>` (Ovi uses <E> to close speech, Ovi issue #20), lowercase `<s>`, spaces `< S >`, "
     "fullwidth brackets `＜S＞`, `</AUDCAP>`. The tokenizer sees these as plain text, so the "
     "model may speak them. `--fix` rewrites them to the canonical tag.", fixable=True)
rule("OVI104", E, "empty speech segment",
     "`<S><E>` with nothing (or only spaces) between the tags. Put the spoken words inside or "
     "remove the tags.")
rule("OVI105", E, "unbalanced or nested caption tags",
     "<AUDCAP> needs a matching <ENDAUDCAP>, they do not nest, and <ENDAUDCAP> needs an <AUDCAP> "
     "before it.")
rule("OVI106", W, "unknown tag",
     "Ovi's prompt format knows only <S>…<E> for speech and the audio caption (`Audio:` or "
     "<AUDCAP>…<ENDAUDCAP>). Any other angle-bracket tag (`<speech>`, `<AUDIO>`, HTML) reaches "
     "the text encoder as plain text and the model may voice it. Remove it or say it in words.")

CODES = ("OVI101", "OVI102", "OVI103", "OVI104", "OVI105", "OVI106")


def check(parsed: ParsedPrompt, ctx: PromptContext) -> Iterator[Finding]:
    fixed = None
    for problem in parsed.problems:
        if problem.code not in CODES:
            continue
        if problem.code == "OVI103":
            fixed = fixed if fixed is not None else canonicalize_tags(parsed.text)
            yield Finding(problem.code, problem.start, problem.end, problem.message, fix=fixed,
                          fix_description="rewrite malformed tags to canonical form")
        else:
            yield Finding(problem.code, problem.start, problem.end, problem.message)
