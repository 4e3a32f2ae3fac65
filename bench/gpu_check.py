"""The GPU check: the fusion DiT and the sampler, official code against ours in each mode, one table.

    python3 bench/gpu_check.py                   # CUDA: published sizes, 720x720_5s, ~5 minutes on an H200
    python3 bench/gpu_check.py --device cpu      # tiny sizes: the CI smoke run (seconds)
    python3 bench/gpu_check.py --steps 6 --only resident,fp8-matmul,draft

What it needs is what the lent GPU machine has (python3 with torch, triton, einops, safetensors):
random full-size weights are generated on the GPU and kept once in CPU memory (no checkpoint
file); every row builds its own model from them on the device, runs `--steps` denoising steps of
one 720x720 5 s shot (UniPC, CFG on, SLG) on the same random text embeddings and seed, measures
the step time (median of the steps after the first) and the device's peak memory, then frees it.
The official code is the reference checkout's own `FusionModel` and `OviFusionEngine.generate`
loop (its text encoder and VAEs replaced by stand-ins: the same embeddings in, latents out),
imported from `--reference` (default: `.ovi-ref/` in the working tree, which travels to the GPU
machine with it; else /work/ovi-ref); its step time is (N-step run - 1-step run) / (N - 1). It
runs on SDPA where flash-attn is not installed, as on the lent machine.

Columns: seconds per step, peak device memory (CUDA allocator peak: weights + activations of
that row alone), the official code's step time over this row's (x official), and how the row's
final latents compare with ours resident (bit-identical, or the relative error). Rows that change
the maths on purpose (guidance-free, step cache, draft) say so instead; the draft row's speed-up
is per shot (its steps against the 50 of a final). Kernels that are not installed (flash-attn
2/3, SageAttention) and modes the engine lacks are listed as skipped.
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench"), str(REPO / "tests" / "golden")]

from bench_dit import Shot, step_flops  # noqa: E402
from engine import fp8  # noqa: E402
from engine.arch import AUDIO_DIT, VIDEO_DIT, Arch, parse_arch  # noqa: E402
from engine.attention import available_attention_backends  # noqa: E402
from engine.device import peak_memory_bytes, reset_peak_memory  # noqa: E402
from engine.fp8 import relative_error  # noqa: E402
from engine.model import FusionModel  # noqa: E402
from engine.offload import move_except, stream_model  # noqa: E402
from engine.memory_model import ShotSize  # noqa: E402
from engine.presets import PRESETS, plan_memory, resolve_memory  # noqa: E402
from engine.sampling import SamplerSettings, denoise  # noqa: E402
from engine.testing.tiny_checkpoint import TINY_SHORT_ARCH  # noqa: E402
from engine.variants import get_variant, snap_t2v_size  # noqa: E402

FINAL_STEPS = 50  # a final render's steps, for the per-shot speed-up of the draft row
DRAFT_STEPS, DISTILLED_DRAFT_STEPS = 12, 4  # as ovi_studio.storyboard's draft tier
SWAP = 20
SEED = 103
TEXT_ROWS = (120, 30, 40)  # positive, video negative, audio negative embedding lengths


@dataclass
class Result:
    name: str
    step_s: float | None = None
    peak_bytes: int | None = None
    video: torch.Tensor | None = None
    audio: torch.Tensor | None = None
    note: str = ""  # why it is skipped, or what it compares with
    per_shot: float | None = None  # steps of a shot of this row (draft), for the speed-up


@dataclass
class Bench:
    arch: Arch
    shot: Shot
    device: torch.device
    steps: int
    weights: dict[str, torch.Tensor]  # the random weights, in CPU memory
    texts: tuple[torch.Tensor, torch.Tensor, torch.Tensor]

    @property
    def settings(self) -> SamplerSettings:
        return SamplerSettings(steps=self.steps, seed=SEED, slg_layer=min(11, self.arch.video_dit.num_layers - 2))


def random_weights(arch: Arch, device: torch.device) -> dict[str, torch.Tensor]:
    """bf16 weights for every key of the fusion model: drawn on `device` (fast on a GPU), kept
    in CPU memory so that each row starts from the same bits with only its own model resident."""
    with torch.device("meta"):
        model = FusionModel(arch.video_dit, arch.audio_dit)
    g = torch.Generator(device).manual_seed(0)
    weights = {}
    for name, p in model.state_dict().items():
        if "norm" in name:
            t = 1.0 + 0.1 * torch.randn(p.shape, device=device, generator=g)
        else:
            t = torch.randn(p.shape, device=device, generator=g) / max(p.shape[1:].numel(), 1) ** 0.5
        weights[name] = t.bfloat16().cpu()
    return weights


def build(bench: Bench, device: torch.device | None = None) -> FusionModel:
    with torch.device("meta"):
        model = FusionModel(bench.arch.video_dit, bench.arch.audio_dit)
    model.load_state_dict(bench.weights, strict=True, assign=True)  # aliases the CPU copy
    if device is not None:
        move_except(model, device)  # fresh device tensors; the CPU copy stays as it was
    return model.eval().requires_grad_(False)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_ours(bench: Bench, name: str, model: FusionModel, *, streamer=None, note: str = "",
             per_shot: float | None = None, **overrides) -> Result:
    """`bench.steps` steps of the shot; step time from the step callbacks."""
    device = bench.device
    settings = dataclasses.replace(bench.settings, **overrides)
    stamps: list[float] = []

    def tick(step: int, total: int) -> None:
        _sync(device)
        stamps.append(time.perf_counter())

    reset_peak_memory(device)
    _sync(device)
    stamps.append(time.perf_counter())
    text, video_negative, audio_negative = bench.texts
    video, audio = denoise(model, settings=settings, text=text, video_negative=video_negative,
                           audio_negative=audio_negative, video_shape=bench.shot.video_shape,
                           audio_shape=bench.shot.audio_shape, device=device, callback=tick,
                           streamer=streamer)
    intervals = sorted(b - a for a, b in zip(stamps[1:], stamps[2:])) or [stamps[1] - stamps[0]]
    peak = peak_memory_bytes(device) if device.type == "cuda" else None
    return Result(name, intervals[len(intervals) // 2], peak, video.float().cpu(), audio.float().cpu(),
                  note, per_shot)


def run_official(bench: Bench, reference: Path) -> Result:
    """The reference's FusionModel with the same weights, sampled by its own generate loop."""
    import make_fusion_goldens as goldens
    import refenv
    device, on_cpu = bench.device, bench.device.type == "cpu"
    emulation = refenv.cuda_autocast_emulation() if on_cpu else _nothing()
    with refenv.import_reference(reference, on_cpu=on_cpu) as ref, torch.inference_mode(), emulation:
        fusion = ref.module("ovi.modules.fusion")
        with torch.device("meta"):
            model = fusion.FusionModel(goldens._config(bench.arch.video_dit),
                                       goldens._config(bench.arch.audio_dit))
        model.load_state_dict(bench.weights, strict=True, assign=True)
        model = model.to(device).eval()
        model.set_rope_params()
        text, video_negative, audio_negative = (t.to(device) for t in bench.texts)
        x = {"in.text": text, "in.video_negative": video_negative, "in.audio_negative": audio_negative,
             "in.first_frame": None}
        engine, hw = goldens.reference_engine(ref, model, x, bench.shot.video_shape,
                                              bench.shot.audio_shape, device=str(device))
        s = bench.settings

        def timed(steps: int):
            _sync(device)
            started = time.perf_counter()
            result = engine.generate(
                text_prompt="bench", video_frame_height_width=list(hw), seed=s.seed,
                solver_name=s.solver, sample_steps=steps, shift=s.shift,
                video_guidance_scale=s.video_guidance, audio_guidance_scale=s.audio_guidance,
                slg_layer=s.slg_layer, video_negative_prompt="v-", audio_negative_prompt="a-")
            _sync(device)
            if result is None:
                raise RuntimeError("the official generate() failed (its traceback is logged above)")
            return result, time.perf_counter() - started

        timed(1)  # warm-up
        _, one = timed(1)
        reset_peak_memory(device)
        (video, audio, _), total = timed(bench.steps)
        peak = peak_memory_bytes(device) if device.type == "cuda" else None
        del engine, model
    kernels = "flash-attn" if not on_cpu and refenv.flash_attn_installed() else "SDPA"
    step = (total - one) / (bench.steps - 1) if bench.steps > 1 else total
    return Result(f"official Ovi (5b69b25, {kernels})", step, peak, torch.from_numpy(video).float(),
                  torch.from_numpy(audio).T.float())


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def quantized(bench: Bench, block: int, matmul: bool) -> FusionModel:
    """Our model with its fusion layers in fp8 (row scales + fp8 matmuls, or block scales),
    quantised on the device one Linear at a time."""
    model = build(bench, bench.device)
    for tower in (model.video_model, model.audio_model):
        fp8.quantize_linears(tower.blocks, block=block)
    if matmul:
        fp8.use_fp8_matmul(model)
    _free(bench.device)
    return model


def rows(bench: Bench) -> dict[str, Callable[[], Result]]:
    """key -> a function that builds that row's model, runs it and frees it."""
    device = bench.device
    available = available_attention_backends(device)
    layers = bench.arch.video_dit.num_layers
    swap = min(SWAP, layers - 1) if device.type == "cuda" else max(layers * 2 // 3, 3)
    fp8_matmul_here = fp8.fp8_matmul_available(device) or device.type == "cpu"  # CPU: _scaled_mm exists
    sampler_fields = {f.name for f in dataclasses.fields(SamplerSettings)}

    def resident(backend: str = "sdpa", name: str = "ours, resident bf16 (SDPA)", **kw) -> Callable[[], Result]:
        def run():
            if backend not in available:
                return Result(name, note=f"skipped: {backend} not installed here")
            model = build(bench, device)
            model.attention_backend = backend
            return run_ours(bench, name, model, **kw)
        return run

    def compiled():
        model = build(bench, device)
        model.compile_layers()
        run_ours(bench, "warm-up", model)  # compiles
        return run_ours(bench, "ours, compiled (SDPA)", model)

    def fp8_row(matmul: bool):
        def run():
            if matmul and not fp8_matmul_here:
                return Result("ours, fp8 matmul", note="skipped: no fp8 tensor cores here")
            block = fp8.ROWWISE if matmul else fp8.BLOCK
            name = "ours, fp8 matmul (row scales)" if matmul else "ours, fp8 block-scaled (bf16 matmul)"
            return run_ours(bench, name, quantized(bench, block, matmul))
        return run

    def swapped(blocks: int, name: str, fp8_block: bool = False):
        def run():
            model = build(bench)  # in CPU memory: the streamed layers stay there
            if fp8_block:
                for tower in (model.video_model, model.audio_model):
                    fp8.quantize_linears(tower.blocks)
            streamer = stream_model(model, blocks, device)
            return run_ours(bench, name, model, streamer=streamer)
        return run

    def preset(key: str):
        p = PRESETS[key]
        h, w = bench.shot.video_shape[2] * 16, bench.shot.video_shape[3] * 16
        shot = ShotSize(h, w, bench.shot.video_tokens, bench.shot.audio_tokens)
        blocks = plan_memory(resolve_memory(key, free_bytes=0), bench.arch, shot).blocks_to_swap
        return swapped(blocks, f"ours, preset {key} (swap {blocks}{', fp8' if p.fp8 else ''})", p.fp8)

    def step_cache():
        if "step_cache" not in sampler_fields:
            return Result("ours, step cache", note="skipped: this engine has no step cache yet")
        return resident(name="ours, step cache 0.05", note="step cache on", step_cache=0.05)()

    free_guidance = dict(video_guidance=1.0, audio_guidance=1.0, slg_layer=-1)
    return {
        "resident": resident(),
        "cudnn": resident("cudnn", "ours, resident bf16 (cuDNN)"),
        "flash2": resident("flash2", "ours, resident bf16 (FA2)"),
        "flash3": resident("flash3", "ours, resident bf16 (FA3)"),
        "sage": resident("sage", "ours, SageAttention (8-bit)"),
        "compiled": compiled,
        "fp8-matmul": fp8_row(True),
        "fp8-block": fp8_row(False),
        "swap": swapped(swap, f"ours, swap {swap}"),
        "12gb": preset("12gb"),
        "8gb": preset("8gb"),
        "guidance-free": resident(name="ours, guidance-free (both scales 1)",
                                  note="other maths: one branch", **free_guidance),
        "step-cache": step_cache,
        "draft": resident(name=f"ours, draft ({DISTILLED_DRAFT_STEPS} steps, guidance-free)",
                          note="draft tier", per_shot=DISTILLED_DRAFT_STEPS, **free_guidance),
    }


def compare(row: Result, base: Result) -> str:
    if row.video is None or base.video is None:
        return "-"
    if row.note:
        return row.note
    if torch.equal(row.video, base.video) and torch.equal(row.audio, base.audio):
        return "bit-identical"
    return f"rel.err video {relative_error(row.video, base.video):.4f} audio {relative_error(row.audio, base.audio):.4f}"


def speedup(row: Result, official: Result | None) -> str:
    """Official step time over this row's; the draft row per shot (its few guidance-free steps
    against the official code's 50)."""
    if row.step_s is None or official is None or official.step_s is None:
        return "-"
    if row.per_shot is not None:
        return f"{official.step_s * FINAL_STEPS / (row.step_s * row.per_shot):.2f} per shot"
    return f"{official.step_s / row.step_s:.2f}"


def make_bench(device: torch.device, steps: int) -> Bench:
    if device.type == "cuda":
        arch = Arch(video_dit=VIDEO_DIT, audio_dit=AUDIO_DIT)
    else:
        arch = parse_arch(TINY_SHORT_ARCH)
    variant = arch.variant.apply(get_variant("720x720_5s"))
    height, width = snap_t2v_size(720, 720, variant.video_area)
    shot = Shot(f"720x720_5s ({width}x{height})",
                (arch.video_dit.in_dim, variant.video_latent_length, height // 16, width // 16),
                (variant.audio_latent_length, arch.audio_dit.in_dim))
    g = torch.Generator("cpu").manual_seed(1)
    texts = tuple(torch.randn(n, arch.video_dit.text_dim, generator=g).bfloat16() for n in TEXT_ROWS)
    return Bench(arch, shot, device, steps, random_weights(arch, device), texts)


def main(argv=None) -> list[Result]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, help="denoising steps per row (default 4 on CUDA, 3 on the CPU)")
    parser.add_argument("--only", help="comma-separated row keys (resident is always run)")
    parser.add_argument("--reference", type=Path, help="the official Ovi checkout (default: "
                        ".ovi-ref in the working tree, else /work/ovi-ref)")
    parser.add_argument("--no-reference", action="store_true")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(2)
    steps = args.steps or (4 if device.type == "cuda" else 3)
    started = time.perf_counter()
    bench = make_bench(device, steps)
    table = rows(bench)
    chosen = ["resident"] + [k for k in (args.only.split(",") if args.only else table) if k != "resident"]
    unknown = [k for k in chosen if k not in table]
    if unknown:
        parser.error(f"unknown row(s) {', '.join(unknown)}; choose from {', '.join(table)}")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {device} ({name}); torch "
          f"{torch.__version__}; shot {bench.shot.name}, {bench.shot.video_tokens}+{bench.shot.audio_tokens} "
          f"tokens; {steps} steps per row, {bench.settings.solver}, CFG on, SLG layer "
          f"{bench.settings.slg_layer}; FLOP floor {step_flops(bench.arch.video_dit, bench.shot) / 989e12:.3f} "
          f"s/step at 989 TF/s", flush=True)

    results: list[Result] = []
    official = None
    reference = None if args.no_reference else _reference(args.reference)
    if reference is not None:
        official = run_official(bench, reference)
        _free(device)
    for key in chosen:
        results.append(table[key]())
        _free(device)
        print(f"  {results[-1].name}: {results[-1].step_s or results[-1].note}", flush=True)
    base = results[0]
    print(f"| {'mode':<44} | {'s/step':>8} | {'peak GB':>8} | {'x official':>16} | vs ours resident |")
    print(f"|{'-' * 46}|{'-' * 10}|{'-' * 10}|{'-' * 18}|{'-' * 18}|")
    for row in ([official] if official else []) + results:
        step = "-" if row.step_s is None else f"{row.step_s:8.4f}"
        peak = "-" if row.peak_bytes is None else f"{row.peak_bytes / 1e9:8.2f}"
        versus = compare(row, base) if row.video is not None else row.note
        print(f"| {row.name:<44} | {step:>8} | {peak:>8} | {speedup(row, official):>16} | {versus} |")
    print(f"total {time.perf_counter() - started:.0f} s", flush=True)
    return ([official] if official else []) + results


def _reference(given: Path | None) -> Path | None:
    for candidate in ([given] if given else [REPO / ".ovi-ref", Path("/work/ovi-ref")]):
        if (candidate / "ovi").is_dir():
            return candidate
    print("reference: no Ovi checkout found (pass --reference); running ours only", flush=True)
    return None


if __name__ == "__main__":
    main()
