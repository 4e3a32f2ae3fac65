"""The BigVGAN (v1) vocoder of MMAudio's 16 kHz model: log10-mel [B, 80, T] -> waveform [B, 1, 256·T].

Structure: an input conv, then per stage a transposed-conv upsample followed by the
mean of parallel AMP residual blocks (one per kernel size), then an anti-aliased Snake(Beta)
activation, an output conv and tanh. Every activation is "anti-aliased": 2x upsample with a
Kaiser-windowed sinc, the periodic activation, low-pass 2x downsample.

Weight norm is folded once at load, in fp32 (`g · v / ‖v‖`); the checkpoint may name the two
halves `weight_g`/`weight_v` (legacy) or `parametrizations.weight.original0/1`.

Precision mirrors the reference under CUDA bf16 autocast, written out explicitly: convolutions in
bf16, the Snake activation in fp32 (autocast runs `exp`/`pow` in fp32 and type promotion keeps
the rest there), its result rounded to bf16 again by the following convolution.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engine.arch import VocoderParams
from engine.layout import VOCODER_WEIGHTS
from engine.pth_weights import check_keys, read_pth_state_dict

FILTER_TAPS = 12  # anti-aliasing low-pass length (2x resampling)
SNAKE_EPS = 1e-9


def kaiser_sinc_taps(cutoff: float = 0.25, half_width: float = 0.3, taps: int = FILTER_TAPS) -> torch.Tensor:
    """Kaiser-windowed sinc low-pass, even length, normalised to unit DC gain: [1, 1, taps]."""
    half = taps // 2
    attenuation = 2.285 * (half - 1) * math.pi * (4 * half_width) + 7.95
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(taps, beta=beta, periodic=False)
    time = torch.arange(-half, half) + 0.5
    f = 2 * cutoff * window * torch.sinc(2 * cutoff * time)
    return (f / f.sum()).view(1, 1, taps)


def conv1d(x, weight, bias=None, **kw):
    """Convolution in the weights' dtype (what autocast does to the activation)."""
    return F.conv1d(x.to(weight.dtype), weight, bias, **kw)


class SnakeBeta(nn.Module):
    """x + sin²(x·a) / (b + 1e-9), per channel; a, b stored as logs when `log_scale`.
    With `beta=False` it is plain Snake (b = a)."""

    def __init__(self, channels: int, log_scale: bool, beta: bool):
        super().__init__()
        self.log_scale = log_scale
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels)) if beta else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.float()[None, :, None]
        beta = alpha if self.beta is None else self.beta.float()[None, :, None]
        if self.log_scale:
            alpha, beta = alpha.exp(), beta.exp()
        x = x.float()
        return x + (1.0 / (beta + SNAKE_EPS)) * torch.sin(x * alpha).pow(2)


class UpSample2x(nn.Module):
    """Replicate-pad, transposed low-pass conv (stride 2) x2, crop: [B, C, T] -> [B, C, 2T]."""

    def __init__(self):
        super().__init__()
        self.register_buffer("filter", kaiser_sinc_taps())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = FILTER_TAPS // 2 - 1  # 5 input samples each side
        crop = pad * 2 + (FILTER_TAPS - 2) // 2  # 15 output samples each side
        x = F.pad(x, (pad, pad), mode="replicate").to(self.filter.dtype)
        x = 2 * F.conv_transpose1d(x, self.filter.expand(x.shape[1], -1, -1), stride=2, groups=x.shape[1])
        return x[..., crop:-crop]


class LowPass(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("filter", kaiser_sinc_taps())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (FILTER_TAPS // 2 - 1, FILTER_TAPS // 2), mode="replicate")
        return conv1d(x, self.filter.expand(x.shape[1], -1, -1), stride=2, groups=x.shape[1])


class DownSample2x(nn.Module):
    def __init__(self):
        super().__init__()
        self.lowpass = LowPass()  # key `downsample.lowpass.filter`

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lowpass(x)


class AntiAliasedSnake(nn.Module):
    def __init__(self, channels: int, p: VocoderParams):
        super().__init__()
        self.act = SnakeBeta(channels, p.snake_logscale, beta=(p.activation == "snakebeta"))
        self.upsample = UpSample2x()
        self.downsample = DownSample2x()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(self.act(self.upsample(x)))


class Conv(nn.Conv1d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv1d(x, self.weight, self.bias, padding=self.padding, dilation=self.dilation)


class AMPBlock(nn.Module):
    """Type-1 AMP block: for each dilation d, x += conv(act(conv_d(act(x))))."""

    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...], p: VocoderParams):
        super().__init__()
        self.convs1 = nn.ModuleList(Conv(channels, channels, kernel, dilation=d, padding=d * (kernel - 1) // 2)
                                    for d in dilations)
        self.convs2 = nn.ModuleList(Conv(channels, channels, kernel, padding=(kernel - 1) // 2)
                                    for _ in dilations)
        self.activations = nn.ModuleList(AntiAliasedSnake(channels, p) for _ in range(2 * len(dilations)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (c1, c2) in enumerate(zip(self.convs1, self.convs2)):
            x = c2(self.activations[2 * i + 1](c1(self.activations[2 * i](x)))) + x
        return x


class Upsampler(nn.ConvTranspose1d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose1d(x.to(self.weight.dtype), self.weight, self.bias, stride=self.stride,
                                  padding=self.padding)


class Vocoder(nn.Module):
    def __init__(self, p: VocoderParams):
        super().__init__()
        if p.resblock != "1" or p.activation not in ("snake", "snakebeta"):
            raise ValueError(f"unsupported vocoder: resblock {p.resblock!r}, activation {p.activation!r} "
                             f"(only type-1 AMP blocks with snake/snakebeta exist in MMAudio's 16 kHz model)")
        c0 = p.upsample_initial_channel
        self.conv_pre = Conv(p.num_mels, c0, 7, padding=3)
        self.ups = nn.ModuleList(
            nn.ModuleList([Upsampler(c0 // 2 ** i, c0 // 2 ** (i + 1), k, u, padding=(k - u) // 2)])
            for i, (u, k) in enumerate(zip(p.upsample_rates, p.upsample_kernel_sizes)))
        self.resblocks = nn.ModuleList(
            AMPBlock(c0 // 2 ** (i + 1), k, tuple(d), p)
            for i in range(len(p.upsample_rates))
            for k, d in zip(p.resblock_kernel_sizes, p.resblock_dilation_sizes))
        c_last = c0 // 2 ** len(p.upsample_rates)
        self.activation_post = AntiAliasedSnake(c_last, p)
        self.conv_post = Conv(c_last, 1, 7, padding=3)
        self.num_kernels = len(p.resblock_kernel_sizes)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(mel)
        for i, (up,) in enumerate(self.ups):
            x = up(x)
            blocks = self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels]
            total = blocks[0](x)
            for block in blocks[1:]:
                total = total + block(x)
            x = total / self.num_kernels
        x = self.conv_post(self.activation_post(x))
        return torch.tanh(x)


def _weight_norm_pairs(state: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{module: (g, v)} from either naming of torch's weight norm."""
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        for g_suffix, v_suffix in ((".weight_g", ".weight_v"),
                                   (".parametrizations.weight.original0", ".parametrizations.weight.original1")):
            if key.endswith(g_suffix):
                pairs.setdefault(key[: -len(g_suffix)], {})["g"] = value
            elif key.endswith(v_suffix):
                pairs.setdefault(key[: -len(v_suffix)], {})["v"] = value
    return {m: (gv.get("g"), gv.get("v")) for m, gv in pairs.items()}


def fold_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace every (g, v) pair by the effective weight g·v/‖v‖ (norm over all dims but 0), in fp32."""
    folded = {}
    pairs = _weight_norm_pairs(state)
    norm_keys = set()
    for module, (g, v) in pairs.items():
        if g is None or v is None:
            continue  # reported by the strict key check
        folded[module + ".weight"] = torch._weight_norm(v.float(), g.float(), 0)
        norm_keys |= {k for k in state if k.startswith(module + ".weight_") or
                      k.startswith(module + ".parametrizations.weight.")}
    folded.update({k: v for k, v in state.items() if k not in norm_keys})
    return folded


def load_vocoder(ckpt_dir: str | Path, params: VocoderParams, *, device="cpu", dtype=torch.bfloat16) -> Vocoder:
    root = Path(ckpt_dir)
    state = fold_weight_norm(read_pth_state_dict(root, VOCODER_WEIGHTS, under="generator"))
    model = Vocoder(params)
    check_keys({k: tuple(v.shape) for k, v in model.state_dict().items()}, state, root, VOCODER_WEIGHTS)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)
