"""Side by side: the official Ovi denoising loop and ours, resident, block-swapped, fp8, fp8+swap.

    .venv/bin/python bench/bench_memory.py                      # CUDA when present, else tiny CPU sizes
    .venv/bin/python bench/bench_memory.py --swap 20 --steps 50 # a GPU run at 720x720_5s
    .venv/bin/python bench/bench_memory.py --no-reference       # ours only
    .venv/bin/python bench/bench_memory.py --compile            # + rows with torch.compile'd layers

Both run the same random weights (ours materialised on the device, copied into the reference's
model) at the same shot size and settings (UniPC, CFG on, SLG), with the text encoder and VAEs
stood in by fixed embeddings, so the times are the denoising loop's. The reference runs through
its own `OviFusionEngine.generate` from a git-ignored copy in `.ovi-ref/` (copied from
`--reference`, never committed); on the CPU it runs as tests/golden/refenv.py runs it for the
goldens (CUDA autocast emulated, flash-attn on SDPA), on CUDA with its own flash-attn calls.

Columns: total denoise time, time per step, peak device memory (CUDA allocator; on the CPU the
device-resident weight bytes instead, RSS being meaningless per row), and how the final latents
compare with ours resident: bit-identical (swap must be), or the relative error (fp8, and the
reference, which differs by kernel choice and summation order).
"""
from __future__ import annotations

import argparse
import contextlib
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench"), str(REPO / "tests" / "golden")]

from bench_dit import FULL_SHOTS, TINY_SHOTS, Shot, random_model, step_flops  # noqa: E402
from engine.arch import AUDIO_DIT, VIDEO_DIT, parse_arch  # noqa: E402
from engine.checkpoint import quantize_fusion_layers  # noqa: E402
from engine.fp8 import relative_error  # noqa: E402
from engine.offload import move_except, stream_model  # noqa: E402
from engine.sampling import SamplerSettings, denoise, peak_memory_bytes, reset_peak_memory  # noqa: E402
from engine.testing.tiny_checkpoint import TINY_ARCH  # noqa: E402

REF_COPY = REPO / ".ovi-ref"
FETCH_HINT = ("git clone https://github.com/character-ai/Ovi .ovi-ref && "
              "git -C .ovi-ref checkout 5b69b25")
SEED = 103


@dataclass
class Row:
    name: str
    total_s: float
    step_s: float
    memory_bytes: int
    video: torch.Tensor
    audio: torch.Tensor


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(run, steps: int, device):
    """One warm-up step (kernels, allocator, the streamer's first loads), then `steps` timed:
    (result, seconds, peak device bytes)."""
    run(1)
    _sync(device)
    reset_peak_memory(device)
    start = time.perf_counter()
    result = run(steps)
    _sync(device)
    return result, time.perf_counter() - start, peak_memory_bytes(device)


def _texts(text_dim: int, device: torch.device):
    g = torch.Generator().manual_seed(1)
    return [torch.randn(n, text_dim, generator=g).bfloat16().to(device) for n in (100, 20, 30)]


def _device_weight_bytes(model, device: torch.device, streamer=None) -> int:
    """Weights the device holds: the resident ones plus the streamer's slot ring."""
    streamed = streamer.streamed_ids if streamer is not None else frozenset()
    resident = sum(p.numel() * p.element_size() for p in model.parameters()
                   if p.device == device and id(p) not in streamed)
    return resident + (streamer.resident_bytes if streamer is not None else 0)


def run_ours(name, model, shot: Shot, settings: SamplerSettings, device, streamer=None) -> Row:
    text, vneg, aneg = _texts(model.video_model.params.text_dim, device)

    def run(steps):
        return denoise(model, settings=SamplerSettings(**{**settings.__dict__, "steps": steps}),
                       text=text, video_negative=vneg, audio_negative=aneg,
                       video_shape=shot.video_shape, audio_shape=shot.audio_shape, device=device,
                       streamer=streamer)

    (video, audio), total, peak = _timed(run, settings.steps, device)
    memory = peak if device.type == "cuda" else _device_weight_bytes(model, device, streamer)
    return Row(name, total, total / settings.steps, memory, video.cpu(), audio.cpu())


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


def run_reference(path: Path, ours, shot: Shot, settings: SamplerSettings, device) -> Row:
    import make_fusion_goldens as goldens
    import refenv
    on_cpu = device.type == "cpu"
    text, vneg, aneg = _texts(ours.video_model.params.text_dim, device)
    x = {"in.text": text, "in.video_negative": vneg, "in.audio_negative": aneg}
    emulation = refenv.cuda_autocast_emulation() if on_cpu else contextlib.nullcontext()
    with refenv.import_reference(path, on_cpu=on_cpu) as ref, torch.inference_mode(), emulation:
        fusion = ref.module("ovi.modules.fusion")
        with torch.device("meta"):
            model = fusion.FusionModel(goldens._config(ours.video_model.params),
                                       goldens._config(ours.audio_model.params))
        model.load_state_dict({k: v.clone() for k, v in ours.state_dict().items()}, assign=True)
        model = model.to(device, torch.bfloat16).eval()
        model.set_rope_params()
        engine, hw = goldens.reference_engine(ref, model, x, shot.video_shape, shot.audio_shape,
                                              str(device))

        def run(steps):
            video, audio, _ = engine.generate(
                text_prompt="bench", video_frame_height_width=list(hw), seed=settings.seed,
                solver_name=settings.solver, sample_steps=steps, shift=settings.shift,
                video_guidance_scale=settings.video_guidance,
                audio_guidance_scale=settings.audio_guidance, slg_layer=settings.slg_layer,
                video_negative_prompt="v-", audio_negative_prompt="a-")
            return video, audio

        (video, audio), total, peak = _timed(run, settings.steps, device)
        memory = (peak if device.type == "cuda"
                  else sum(p.numel() * p.element_size() for p in model.parameters()))
        del engine, model
    return Row("official Ovi (5b69b25)", total, total / settings.steps, memory,
               torch.from_numpy(video).bfloat16(), torch.from_numpy(audio).T.contiguous().bfloat16())


def build(video, audio, device, *, fp8: bool, swap: int, compiled: bool = False):
    model = random_model(video, audio, device)
    if fp8:
        quantize_fusion_layers(model)
    if compiled:  # compiled in the warm-up step, which is not timed
        model.compile_layers()
    streamer = None
    if swap:
        move_except(model, "cpu")
        streamer = stream_model(model, swap, device)
    return model, streamer


def compare(row: Row, base: Row) -> str:
    if torch.equal(row.video, base.video) and torch.equal(row.audio, base.audio):
        return "bit-identical"
    return (f"rel.err v {relative_error(row.video, base.video):.4f} "
            f"a {relative_error(row.audio, base.audio):.4f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, help="timed steps (default 50 on CUDA, 2 on the CPU)")
    parser.add_argument("--swap", type=int, help="fusion layers streamed (default 2/3 of them)")
    parser.add_argument("--reference", type=Path, default=Path("/work/ovi-ref"))
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd layers")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    if device.type == "cuda":
        video, audio, shot, steps = VIDEO_DIT, AUDIO_DIT, FULL_SHOTS[0], args.steps or 50
    else:
        torch.set_num_threads(2)
        arch = parse_arch(TINY_ARCH)
        video, audio, shot, steps = arch.video_dit, arch.audio_dit, TINY_SHOTS[0], args.steps or 2
    # two thirds of the layers, and always more than the ring's 2 slots so that the tiny model streams
    swap = args.swap if args.swap is not None else max(video.num_layers * 2 // 3, 3)
    settings = SamplerSettings(steps=steps, seed=SEED, slg_layer=min(11, video.num_layers - 2))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {device} ({name}); torch "
          f"{torch.__version__}; shot {shot.name}, {shot.video_tokens}+{shot.audio_tokens} tokens; "
          f"{steps} steps, {settings.solver}, CFG on, SLG layer {settings.slg_layer}; "
          f"FLOP floor {step_flops(video, shot) / 989e12:.3f} s/step at 989 TF/s")

    rows: list[Row] = []
    resident, _ = build(video, audio, device, fp8=False, swap=0)
    reference = None if args.no_reference else copy_reference(args.reference)
    if reference is not None:
        rows.append(run_reference(reference, resident, shot, settings, device))
    rows.insert(0, run_ours("ours, resident bf16", resident, shot, settings, device))
    attention = resident.attention_backend
    del resident
    configurations = [(f"ours, swap {swap}", False, swap, False), ("ours, fp8 scaled", True, 0, False),
                      (f"ours, fp8 scaled + swap {swap}", True, swap, False)]
    if args.compile:
        configurations += [("ours, compiled", False, 0, True),
                           (f"ours, compiled + swap {swap}", False, swap, True)]
    for label, fp8, n, compiled in configurations:
        model, streamer = build(video, audio, device, fp8=fp8, swap=n, compiled=compiled)
        rows.append(run_ours(label, model, shot, settings, device, streamer))
        del model, streamer
        if device.type == "cuda":
            torch.cuda.empty_cache()

    memory = "peak GB" if device.type == "cuda" else "weights MB"
    scale = 1e9 if device.type == "cuda" else 1e6
    print(f"attention: {attention}")
    print(f"| {'configuration':<32} | {'denoise s':>9} | {'s/step':>8} | {memory:>10} | "
          f"vs ours resident |")
    print(f"|{'-' * 34}|{'-' * 11}|{'-' * 10}|{'-' * 12}|{'-' * 18}|")
    for row in rows:
        print(f"| {row.name:<32} | {row.total_s:9.3f} | {row.step_s:8.4f} | "
              f"{row.memory_bytes / scale:10.2f} | {compare(row, rows[0])} |")


if __name__ == "__main__":
    main()
