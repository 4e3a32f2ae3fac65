"""The UMT5 text encoder against the reference's outputs (tests/golden/COMPONENTS.md)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from engine.arch import load_arch
from engine.errors import CheckpointError
from engine.layout import T5_WEIGHTS
from component_goldens import load_golden, rel_error
from engine.text import TEXT_LEN, TextEncoder, clean_text, relative_buckets

GOLDEN = Path(__file__).parent / "golden" / "data" / "components_t5.safetensors"
# bf16 embeddings: the CPU run is bit-exact today; allow other CPUs' kernel rounding, not a mistake
REL_TOL = 2e-3


def golden():
    meta, tensors = load_golden("components_t5.safetensors")
    return json.loads(meta["texts"]), tensors


@pytest.fixture(scope="module")
def encoder(tiny_ckpt):
    return TextEncoder(tiny_ckpt, load_arch(tiny_ckpt).t5)


def test_embeddings_match_reference(encoder):
    texts, expected = golden()
    # the reference encodes batches of three; results must not depend on the batching
    got = encoder.encode(texts[:3]) + [encoder.encode([t])[0] for t in texts[3:]]
    for i, embedding in enumerate(got):
        want = expected[f"t5.{i}"]
        assert embedding.dtype == torch.bfloat16
        assert embedding.shape == want.shape, f"text {i}: trimmed length differs"
        assert rel_error(embedding, want) < REL_TOL, f"text {i}"


def test_streamed_blocks_give_the_same_bits(encoder, tiny_ckpt):
    """The low-memory path: every block streams through two slots (wrapping around between
    batches), the token table stays in CPU memory; the embeddings are the same bits."""
    texts, _ = golden()
    streamed = TextEncoder(tiny_ckpt, load_arch(tiny_ckpt).t5, stream=True)
    assert streamed.streamer.plan.streamed == tuple(range(len(streamed.model.blocks)))
    for batch in (texts[:3], texts[3:]):  # the second batch starts from the wrapped-around preload
        for ours, resident in zip(streamed.encode(batch), encoder.encode(batch)):
            assert torch.equal(ours, resident)


def test_long_text_is_truncated_to_512_tokens(encoder):
    texts, _ = golden()
    assert encoder.encode([texts[-1]])[0].shape[0] == TEXT_LEN


def test_a_wrong_weight_mapping_is_detected(tiny_ckpt):
    """The bound is tight enough to see a swapped pair of norms (a plausible key-map slip)."""
    texts, expected = golden()
    encoder = TextEncoder(tiny_ckpt, load_arch(tiny_ckpt).t5)
    block = encoder.model.blocks[0]
    block.norm1.weight, block.norm2.weight = block.norm2.weight, block.norm1.weight
    assert rel_error(encoder.encode([texts[0]])[0], expected["t5.0"]) > 10 * REL_TOL


def test_clean_text_matches_the_reference_cleaning():
    assert clean_text("  a&amp;amp;b \n\t c\u3000d  ") == "a&b c d"
    assert clean_text("caf\u00c3\u00a9") == "caf\u00e9"  # ftfy repairs mojibake


def test_relative_buckets_are_t5_bidirectional():
    buckets = relative_buckets(300, 32, "cpu")
    assert buckets[0, 0] == 0 and buckets[5, 0] == 5 and buckets[0, 5] == 16 + 5  # exact near
    assert buckets[0, 200] == 31 and buckets[200, 0] == 15  # saturate beyond 128


def test_missing_weights_name_the_file_and_its_source(tmp_path):
    with pytest.raises(CheckpointError) as info:
        TextEncoder(tmp_path, load_arch(tmp_path).t5)
    message = str(info.value)
    assert "Wan-AI/Wan2.2-TI2V-5B" in message


def test_wrong_shapes_are_reported(tiny_ckpt, tmp_path):
    import shutil

    shutil.copytree(tiny_ckpt, tmp_path / "ckpt")
    state = torch.load(tmp_path / "ckpt" / T5_WEIGHTS, weights_only=True)
    state["norm.weight"] = state["norm.weight"][:10]
    torch.save(state, tmp_path / "ckpt" / T5_WEIGHTS)
    with pytest.raises(CheckpointError, match=r"norm\.weight is \[10\], expected \[64\]"):
        TextEncoder(tmp_path / "ckpt", load_arch(tmp_path / "ckpt").t5)
