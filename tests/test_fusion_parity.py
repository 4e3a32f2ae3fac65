"""Parity of our fusion DiT and sampler with the reference implementation (goldens made by
tests/golden/make_fusion_goldens.py; see tests/golden/README.md).

On the machine that made the goldens our engine reproduces them bit for bit. Elsewhere CPU
kernels may round differently, so the checks use relative-L2 bounds: a few times the floor of
harmless rounding differences (measured below by computing Linears or attention in fp32), and
far below what real mistakes do (planted below: each must break the parity check).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file

import engine.layers
import engine.model
import engine.sampling
from engine.arch import parse_arch
from engine.checkpoint import load_fusion_model
from engine.math import audio_rope
from engine.model import FusionModel
from engine.sampling import SamplerSettings, denoise
from engine.testing.tiny_checkpoint import TINY_ARCH
from engine.testing.tiny_fusion import state_fingerprint, tiny_fusion_state_dict, write_fusion

GOLDEN = Path(__file__).parent / "golden" / "data" / "fusion_forward.safetensors"
# Harmless rounding (fp32 Linears or fp32 attention) moves forward outputs by <= 0.8 % and
# 4-step samplings by <= 1.7 % relative L2; real mistakes move them by 10 % or more.
FORWARD_TOL = 0.02
SAMPLING_TOL = 0.04
FORWARD_CASES = ("t2v", "i2v", "slg")
SAMPLING_CASES = ("unipc", "dpm++", "euler", "unipc_i2v")


def rel_l2(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return ((ours.float() - ref.float()).norm() / ref.float().norm()).item()


@pytest.fixture(scope="module")
def golden():
    with safe_open(str(GOLDEN), "pt") as f:
        meta = f.metadata()
    return load_file(str(GOLDEN)), meta


@pytest.fixture(scope="module")
def model(golden, tmp_path_factory):
    tensors, meta = golden
    arch = parse_arch(TINY_ARCH)
    seed = int(meta["weight_seed"])
    assert json.loads(meta["arch"]) == {k: TINY_ARCH[k] for k in ("video_dit", "audio_dit")}, \
        "TINY_ARCH changed since the goldens were made: re-run tests/golden/make_fusion_goldens.py"
    assert state_fingerprint(tiny_fusion_state_dict(arch, seed)) == meta["weights_sha256"], \
        "tiny weights changed since the goldens were made: re-run make_fusion_goldens.py"
    root = tmp_path_factory.mktemp("parity")
    (root / "arch.json").write_text(json.dumps(TINY_ARCH))
    write_fusion(root, arch, "720x720_5s", seed)
    return load_fusion_model(root, "720x720_5s", device=torch.device("cpu"), attention="sdpa")[0]


def forward_errors(model, golden, cases=FORWARD_CASES) -> dict[str, float]:
    g, meta = golden
    slg = int(meta["fwd_slg_layer"])
    inputs = {  # video context, audio context, clean first frame, slg layer
        "t2v": (g["in.text"], g["in.text"], False, 0),
        "i2v": (g["in.text"], g["in.text"], True, 0),
        "slg": (g["in.video_negative"], g["in.audio_negative"], False, slg),
    }
    errors = {}
    with torch.inference_mode():
        for name in cases:
            vctx, actx, clean, skip = inputs[name]
            video = g["in.video"].clone()
            if clean:
                video[:, :1] = g["in.first_frame"]
            v, a = model(video, g["in.audio"], g["in.t"], vctx, actx, first_frame_is_clean=clean,
                         slg_layer=skip)
            errors[f"{name}.video"] = rel_l2(v, g[f"fwd.{name}.video"])
            errors[f"{name}.audio"] = rel_l2(a, g[f"fwd.{name}.audio"])
    return errors


def sampling_errors(model, golden, cases=SAMPLING_CASES) -> dict[str, float]:
    g, meta = golden
    s = json.loads(meta["sampling"])
    errors = {}
    for name in cases:
        settings = SamplerSettings(steps=s["steps"], solver=name.split("_")[0], shift=s["shift"],
                                   video_guidance=s["video_guidance"],
                                   audio_guidance=s["audio_guidance"], slg_layer=s["slg_layer"],
                                   seed=s["seed"])
        v, a = denoise(model, settings=settings, text=g["in.text"],
                       video_negative=g["in.video_negative"], audio_negative=g["in.audio_negative"],
                       video_shape=tuple(g["in.video"].shape), audio_shape=tuple(g["in.audio"].shape),
                       first_frame_latent=g["in.first_frame"] if name.endswith("i2v") else None,
                       device=torch.device("cpu"))
        errors[f"{name}.video"] = rel_l2(v, g[f"sample.{name}.video"])
        errors[f"{name}.audio"] = rel_l2(a, g[f"sample.{name}.audio"])
    return errors


def test_forward_matches_reference(model, golden):
    errors = forward_errors(model, golden)
    assert max(errors.values()) < FORWARD_TOL, errors


@pytest.mark.parametrize("case", SAMPLING_CASES)
def test_sampling_matches_reference(model, golden, case):
    errors = sampling_errors(model, golden, [case])
    assert max(errors.values()) < SAMPLING_TOL, errors


# --- the bounds sit above harmless rounding ... ---------------------------------------------------

def _fp32_linear(self, x):
    bias = None if self.bias is None else self.bias.float()
    return F.linear(x.float(), self.weight.float(), bias).bfloat16()


def test_harmless_rounding_stays_within_bounds(model, golden, monkeypatch):
    monkeypatch.setattr(engine.layers.Linear, "forward", _fp32_linear)
    forward = forward_errors(model, golden)
    sampling = sampling_errors(model, golden, ["unipc"])
    assert 0 < max(forward.values()) < FORWARD_TOL / 2, forward
    assert 0 < max(sampling.values()) < SAMPLING_TOL / 2, sampling


# --- ... and below real mistakes: each planted one must fail the parity check -------------------

def _video_block_first(self, i, V, A, video_in, audio_in):
    """Wrong block order: the video half of the layer runs completely before the audio half."""
    vblock, ablock = self.video_model.blocks[i], self.audio_model.blocks[i]
    b = self.attention_backend
    vmod, amod = vblock.modulation(video_in.e0), ablock.modulation(audio_in.e0)
    V = vblock.self_attention(V, vmod, video_in.rope, b)
    V = vblock.cross_attention_ffn(V, vmod, video_in.context, A, video_in.rope, audio_in.rope, b)
    A = ablock.self_attention(A, amod, audio_in.rope, b)
    A = ablock.cross_attention_ffn(A, amod, audio_in.context, V, audio_in.rope, video_in.rope, b)
    return V, A


def _unscaled_audio_rope(length, head_dim, scale, device=None):
    return audio_rope(length, head_dim, 1.0, device)


def _unpadded_text(self, context):
    """Wrong text handling: attend only to the real tokens (masking the padded rows)."""
    return self.text_embedding(context[None])


FORWARD_MISTAKES = {
    "swapped block order": (FusionModel, "layer", _video_block_first),
    "no audio RoPE scaling": (engine.model, "audio_rope", _unscaled_audio_rope),
    "text padding masked": (engine.model.Tower, "embed_text", _unpadded_text),
}


@pytest.mark.parametrize("mistake", FORWARD_MISTAKES)
def test_planted_forward_mistake_fails_parity(model, golden, monkeypatch, mistake):
    monkeypatch.setattr(*FORWARD_MISTAKES[mistake])
    for tower in (model.video_model, model.audio_model):  # RoPE tables are kept per shot
        monkeypatch.setattr(tower, "_rope", None)
    errors = forward_errors(model, golden)
    assert max(errors.values()) > 5 * FORWARD_TOL, errors


def test_ignoring_clean_first_frame_fails_parity(model, golden, monkeypatch):
    forward = FusionModel.forward
    monkeypatch.setattr(FusionModel, "forward",
                        lambda self, *a, first_frame_is_clean=False, **k: forward(self, *a, **k))
    errors = forward_errors(model, golden, ["i2v"])
    assert max(errors.values()) > 5 * FORWARD_TOL, errors


def test_slg_off_fails_parity(model, golden, monkeypatch):
    forward = FusionModel.forward
    monkeypatch.setattr(FusionModel, "forward",
                        lambda self, *a, slg_layer=0, **k: forward(self, *a, **k))
    errors = forward_errors(model, golden, ["slg"])
    assert max(errors.values()) > 5 * FORWARD_TOL, errors


def test_slg_on_the_positive_pass_fails_parity(model, golden, monkeypatch):
    _, meta = golden
    layer = json.loads(meta["sampling"])["slg_layer"]
    assert layer > 0

    real_branches = engine.sampling.branches

    def slg_on_positive(*args, **kwargs):
        V, A, (positive, negative) = real_branches(*args, **kwargs)
        return V, A, [(*positive[:2], negative[2]), (*negative[:2], 0)]

    monkeypatch.setattr(engine.sampling, "branches", slg_on_positive)
    errors = sampling_errors(model, golden, ["unipc"])
    assert max(errors.values()) > 2 * SAMPLING_TOL, errors


def _one_generator_noise(video_shape, audio_shape, seed, device):
    """Wrong seeding: video and audio noise drawn one after the other from a single generator."""
    g = torch.Generator(device=device).manual_seed(seed)
    return (torch.randn(video_shape, generator=g, dtype=torch.bfloat16, device=device),
            torch.randn(audio_shape, generator=g, dtype=torch.bfloat16, device=device))


def test_wrong_noise_seeding_fails_parity(model, golden, monkeypatch):
    monkeypatch.setattr(engine.sampling, "make_noise", _one_generator_noise)
    errors = sampling_errors(model, golden, ["unipc"])
    assert max(errors.values()) > 2 * SAMPLING_TOL, errors


# --- the CUDA autocast emulation the goldens were made with ------------------------------------

def _refenv():
    import importlib.util
    spec = importlib.util.spec_from_file_location("refenv", GOLDEN.parents[1] / "refenv.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_autocast_emulation_knows_this_torch_and_casts_like_cuda():
    refenv = _refenv()
    refenv.check_policy_against_torch()  # every AutocastCUDA kernel of this torch is listed
    x = torch.randn(4, 8, dtype=torch.bfloat16)
    w = torch.randn(3, 8)
    with refenv.cuda_autocast_emulation():
        assert x.pow(2).dtype == torch.bfloat16  # outside any autocast('cuda') region: as written
        with torch.amp.autocast("cuda", dtype=torch.bfloat16):
            assert F.linear(x.float(), w).dtype == torch.bfloat16
            assert x.pow(2).dtype == torch.rsqrt(x).dtype == torch.float32
            assert F.layer_norm(x, (8,)).dtype == torch.float32
            assert x.sum(-1).dtype == torch.float32
            with torch.amp.autocast("cuda", enabled=False):
                assert x.pow(2).dtype == torch.bfloat16
            with torch.amp.autocast("cuda", dtype=torch.float32):
                conv = torch.nn.Conv1d(8, 2, 1).bfloat16()
                assert conv(x.float()[None].transpose(1, 2)).dtype == torch.float32
            # an RMSNorm written as the reference writes it, autocast doing the casts ...
            y = torch.randn(64, 256, dtype=torch.bfloat16)
            scale = torch.rand(256, dtype=torch.bfloat16) + 0.5
            autocast_norm = (y * torch.rsqrt(y.pow(2).mean(dim=-1, keepdim=True) + 1e-6)).type_as(y) * scale
    # ... equals ours, which spells the casts out and needs no autocast
    assert torch.equal(autocast_norm, engine.layers.rms_norm(y, scale, 1e-6))
