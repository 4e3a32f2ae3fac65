"""A whole shot against the reference's own `OviFusionEngine.generate`, end to end: text
encoder and tokenizer, fusion model, sampler, Wan2.2 VAE (i2v encode, decode), MMAudio decoder
and BigVGAN, on the tiny checkpoint with a short clip (tests/golden/make_pipeline_goldens.py).

On the CPU the goldens were made on, frames and waveform are the same bits. The bounds leave
room for other CPUs' kernels: every frame within a few levels, the waveform within 5 % (the
random vocoder amplifies one-ulp mel changes, COMPONENTS.md). A real mistake — a negative
prompt on the wrong tower, no SLG, the first frame not re-injected — moves both far more."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from component_goldens import load_golden, rel_error
import dataclasses

from engine.networks import Networks
from engine.pipeline import ShotRequest, generate
from engine.sampling import SamplerSettings
from engine.testing.tiny_checkpoint import TINY_SHORT_ARCH

MEAN_LEVELS, WORST_LEVELS, AUDIO_TOL = 0.5, 8, 0.05


@pytest.fixture(scope="module")
def golden():
    meta, tensors = load_golden("pipeline_shots.safetensors", arch=TINY_SHORT_ARCH)
    return json.loads(meta["shots"]), json.loads(meta["settings"]), tensors


def render(ckpt, cache, shots, settings, tensors, name, **changes):
    shot = shots[name]
    sampler = SamplerSettings(**{k: settings[k] for k in ("seed", "solver", "steps", "shift",
                                                          "video_guidance", "audio_guidance", "slg_layer")})
    image = Image.fromarray(tensors["i2v.image"].numpy()) if shot.get("image") else None
    request = ShotRequest(prompt=shot["prompt"], video_negative=settings["video_negative"],
                          audio_negative=settings["audio_negative"], height=shot.get("height") or 0,
                          width=shot.get("width") or 0, first_frame=image, sampler=sampler)
    nets = Networks(ckpt, "720x720_5s", cache_dir=cache)
    try:
        return generate(nets, dataclasses.replace(request, **changes))
    finally:
        nets.close()


def frame_levels(ours: torch.Tensor, reference: torch.Tensor) -> tuple[float, int]:
    diff = (ours.int() - reference.int()).abs()
    return diff.float().mean().item(), int(diff.max())


@pytest.mark.parametrize("name", ["t2v", "i2v"])
def test_a_whole_shot_matches_the_reference(tiny_ckpt_short, tmp_path, golden, name):
    shots, settings, tensors = golden
    result = render(tiny_ckpt_short, tmp_path, shots, settings, tensors, name)
    expected_frames, expected_audio = tensors[f"{name}.frames"], tensors[f"{name}.audio"]
    assert result.frames.shape == expected_frames.shape and result.audio.shape == expected_audio.shape
    mean, worst = frame_levels(result.frames, expected_frames)
    assert mean <= MEAN_LEVELS and worst <= WORST_LEVELS, (mean, worst)
    assert rel_error(result.audio, expected_audio) < AUDIO_TOL


def test_a_wrong_negative_prompt_is_far_outside_the_bounds(tiny_ckpt_short, tmp_path, golden):
    shots, settings, tensors = golden
    swapped = render(tiny_ckpt_short, tmp_path, shots, settings, tensors, "t2v",
                     video_negative=settings["audio_negative"], audio_negative=settings["video_negative"])
    mean, _ = frame_levels(swapped.frames, tensors["t2v.frames"])
    assert mean > 10 * MEAN_LEVELS and rel_error(swapped.audio, tensors["t2v.audio"]) > 4 * AUDIO_TOL
