"""The umT5 tokenizer, read from the checkpoint's `tokenizer.json` with the `tokenizers` library.

The reference tokenizes with transformers' fast T5 tokenizer (`AutoTokenizer` over the same
folder, transformers 4.49-4.51), which runs exactly this file's pipeline: the normalizer,
Metaspace pre-tokenizer, unigram model and `$A </s>` post-processor as the file describes them,
truncation to 512 tokens with the EOS kept, right padding with `<pad>`. Reading the file
ourselves keeps that behaviour whatever transformers version is installed: newer majors rebuild
a T5 tokenizer's pipeline from their own defaults instead of the file's, which changes how the
first word and a word after a special token are split (tests/test_tokenizer.py checks ids made
by the reference's transformers).
"""
from __future__ import annotations

from pathlib import Path

from engine.errors import CheckpointError
from engine.layout import TOKENIZER_DIR
from engine.pth_weights import download_hint

TOKENIZER_FILE = "tokenizer.json"
PAD_TOKEN = "<pad>"


class Tokenizer:
    """texts -> (ids, attention mask), each a list of `length` ints per text."""

    def __init__(self, path: str | Path, length: int):
        from tokenizers import Tokenizer as RustTokenizer  # only needed once a text is encoded
        self.path = Path(path)
        try:
            self._tokenizer = RustTokenizer.from_file(str(self.path))
        except Exception as exc:  # noqa: BLE001 - any unreadable file: say which one
            raise CheckpointError(self.path, f"cannot load the tokenizer ({exc})",
                                  "download the tokenizer folder again") from None
        pad_id = self._tokenizer.token_to_id(PAD_TOKEN)
        if pad_id is None:
            raise CheckpointError(self.path, f"the tokenizer has no {PAD_TOKEN} token",
                                  "this is not a T5 tokenizer; download the tokenizer folder again")
        self._tokenizer.enable_truncation(max_length=length)
        self._tokenizer.enable_padding(length=length, pad_id=pad_id, pad_token=PAD_TOKEN)

    def __call__(self, texts: list[str]) -> tuple[list[list[int]], list[list[int]]]:
        encodings = self._tokenizer.encode_batch(texts, add_special_tokens=True)
        return [e.ids for e in encodings], [e.attention_mask for e in encodings]


def load_tokenizer(ckpt_dir: str | Path, length: int) -> Tokenizer:
    """The tokenizer of a checkpoint folder, padding and truncating to `length` tokens."""
    root = Path(ckpt_dir)
    path = root / TOKENIZER_DIR / TOKENIZER_FILE
    if not path.is_file():
        raise CheckpointError(path, "tokenizer not found", download_hint(root, TOKENIZER_DIR + "/*"))
    return Tokenizer(path, length)
