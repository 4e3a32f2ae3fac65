"""Tokenization as the reference does it, whatever transformers is installed: ids made by the
reference's tokenizer wrapper under its pinned transformers (tests/golden/make_tokenizer_goldens.py)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import CheckpointError
from engine.tokenizer import TOKENIZER_FILE, Tokenizer, load_tokenizer

GOLDEN = json.loads((Path(__file__).parent / "golden" / "data" / "tokenizer_ids.json").read_text())
FOLDER = Path(__file__).parents[1] / GOLDEN["tokenizer"]
LENGTH = GOLDEN["length"]
TEXT_LEN = 512


def clean(text: str) -> str:
    from engine.text import clean_text
    return clean_text(text)


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer(FOLDER / TOKENIZER_FILE, LENGTH)


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=lambda c: c["text"][:20])
def test_ids_match_the_reference(tokenizer, case):
    (ids,), (mask,) = tokenizer([clean(case["text"])])
    n = case["mask_length"]
    assert ids[:n] == case["ids"] and ids[n:] == [0] * (LENGTH - n)
    assert mask == [1] * n + [0] * (LENGTH - n)


def test_the_golden_tells_a_word_boundary_after_a_special_token_apart(tokenizer):
    """A pipeline that starts a new word after a special token (what newer transformers build
    from their own defaults) fails the golden: the test above can fail."""
    from tokenizers.pre_tokenizers import Metaspace
    other = Tokenizer(FOLDER / TOKENIZER_FILE, LENGTH)
    other._tokenizer.pre_tokenizer = Metaspace(replacement="▁", prepend_scheme="always")
    case = next(c for c in GOLDEN["cases"] if "</s>" in c["text"])
    (ids,), _ = other([clean(case["text"])])
    assert ids[:case["mask_length"]] != case["ids"]


def test_long_text_keeps_its_end_token(tokenizer):
    (ids,), (mask,) = tokenizer(["word " * 2000])
    assert len(ids) == LENGTH and sum(mask) == LENGTH and ids[-1] == 1  # </s>


@pytest.mark.slow
def test_no_transformers_import():
    """The engine tokenizes with `tokenizers` alone (transformers' version cannot matter)."""
    code = ("import sys; from engine.tokenizer import Tokenizer; "
            f"Tokenizer({str(FOLDER / TOKENIZER_FILE)!r}, 8)(['a fox']); "
            "assert 'transformers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_a_missing_or_broken_tokenizer_names_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="tokenizer not found"):
        load_tokenizer(tmp_path, TEXT_LEN)
    broken = tmp_path / "tokenizer.json"
    broken.write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot load the tokenizer") as info:
        Tokenizer(broken, TEXT_LEN)
    assert str(broken) in str(info.value)
