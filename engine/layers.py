"""Building blocks of one tower of the fusion DiT.

Module and parameter names are the reference's, so `state_dict()` keys match the checkpoints.
Everything computes in bf16 with the casts the reference gets from CUDA autocast written out
explicitly: Linear/Conv in bf16 (fp8 weights are upcast per call, as autocast does),
LayerNorm with fp32 statistics and affine, RMSNorm with fp32 statistics then a bf16 product with
its weight, modulation and residual arithmetic in bf16. No autocast is needed, so the same code
gives the reference's numbers on CPU and on CUDA.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from engine.arch import DiTParams
from engine.attention import attention
from engine.math import apply_rope

COMPUTE_DTYPE = torch.bfloat16
FUSION_EPS = 1e-6  # the injected fusion norms use 1e-6 whatever the tower's eps


def _bf16(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.to(COMPUTE_DTYPE)


# --- norms and modulation -----------------------------------------------------------------------

def layer_norm(x: torch.Tensor, eps: float, weight=None, bias=None) -> torch.Tensor:
    """LayerNorm of bf16 x with statistics and affine in fp32, rounded to bf16."""
    w = None if weight is None else weight.float()
    b = None if bias is None else bias.float()
    return F.layer_norm(x.bfloat16().float(), x.shape[-1:], w, b, eps).bfloat16()


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x * rsqrt(mean(x^2) + eps) in fp32, rounded to bf16, then times the weight in bf16."""
    x = x.bfloat16()
    normed = x * torch.rsqrt(x.float().pow(2).mean(dim=-1, keepdim=True) + eps)
    return normed.bfloat16() * weight.bfloat16()


def modulate(normed: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: normed * (1 + scale) + shift, all bf16 (1 + scale is rounded to bf16 first)."""
    return normed * (1 + scale) + shift


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return rms_norm(x, self.weight, self.eps)


class LayerNorm(nn.Module):
    """LayerNorm over the last axis; parameters only when affine (norm3, pre_attn_norm_fusion)."""

    def __init__(self, dim: int, eps: float, affine: bool = False):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None
        self.bias = nn.Parameter(torch.zeros(dim)) if affine else None

    def forward(self, x):
        return layer_norm(x, self.eps, self.weight, self.bias)


class Modulation(nn.Module):
    """Learned offsets added to the per-token time projection, split into `n` chunks [B, S, D]."""

    def __init__(self, dim: int, n: int):
        super().__init__()
        self.modulation = nn.Parameter(torch.empty(1, n, dim))

    def forward(self, e0: torch.Tensor) -> tuple[torch.Tensor, ...]:
        chunks = (self.modulation.bfloat16() + e0.bfloat16()).chunk(self.modulation.shape[1], dim=2)
        return tuple(c.squeeze(2) for c in chunks)


# --- bf16 Linear / Conv -------------------------------------------------------------------------

class Linear(nn.Linear):
    def forward(self, x):
        return F.linear(_bf16(x), _bf16(self.weight), _bf16(self.bias))


class PatchEmbed3d(nn.Conv3d):
    """Video patch embedding: [B, C, F, H, W] -> [B, D, F/pt, H/ph, W/pw]."""

    def forward(self, x):
        return self._conv_forward(_bf16(x), _bf16(self.weight), _bf16(self.bias))


class ChannelLastConv1d(nn.Conv1d):
    """Conv1d on [B, L, C] (transposed to channels-first and back)."""

    def forward(self, x):
        y = self._conv_forward(_bf16(x.permute(0, 2, 1)), _bf16(self.weight), _bf16(self.bias))
        return y.permute(0, 2, 1)


class GatedConvMLP(nn.Module):
    """w2(silu(w1 x) * w3 x) with bias-free k=7 convolutions (the audio stem's second stage)."""

    def __init__(self, dim: int, hidden: int, kernel: int = 7):
        super().__init__()
        self.w1 = ChannelLastConv1d(dim, hidden, kernel, padding=kernel // 2, bias=False)
        self.w2 = ChannelLastConv1d(hidden, dim, kernel, padding=kernel // 2, bias=False)
        self.w3 = ChannelLastConv1d(dim, hidden, kernel, padding=kernel // 2, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


def audio_stem(p: DiTParams) -> nn.Sequential:
    """Audio patch embedding [B, L, in_dim] -> [B, L, D]; indices 0 and 2 carry the weights."""
    return nn.Sequential(ChannelLastConv1d(p.in_dim, p.dim, 7, padding=3), nn.SiLU(),
                         GatedConvMLP(p.dim, p.audio_stem_hidden))


def mlp(d_in: int, d_hidden: int, d_out: int, act: nn.Module) -> nn.Sequential:
    """Linear -> act -> Linear (keys .0 and .2): text embedding, time embedding, FFN."""
    return nn.Sequential(Linear(d_in, d_hidden), act, Linear(d_hidden, d_out))


# --- attention layers ---------------------------------------------------------------------------

class _Projections(nn.Module):
    """q, k, v, o projections with optional RMSNorm on q and k (over all heads at once)."""

    def __init__(self, p: DiTParams):
        super().__init__()
        self.num_heads, self.head_dim = p.num_heads, p.head_dim
        self.q, self.k, self.v, self.o = (Linear(p.dim, p.dim) for _ in range(4))
        self.norm_q = RMSNorm(p.dim, p.eps) if p.qk_norm else nn.Identity()
        self.norm_k = RMSNorm(p.dim, p.eps) if p.qk_norm else nn.Identity()

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.size(0), -1, self.num_heads, self.head_dim)


class SelfAttention(_Projections):
    def forward(self, x, rope, backend):
        q = self.heads(self.norm_q(self.q(x)))
        k = self.heads(self.norm_k(self.k(x)))
        v = self.heads(self.v(x))
        out = attention(apply_rope(q, rope), apply_rope(k, rope), v, backend)
        return self.o(out.flatten(2))


class FusionCrossAttention(_Projections):
    """Text cross-attention plus attention to the other tower's tokens, sharing q and o.

    text: no RoPE, all text_len rows. fusion: q (RoPE of this tower) against k_fusion/v_fusion of
    the normed target tokens (RoPE of the target tower). The two head outputs are summed before o.
    """

    def __init__(self, p: DiTParams):
        super().__init__(p)
        self.k_fusion = Linear(p.dim, p.dim)
        self.v_fusion = Linear(p.dim, p.dim)
        self.pre_attn_norm_fusion = LayerNorm(p.dim, FUSION_EPS, affine=True)
        self.norm_k_fusion = RMSNorm(p.dim, FUSION_EPS) if p.qk_norm else nn.Identity()

    def forward(self, x, text, target, rope, target_rope, backend):
        q = self.heads(self.norm_q(self.q(x)))
        out = attention(q, self.heads(self.norm_k(self.k(text))), self.heads(self.v(text)), backend)
        target = self.pre_attn_norm_fusion(target)
        k = self.heads(self.norm_k_fusion(self.k_fusion(target)))
        v = self.heads(self.v_fusion(target))
        out = out + attention(apply_rope(q, rope), apply_rope(k, target_rope), v, backend)
        return self.o(out.flatten(2))


# --- block and head -----------------------------------------------------------------------------

class Block(nn.Module):
    """One tower's half of a fusion layer. The fusion layer itself (model.py) interleaves the two
    towers' halves: self-attention of both, then cross-attention + FFN of each."""

    def __init__(self, p: DiTParams):
        super().__init__()
        self.eps = p.eps
        self.self_attn = SelfAttention(p)
        self.norm3 = LayerNorm(p.dim, p.eps, affine=True) if p.cross_attn_norm else nn.Identity()
        self.cross_attn = FusionCrossAttention(p)
        self.ffn = mlp(p.dim, p.ffn_dim, p.dim, nn.GELU(approximate="tanh"))
        self.modulation = Modulation(p.dim, 6)

    def self_attention(self, x, mod, rope, backend):
        shift, scale, gate = mod[0], mod[1], mod[2]
        y = self.self_attn(modulate(layer_norm(x, self.eps), shift, scale), rope, backend)
        return x + y * gate

    def cross_attention_ffn(self, x, mod, text, target, rope, target_rope, backend):
        x = x + self.cross_attn(self.norm3(x), text, target, rope, target_rope, backend)
        shift, scale, gate = mod[3], mod[4], mod[5]
        return x + self.ffn(modulate(layer_norm(x, self.eps), shift, scale)) * gate


class Head(nn.Module):
    """Final adaLN + projection; its modulation uses the time embedding e (not the projection e0)."""

    def __init__(self, dim: int, out: int, eps: float):
        super().__init__()
        self.eps = eps
        self.head = Linear(dim, out)
        self.modulation = nn.Parameter(torch.empty(1, 2, dim))

    def forward(self, x, e):
        shift, scale = (self.modulation.bfloat16().unsqueeze(0) + e.unsqueeze(2)).chunk(2, dim=2)
        return self.head(modulate(layer_norm(x, self.eps), shift.squeeze(2), scale.squeeze(2)))
