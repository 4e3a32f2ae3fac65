"""A documented GPU-time estimate for one take.

Model: count the dense FLOPs of the fusion DiT's denoising loop and divide by an assumed
sustained throughput, then add a fixed per-take overhead for everything outside the loop.

Per fusion layer and forward (2 FLOPs per multiply-add; L_v video tokens, L_a audio tokens,
T = 512 text tokens, d = 3072, f = 14336):

  video tower: self-attention projections 8·L_v·d², self-attention core 4·L_v²·d,
               cross-attention q+o 4·L_v·d², text k,v 4·T·d², text attention 4·L_v·T·d,
               fusion k,v over the audio tokens 4·L_a·d², fusion attention 4·L_v·L_a·d,
               FFN 4·L_v·d·f
  audio tower: the same with L_a, except that its fusion k,v are projected over the video
               tokens (4·L_v·d²) and its fusion attention is 4·L_a·L_v·d

One sampling step runs the conditional pass through all 30 layers and the unconditional pass
through 29 (skip-layer guidance drops one), so a step costs 59 layer-forwards.

Throughput: 40 % of the H100/H200 dense bf16 peak of 989 TFLOP/s (measured Ovi runs reach
23–32 %; a tuned engine should do better). Overhead: 10 s per take for the T5 encoder, the
first-frame VAE encode, the video VAE decode and the audio decode (the anchors' 8–10 s).

A 720x720_5s take at 50 steps comes to ~23.3 PFLOP → 59 s + 10 s ≈ 69 s.
"""
from __future__ import annotations

from engine.variants import Variant, snap_t2v_size, video_tokens

D_MODEL = 3072
D_FFN = 14336
TEXT_TOKENS = 512
LAYERS_PER_STEP = 30 + 29  # conditional + unconditional (one layer skipped by SLG)
PEAK_FLOPS = 989e12  # H100/H200 SXM dense bf16
SUSTAINED_FRACTION = 0.40
SUSTAINED_FLOPS = PEAK_FLOPS * SUSTAINED_FRACTION
FIXED_OVERHEAD_S = 10.0


def tower_layer_flops(own: int, other: int) -> float:
    """FLOPs of one tower's layer: `own` tokens attending to themselves, the text and the
    `other` tower's tokens (whose k,v this tower projects)."""
    d, f, t = D_MODEL, D_FFN, TEXT_TOKENS
    return (8 * own * d * d + 4 * own * own * d          # self-attention
            + 4 * own * d * d + 4 * t * d * d + 4 * own * t * d  # text cross-attention
            + 4 * other * d * d + 4 * own * other * d    # fusion cross-attention
            + 4 * own * d * f)                           # FFN


def layer_flops(video: int, audio: int) -> float:
    return tower_layer_flops(video, audio) + tower_layer_flops(audio, video)


def denoise_flops(video: int, audio: int, steps: int) -> float:
    return layer_flops(video, audio) * LAYERS_PER_STEP * steps


def take_seconds(height: int, width: int, variant: Variant, steps: int) -> float:
    """Estimated GPU seconds for one take at a snapped (height, width)."""
    flops = denoise_flops(video_tokens(height, width, variant), variant.audio_latent_length, steps)
    return flops / SUSTAINED_FLOPS + FIXED_OVERHEAD_S


def estimate_seconds(shot, variant: Variant, size: tuple[int, int] | None = None) -> float:
    """GPU seconds for all takes of a resolved shot. `size` is the snapped (height, width) the
    plan chose; without it the t2v snap of the requested size is assumed."""
    if size is None:
        size = snap_t2v_size(*shot.settings.requested_size(variant), variant.video_area)
    return take_seconds(size[0], size[1], variant, shot.settings.steps) * shot.takes
