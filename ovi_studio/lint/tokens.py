"""Counting umT5 tokens for the 512-token text budget (OVI304), without importing torch.

With a checkpoint folder the count is exact: `Wan2.2-TI2V-5B/google/umt5-xxl/tokenizer.json` is
read with the `tokenizers` library, after the same whitespace cleaning the reference applies
(ftfy, HTML unescape twice, collapse whitespace). `transformers` is not used: importing it
imports torch (measured: `from transformers import AutoTokenizer` loads torch, ~2 s).

Without one the count is an estimate: about 4 characters per SentencePiece token for English
text (tags removed first) plus a fixed cost per tag, plus 1 for the end-of-sequence token.
"""
from __future__ import annotations

import html
import math
import re
from functools import lru_cache
from pathlib import Path

from engine.layout import TOKENIZER_DIR

TEXT_LEN = 512  # umT5 context in Ovi; longer prompts are cut at the end (the caption first)
CHARS_PER_TOKEN = 4
# Estimated pieces per marker: `<`, the name split into sub-words, `>` (`Audio:` is 2-3 pieces).
TAG_TOKENS = {"<S>": 3, "<E>": 3, "<AUDCAP>": 5, "<ENDAUDCAP>": 6, "Audio:": 3}
_MARKERS = re.compile("|".join(re.escape(tag) for tag in TAG_TOKENS))


def clean_whitespace(text: str) -> str:
    """The reference's text cleaning before tokenisation."""
    import ftfy  # only needed with a real tokenizer; keeps `check` start-up lean otherwise
    text = html.unescape(html.unescape(ftfy.fix_text(text)))
    return re.sub(r"\s+", " ", text).strip()


class TokenCounter:
    """Counts tokens of a formatted prompt, including the end-of-sequence token."""
    exact = False
    source = "estimate: ~4 characters per token plus a fixed cost per tag"

    def count(self, text: str) -> int:
        collapsed = re.sub(r"\s+", " ", text).strip()
        tag_cost = sum(TAG_TOKENS[m.group(0)] for m in _MARKERS.finditer(collapsed))
        rest = _MARKERS.sub(" ", collapsed)
        rest = re.sub(r"\s+", " ", rest).strip()
        return math.ceil(len(rest) / CHARS_PER_TOKEN) + tag_cost + 1


class HFTokenizerCounter(TokenCounter):
    exact = True

    def __init__(self, path: Path):
        from tokenizers import Tokenizer
        self._tokenizer = Tokenizer.from_file(str(path))
        self.source = str(path)

    def count(self, text: str) -> int:
        ids = self._tokenizer.encode(clean_whitespace(text), add_special_tokens=True).ids
        # tokenizer.json of T5 appends </s> in its post-processor; count it once either way
        eos = self._tokenizer.token_to_id("</s>")
        return len(ids) + (0 if ids and ids[-1] == eos else 1)


@lru_cache(maxsize=8)
def token_counter(ckpt_dir: str | Path | None) -> TokenCounter:
    """The exact counter when `ckpt_dir` holds the umT5 tokenizer, else the estimate."""
    if ckpt_dir:
        path = Path(ckpt_dir) / TOKENIZER_DIR / "tokenizer.json"
        try:
            if path.is_file():
                return HFTokenizerCounter(path)
        except Exception:  # noqa: BLE001 - an unreadable tokenizer.json: the estimate still works
            pass
    return TokenCounter()
