"""Denoising a shot with the fusion model: noise, timesteps, CFG with skip-layer guidance.

Seed-exact with the reference on the same device kind: noise comes from two generators on the
engine's device seeded alike (bf16 draws, video then audio), both towers follow the same
timestep list with their own scheduler, and every guidance step is the reference's bf16 arithmetic.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch

from engine.model import FusionModel
from engine.offload import LayerStreamer
from engine.schedulers import SOLVERS, make_scheduler

Callback = Callable[[int, int], None]  # (steps done, total); raising stops the denoising


@dataclass(frozen=True)
class SamplerSettings:
    """Defaults are the reference's inference yaml."""
    steps: int = 50
    solver: str = "unipc"
    shift: float = 5.0
    video_guidance: float = 4.0
    audio_guidance: float = 3.0
    slg_layer: int = 11  # fusion layer skipped in the negative branch; <= 0 disables
    seed: int = 103

    def __post_init__(self):
        if self.solver not in SOLVERS:
            raise ValueError(f"unknown solver {self.solver!r}; choose one of {', '.join(SOLVERS)}")
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")


def make_noise(video_shape, audio_shape, seed: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Initial latents: bf16 randn from two generators on `device`, both seeded with `seed`.

    A CUDA generator (Philox) and a CPU generator give different numbers for the same seed, so
    seeds reproduce the reference per device kind.
    """
    device = torch.device(device)
    video = torch.randn(tuple(video_shape), device=device, dtype=torch.bfloat16,
                        generator=torch.Generator(device=device).manual_seed(seed))
    audio = torch.randn(tuple(audio_shape), device=device, dtype=torch.bfloat16,
                        generator=torch.Generator(device=device).manual_seed(seed))
    return video, audio


def timesteps(settings: SamplerSettings, device="cpu") -> torch.Tensor:
    """The model timesteps of a generation (int64 for unipc/dpm++, float32 for euler)."""
    return make_scheduler(settings.solver, settings.steps, settings.shift, device).timesteps


def guide(positive: torch.Tensor, negative: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance in the tensors' dtype (bf16): neg + scale * (pos - neg)."""
    return negative + scale * (positive - negative)


def cfg_branches(model: FusionModel, video: torch.Tensor, audio: torch.Tensor, t: torch.Tensor, *,
                 text: torch.Tensor, video_negative: torch.Tensor, audio_negative: torch.Tensor,
                 first_frame_is_clean: bool, slg_layer: int,
                 streamer: LayerStreamer | None = None):
    """Both CFG branches of one step, layer-outer: -> ((pos_v, pos_a), (neg_v, neg_a)).

    Equal, bit for bit, to `model(..., text, text)` then `model(..., negatives, slg_layer=...)`:
    the branches share the embedded latents, time embeddings and rope (they differ only in the
    text context) and each branch runs the same layers in the same order. Running them back to
    back inside one layer loop means a streamed layer is loaded once per step for both.
    The negative branch skips `slg_layer` when it is > 0.
    """
    V, A, video_pos, audio_pos = model.prepare(video, audio, t, text, text, first_frame_is_clean)
    video_neg = replace(video_pos, context=model.video_model.embed_text(video_negative))
    audio_neg = replace(audio_pos, context=model.audio_model.embed_text(audio_negative))
    nV, nA = V, A
    for i in range(model.num_layers):
        if streamer is not None:
            streamer.before(i)
        V, A = model.layer(i, V, A, video_pos, audio_pos)
        if not (slg_layer > 0 and i == slg_layer):
            nV, nA = model.layer(i, nV, nA, video_neg, audio_neg)
        if streamer is not None:
            streamer.after(i)
    return model.finish(V, A, video_pos, audio_pos), model.finish(nV, nA, video_neg, audio_neg)


@torch.inference_mode()
def denoise(model: FusionModel, *, settings: SamplerSettings, text: torch.Tensor,
            video_negative: torch.Tensor, audio_negative: torch.Tensor,
            video_shape: tuple[int, int, int, int], audio_shape: tuple[int, int],
            first_frame_latent: torch.Tensor | None = None, device=None,
            callback: Callback | None = None,
            streamer: LayerStreamer | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one shot; returns the final (video [C, F, h, w], audio [L, C]) latents in bf16.

    text: positive prompt embedding [n, text_dim] (shared by both towers); video_negative /
    audio_negative: the towers' negative prompt embeddings. first_frame_latent [C, 1, h, w]
    makes it i2v: that clean latent replaces frame 0 before every model call and at the end, and
    its tokens get timestep 0 in the video tower. streamer: the block-swapping streamer of
    `model`, if some of its layers live in CPU memory.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    text, video_negative, audio_negative = (c.to(device, torch.bfloat16)
                                            for c in (text, video_negative, audio_negative))
    i2v = first_frame_latent is not None
    if i2v:
        first_frame_latent = first_frame_latent.to(device, torch.bfloat16)
    video_scheduler = make_scheduler(settings.solver, settings.steps, settings.shift, device)
    audio_scheduler = make_scheduler(settings.solver, settings.steps, settings.shift, device)
    video, audio = make_noise(video_shape, audio_shape, settings.seed, device)
    total = len(video_scheduler.timesteps)
    for i, t in enumerate(video_scheduler.timesteps):
        if i2v:
            video[:, :1] = first_frame_latent
        t_in = torch.full((1,), t, device=device)
        (pos_v, pos_a), (neg_v, neg_a) = cfg_branches(
            model, video, audio, t_in, text=text, video_negative=video_negative,
            audio_negative=audio_negative, first_frame_is_clean=i2v,
            slg_layer=settings.slg_layer, streamer=streamer)
        video = video_scheduler.step(guide(pos_v, neg_v, settings.video_guidance)[None], video[None])[0]
        audio = audio_scheduler.step(guide(pos_a, neg_a, settings.audio_guidance)[None], audio[None])[0]
        if callback is not None:
            callback(i + 1, total)
    if i2v:
        video[:, :1] = first_frame_latent
    return video, audio

