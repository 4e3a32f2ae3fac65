"""Sampler speed modes on a tiny fusion model: the guidance-free path, both CFG branches as one
batch, and the opt-in step cache (bench/bench_sampling.py measures their drift)."""
from __future__ import annotations

import json

import pytest
import torch

from engine.arch import parse_arch
from engine.checkpoint import load_fusion_model
from engine.fp8 import relative_error
from engine.sampling import SamplerSettings, SamplingStats, denoise
from engine.testing.tiny_checkpoint import TINY_ARCH
from engine.testing.tiny_fusion import write_fusion

STEPS = 8


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    (root / "arch.json").write_text(json.dumps(TINY_ARCH))
    write_fusion(root, parse_arch(TINY_ARCH), "720x720_5s", seed=3)
    return load_fusion_model(root, "720x720_5s", device=torch.device("cpu"))[0]


def sample(model, stats=None, **settings):
    g = torch.Generator().manual_seed(0)
    text, vneg, aneg = (torch.randn(n, 64, generator=g).bfloat16() for n in (6, 2, 3))
    return denoise(model, settings=SamplerSettings(**{"steps": STEPS, "slg_layer": 2, **settings}), text=text,
                   video_negative=vneg, audio_negative=aneg, video_shape=(48, 2, 4, 4),
                   audio_shape=(8, 20), device=torch.device("cpu"), stats=stats)


def count_layer_calls(model, monkeypatch) -> list[int]:
    calls = []
    real = model.layer
    monkeypatch.setattr(model, "layer", lambda i, *a: calls.append(i) or real(i, *a))
    return calls


def test_guidance_free_computes_only_the_positive_branch(tiny, monkeypatch):
    with monkeypatch.context() as forced:  # what the reference does: both branches, then guide
        forced.setattr(SamplerSettings, "guided", property(lambda self: True))
        full = sample(tiny, video_guidance=1.0, audio_guidance=1.0)
    calls = count_layer_calls(tiny, monkeypatch)
    free = sample(tiny, video_guidance=1.0, audio_guidance=1.0)
    assert len(calls) == STEPS * tiny.num_layers  # one pass per step, not two
    for ours, both in zip(free, full):  # neg + 1 * (pos - neg) is pos up to bf16 rounding
        assert relative_error(ours.float(), both.float()) < 1e-2
    assert SamplerSettings(video_guidance=1.0, audio_guidance=3.0).guided  # one scale is enough


def test_both_branches_as_one_batch_match_two_passes(tiny):
    two, one = sample(tiny), sample(tiny, cfg_batch=True)
    for a, b in zip(one, two):
        assert relative_error(a.float(), b.float()) < 1e-2
    # the batched negative branch still skips its SLG layer: without SLG the result moves more
    no_slg = sample(tiny, cfg_batch=True, slg_layer=-1)
    assert relative_error(no_slg[0].float(), two[0].float()) > 10 * relative_error(one[0].float(), two[0].float())


def test_step_cache_off_is_the_default_and_bit_identical(tiny):
    base = sample(tiny)
    stats = SamplingStats()
    again = sample(tiny, stats=stats, step_cache=0.0)
    assert torch.equal(base[0], again[0]) and stats.skipped_steps == []
    assert SamplerSettings().step_cache == 0


def test_step_cache_skips_passes_and_records_them(tiny, monkeypatch):
    base = sample(tiny)
    calls = count_layer_calls(tiny, monkeypatch)
    stats = SamplingStats()
    cached = sample(tiny, stats=stats, step_cache=0.5)
    skipped = stats.skipped_steps
    assert skipped and 0 not in skipped and STEPS - 1 not in skipped  # first and last always run
    assert len(calls) == (STEPS - len(skipped)) * (2 * tiny.num_layers - 1)  # SLG skips one layer
    assert 0 < relative_error(cached[0].float(), base[0].float()) < 0.5
    everything = SamplingStats()
    sample(tiny, stats=everything, step_cache=1e9)
    assert everything.skipped_steps == list(range(1, STEPS - 1))


def test_step_cache_threshold_is_validated():
    with pytest.raises(ValueError, match="step_cache"):
        SamplerSettings(step_cache=-0.1)
