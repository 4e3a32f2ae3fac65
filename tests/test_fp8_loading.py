"""fp8='scaled': a bf16 checkpoint converted at load time, cached on disk, reused on the next
load, and sampling close to bf16."""
from __future__ import annotations

import pytest
import torch

import engine.fp8 as fp8
from engine.checkpoint import load_fusion_model
from engine.fp8 import FP8Linear, relative_error
from engine.sampling import SamplerSettings, denoise

# Measured on the tiny checkpoint (unipc, 3 steps, CPU): 0.057 video, 0.067 audio. It bounds the
# arithmetic on random weights, not the quality on real ones (the GPU benchmark reports that).
LATENT_BOUND = 0.12


@pytest.fixture()
def conversions(monkeypatch):
    calls = []
    real = fp8.quantize_blockwise

    def counting(weight, block=fp8.BLOCK):
        calls.append(weight.shape)
        return real(weight, block)

    monkeypatch.setattr(fp8, "quantize_blockwise", counting)
    return calls


def _load(ckpt, cache, **kw):
    return load_fusion_model(ckpt, "720x720_5s", device=torch.device("cpu"), cache_dir=cache, **kw)[0]


def _latents(model):
    g = torch.Generator().manual_seed(1)
    text, vneg, aneg = (torch.randn(n, 64, generator=g).bfloat16() for n in (6, 2, 3))
    return denoise(model, settings=SamplerSettings(steps=3, slg_layer=2), text=text,
                   video_negative=vneg, audio_negative=aneg, video_shape=(48, 3, 4, 4),
                   audio_shape=(8, 20), device=torch.device("cpu"))


def test_converted_once_cached_and_close_to_bf16(tiny_ckpt, tmp_path, conversions):
    first = _load(tiny_ckpt, tmp_path, fp8="scaled")
    per_load = len(conversions)
    linears = [m for m in first.modules() if isinstance(m, FP8Linear)]
    assert per_load == len(linears) == 2 * 4 * 12  # 2 towers x 4 layers x 12 Linears per block
    assert first.video_model.head.head.weight.dtype == torch.bfloat16  # outside the layers: bf16
    cached = list((tmp_path / "fp8").glob("*.safetensors"))
    assert len(cached) == 1

    second = _load(tiny_ckpt, tmp_path, fp8="scaled")
    assert len(conversions) == per_load, "the cached conversion was not reused"
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert a.dtype == b.dtype and torch.equal(a.float(), b.float()), name

    bf16 = _load(tiny_ckpt, tmp_path)
    ours, reference = _latents(second), _latents(bf16)
    for a, b in zip(ours, reference):
        error = relative_error(a, b)
        assert 0 < error < LATENT_BOUND


def test_published_fp8_only_for_its_variant(tiny_ckpt, tmp_path):
    with pytest.raises(ValueError, match="fp8='scaled' converts any variant"):
        load_fusion_model(tiny_ckpt, "960x960_10s", device=torch.device("cpu"), fp8=True)
    with pytest.raises(ValueError, match="fp8 must be"):
        _load(tiny_ckpt, tmp_path, fp8="e5m2")
