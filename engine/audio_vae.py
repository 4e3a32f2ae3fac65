"""The MMAudio 16 kHz mel VAE, decoder half: audio latents [B, 20, L] -> log10-mel [B, 80, 2L].

An EDM2-style magnitude-preserving 1-D network: bias-free convolutions whose
filters are normalised once at load, pixel norms, `silu / 0.596`, and residual sums that keep
unit magnitude. Ovi's audio latents are the raw VAE latents; decoding is the network followed by
the mel un-normalisation with the checkpoint's per-bin `data_mean` / `data_std`.

Precision mirrors the reference under CUDA bf16 autocast, written out explicitly so that CPU and
GPU agree: bf16 weights and activations, vector norms in fp32.

The checkpoint also holds the encoder (unused by generation). It is checked key by key and
shape by shape, but never built.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engine.arch import AudioVAEParams
from engine.layout import AUDIO_VAE_WEIGHTS
from engine.pth_weights import check_keys, read_pth_state_dict

CLAMP = 256.0  # activations are clipped to this after every block group
MP_SUM_T = 0.3  # residual blend weight of the magnitude-preserving sum
LEVEL_MULT = (1, 2, 4)  # width multipliers of the three resolution levels
UPSAMPLE_LEVEL = 1  # the level whose output is upsampled 2x in time


def pixel_norm(x: torch.Tensor, dim: int, eps: float = 1e-4) -> torch.Tensor:
    """x / (eps + RMS over `dim`), the norm taken in fp32 and applied in x's dtype."""
    norm = torch.linalg.vector_norm(x, dim=dim, keepdim=True, dtype=torch.float32)
    norm = eps + norm * math.sqrt(norm.numel() / x.numel())
    return x / norm.to(x.dtype)


def mp_silu(x: torch.Tensor) -> torch.Tensor:
    return F.silu(x) / 0.596


def mp_sum(a: torch.Tensor, b: torch.Tensor, t: float = MP_SUM_T) -> torch.Tensor:
    return a.lerp(b, t) / math.sqrt((1 - t) ** 2 + t ** 2)


def normalised_filters(w: torch.Tensor) -> torch.Tensor:
    """Forced weight normalisation, done once in fp32: each output filter to unit RMS (eps 1e-4),
    then divided by sqrt(fan_in)."""
    w32 = w.to(torch.float32)
    fan_in = w32[0].numel()
    w32 = pixel_norm(w32, dim=list(range(1, w32.ndim)))
    return (w32 / math.sqrt(fan_in)).to(w.dtype)


class MPConv(nn.Module):
    """Bias-free 'same' convolution with a pre-normalised weight (`weight`)."""

    def __init__(self, c_in: int, c_out: int, kernel: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(c_out, c_in, kernel))

    def forward(self, x: torch.Tensor, gain: torch.Tensor | None = None) -> torch.Tensor:
        w = self.weight if gain is None else self.weight * gain
        return F.conv1d(x, w, padding=w.shape[-1] // 2)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = MPConv(c_in, c_out, 3)
        self.conv2 = MPConv(c_out, c_out, 3)
        self.nin_shortcut = MPConv(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pixel_norm(x, dim=1)
        h = self.conv2(mp_silu(self.conv1(mp_silu(x))))
        skip = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return mp_sum(skip, h)


class AttnBlock(nn.Module):
    """One head over time; q, k, v interleaved per channel (index c*3 + {0,1,2}), each pixel-normed."""

    def __init__(self, channels: int):
        super().__init__()
        self.qkv = MPConv(channels, 3 * channels, 1)
        self.proj_out = MPConv(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, length = x.shape
        y = self.qkv(x).reshape(b, 1, c, 3, length)
        q, k, v = (t.transpose(-1, -2) for t in pixel_norm(y, dim=2).unbind(3))  # [b, 1, L, c]
        h = F.scaled_dot_product_attention(q, k, v)
        return mp_sum(x, self.proj_out(h.transpose(-1, -2).reshape(b, c, length)))


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = MPConv(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest-exact"))


class Level(nn.Module):
    """Three residual blocks (and the time upsample on UPSAMPLE_LEVEL); keys `up.{i}.block.{j}`."""

    def __init__(self, c_in: int, c_out: int, upsample: bool):
        super().__init__()
        self.block = nn.ModuleList(ResBlock(c_in if j == 0 else c_out, c_out) for j in range(3))
        self.upsample = Upsample(c_out) if upsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block:
            x = block(x).clamp(-CLAMP, CLAMP)
        return x if self.upsample is None else self.upsample(x)


class Middle(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.block_1 = ResBlock(channels, channels)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResBlock(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x))).clamp(-CLAMP, CLAMP)


class Decoder(nn.Module):
    def __init__(self, p: AudioVAEParams):
        super().__init__()
        widths = [p.hidden_dim * m for m in LEVEL_MULT]
        self.conv_in = MPConv(p.embed_dim, widths[-1], 3)
        self.mid = Middle(widths[-1])
        # `up[i]` is resolution level i; they run from the coarsest (last) to level 0
        self.up = nn.ModuleList(
            Level(widths[min(i + 1, len(widths) - 1)], widths[i], upsample=(i == UPSAMPLE_LEVEL))
            for i in range(len(widths)))
        self.conv_out = MPConv(widths[0], p.data_dim, 3)
        self.learnable_gain = nn.Parameter(torch.zeros([]))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            x = level(x)
        return self.conv_out(mp_silu(x), gain=self.learnable_gain + 1)


def encoder_shapes(p: AudioVAEParams) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the encoder half stored in the checkpoint (not used to generate)."""
    h, widths = p.hidden_dim, [p.hidden_dim * m for m in LEVEL_MULT]
    shapes: dict[str, tuple[int, ...]] = {"encoder.learnable_gain": (),
                                          "encoder.conv_in.weight": (h, p.data_dim, 3)}
    c_in = h
    for i, c in enumerate(widths):
        for j in range(2):
            prefix = f"encoder.down.{i}.block.{j}"
            cj = c_in if j == 0 else c
            shapes[f"{prefix}.conv1.weight"] = (c, cj, 3)
            shapes[f"{prefix}.conv2.weight"] = (c, c, 3)
            if cj != c:
                shapes[f"{prefix}.nin_shortcut.weight"] = (c, cj, 1)
        if i == 0:  # the one time downsample: k1 conv, average pool, k1 conv
            shapes["encoder.down.0.downsample.conv1.weight"] = (c, c, 1)
            shapes["encoder.down.0.downsample.conv2.weight"] = (c, c, 1)
        c_in = c
    top = widths[-1]
    for block in ("block_1", "block_2"):
        shapes[f"encoder.mid.{block}.conv1.weight"] = (top, top, 3)
        shapes[f"encoder.mid.{block}.conv2.weight"] = (top, top, 3)
    shapes["encoder.mid.attn_1.qkv.weight"] = (3 * top, top, 1)
    shapes["encoder.mid.attn_1.proj_out.weight"] = (top, top, 1)
    shapes["encoder.conv_out.weight"] = (2 * p.embed_dim, top, 3)
    return shapes


def checkpoint_shapes(p: AudioVAEParams) -> dict[str, tuple[int, ...]]:
    """Every key of `v1-16.pth`: mel statistics, encoder, decoder."""
    with torch.device("meta"):
        decoder = Decoder(p)
    shapes = {"data_mean": (1, p.data_dim, 1), "data_std": (1, p.data_dim, 1)}
    shapes.update(encoder_shapes(p))
    shapes.update({f"decoder.{k}": tuple(v.shape) for k, v in decoder.state_dict().items()})
    return shapes


class AudioVAEDecoder(nn.Module):
    """Latents [B, 20, L] -> unnormalised log10-mel [B, 80, 2L]."""

    def __init__(self, p: AudioVAEParams):
        super().__init__()
        self.decoder = Decoder(p)
        self.register_buffer("data_mean", torch.zeros(1, p.data_dim, 1))
        self.register_buffer("data_std", torch.ones(1, p.data_dim, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        dtype = self.data_std.dtype
        return self.decoder(z.to(dtype)) * self.data_std + self.data_mean


def load_audio_vae_decoder(ckpt_dir: str | Path, params: AudioVAEParams, *, device="cpu",
                           dtype=torch.bfloat16) -> AudioVAEDecoder:
    root = Path(ckpt_dir)
    state = read_pth_state_dict(root, AUDIO_VAE_WEIGHTS)
    check_keys(checkpoint_shapes(params), state, root, AUDIO_VAE_WEIGHTS)
    model = AudioVAEDecoder(params)
    wanted = {}
    for key, value in state.items():
        if key.startswith("encoder."):
            continue
        value = value.to(torch.float32)
        # every decoder conv weight except the scalar gain is a magnitude-preserving filter
        wanted[key] = normalised_filters(value) if key.endswith(".weight") else value
    model.load_state_dict(wanted, strict=True)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)
