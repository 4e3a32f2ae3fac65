"""A whole shot against the reference's own `OviFusionEngine.generate`, end to end: text
encoder and tokenizer, fusion model, sampler, Wan2.2 VAE (i2v encode, decode), MMAudio decoder
and BigVGAN, on the tiny checkpoint with a short clip (tests/golden/make_pipeline_goldens.py).

The 960x960_10s golden runs the same t2v shot at the 10-s model's own clip lengths.

The bounds are calibrated (bench/bench_parity.py, bench/RESULTS.md): harmless changes — Linears
in fp32, one thread instead of two, SDPA's math kernel, today's fp32 RoPE tables — move a
whole shot by at most 0.92 levels on average, 8 at worst, and the waveform by 23 % (the random
vocoder amplifies any change of its input); real mistakes — the audio RoPE without its 0.19676
scaling (10 levels, 86 worst, 56 %), the negative prompts swapped (19 levels, 59 %), SLG off
(42 levels, 68 %) — move it far more. The bounds sit between.
(The modulation kept in fp32 stays inside the harmless spread at this level; the forward
goldens of tests/test_fusion_parity.py catch precision mistakes.)"""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from PIL import Image

from component_goldens import load_golden, rel_error
from engine.networks import Networks
from engine.pipeline import ShotRequest, generate
from engine.sampling import SamplerSettings
from engine.testing.tiny_checkpoint import TEN_SECOND_ARCH, TINY_SHORT_ARCH, write_tiny_checkpoint
from engine.variants import get_variant

# harmless changes: <= 0.92 mean, 8 worst levels, 0.232 waveform rel. L2;
# smallest real mistake measured: 10 mean, 86 worst levels, 0.565 waveform (audio RoPE unscaled)
MEAN_LEVELS, WORST_LEVELS, AUDIO_TOL = 2.0, 16, 0.35


GOLDENS = {  # variant -> (golden file, the tiny checkpoint's arch.json it was made with)
    "720x720_5s": ("pipeline_shots.safetensors", TINY_SHORT_ARCH),
    "960x960_10s": ("pipeline_shots_960x960_10s.safetensors", TEN_SECOND_ARCH),
}


def golden(variant: str):
    name, arch = GOLDENS[variant]
    meta, tensors = load_golden(name, arch=arch)
    return json.loads(meta["shots"]), json.loads(meta["settings"]), tensors


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """variant -> its tiny checkpoint folder (written on first use)."""
    folders = {}

    def get(variant: str):
        if variant not in folders:
            folders[variant] = write_tiny_checkpoint(tmp_path_factory.mktemp(variant) / "ckpts", seed=0,
                                                     arch_json=GOLDENS[variant][1], variants=(variant,))
        return folders[variant]
    return get


def render(ckpt, cache, variant, shots, settings, tensors, name, **changes):
    shot = shots[name]
    sampler = SamplerSettings(**{k: settings[k] for k in ("seed", "solver", "steps", "shift",
                                                          "video_guidance", "audio_guidance", "slg_layer")})
    image = Image.fromarray(tensors["i2v.image"].numpy()) if shot.get("image") else None
    request = ShotRequest(prompt=shot["prompt"], video_negative=settings["video_negative"],
                          audio_negative=settings["audio_negative"], height=shot.get("height") or 0,
                          width=shot.get("width") or 0, first_frame=image, sampler=sampler)
    nets = Networks(ckpt, variant, cache_dir=cache)
    try:
        return generate(nets, dataclasses.replace(request, **changes))
    finally:
        nets.close()


def frame_levels(ours: torch.Tensor, reference: torch.Tensor) -> tuple[float, int]:
    diff = (ours.int() - reference.int()).abs()
    return diff.float().mean().item(), int(diff.max())


@pytest.mark.parametrize("variant,name", [("720x720_5s", "t2v"), ("720x720_5s", "i2v"),
                                          pytest.param("960x960_10s", "t2v", marks=pytest.mark.slow)])
def test_a_whole_shot_matches_the_reference(ckpts, tmp_path, variant, name):
    shots, settings, tensors = golden(variant)
    result = render(ckpts(variant), tmp_path, variant, shots, settings, tensors, name)
    expected_frames, expected_audio = tensors[f"{name}.frames"], tensors[f"{name}.audio"]
    assert result.frames.shape == expected_frames.shape and result.audio.shape == expected_audio.shape
    mean, worst = frame_levels(result.frames, expected_frames)
    assert mean <= MEAN_LEVELS and worst <= WORST_LEVELS, (mean, worst)
    assert rel_error(result.audio, expected_audio) < AUDIO_TOL


def test_the_ten_second_golden_has_the_variants_lengths():
    """The 10-s model's own clip: 61 video latents (241 frames), 314 audio latents (160768
    samples at 16 kHz), its `Audio:` caption format."""
    shots, _, tensors = golden("960x960_10s")
    variant = get_variant("960x960_10s")
    assert tensors["t2v.frames"].shape[0] == variant.frames == 241
    assert tensors["t2v.audio"].shape == (variant.audio_samples,) == (314 * 512,)
    assert "Audio:" in shots["t2v"]["prompt"] and "<AUDCAP>" not in shots["t2v"]["prompt"]


def test_a_wrong_negative_prompt_is_far_outside_the_bounds(ckpts, tmp_path):
    shots, settings, tensors = golden("720x720_5s")
    swapped = render(ckpts("720x720_5s"), tmp_path, "720x720_5s", shots, settings, tensors, "t2v",
                     video_negative=settings["audio_negative"], audio_negative=settings["video_negative"])
    mean, _ = frame_levels(swapped.frames, tensors["t2v.frames"])
    assert mean > 5 * MEAN_LEVELS and rel_error(swapped.audio, tensors["t2v.audio"]) > 1.5 * AUDIO_TOL
