"""Time (and on CUDA, peak memory of) the non-DiT components: T5 encode, video VAE decode
(untiled and tiled), audio decode. Random weights, no checkpoint needed.

    .venv/bin/python bench/bench_components.py            # CUDA at published sizes when present
    .venv/bin/python bench/bench_components.py --tiny     # the tiny test sizes (CPU-friendly)
    .venv/bin/python bench/bench_components.py --vae-ckpt-dir /models/ovi   # + tiling error

With `--vae-ckpt-dir` (a folder holding the published Wan2.2-TI2V-5B/Wan2.2_VAE.pth) it also
measures how far the tiled decode is from the untiled one on the trained weights: a synthetic
clip (moving gradients and edges) is encoded, then decoded both ways; max |diff|, mean |diff|
(in [-1, 1] pixel units) and PSNR are printed. Random weights make this figure meaningless
(COMPONENTS.md), which is why it needs the real file.

Published sizes: T5 on 3 texts of 512 tokens; VAE decode of a 960x960_10s latent at 704x1280
(61 latent frames -> 241 frames); audio decode of 314 latents (10 s). Tiny sizes: the tiny
checkpoint's networks on a 128x192, 9-frame clip and 32 audio latents.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.arch import Arch, load_arch, parse_arch  # noqa: E402
from engine.audio_vae import AudioVAEDecoder  # noqa: E402
from engine.testing.tiny_checkpoint import TINY_ARCH  # noqa: E402
from engine.text import T5Encoder  # noqa: E402
from engine.video_vae import Tiling, VideoVAE, build_autoencoder  # noqa: E402
from engine.vocoder import Vocoder  # noqa: E402


def randomise(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Fan-in scaled normal weights (ones for 1-D gains); enough for timing."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.ndim <= 1:
                p.fill_(1.0)
            else:
                std = math.prod(p.shape[1:]) ** -0.5
                p.copy_((torch.randn(p.shape, generator=gen) * std).to(p.dtype))
    return module


def build(factory, device, dtype):
    with torch.device("meta"):
        module = factory()
    module = randomise(module.to_empty(device="cpu"))
    if dtype != torch.float32:  # diffusers warns on any dtype cast, even a no-op one
        module = module.to(dtype)
    return module.to(device).eval().requires_grad_(False)


def measure(fn, device: torch.device, repeats: int) -> tuple[float, int | None]:
    """Median seconds over `repeats` runs after one warm-up run, and the CUDA peak of one run."""
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return sorted(times)[len(times) // 2], peak


def bench_t5(arch, device, repeats):
    t5 = build(lambda: T5Encoder(arch.t5), device, torch.bfloat16)
    ids = torch.randint(3, min(arch.t5.vocab, 600), (3, 512), device=device)
    mask = torch.zeros(3, 512, dtype=torch.long, device=device)
    mask[:, :200] = 1
    with torch.inference_mode():
        return [("T5 encode, 3 x 512 tokens", *measure(lambda: t5(ids, mask), device, repeats))]


def bench_video_vae(arch, device, latent, tiling, repeats):
    vae = VideoVAE(build(lambda: build_autoencoder(arch.video_vae), device, torch.float32), arch.video_vae, device)
    z = torch.randn(latent, device=device, dtype=torch.bfloat16)
    size = f"{latent[3] * 16}x{latent[4] * 16}x{1 + 4 * (latent[2] - 1)}"
    return [(f"VAE decode {size}, untiled", *measure(lambda: vae.decode(z), device, repeats)),
            (f"VAE decode {size}, tiles {tiling.size}/{tiling.stride}",
             *measure(lambda: vae.decode(z, tiling), device, repeats))]


def bench_audio(arch, device, latents, repeats):
    decoder = build(lambda: AudioVAEDecoder(arch.audio_vae), device, torch.bfloat16)
    vocoder = build(lambda: Vocoder(arch.vocoder), device, torch.bfloat16)
    z = torch.randn(1, arch.audio_vae.embed_dim, latents, device=device, dtype=torch.bfloat16)
    with torch.inference_mode():
        return [(f"audio decode, {latents} latents", *measure(lambda: vocoder(decoder(z)), device, repeats))]


def synthetic_clip(frames: int, height: int, width: int) -> torch.Tensor:
    """[1, 3, frames, H, W] in [-1, 1]: smooth gradients plus a moving hard-edged square, the
    two things tile seams disturb."""
    t = torch.linspace(0, 1, frames).view(frames, 1, 1)
    y = torch.linspace(-1, 1, height).view(1, height, 1)
    x = torch.linspace(-1, 1, width).view(1, 1, width)
    red = torch.sin(3 * x + 2 * t) * torch.cos(2 * y)
    green = (x * y + t - 0.5).clamp(-1, 1)
    square = ((x - (t - 0.5)).abs() < 0.25) & ((y - 0.2).abs() < 0.25)
    blue = torch.where(square, 0.9, -0.6).expand(frames, height, width)
    return torch.stack([red.expand(frames, height, width), green, blue]).unsqueeze(0)


def tiling_error(vae: VideoVAE, clip: torch.Tensor, tiling: Tiling) -> tuple[float, float, float]:
    """(max |diff|, mean |diff|, PSNR in dB over the [-1, 1] range) of tiled vs untiled decode."""
    latents = vae.encode(clip)
    untiled, tiled = vae.decode(latents), vae.decode(latents, tiling)
    diff = (tiled - untiled).abs()
    mse = diff.pow(2).mean().item()
    return diff.max().item(), diff.mean().item(), 10 * math.log10(4 / mse) if mse else math.inf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny test sizes (default off CUDA)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--vae-ckpt-dir", type=Path, help="checkpoint folder with the published "
                        "Wan2.2_VAE.pth: also measure the tiled decode's error on trained weights")
    args = parser.parse_args()
    device = torch.device(args.device)
    tiny = args.tiny or device.type != "cuda"
    arch = parse_arch(TINY_ARCH) if tiny else Arch()
    rows = bench_t5(arch, device, args.repeats)
    rows += bench_video_vae(arch, device, (1, 48, 3, 8, 12) if tiny else (1, 48, 61, 44, 80),
                            Tiling(64, 32) if tiny else Tiling(), args.repeats if tiny else 1)
    rows += bench_audio(arch, device, 32 if tiny else 314, args.repeats)

    print(f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
          f"sizes: {'tiny' if tiny else 'published'}, torch {torch.__version__}")
    print(f"{'component':<42} {'seconds':>9} {'peak GiB':>9}")
    for name, seconds, peak in rows:
        print(f"{name:<42} {seconds:>9.3f} {'-' if peak is None else f'{peak / 2**30:.2f}':>9}")
    if args.vae_ckpt_dir:
        vae = VideoVAE.load(args.vae_ckpt_dir, load_arch(args.vae_ckpt_dir).video_vae, device=device)
        clip = synthetic_clip(17, 704, 1280).to(device)
        print(f"\nVAE weights: {args.vae_ckpt_dir}")
        print(f"{'tiled vs untiled decode':<42} {'max':>7} {'mean':>7} {'PSNR dB':>8}")
        for tiling in (Tiling(), Tiling(384, 256), Tiling(512, 384)):
            worst, mean, psnr = tiling_error(vae, clip, tiling)
            print(f"{f'tiles {tiling.size}/{tiling.stride}, 704x1280x17':<42} {worst:>7.4f} {mean:>7.4f} {psnr:>8.2f}")


if __name__ == "__main__":
    main()
