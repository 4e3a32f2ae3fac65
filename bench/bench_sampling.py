"""The sampler's speed modes against the default sampling: time per step, fusion passes skipped,
and how far each one's final latents drift from the full run.

    .venv/bin/python bench/bench_sampling.py                 # tiny model on the CPU
    .venv/bin/python bench/bench_sampling.py --steps 50 --thresholds 0.05,0.1,0.2

Rows: the default (CFG, SLG, two branch passes per step); both branches as one batch
(`cfg_batch`); guidance-free at guidance 1/1 (compared with the two-branch computation at 1/1,
which is what the reference does); `step_cache` at each threshold (compared with the default).
Drift is the relative L2 distance of the final video and audio latents. The tiny model has
random weights, so drift here says how much the approximation moves a sampling trajectory, not
how a real video looks.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.arch import parse_arch  # noqa: E402
from engine.checkpoint import load_fusion_model  # noqa: E402
from engine.fp8 import relative_error  # noqa: E402
from engine.sampling import SamplerSettings, SamplingStats, denoise  # noqa: E402
from engine.testing.tiny_checkpoint import TINY_ARCH  # noqa: E402
from engine.testing.tiny_fusion import write_fusion  # noqa: E402


def run(model, steps: int, **settings):
    g = torch.Generator().manual_seed(0)
    text, vneg, aneg = (torch.randn(n, 64, generator=g).bfloat16() for n in (20, 6, 8))
    stats = SamplingStats()
    started = time.perf_counter()
    out = denoise(model, settings=SamplerSettings(steps=steps, slg_layer=2, **settings), text=text,
                  video_negative=vneg, audio_negative=aneg, video_shape=(48, 5, 8, 8),
                  audio_shape=(40, 20), device=torch.device("cpu"), stats=stats)
    return out, (time.perf_counter() - started) / steps, stats.skipped_steps


def drift(a, b) -> str:
    return f"{relative_error(a[0].float(), b[0].float()):.4f} / {relative_error(a[1].float(), b[1].float()):.4f}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--thresholds", default="0.02,0.05,0.1,0.2,0.4")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "arch.json").write_text(json.dumps(TINY_ARCH))
        write_fusion(tmp, parse_arch(TINY_ARCH), "720x720_5s", seed=3)
        model = load_fusion_model(tmp, "720x720_5s", device=torch.device("cpu"))[0]
    print(f"tiny fusion model, CPU, {args.steps} UniPC steps, 80 video + 40 audio tokens, "
          f"torch {torch.__version__}")
    print("| mode | s/step | fusion passes skipped | drift video / audio (rel. L2) |")
    print("|---|---|---|---|", flush=True)

    def row(name, step, skipped, moved):
        print(f"| {name} | {step:.4f} | {skipped} | {moved} |", flush=True)

    base, base_step, _ = run(model, args.steps)
    row("default (two passes per step)", base_step, "0 %", "-")
    for threshold in (float(t) for t in args.thresholds.split(",")):
        cached, step, skipped = run(model, args.steps, step_cache=threshold)
        row(f"step_cache {threshold:g}", step, f"{100 * len(skipped) / args.steps:.0f} %", drift(cached, base))
    batched, step, _ = run(model, args.steps, cfg_batch=True)
    row("cfg_batch", step, "0 %", drift(batched, base))
    with mock.patch.object(SamplerSettings, "guided", property(lambda self: True)):
        both, both_step, _ = run(model, args.steps, video_guidance=1.0, audio_guidance=1.0)
    row("guidance 1/1, both branches (as the reference)", both_step, "0 %", "-")
    free, step, _ = run(model, args.steps, video_guidance=1.0, audio_guidance=1.0)
    row("guidance 1/1, guidance-free path", step, "0 %", drift(free, both))

if __name__ == "__main__":
    main()
