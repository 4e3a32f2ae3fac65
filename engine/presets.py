"""Memory presets for 80, 24, 16, 12 and 8 GB GPUs, and the memory model behind them.

The model is arithmetic over the architecture (nothing is allocated), so `doctor` can suggest a
preset and tests can check that every preset fits its budget at the largest shot it allows.
The pipeline's phases never overlap, so the peak is the largest of:
- text encoding: the UMT5 encoder whole, or — when that would not fit — its blocks streamed
  through two device slots with the token table left in CPU memory;
- the DiT: the fusion layers (bf16 2 bytes/param, fp8 1 byte + 1/64 scale), the towers'
  non-layer parts (embeddings, audio conv stem, heads; always bf16);
- the streamed layers' ring: `slots` layers on the device while the others sit in CPU memory;
- activations of one forward at the shot's token count: the per-token modulation [L, 6, D], the
  residual streams of both CFG branches, the FFN hidden state and its GELU output, and the
  attention q/k/v/out — in bf16;
- the VAE decode (engine.video_vae.decode_bytes_estimate: fp32 weights, output, activations
  over the frame or one tile), which runs after the DiT's resident weights leave the GPU in
  low-memory presets (`offload_dit_for_decode`), so the two never add up.
"""
from __future__ import annotations

from dataclasses import dataclass

from engine.arch import Arch, DiTParams, T5Params
from engine.math import ROPE_CHUNK
from engine.offload import HEADROOM, auto_blocks_to_swap, streamed_layers
from engine.text import TEXT_BATCH, TEXT_LEN
from engine.video_vae import Tiling, decode_bytes_estimate

GB = 1 << 30
SLOTS = 2


@dataclass(frozen=True)
class Preset:
    """A memory budget and the switches used to meet it; how many layers stream is worked
    out per shot (`plan_memory`), since a 10-s 960² shot needs 3.6x the activations of 720²."""
    name: str
    gpu_gb: int
    fp8: bool
    tiled_vae: bool
    offload_dit_for_decode: bool
    note: str


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("80gb", 80, False, False, False, "bf16, everything resident: fastest"),
    Preset("24gb", 24, False, True, True, "bf16, some layers streamed, tiled VAE"),
    Preset("16gb", 16, False, True, True, "bf16, most layers streamed, tiled VAE"),
    Preset("12gb", 12, False, True, True, "bf16, nearly all layers streamed, tiled VAE"),
    Preset("8gb", 8, True, True, True, "fp8 block-scaled weights, layers streamed, tiled VAE"),
)}


@dataclass(frozen=True)
class MemoryPlan:
    blocks_to_swap: int
    peak_bytes: int
    fits: bool


def suggest_preset(total_gpu_bytes: int) -> Preset:
    """The fastest preset whose budget fits the GPU."""
    fitting = [p for p in PRESETS.values() if p.gpu_gb * GB <= total_gpu_bytes * 1.02]
    return max(fitting, key=lambda p: p.gpu_gb) if fitting else PRESETS["8gb"]


def _linear_params(t: DiTParams) -> int:
    """Linear weights of one block of one tower (what block swapping streams)."""
    d, f = t.dim, t.ffn_dim
    return 4 * d * d + 4 * d * d + 2 * d * d + 2 * d * f  # self q,k,v,o; cross q,k,v,o; fusion k,v; ffn


def _block_other_params(t: DiTParams) -> int:
    """Biases, norm weights and the modulation table of one block of one tower."""
    d = t.dim
    biases = 4 * d + 4 * d + 2 * d + t.ffn_dim + d  # self q,k,v,o; cross q,k,v,o; fusion k,v; ffn
    norms = 2 * d + 2 * d + 2 * d + 2 * d + d  # self q/k, norm3, cross q/k, pre-fusion LN, fusion k
    return biases + norms + 6 * d


def _tower_non_block_params(t: DiTParams) -> int:
    d = t.dim
    if t.is_audio:
        stem = t.in_dim * d * 7 + d + 3 * d * t.audio_stem_hidden * 7
    else:
        stem = t.in_dim * d * 4 + d
    text = t.text_dim * d + d + d * d + d
    time = t.freq_dim * d + d + d * d + d + d * 6 * d + 6 * d
    head = 2 * d + d * t.out_dim * (4 if not t.is_audio else 1) + t.out_dim * (4 if not t.is_audio else 1)
    return stem + text + time + head


def layer_linear_bytes(arch: Arch, *, fp8: bool) -> int:
    """Bytes of the Linear weights of one fusion layer (video + audio block): what streams."""
    params = _linear_params(arch.video_dit) + _linear_params(arch.audio_dit)
    return int(params * (1 + 1 / 64)) if fp8 else params * 2


def resident_other_bytes(arch: Arch) -> int:
    """Everything of the fusion model that never streams (bf16): biases, norms, modulation,
    embeddings, the audio conv stem and the heads."""
    v, a = arch.video_dit, arch.audio_dit
    params = (_block_other_params(v) + _block_other_params(a)) * v.num_layers \
        + _tower_non_block_params(v) + _tower_non_block_params(a)
    return params * 2


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
    attention and FFN phases counted together: a conservative sum)."""
    d, f = arch.video_dit.dim, arch.video_dit.ffn_dim
    tokens = video_tokens + audio_tokens
    # e [L, D] and e0 [L, 6, D], shared by both branches, and a block's modulation (its offsets
    # + e0, materialised) [L, 6, D]
    modulation = tokens * 13 * d * 2
    streams = 2 * tokens * d * 2  # both branches' residual streams
    ffn = video_tokens * f * 2 * 2  # hidden + GELU output
    # q, k, v, out in bf16, plus RoPE's float64 temporaries over one chunk of tokens (the
    # input, the rotated product and the concatenation, 8 bytes each)
    attention = video_tokens * d * 4 * 2 + min(video_tokens, ROPE_CHUNK) * d * 3 * 8
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
    block_linear = (4 * p.dim * p.dim_attn + 3 * p.dim * p.dim_ffn) * 2
    block_other = (p.num_buckets * p.num_heads + 2 * p.dim) * 2
    embedding = p.vocab * p.dim * 2
    resident = p.num_layers * block_other + p.dim * 2 + text_encoder_activation_bytes(p)
    if streamed:
        return resident + SLOTS * block_linear
    return resident + p.num_layers * block_linear + embedding


def stream_text_encoder(arch: Arch, budget_bytes: int) -> bool:
    """Stream the text encoder's blocks when the whole encoder would not fit the budget."""
    return text_encoder_bytes(arch.t5, streamed=False) > budget_bytes * HEADROOM


def peak_bytes(arch: Arch, preset: Preset, blocks_to_swap: int, *, height: int, width: int,
               video_tokens: int, audio_tokens: int) -> int:
    """The largest of the pipeline's three phases (they never overlap): text encoding, the
    DiT's denoising, the VAE decode."""
    weights = weight_bytes(arch, fp8=preset.fp8, blocks_to_swap=blocks_to_swap)
    dit = weights + activation_bytes(arch, video_tokens, audio_tokens)
    h, w = height // 16, width // 16
    _, ph, pw = arch.video_dit.patch_size
    latent_frames = video_tokens // ((h // ph) * (w // pw))
    decode = decode_bytes_estimate((1, arch.video_dit.in_dim, latent_frames, h, w), arch.video_vae,
                                   Tiling() if preset.tiled_vae else None)
    if not preset.offload_dit_for_decode:
        decode += weights
    budget = preset.gpu_gb * GB
    text = text_encoder_bytes(arch.t5, streamed=stream_text_encoder(arch, budget))
    return max(text, dit, decode)


def plan_memory(arch: Arch, preset: Preset, *, height: int, width: int, video_tokens: int,
                audio_tokens: int, budget_bytes: int | None = None) -> MemoryPlan:
    """How many layers to stream for one shot under a preset (or an explicit free-memory budget)."""
    budget = preset.gpu_gb * GB if budget_bytes is None else budget_bytes
    swap = auto_blocks_to_swap(num_layers=arch.video_dit.num_layers,
                               bytes_per_layer=layer_linear_bytes(arch, fp8=preset.fp8),
                               other_weight_bytes=resident_other_bytes(arch),
                               activation_bytes=activation_bytes(arch, video_tokens, audio_tokens),
                               free_bytes=budget, slots=SLOTS)
    peak = peak_bytes(arch, preset, swap, height=height, width=width, video_tokens=video_tokens,
                      audio_tokens=audio_tokens)
    return MemoryPlan(swap, peak, peak <= budget)
