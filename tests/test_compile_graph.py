"""The fusion layer is one graph for torch.compile: no graph break inside it, and one captured
graph serves every layer of a step (eager backend: graph capture only, no code generation)."""
from __future__ import annotations

import json

import pytest
import torch

from engine.arch import parse_arch
from engine.checkpoint import load_fusion_model
from engine.model import fusion_layer
from engine.testing.tiny_checkpoint import TINY_ARCH
from engine.testing.tiny_fusion import write_fusion


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    (root / "arch.json").write_text(json.dumps(TINY_ARCH))
    write_fusion(root, parse_arch(TINY_ARCH), "720x720_5s", seed=3)
    return load_fusion_model(root, "720x720_5s", device=torch.device("cpu"))[0]


def inputs(clean: bool):
    g = torch.Generator().manual_seed(0)
    video, audio = torch.randn(48, 3, 4, 4, generator=g).bfloat16(), torch.randn(12, 20, generator=g).bfloat16()
    text = torch.randn(6, 64, generator=g).bfloat16()
    return video, audio, torch.tensor([500]), text, text, clean


@pytest.mark.slow
@pytest.mark.parametrize("clean", [False, True], ids=["t2v", "i2v"])
def test_a_fusion_layer_has_no_graph_break(tiny, clean):
    torch._dynamo.reset()
    with torch.inference_mode():
        V, A, video_in, audio_in = tiny.prepare(*inputs(clean))
        explained = torch._dynamo.explain(fusion_layer)(tiny.video_model.blocks[0], tiny.audio_model.blocks[0],
                                                      V, A, video_in, audio_in, tiny.attention_backend)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


def test_one_graph_serves_every_layer(tiny):
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    counters.clear()
    with torch.inference_mode():
        eager = tiny(*inputs(False)[:5])
        tiny.compile_layers(backend="eager")
        try:
            compiled = tiny(*inputs(False)[:5])
            again = tiny(*inputs(False)[:5])
        finally:
            tiny._fusion_layer = fusion_layer
    assert tiny.num_layers > 1 and counters["stats"]["unique_graphs"] == 1
    assert all(torch.equal(a, b) for a, b in zip(eager, compiled)) and torch.equal(again[0], compiled[0])
