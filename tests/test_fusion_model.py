"""The fusion model's structure (full size, on the meta device) and its driver-facing API."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from engine.arch import AUDIO_DIT, VIDEO_DIT, parse_arch
from engine.checkpoint import load_fusion_model
from engine.attention import available_attention_backends, resolve_attention_backend
from engine.model import FusionModel
from engine.sampling import SamplerSettings, denoise, guide
from engine.testing.tiny_checkpoint import TINY_ARCH
from engine.testing.tiny_fusion import write_fusion


@pytest.fixture(scope="module")
def full_size():
    with torch.device("meta"):
        return FusionModel(VIDEO_DIT, AUDIO_DIT)


def test_full_size_has_the_reference_keys_and_parameter_count(full_size):
    state = full_size.state_dict()
    assert len(state) == 2073
    assert sum(p.numel() for p in full_size.parameters()) == 11_660_753_108
    assert list(full_size.buffers()) == []  # RoPE tables are computed, not stored


# non-block keys of both towers and the 34 keys of one block.
VIDEO_TOP = {
    "patch_embedding.weight": [3072, 48, 1, 2, 2], "patch_embedding.bias": [3072],
    "head.head.weight": [192, 3072], "head.head.bias": [192],
}
AUDIO_TOP = {
    "patch_embedding.0.weight": [3072, 20, 7], "patch_embedding.0.bias": [3072],
    "patch_embedding.2.w1.weight": [8192, 3072, 7], "patch_embedding.2.w2.weight": [3072, 8192, 7],
    "patch_embedding.2.w3.weight": [8192, 3072, 7],
    "head.head.weight": [20, 3072], "head.head.bias": [20],
}
SHARED_TOP = {
    "text_embedding.0.weight": [3072, 4096], "text_embedding.0.bias": [3072],
    "text_embedding.2.weight": [3072, 3072], "text_embedding.2.bias": [3072],
    "time_embedding.0.weight": [3072, 256], "time_embedding.0.bias": [3072],
    "time_embedding.2.weight": [3072, 3072], "time_embedding.2.bias": [3072],
    "time_projection.1.weight": [18432, 3072], "time_projection.1.bias": [18432],
    "head.modulation": [1, 2, 3072],
}
BLOCK = {
    **{f"{attn}.{p}.weight": [3072, 3072] for attn in ("self_attn", "cross_attn") for p in "qkvo"},
    **{f"{attn}.{p}.bias": [3072] for attn in ("self_attn", "cross_attn") for p in "qkvo"},
    **{f"{attn}.{n}.weight": [3072] for attn in ("self_attn", "cross_attn") for n in ("norm_q", "norm_k")},
    "norm3.weight": [3072], "norm3.bias": [3072],
    "cross_attn.k_fusion.weight": [3072, 3072], "cross_attn.k_fusion.bias": [3072],
    "cross_attn.v_fusion.weight": [3072, 3072], "cross_attn.v_fusion.bias": [3072],
    "cross_attn.pre_attn_norm_fusion.weight": [3072], "cross_attn.pre_attn_norm_fusion.bias": [3072],
    "cross_attn.norm_k_fusion.weight": [3072],
    "ffn.0.weight": [14336, 3072], "ffn.0.bias": [14336],
    "ffn.2.weight": [3072, 14336], "ffn.2.bias": [3072],
    "modulation.modulation": [1, 6, 3072],
}


def test_full_size_key_names_and_shapes(full_size):
    shapes = {k: list(v.shape) for k, v in full_size.state_dict().items()}
    assert len(BLOCK) == 34
    expected = {}
    for tower, top in (("video_model", VIDEO_TOP), ("audio_model", AUDIO_TOP)):
        expected.update({f"{tower}.{k}": v for k, v in {**top, **SHARED_TOP}.items()})
        for i in range(30):
            expected.update({f"{tower}.blocks.{i}.{k}": v for k, v in BLOCK.items()})
    assert shapes == expected


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    (root / "arch.json").write_text(json.dumps(TINY_ARCH))
    write_fusion(root, parse_arch(TINY_ARCH), "720x720_5s", seed=3)
    return root


@pytest.fixture(scope="module")
def tiny(tiny_root):
    return load_fusion_model(tiny_root, "720x720_5s", device=torch.device("cpu"))[0]


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g).bfloat16()  # noqa: E731
    return r(48, 3, 4, 4), r(12, 20), torch.tensor([500]), r(6, 64), r(2, 64), r(3, 64)


def test_forward_shapes_and_dtypes(tiny):
    video, audio, t, text, _, _ = _inputs()
    with torch.inference_mode():
        v, a = tiny(video, audio, t, text, text)
    assert v.shape == video.shape and a.shape == audio.shape
    assert v.dtype == a.dtype == torch.bfloat16


def test_layer_by_layer_driver_reproduces_forward_and_cfg(tiny):
    """A driver running both CFG branches inside one layer loop gets the forward's numbers."""
    video, audio, t, text, vneg, aneg = _inputs()
    with torch.inference_mode():
        pos = tiny(video, audio, t, text, text)
        neg = tiny(video, audio, t, vneg, aneg, slg_layer=2)
        V, A, vin, ain = tiny.prepare(video, audio, t, text, text)
        nvin = dataclasses.replace(vin, context=tiny.video_model.embed_text(vneg))
        nain = dataclasses.replace(ain, context=tiny.audio_model.embed_text(aneg))
        branches = [(V, A, vin, ain), (V, A, nvin, nain)]
        for i in range(tiny.num_layers):
            branches[0] = (*tiny.layer(i, *branches[0]), vin, ain)
            if i != 2:
                branches[1] = (*tiny.layer(i, *branches[1]), nvin, nain)
        outs = [tiny.finish(*b) for b in branches]
    for ours, ref in zip(outs, (pos, neg)):
        assert torch.equal(ours[0], ref[0]) and torch.equal(ours[1], ref[1])
    assert not torch.equal(guide(pos[0], neg[0], 4.0), pos[0])


def test_attention_backend_choice():
    cpu = torch.device("cpu")
    assert available_attention_backends(cpu) == ["sdpa"]
    assert resolve_attention_backend("auto", cpu) == "sdpa"
    with pytest.raises(ValueError, match="not available"):
        resolve_attention_backend("flash3", cpu)
    with pytest.raises(ValueError, match="unknown attention backend"):
        resolve_attention_backend("xformers", cpu)


def test_denoise_reports_progress_and_can_be_cancelled(tiny):
    _, _, _, text, vneg, aneg = _inputs()
    seen = []
    settings = SamplerSettings(steps=3, slg_layer=2)
    kwargs = dict(settings=settings, text=text, video_negative=vneg, audio_negative=aneg,
                  video_shape=(48, 2, 4, 4), audio_shape=(8, 20), device=torch.device("cpu"))
    v, a = denoise(tiny, callback=lambda step, total: seen.append((step, total)), **kwargs)
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert v.shape == (48, 2, 4, 4) and a.shape == (8, 20) and torch.isfinite(v.float()).all()

    class Cancelled(Exception):
        pass

    def cancel(step, total):
        raise Cancelled

    with pytest.raises(Cancelled):
        denoise(tiny, callback=cancel, **kwargs)


def test_i2v_keeps_the_clean_first_frame(tiny):
    _, _, _, text, vneg, aneg = _inputs()
    first = torch.randn(48, 1, 4, 4).bfloat16()
    v, _ = denoise(tiny, settings=SamplerSettings(steps=2, slg_layer=2), text=text,
                   video_negative=vneg, audio_negative=aneg, video_shape=(48, 2, 4, 4),
                   audio_shape=(8, 20), first_frame_latent=first, device=torch.device("cpu"))
    assert torch.equal(v[:, :1], first)


def test_too_long_text_is_a_clear_error(tiny):
    video, audio, t, _, _, _ = _inputs()
    with pytest.raises(ValueError, match="at most 512"):
        tiny(video, audio, t, torch.zeros(513, 64), torch.zeros(3, 64))


@pytest.mark.gpu
def test_cuda_forward_agrees_with_cpu(tiny, tiny_root):
    """Same weights on CUDA (best attention backend) and CPU: equal up to kernel rounding."""
    cuda = torch.device("cuda")
    gpu, _ = load_fusion_model(tiny_root, "720x720_5s", device=cuda)
    video, audio, t, text, vneg, aneg = _inputs()
    with torch.inference_mode():
        ref = tiny(video, audio, t, vneg, aneg, slg_layer=2)
        out = gpu(video.to(cuda), audio.to(cuda), t.to(cuda), vneg.to(cuda), aneg.to(cuda), slg_layer=2)
    for o, r in zip(out, ref):
        assert ((o.cpu().float() - r.float()).norm() / r.float().norm()).item() < 0.02


def test_rope_in_chunks_gives_the_same_bits(tiny, monkeypatch):
    """RoPE runs ROPE_CHUNK tokens at a time to bound its float64 temporaries; the tiny shots
    fit one chunk, so force several (including a ragged last one) and compare."""
    import engine.math
    video, audio, t, text, vneg, aneg = _inputs()
    with torch.inference_mode():
        whole = tiny(video, audio, t, vneg, aneg)
        monkeypatch.setattr(engine.math, "ROPE_CHUNK", 5)  # 48 video and 12 audio tokens
        chunked = tiny(video, audio, t, vneg, aneg)
    assert torch.equal(whole[0], chunked[0]) and torch.equal(whole[1], chunked[1])
