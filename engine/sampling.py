"""Denoising a shot with the fusion model: noise, timesteps, CFG with skip-layer guidance.

Seed-exact with the reference on the same device kind: noise comes from two generators on the
engine's device seeded alike (bf16 draws, video then audio), both towers follow the same
timestep list with their own scheduler, and every guidance step is the reference's bf16 arithmetic.
Two opt-in speed-ups change that within stated bounds: both guidance scales at 1 skip the
negative branch, and `step_cache` reuses the layers' residual on steps whose inputs barely moved.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import torch

from engine.model import FusionModel, TowerInputs
from engine.offload import LayerStreamer
from engine.schedulers import SOLVERS, make_scheduler
from engine.step_cache import StepCache

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
    cfg_batch: bool = False  # run both CFG branches as one batch of two (same maths, one pass)
    step_cache: float = 0.0  # > 0: skip fusion passes while the inputs change less (engine.step_cache)

    def __post_init__(self):
        if self.solver not in SOLVERS:
            raise ValueError(f"unknown solver {self.solver!r}; choose one of {', '.join(SOLVERS)}")
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.step_cache < 0:
            raise ValueError(f"step_cache must be 0 (off) or a positive threshold, got {self.step_cache}")

    @property
    def guided(self) -> bool:
        """Whether the negative branch counts: with both scales 1, guidance returns the positive
        prediction (up to bf16 rounding), so the negative branch is not computed at all."""
        return not (self.video_guidance == 1 and self.audio_guidance == 1)


@dataclass
class SamplingStats:
    """What a denoising did beyond its result: the steps whose fusion pass the step cache skipped."""
    skipped_steps: list[int] = field(default_factory=list)


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


Branch = tuple[TowerInputs, TowerInputs, int]  # video inputs, audio inputs, layer to skip (<= 0: none)


def branches(model: FusionModel, video: torch.Tensor, audio: torch.Tensor, t: torch.Tensor, *,
             text: torch.Tensor, video_negative: torch.Tensor | None, audio_negative: torch.Tensor | None,
             first_frame_is_clean: bool, slg_layer: int) -> tuple[torch.Tensor, torch.Tensor, list[Branch]]:
    """Embed the latents once: -> (V, A, [positive branch, negative branch]). The branches share
    the embedded latents, time embeddings and rope; they differ only in the text context and in
    the negative branch skipping `slg_layer`. Without negatives, only the positive branch."""
    V, A, video_pos, audio_pos = model.prepare(video, audio, t, text, text, first_frame_is_clean)
    out = [(video_pos, audio_pos, 0)]
    if video_negative is not None:
        out.append((replace(video_pos, context=model.video_model.embed_text(video_negative)),
                    replace(audio_pos, context=model.audio_model.embed_text(audio_negative)), slg_layer))
    return V, A, out


def run_layers(model: FusionModel, V: torch.Tensor, A: torch.Tensor, branch_inputs: list[Branch], *,
               batched: bool = False, streamer: LayerStreamer | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every fusion layer for every branch, layer-outer: -> [(V, A) after the last layer] per branch.

    Running the branches back to back inside one layer loop means a streamed layer is loaded
    once per step for all of them. `batched` runs two branches as one batch of two rows (their
    contexts stacked; one kernel launch per op instead of two)."""
    if batched and len(branch_inputs) == 2:
        return _run_layers_batched(model, V, A, branch_inputs, streamer)
    states = [(V, A)] * len(branch_inputs)
    for i in range(model.num_layers):
        if streamer is not None:
            streamer.before(i)
        states = [(v, a) if skip > 0 and i == skip else model.layer(i, v, a, video_in, audio_in)
                  for (v, a), (video_in, audio_in, skip) in zip(states, branch_inputs)]
        if streamer is not None:
            streamer.after(i)
    return states


def _run_layers_batched(model, V, A, branch_inputs, streamer):
    (video_pos, audio_pos, _), (video_neg, audio_neg, skip) = branch_inputs
    both_video = replace(video_pos, context=torch.cat([video_pos.context, video_neg.context]))
    both_audio = replace(audio_pos, context=torch.cat([audio_pos.context, audio_neg.context]))
    V2, A2 = torch.cat([V, V]), torch.cat([A, A])
    for i in range(model.num_layers):
        if streamer is not None:
            streamer.before(i)
        if skip > 0 and i == skip:  # skip-layer guidance: only the positive row runs this layer
            v, a = model.layer(i, V2[:1], A2[:1], video_pos, audio_pos)
            V2, A2 = torch.cat([v, V2[1:]]), torch.cat([a, A2[1:]])
        else:
            V2, A2 = model.layer(i, V2, A2, both_video, both_audio)
        if streamer is not None:
            streamer.after(i)
    return [(V2[:1], A2[:1]), (V2[1:], A2[1:])]


def cfg_branches(model: FusionModel, video: torch.Tensor, audio: torch.Tensor, t: torch.Tensor, *,
                 text: torch.Tensor, video_negative: torch.Tensor, audio_negative: torch.Tensor,
                 first_frame_is_clean: bool, slg_layer: int, batched: bool = False,
                 streamer: LayerStreamer | None = None):
    """Both CFG branches of one step: -> ((pos_v, pos_a), (neg_v, neg_a)).

    Equal, bit for bit, to `model(..., text, text)` then `model(..., negatives, slg_layer=...)`
    (batched: within bf16 rounding of the batched kernels)."""
    V, A, inputs = branches(model, video, audio, t, text=text, video_negative=video_negative,
                            audio_negative=audio_negative, first_frame_is_clean=first_frame_is_clean,
                            slg_layer=slg_layer)
    (pV, pA), (nV, nA) = run_layers(model, V, A, inputs, batched=batched, streamer=streamer)
    return model.finish(pV, pA, *inputs[0][:2]), model.finish(nV, nA, *inputs[1][:2])


@torch.inference_mode()
def denoise(model: FusionModel, *, settings: SamplerSettings, text: torch.Tensor,
            video_negative: torch.Tensor, audio_negative: torch.Tensor,
            video_shape: tuple[int, int, int, int], audio_shape: tuple[int, int],
            first_frame_latent: torch.Tensor | None = None, device=None,
            callback: Callback | None = None, streamer: LayerStreamer | None = None,
            stats: SamplingStats | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one shot; returns the final (video [C, F, h, w], audio [L, C]) latents in bf16.

    text: positive prompt embedding [n, text_dim] (shared by both towers); video_negative /
    audio_negative: the towers' negative prompt embeddings (unused when `settings.guided` is
    false). first_frame_latent [C, 1, h, w] makes it i2v: that clean latent replaces frame 0
    before every model call and at the end, and its tokens get timestep 0 in the video tower.
    streamer: the block-swapping streamer of `model`, if some of its layers live in CPU memory.
    stats: filled with what the step cache skipped.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    guided = settings.guided
    text = text.to(device, torch.bfloat16)
    if guided:
        video_negative, audio_negative = (c.to(device, torch.bfloat16) for c in (video_negative, audio_negative))
    else:
        video_negative = audio_negative = None
    i2v = first_frame_latent is not None
    if i2v:
        first_frame_latent = first_frame_latent.to(device, torch.bfloat16)
    video_scheduler = make_scheduler(settings.solver, settings.steps, settings.shift, device)
    audio_scheduler = make_scheduler(settings.solver, settings.steps, settings.shift, device)
    video, audio = make_noise(video_shape, audio_shape, settings.seed, device)
    cache = StepCache(settings.step_cache, settings.steps) if settings.step_cache > 0 else None
    total = len(video_scheduler.timesteps)
    for i, t in enumerate(video_scheduler.timesteps):
        if i2v:
            video[:, :1] = first_frame_latent
        V, A, inputs = branches(model, video, audio, torch.full((1,), t, device=device), text=text,
                                video_negative=video_negative, audio_negative=audio_negative,
                                first_frame_is_clean=i2v, slg_layer=settings.slg_layer)
        if cache is not None and cache.can_skip(i, V, A):
            states = cache.reuse(V, A)
            if stats is not None:
                stats.skipped_steps.append(i)
        else:
            states = run_layers(model, V, A, inputs, batched=settings.cfg_batch, streamer=streamer)
            if cache is not None:
                cache.store(V, A, states)
        (pos_v, pos_a), *negative = (model.finish(v, a, video_in, audio_in)
                                     for (v, a), (video_in, audio_in, _) in zip(states, inputs))
        if negative:
            (neg_v, neg_a), = negative
            pos_v, pos_a = guide(pos_v, neg_v, settings.video_guidance), guide(pos_a, neg_a, settings.audio_guidance)
        video = video_scheduler.step(pos_v[None], video[None])[0]
        audio = audio_scheduler.step(pos_a[None], audio[None])[0]
        if callback is not None:
            callback(i + 1, total)
    if i2v:
        video[:, :1] = first_frame_latent
    return video, audio
