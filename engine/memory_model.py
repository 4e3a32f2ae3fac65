"""How many bytes a shot needs on the device: arithmetic over the architecture, nothing allocated.

Parameter counts come from building each network on the meta device (shapes only, no memory),
so the model cannot drift from the code. `doctor` suggests a preset from it, `auto` swapping
sizes the streamed layers with it, and tests check it bounds what the code really holds.
The pipeline's phases never overlap, so the peak is the largest of:
- text encoding: the UMT5 encoder whole, or — when that would not fit — its blocks streamed
  through two device slots with the token table left in CPU memory;
- the DiT: the fusion layers (bf16 2 bytes/param, fp8 1 byte + 1/64 scale), the towers'
  non-layer parts (embeddings, audio conv stem, heads; always bf16);
- the streamed layers' ring: `SLOTS` layers on the device while the others sit in CPU memory;
- activations of one forward at the shot's token count: the per-token modulation, the residual
  streams of both CFG branches, the FFN hidden state and its GELU output, and the attention
  q/k/v/out — in bf16;
- the VAE decode (engine.video_vae.decode_bytes_estimate: fp32 weights, output, activations
  over the frame or one tile), which runs after the DiT's resident weights leave the GPU when
  `offload` is set, so the two never add up.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from engine.arch import Arch, DiTParams, T5Params
from engine.math import ROPE_CHUNK
from engine.model import FusionModel
from engine.offload import HEADROOM, auto_blocks_to_swap, fusion_layers, linear_weights, streamed_layers
from engine.text import TEXT_BATCH, TEXT_LEN, T5Encoder
from engine.video_vae import Tiling, decode_bytes_estimate

GB = 1 << 30
SLOTS = 2  # device buffers the streamed layers pass through
FP8_BYTES_PER_PARAM = 1 + 1 / 64  # e4m3 weight + one fp32 scale per 256-weight block


def _numel(params) -> int:
    return sum(p.numel() for p in params)


@functools.cache
def fusion_parameter_counts(video: DiTParams, audio: DiTParams) -> tuple[int, int]:
    """(Linear weights of one fusion layer — what streams —, every other parameter of the
    model), counted on a model built on the meta device."""
    with torch.device("meta"):
        model = FusionModel(video, audio)
    layer = _numel(linear_weights(fusion_layers(model)[0]))
    return layer, _numel(model.parameters()) - layer * model.num_layers


@functools.cache
def text_encoder_parameter_counts(p: T5Params) -> tuple[int, int, int, int]:
    """(Linear weights of one block, the rest of one block, the token table, everything else)
    of the UMT5 encoder, counted on the meta device."""
    with torch.device("meta"):
        model = T5Encoder(p)
    block = model.blocks[0]
    linear = _numel(linear_weights([block]))
    other = _numel(block.parameters()) - linear
    table = model.token_embedding.weight.numel()
    rest = _numel(model.parameters()) - p.num_layers * (linear + other) - table
    return linear, other, table, rest


def layer_linear_bytes(arch: Arch, *, fp8: bool) -> int:
    """Bytes of the Linear weights of one fusion layer (video + audio block): what streams."""
    params = fusion_parameter_counts(arch.video_dit, arch.audio_dit)[0]
    return int(params * FP8_BYTES_PER_PARAM) if fp8 else params * 2


def resident_other_bytes(arch: Arch) -> int:
    """Everything of the fusion model that never streams (bf16): biases, norms, modulation,
    embeddings, the audio conv stem and the heads."""
    return fusion_parameter_counts(arch.video_dit, arch.audio_dit)[1] * 2


def weight_bytes(arch: Arch, *, fp8: bool, blocks_to_swap: int) -> int:
    """Device bytes of the fusion model's weights under a swap/fp8 setting."""
    layers = arch.video_dit.num_layers
    swapped = len(streamed_layers(layers, blocks_to_swap))
    on_device = layers - swapped + SLOTS if swapped > SLOTS else layers
    # fp8 layers run on bf16 copies of their weights, one layer at a time (engine.fp8)
    expanded = layer_linear_bytes(arch, fp8=False) if fp8 else 0
    return on_device * layer_linear_bytes(arch, fp8=fp8) + expanded + resident_other_bytes(arch)


def activation_bytes(arch: Arch, video_tokens: int, audio_tokens: int) -> int:
    """Peak bytes of activations inside one fusion layer with both CFG branches alive (the
    attention and FFN phases counted together: a conservative sum), for the worst case, i2v."""
    d, f = arch.video_dit.dim, arch.video_dit.ffn_dim
    tokens = video_tokens + audio_tokens
    # i2v's per-token video modulation: e [L, D], e0 [L, 6, D] and a block's offsets + e0
    # [L, 6, D]; a shared timestep (t2v, and the audio tower always) broadcasts one row instead
    modulation = video_tokens * 13 * d * 2
    streams = 2 * tokens * d * 2  # both branches' residual streams
    ffn = video_tokens * f * 2 * 2  # hidden + GELU output
    # q, k, v, out in bf16, plus RoPE's fp32 temporaries over one chunk of tokens (the input
    # pairs, two rotated halves and their stack, 4 bytes each)
    attention = video_tokens * d * 4 * 2 + min(video_tokens, ROPE_CHUNK) * d * 4 * 4
    return int((modulation + streams + ffn + attention) * 1.25)  # 25%: allocator and temporaries


def text_encoder_activation_bytes(p: T5Params) -> int:
    """Peak activations of encoding one batch of prompts: the position bias, logits and softmax
    (fp32) of one attention, and the hidden states, q/k/v and the FFN's hidden (bf16)."""
    batch, tokens = TEXT_BATCH, TEXT_LEN
    attention = 3 * batch * p.num_heads * tokens * tokens * 4
    hidden = batch * tokens * (6 * p.dim_attn + 3 * p.dim_ffn + 2 * p.dim) * 2
    return int((attention + hidden) * 1.25)  # 25%: allocator and temporaries


def text_encoder_bytes(p: T5Params, *, streamed: bool) -> int:
    """Peak device bytes of encoding one batch of prompts with the UMT5 encoder (bf16): all of
    it resident, or streamed (engine.text: the token table stays in CPU memory, blocks pass
    through a ring of `SLOTS` device buffers)."""
    linear, other, table, rest = text_encoder_parameter_counts(p)
    resident = (p.num_layers * other + rest) * 2 + text_encoder_activation_bytes(p)
    if streamed:
        return resident + SLOTS * linear * 2
    return resident + (p.num_layers * linear + table) * 2


def stream_text_encoder(arch: Arch, budget_bytes: int) -> bool:
    """Stream the text encoder's blocks when the whole encoder would not fit the budget
    (0: no budget, nothing streams)."""
    return budget_bytes > 0 and text_encoder_bytes(arch.t5, streamed=False) > budget_bytes * HEADROOM


@dataclass(frozen=True)
class ShotSize:
    """The sizes of one shot the memory model needs."""
    height: int
    width: int
    video_tokens: int
    audio_tokens: int


def peak_bytes(arch: Arch, shot: ShotSize, *, fp8: bool, tiled_vae: bool, offload: bool,
               blocks_to_swap: int, budget_bytes: int) -> int:
    """The largest of the pipeline's three phases (they never overlap): text encoding, the
    DiT's denoising, the VAE decode."""
    weights = weight_bytes(arch, fp8=fp8, blocks_to_swap=blocks_to_swap)
    dit = weights + activation_bytes(arch, shot.video_tokens, shot.audio_tokens)
    h, w = shot.height // 16, shot.width // 16
    _, ph, pw = arch.video_dit.patch_size
    latent_frames = shot.video_tokens // ((h // ph) * (w // pw))
    decode = decode_bytes_estimate((1, arch.video_dit.in_dim, latent_frames, h, w), arch.video_vae,
                                   Tiling() if tiled_vae else None)
    if not offload:
        decode += weights
    text = text_encoder_bytes(arch.t5, streamed=stream_text_encoder(arch, budget_bytes))
    return max(text, dit, decode)


def fewest_blocks_to_swap(arch: Arch, shot: ShotSize, *, fp8: bool, budget_bytes: int) -> int:
    """How many fusion layers must stream for the shot's weights and activations to fit."""
    return auto_blocks_to_swap(num_layers=arch.video_dit.num_layers,
                               bytes_per_layer=layer_linear_bytes(arch, fp8=fp8),
                               other_weight_bytes=resident_other_bytes(arch),
                               activation_bytes=activation_bytes(arch, shot.video_tokens,
                                                                 shot.audio_tokens),
                               free_bytes=budget_bytes, slots=SLOTS)
