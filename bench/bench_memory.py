"""Side by side, end to end: the official Ovi pipeline and ours on one random checkpoint folder.

    .venv/bin/python bench/bench_memory.py                      # CUDA when present, else tiny CPU sizes
    .venv/bin/python bench/bench_memory.py --steps 50 --swap 20 # a GPU run at 720x720_5s
    .venv/bin/python bench/bench_memory.py --configs resident,12gb,8gb --no-reference
    .venv/bin/python bench/bench_memory.py --compile            # + rows with torch.compile'd layers

The folder holds every checkpoint file in its real format with random weights
(engine.testing.tiny_checkpoint): published sizes on CUDA, written once into
cache/bench-checkpoint/ (about 40 GB, git-ignored); the tiny sizes with a short clip on the CPU.
A shot is what each pipeline does for one prompt: text encoding, denoising (UniPC, CFG on, SLG),
audio and video decode.
- The official `OviFusionEngine` runs from a git-ignored copy in `.ovi-ref/` (copied from
  `--reference`, never committed) with its own networks loaded from the same files and kept
  resident, as it keeps them (tests/golden/make_*_goldens.py build them at the folder's sizes);
  on the CPU through tests/golden/refenv.py (CUDA autocast emulated, flash-attn on SDPA).
- Ours is `engine.pipeline.generate` with each configuration's memory settings. Its prompts are encoded first, as a
  render does (one text-encoder load for every shot); that phase's peak counts, its time is
  printed apart.
Each pipeline renders a warm-up shot (1 step: loading, compiling, fp8 conversion), then the
timed shot with a new prompt.

Columns: end-to-end seconds of the timed shot, seconds per denoising step, peak device memory
(CUDA allocator peak over the shot and our text encoding; on the CPU the fusion weights the
device holds, RSS being meaningless per row), and how the shot's frames and audio compare with
ours resident: bit-identical (swap must be), or relative errors (fp8, compile, and the
official code, which differs by kernel choice and summation order).
"""
from __future__ import annotations

import argparse
import contextlib
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench"), str(REPO / "tests" / "golden")]

from bench_dit import Shot, step_flops  # noqa: E402
from engine.arch import load_arch  # noqa: E402
from engine.fp8 import relative_error  # noqa: E402
from engine.networks import Networks  # noqa: E402
from engine.pipeline import ShotRequest, encode_prompts, generate  # noqa: E402
from engine.presets import MemoryConfig, resolve_memory  # noqa: E402
from engine.device import free_device_bytes, peak_memory_bytes, reset_peak_memory  # noqa: E402
from engine.sampling import SamplerSettings  # noqa: E402
from engine.testing.tiny_checkpoint import TINY_SHORT_ARCH, write_tiny_checkpoint  # noqa: E402
from engine.variants import get_variant, snap_t2v_size  # noqa: E402

REF_COPY = REPO / ".ovi-ref"
FULL_CHECKPOINT = REPO / "cache" / "bench-checkpoint"
FETCH_HINT = ("git clone https://github.com/character-ai/Ovi .ovi-ref && "
              "git -C .ovi-ref checkout 5b69b25")
VARIANT = "720x720_5s"
SEED = 103
PROMPTS = ("A lighthouse keeper climbs the stairs at dusk. <S>Storm's coming.<E> Audio: wind, creaking wood.",
           "Rain on a tin roof at night, a cat watches from the window. Audio: steady rain, a soft purr.")
NEGATIVES = ("jitter, bad hands, blur, distortion", "robotic, muffled, echo, distorted")


@dataclass
class Row:
    name: str
    total_s: float
    step_s: float
    memory_bytes: int
    frames: torch.Tensor  # uint8 [F, H, W, 3]
    audio: torch.Tensor  # float32 [samples]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def checkpoint_folder(device: torch.device, scratch: Path) -> Path:
    """Published sizes on CUDA (kept for the next run); on the CPU the tiny sizes with a short
    clip, so that a smoke run (two whole shots per row) is quick."""
    if device.type != "cuda":
        return write_tiny_checkpoint(scratch / "tiny", seed=0, arch_json=TINY_SHORT_ARCH)
    done = FULL_CHECKPOINT / ".complete"
    if not done.exists():
        print(f"writing a random full-size checkpoint to {FULL_CHECKPOINT} (once)", flush=True)
        write_tiny_checkpoint(FULL_CHECKPOINT, seed=0, arch_json={"_comment": "random, published sizes"})
        done.touch()
    return FULL_CHECKPOINT


def request(memory: MemoryConfig, prompt: str, steps: int, settings: SamplerSettings) -> ShotRequest:
    return ShotRequest(prompt=prompt, video_negative=NEGATIVES[0], audio_negative=NEGATIVES[1],
                       height=720, width=720, memory=memory,
                       sampler=SamplerSettings(**{**settings.__dict__, "steps": steps}))


def _device_weight_bytes(nets: Networks) -> int:
    """Fusion weights the device holds: the resident ones plus the streamer's slot ring."""
    streamer = nets.streamer
    streamed = streamer.streamed_ids if streamer is not None else frozenset()
    resident = sum(p.numel() * p.element_size() for p in nets.model.parameters()
                   if p.device == nets.device and id(p) not in streamed)
    return resident + (streamer.resident_bytes if streamer is not None else 0)


def run_ours(name: str, ckpt: Path, options: dict, settings: SamplerSettings, device, cache: Path) -> Row:
    options = dict(options)
    preset, compiled = options.pop("preset", None), options.pop("compile", False)
    config = resolve_memory(preset, free_bytes=free_device_bytes(device)).override(**options)
    nets = Networks(ckpt, VARIANT, device=device, cache_dir=cache, compile=compiled)
    try:
        reset_peak_memory(device)
        started = time.perf_counter()
        encode_prompts(nets, [*PROMPTS, *NEGATIVES], config)
        _sync(device)
        encode_s, encode_peak = time.perf_counter() - started, peak_memory_bytes(device)
        generate(nets, request(config, PROMPTS[0], 1, settings))  # warm-up: loading, compiling, fp8
        _sync(device)
        started = time.perf_counter()
        result = generate(nets, request(config, PROMPTS[1], settings.steps, settings))
        _sync(device)
        total = time.perf_counter() - started
        memory = (max(encode_peak, result.peak_memory_bytes) if device.type == "cuda"
                  else _device_weight_bytes(nets))
    finally:
        nets.close()
    print(f"  {name}: text encoding {encode_s:.2f} s (all prompts, before the shots); "
          f"shot phases {', '.join(f'{k} {v:.2f}' for k, v in result.timings.items())}", flush=True)
    return Row(name, total, result.timings["denoise"] / settings.steps, memory, result.frames, result.audio)


def copy_reference(source: Path) -> Path | None:
    """The reference checkout in `.ovi-ref/` (git-ignored), copied from `source` if needed."""
    if (REF_COPY / "ovi").is_dir():
        return REF_COPY
    if not (source / "ovi").is_dir():
        print(f"reference: not found at {source}; fetch it with `{FETCH_HINT}` "
              "(or pass --reference PATH); running ours only")
        return None
    shutil.copytree(source, REF_COPY, ignore=shutil.ignore_patterns(".git"))
    return REF_COPY


def run_reference(path: Path, ckpt: Path, settings: SamplerSettings, device) -> Row:
    import make_pipeline_goldens as official
    import refenv
    on_cpu = device.type == "cpu"
    emulation = refenv.cuda_autocast_emulation() if on_cpu else contextlib.nullcontext()
    with refenv.import_reference(path, on_cpu=on_cpu) as ref, torch.inference_mode(), emulation:
        engine = official.official_engine(ref, ckpt, device)
        model = engine.model

        def shot(prompt: str, steps: int):
            return official.generate(engine, prompt, settings={
                **settings.__dict__, "steps": steps, "video_negative": NEGATIVES[0],
                "audio_negative": NEGATIVES[1]})

        def timed(prompt: str, steps: int):
            _sync(device)
            reset_peak_memory(device)
            started = time.perf_counter()
            result = shot(prompt, steps)
            _sync(device)
            return result, time.perf_counter() - started

        shot(PROMPTS[0], 1)  # warm-up
        _, one_step = timed(PROMPTS[0], 1)
        (frames, audio), total = timed(PROMPTS[1], settings.steps)
        memory = (peak_memory_bytes(device) if not on_cpu
                  else sum(p.numel() * p.element_size() for p in model.parameters()))
        del engine, model
    # its steps are not timed apart from its decode: the difference of an N-step and a 1-step shot
    step = (total - one_step) / (settings.steps - 1) if settings.steps > 1 else float("nan")
    kernels = "flash-attn" if not on_cpu and refenv.flash_attn_installed() else "SDPA"
    return Row(f"official Ovi (5b69b25, {kernels})", total, step, memory, frames, audio)


def compare(row: Row, base: Row) -> str:
    if torch.equal(row.frames, base.frames) and torch.equal(row.audio, base.audio):
        return "bit-identical"
    return (f"rel.err frames {relative_error(row.frames.float(), base.frames.float()):.4f} "
            f"audio {relative_error(row.audio, base.audio):.4f}")


def configurations(swap: int, compiled: bool) -> dict[str, tuple[str, dict]]:
    """key -> (row label, options: a preset, compile, and memory settings of engine.presets)."""
    table = {
        "resident": ("ours, resident bf16", {}),
        "swap": (f"ours, swap {swap}", {"blocks_to_swap": swap}),
        "fp8": ("ours, fp8 scaled", {"fp8": "scaled"}),
        "fp8swap": (f"ours, fp8 scaled + swap {swap}", {"fp8": "scaled", "blocks_to_swap": swap}),
        "12gb": ("ours, preset 12gb", {"preset": "12gb"}),
        "8gb": ("ours, preset 8gb", {"preset": "8gb"}),
    }
    if compiled:
        table["compiled"] = ("ours, compiled", {"compile": True})
        table["compiledswap"] = (f"ours, compiled + swap {swap}", {"compile": True, "blocks_to_swap": swap})
    return table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, help="denoising steps of the timed shot (default 50 on CUDA, 2 on the CPU)")
    parser.add_argument("--swap", type=int, help="fusion layers streamed (default 2/3 of them)")
    parser.add_argument("--configs", help="comma-separated subset of: resident, swap, fp8, fp8swap, "
                                          "12gb, 8gb (and compiled, compiledswap with --compile)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd layers")
    parser.add_argument("--reference", type=Path, default=Path("/work/ovi-ref"))
    parser.add_argument("--no-reference", action="store_true")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as scratch:
        ckpt = checkpoint_folder(device, Path(scratch))
        arch = load_arch(ckpt)
        variant = arch.variant.apply(get_variant(VARIANT))
        height, width = snap_t2v_size(720, 720, variant.video_area)
        shot = Shot(f"{VARIANT} ({width}x{height})",
                    (arch.video_dit.in_dim, variant.video_latent_length, height // 16, width // 16),
                    (variant.audio_latent_length, arch.audio_dit.in_dim))
        steps = args.steps or (50 if device.type == "cuda" else 2)
        layers = arch.video_dit.num_layers
        # two thirds of the layers, and always more than the ring's 2 slots so that the tiny model streams
        swap = args.swap if args.swap is not None else max(layers * 2 // 3, 3)
        settings = SamplerSettings(steps=steps, seed=SEED, slg_layer=min(11, layers - 2))
        table = configurations(swap, args.compile)
        chosen = args.configs.split(",") if args.configs else list(table)
        unknown = [c for c in chosen if c not in table]
        if unknown:
            parser.error(f"unknown configuration(s) {', '.join(unknown)}; choose from {', '.join(table)}")
        if chosen[0] != "resident":
            chosen.insert(0, "resident")  # the baseline every row is compared with
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
        print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {device} ({name}); torch "
              f"{torch.__version__}; shot {shot.name}, {shot.video_tokens}+{shot.audio_tokens} tokens; "
              f"{steps} steps, {settings.solver}, CFG on, SLG layer {settings.slg_layer}; "
              f"FLOP floor {step_flops(arch.video_dit, shot) / 989e12:.3f} s/step at 989 TF/s", flush=True)

        rows = [run_ours(table[key][0], ckpt, table[key][1], settings, device, Path(scratch) / "cache")
                for key in chosen]
        reference = None if args.no_reference else copy_reference(args.reference)
        if reference is not None:
            rows.insert(1, run_reference(reference, ckpt, settings, device))

    memory = "peak GB" if device.type == "cuda" else "weights MB"
    scale = 1e9 if device.type == "cuda" else 1e6
    print(f"| {'configuration':<32} | {'shot s':>8} | {'s/step':>8} | {memory:>10} | vs ours resident |")
    print(f"|{'-' * 34}|{'-' * 10}|{'-' * 10}|{'-' * 12}|{'-' * 18}|")
    for row in rows:
        step = "-" if row.step_s != row.step_s else f"{row.step_s:8.4f}"
        print(f"| {row.name:<32} | {row.total_s:8.3f} | {step:>8} | "
              f"{row.memory_bytes / scale:10.2f} | {compare(row, rows[0])} |")


if __name__ == "__main__":
    main()
