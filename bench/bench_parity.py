"""Calibrate the whole-shot parity bound: how far harmless changes and small real mistakes move
a whole shot from the reference's (tests/golden/data/pipeline_shots.safetensors).

    .venv/bin/python bench/bench_parity.py            # tiny checkpoint, CPU, t2v and i2v shots

Harmless: Linears computed in fp32 (another kernel's rounding), one thread instead of two,
SDPA's math kernel instead of its default. Mistakes: the blocks' modulation kept in fp32
instead of the reference's bf16, the audio RoPE without its 0.19676 position scaling (the
video tower's factor). Prints, per change and shot: mean and worst frame difference in levels
(of 255) and the waveform's relative L2 error. tests/test_pipeline_parity.py sets its bounds
between the two groups.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import tempfile
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import engine.layers  # noqa: E402
import engine.math  # noqa: E402
import engine.model  # noqa: E402
from engine.networks import Networks  # noqa: E402
from engine.pipeline import ShotRequest, generate  # noqa: E402
from engine.sampling import SamplerSettings  # noqa: E402
from engine.testing.tiny_checkpoint import TINY_SHORT_ARCH, write_tiny_checkpoint  # noqa: E402

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "golden" / "data" / "pipeline_shots.safetensors"


def _fp32_linear(self, x):
    bias = None if self.bias is None else self.bias.float()
    return F.linear(x.float(), self.weight.float(), bias).bfloat16()


def _fp32_modulation(self, e0):
    chunks = (self.modulation.float() + e0.float()).chunk(self.modulation.shape[1], dim=2)
    return tuple(c.squeeze(2) for c in chunks)


def _unscaled_audio_rope(length, head_dim, scale, device=None):
    return engine.math.audio_rope(length, head_dim, 1.0, device)


@contextlib.contextmanager
def _threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _math_attention():
    from torch.nn.attention import SDPBackend, sdpa_kernel
    return sdpa_kernel(SDPBackend.MATH)


CHANGES = {
    "none (today's engine)": ("-", contextlib.nullcontext),
    "fp32 Linears": ("harmless", lambda: mock.patch.object(engine.layers.Linear, "forward", _fp32_linear)),
    "1 thread instead of 2": ("harmless", lambda: _threads(1)),
    "SDPA math kernel": ("harmless", _math_attention),
    "modulation in fp32": ("mistake", lambda: mock.patch.object(engine.layers.Modulation, "forward", _fp32_modulation)),
    "audio RoPE unscaled": ("mistake", lambda: mock.patch.object(engine.model, "audio_rope", _unscaled_audio_rope)),
}


def render(ckpt: Path, cache: Path, shot: dict, settings: dict, image) -> tuple[torch.Tensor, torch.Tensor]:
    sampler = SamplerSettings(**{k: settings[k] for k in ("seed", "solver", "steps", "shift",
                                                          "video_guidance", "audio_guidance", "slg_layer")})
    nets = Networks(ckpt, "720x720_5s", cache_dir=cache)
    try:
        result = generate(nets, ShotRequest(
            prompt=shot["prompt"], video_negative=settings["video_negative"],
            audio_negative=settings["audio_negative"], height=shot.get("height") or 0,
            width=shot.get("width") or 0, first_frame=image if shot.get("image") else None, sampler=sampler))
    finally:
        nets.close()
    return result.frames, result.audio


def compare(frames, audio, want_frames, want_audio) -> str:
    diff = (frames.int() - want_frames.int()).abs()
    audio_err = ((audio.float() - want_audio.float()).norm() / want_audio.float().norm()).item()
    return f"{diff.float().mean().item():.3f} | {int(diff.max())} | {audio_err:.4f}"


def main() -> None:
    torch.set_num_threads(2)
    with safe_open(str(GOLDEN), "pt") as f:
        meta = f.metadata()
    shots, settings, tensors = json.loads(meta["shots"]), json.loads(meta["settings"]), load_file(str(GOLDEN))
    image = Image.fromarray(tensors["i2v.image"].numpy())
    print("| change | kind | shot | mean levels | worst levels | waveform rel. L2 |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = write_tiny_checkpoint(Path(tmp) / "ckpts", seed=0, arch_json=TINY_SHORT_ARCH)
        for name, (kind, change) in CHANGES.items():
            for shot_name, shot in shots.items():
                with change():
                    frames, audio = render(ckpt, Path(tmp) / "cache", shot, settings, image)
                row = compare(frames, audio, tensors[f"{shot_name}.frames"], tensors[f"{shot_name}.audio"])
                print(f"| {name} | {kind} | {shot_name} | {row} |", flush=True)


if __name__ == "__main__":
    main()
