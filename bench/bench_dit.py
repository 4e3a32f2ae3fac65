"""Time one denoising step (both CFG passes + solver update) and the peak memory of the fusion DiT.

    .venv/bin/python bench/bench_dit.py                  # CUDA when present, else tiny CPU sizes
    .venv/bin/python bench/bench_dit.py --device cpu --steps 3

CUDA: full-size model with random weights built on the meta device and materialised directly on
the GPU (no checkpoint file), for the three published shot sizes. CPU: the tiny test sizes.
Each row shows the FLOP floor of the cost model (docs/model.md) (cond pass 30 layers + uncond pass 29
with SLG, plus the per-token time embedding) and the fraction of the bf16 dense peak achieved.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.arch import AUDIO_DIT, VIDEO_DIT, DiTParams, parse_arch  # noqa: E402
from engine.attention import resolve_attention_backend  # noqa: E402
from engine.model import FusionModel  # noqa: E402
from engine.device import peak_memory_bytes, reset_peak_memory  # noqa: E402
from engine.sampling import SamplerSettings, denoise  # noqa: E402
from engine.testing.tiny_checkpoint import TINY_ARCH  # noqa: E402

PEAK_TFLOPS = 989.0  # H100/H200 SXM bf16 dense
TEXT_TOKENS = 512


@dataclass(frozen=True)
class Shot:
    name: str
    video_shape: tuple[int, int, int, int]  # latent [C, F, h, w]
    audio_shape: tuple[int, int]

    @property
    def video_tokens(self) -> int:
        _, f, h, w = self.video_shape
        return f * (h // 2) * (w // 2)

    @property
    def audio_tokens(self) -> int:
        return self.audio_shape[0]


FULL_SHOTS = [Shot("720x720_5s (704x704)", (48, 31, 44, 44), (157, 20)),
              Shot("960x960_5s", (48, 31, 60, 60), (157, 20)),
              Shot("960x960_10s", (48, 61, 60, 60), (314, 20))]
TINY_SHOTS = [Shot("tiny 96x128 5 frames", (48, 5, 6, 8), (32, 20)),
              Shot("tiny 192x256 9 frames", (48, 9, 12, 16), (64, 20))]


def layer_flops(p: DiTParams, lv: int, la: int) -> float:
    """FLOPs of one fusion layer, 2 per multiply-add."""
    d, f, t = p.dim, p.ffn_dim, TEXT_TOKENS

    def tower(l_self, l_other):
        return (8 * l_self * d * d + 4 * l_self * l_self * d + 4 * l_self * d * d + 4 * t * d * d
                + 4 * l_self * t * d + 4 * l_other * d * d + 4 * l_self * l_other * d
                + 4 * l_self * d * f)
    return tower(lv, la) + tower(la, lv)


def step_flops(p: DiTParams, shot: Shot, slg: bool = True) -> float:
    lv, la = shot.video_tokens, shot.audio_tokens
    layers = 2 * p.num_layers - (1 if slg else 0)
    time_embedding = 2 * (lv + la) * (p.freq_dim * p.dim + p.dim * p.dim + 6 * p.dim * p.dim)
    return layers * layer_flops(p, lv, la) + 2 * time_embedding


def random_model(video: DiTParams, audio: DiTParams, device: torch.device) -> FusionModel:
    """Meta-built model materialised on `device` in bf16 with small random weights."""
    with torch.device("meta"):
        model = FusionModel(video, audio, resolve_attention_backend("auto", device))
    model = model.to(torch.bfloat16).to_empty(device=device)  # allocate once, in bf16
    g = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02, generator=g)
    return model.eval().requires_grad_(False)


def bench(model: FusionModel, shot: Shot, steps: int, device: torch.device) -> tuple[float, int]:
    """Seconds per step (median of the steps after the first) and peak memory in bytes."""
    text_dim = model.video_model.params.text_dim
    text = torch.randn(100, text_dim, device=device).bfloat16()
    stamps = []

    def tick(step, total):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        stamps.append(time.perf_counter())

    reset_peak_memory(device)
    tick(0, 0)
    denoise(model, settings=SamplerSettings(steps=steps + 1, slg_layer=min(11, model.num_layers - 1)),
            text=text, video_negative=text[:20], audio_negative=text[:30],
            video_shape=shot.video_shape, audio_shape=shot.audio_shape, device=device,
            callback=tick)
    times = sorted(b - a for a, b in zip(stamps[1:], stamps[2:]))
    return times[len(times) // 2], peak_memory_bytes(device)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=2, help="timed steps (after one warm-up)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        video, audio, shots = VIDEO_DIT, AUDIO_DIT, FULL_SHOTS
    else:
        arch = parse_arch(TINY_ARCH)
        video, audio, shots = arch.video_dit, arch.audio_dit, TINY_SHOTS
    model = random_model(video, audio, device)
    print(f"device {device}, attention {model.attention_backend}, "
          f"{sum(p.numel() for p in model.parameters()):,} parameters")
    print(f"{'shot':<24} {'tokens v+a':>12} {'s/step':>9} {'peak GB':>8} {'TFLOP/step':>11} "
          f"{'floor s':>8} {'of peak':>8}")
    for shot in shots:
        seconds, peak = bench(model, shot, args.steps, device)
        flops = step_flops(video, shot)
        floor = flops / (PEAK_TFLOPS * 1e12)
        fraction = f"{floor / seconds:7.1%}" if device.type == "cuda" else "    n/a"
        print(f"{shot.name:<24} {shot.video_tokens:>7}+{shot.audio_tokens:<4} {seconds:9.3f} "
              f"{peak / 1e9:8.2f} {flops / 1e12:11.3f} {floor:8.3f} {fraction:>8}")


if __name__ == "__main__":
    main()
