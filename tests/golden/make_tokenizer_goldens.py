"""Token ids of the reference's tokenizer for prompts whose splitting depends on the library.

    pip install --target /tmp/tf451 --no-deps transformers==4.51.3 tokenizers==0.21.1 \
        huggingface-hub==0.30.2 "protobuf<6"
    PYTHONPATH=/tmp/tf451 .venv/bin/python tests/golden/make_tokenizer_goldens.py --reference /work/ovi-ref

The reference tokenizes with its `HuggingfaceTokenizer(seq_len=512, clean='whitespace')`
(ovi/modules/tokenizers.py) over transformers' `AutoTokenizer`, and pins transformers to
4.49-4.51; the command above runs it with the newest of those, installed into a scratch folder
ahead of the project's own transformers. The tokenizer is the test folder
(engine/testing/data/tokenizer). Stored per prompt: the ids and the mask length, padding cut
off (the rest of the 512 is <pad> with mask 0).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

from provenance import provenance  # noqa: E402

TOKENIZER = REPO / "engine" / "testing" / "data" / "tokenizer"
OUT = HERE / "data" / "tokenizer_ids.json"
PROMPTS = [
    # the first word: whether the tokenizer puts a word boundary before it
    "Lighthouse keeper climbs the stairs.",
    # Ovi's own tags are plain text to the tokenizer
    "A fox in the snow. <S>We made it home.<E> <AUDCAP>wind howling<ENDAUDCAP>",
    # a word right after a special token the tokenizer knows: newer transformers put a word
    # boundary after it, the reference (and the file's pre-tokenizer) does not
    "Storm's coming </s>again <pad>word <unk>here",
    "  Leading spaces,\ttabs\nand newlines  collapse. &amp; &lt;S&gt;",
]


def reference_tokenizer(reference: Path):
    """The reference's tokenizer wrapper, imported from its file (it needs only transformers)."""
    spec = importlib.util.spec_from_file_location("ref_tokenizers", reference / "ovi" / "modules" / "tokenizers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.HuggingfaceTokenizer(name=str(TOKENIZER), seq_len=512, clean="whitespace")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, default=Path("/work/ovi-ref"))
    args = parser.parse_args()
    tokenizer = reference_tokenizer(args.reference)
    ids, mask = tokenizer(PROMPTS, return_mask=True)
    cases = [{"text": text, "ids": row[: int(m.sum())].tolist(), "mask_length": int(m.sum())}
             for text, row, m in zip(PROMPTS, ids, mask)]
    header = json.dumps({
        "provenance": provenance(args.reference, ("transformers", "tokenizers", "ftfy", "regex")),
        "tokenizer": str(TOKENIZER.relative_to(REPO)), "length": 512,
        "tokenizer_class": type(tokenizer.tokenizer).__name__}, indent=1)
    rows = ",\n  ".join(json.dumps(case, ensure_ascii=False) for case in cases)  # one line per prompt
    OUT.write_text(header[:-2] + f',\n "cases": [\n  {rows}\n ]\n}}\n', encoding="utf-8")
    print(f"wrote {OUT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
