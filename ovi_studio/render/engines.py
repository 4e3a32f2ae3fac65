"""The engine protocol the render session talks to, and the adapter over the Ovi model.

A session does not care what makes the pictures: the model (`OviEngine`) or the animatic
(`preview.PreviewEngine`). Both take a `ShotJob` (everything about one take, already resolved
by the storyboard and the plan) and return a `ShotOutput` (uint8 frames, 16 kHz audio, final
latents when there are any, and facts for meta.json).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from ovi_studio.errors import UserError

StepCallback = Callable[[int, int], None]  # (steps done, steps total)
PhaseCallback = Callable[[str], None]  # the name of the phase that starts


@dataclass(frozen=True)
class ShotJob:
    shot_id: str
    take: int
    seed: int
    mode: str  # "t2v" | "i2v" | "extend"
    prompt: str  # compiled, formatted for the variant
    height: int
    width: int
    frames: int  # 121 or 241
    video_negative: str | None = None
    audio_negative: str | None = None
    dialogue: tuple[tuple[str | None, str], ...] = ()
    scene: str | None = None
    audio_caption: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # steps, solver, shift, guidance, ...

    @property
    def texts(self) -> tuple[str, str, str]:
        return self.prompt, self.video_negative or "", self.audio_negative or ""


@dataclass
class ShotOutput:
    frames: np.ndarray  # uint8 [F, H, W, 3]
    audio: np.ndarray  # float32 [samples] at 16 kHz, as decoded
    latents: dict[str, Any] | None = None  # {"video": [C,F,h,w], "audio": [L,C]}
    info: dict[str, Any] = field(default_factory=dict)  # timings, peak memory, ...
    # The picture under anything drawn on the frames (the preview's header and captions):
    # an extension of this take starts from it, so nothing drawn is inherited. None: the
    # frames are the picture.
    plate: np.ndarray | None = None  # uint8 [H, W, 3]


class ShotEngine(Protocol):
    name: str
    # Whether an extension's colours drift from its seed frame (the model's VAE round trip
    # does; the preview copies the seed frame), i.e. whether `color_match` has work to do.
    color_drift: bool

    def identity(self) -> dict[str, Any]:
        """Engine and checkpoint identity, recorded in every meta.json."""

    def prepare(self, jobs: list[ShotJob]) -> None:
        """Work shared by all takes before the first one (prompt embeddings, then freeing the
        text encoder)."""

    def render(self, job: ShotJob, first_frame: Image.Image | None,
               on_step: StepCallback | None = None,
               on_phase: PhaseCallback | None = None) -> ShotOutput:
        """`on_step(done, total)` after each denoising step, `on_phase(name)` as each phase
        starts (names in render.progress.PHASES)."""
        ...

    def close(self) -> None:
        ...


class OutOfMemory(RuntimeError):
    """The accelerator ran out of memory rendering a shot."""


OOM_ADVICE = ("the GPU ran out of memory; try `--set tiled_vae=true` (decode the video in tiles), "
              "`blocks_to_swap: <N>` (10-20 of the 30 fusion blocks kept in CPU memory), "
              "`fp8: true` on 720x720_5s, or a smaller resolution; `--oom-retry` retries a shot "
              "once with more memory-saving settings")

DTYPES = {"bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16",
          "float32": "float32", "fp32": "float32"}


def memory_saving(settings: dict[str, Any]) -> dict[str, Any]:
    """The next rung of the out-of-memory ladder: tile the VAE decode, swap more blocks."""
    swapped = settings.get("blocks_to_swap")
    swapped = swapped if isinstance(swapped, int) else 0  # None, or "auto" that misjudged
    return {**settings, "tiled_vae": True, "blocks_to_swap": max(swapped + 10, 20)}


class OviEngine:
    """The model: the networks of `engine.networks`, loaded once per render and reused per take;
    each take runs `engine.pipeline.generate` with its own memory settings."""

    name = "ovi"
    color_drift = True

    def __init__(self, ckpt_dir: Path, variant: str, *, device: str, dtype: str | None = None,
                 fp8_weights: bool | str = "scaled", cache_dir: Path | None = None,
                 preset: str | None = None, attention: str = "auto", compile: bool = False):
        """fp8_weights: what a shot with `fp8: true` loads (engine.layout.fp8_weights: the
        published fp8 file, or "scaled" conversion); shots without it load the bf16 file."""
        self.ckpt_dir, self.variant, self.device = Path(ckpt_dir), variant, device
        self.dtype, self.fp8_weights, self.cache_dir, self.preset = dtype, fp8_weights, cache_dir, preset
        self.attention, self.compile = attention, compile
        self._networks = None
        self._memory = None  # the render's memory settings (engine.presets), then the last take's
        self._loras: tuple = ()  # the last take's LoRAs (engine.lora_keys.LoraSpec)
        self._fp8_file: Path | None = None  # the last take's fp8_scaled file of another tool

    @property
    def networks(self):
        if self._networks is None:
            import torch
            from engine.device import free_device_bytes
            from engine.networks import Networks
            from engine.presets import resolve_memory
            # the machine's free memory is taken once, before anything of ours is on the device
            self._memory = resolve_memory(self.preset, free_bytes=free_device_bytes(self.device))
            dtype = getattr(torch, DTYPES[self.dtype]) if self.dtype else torch.bfloat16
            self._networks = Networks(self.ckpt_dir, self.variant, device=self.device, dtype=dtype,
                                      cache_dir=self.cache_dir, attention=self.attention,
                                      compile=self.compile)
        return self._networks

    def identity(self) -> dict[str, Any]:
        from engine.pipeline import describe
        return {"name": self.name, **describe(self.networks, self._memory, self._loras, self._fp8_file)}

    def prepare(self, jobs: list[ShotJob]) -> None:
        from engine.pipeline import encode_prompts
        texts = list(dict.fromkeys(text for job in jobs for text in job.texts))
        if texts:
            encode_prompts(self.networks, texts, self._shot_memory({}))

    def _shot_memory(self, settings: dict[str, Any]):
        """The render's memory settings with the shot's own in place. fp8 is a shot setting (a
        preset's fp8 arrives as one, so the plan keys it; an fp8_file is read as scaled fp8);
        tiled_vae true forces tiling, false leaves it to the preset or the decode's size;
        blocks_to_swap 0, the default, defers to the preset (N or "auto" give the same bits)."""
        fp8 = "scaled" if settings.get("fp8_file") else self.fp8_weights if settings.get("fp8") else False
        return self._memory.override(fp8=fp8,
                                     tiled_vae=True if settings.get("tiled_vae") else None,
                                     blocks_to_swap=settings.get("blocks_to_swap") or None)

    def render(self, job: ShotJob, first_frame: Image.Image | None,
               on_step: StepCallback | None = None,
               on_phase: PhaseCallback | None = None) -> ShotOutput:
        from engine.pipeline import ShotRequest, generate
        from engine.sampling import SamplerSettings
        networks = self.networks
        # fp8, its file and LoRAs are shot settings: a shot that asks for others reloads the weights
        self._memory, self._loras = self._shot_memory(job.settings), _lora_specs(job)
        self._fp8_file = Path(job.settings["fp8_file"]) if job.settings.get("fp8_file") else None
        request = ShotRequest(prompt=job.prompt, video_negative=job.video_negative or "",
                              audio_negative=job.audio_negative or "", height=job.height,
                              width=job.width, first_frame=first_frame,
                              sampler=SamplerSettings(**_sampler_fields(SamplerSettings, job)),
                              memory=self._memory, loras=self._loras, fp8_file=self._fp8_file)
        started = time.perf_counter()
        try:
            result = generate(networks, request, callback=on_step, on_phase=on_phase)
        except Exception as exc:
            if _is_oom(exc):
                _free_cuda_cache()
                raise OutOfMemory(OOM_ADVICE) from exc
            raise
        latents = {"video": result.video_latents, "audio": result.audio_latents}
        info = {"timings": {**dict(result.timings or {}), "total_s": time.perf_counter() - started},
                "peak_memory_bytes": result.peak_memory_bytes,
                "height": result.height, "width": result.width, "memory": result.memory}
        if request.sampler.step_cache:  # which steps reused cached features, per take
            info["step_cache"] = {"threshold": request.sampler.step_cache,
                                  "skipped_steps": result.skipped_steps}
        return ShotOutput(np.asarray(result.frames, np.uint8), np.asarray(result.audio, np.float32),
                          latents, info)

    def close(self) -> None:
        if self._networks is not None:
            self._networks.close()
            self._networks = None


def _sampler_fields(cls, job: ShotJob) -> dict[str, Any]:
    """The shot settings SamplerSettings knows, plus the take's seed."""
    import dataclasses
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in job.settings.items() if k in names and v is not None}
    if "seed" in names:
        values["seed"] = job.seed
    return values


def _lora_specs(job: ShotJob) -> tuple:
    from engine.lora_keys import LoraSpec
    return tuple(LoraSpec(Path(lora["path"]), lora["scale"], lora["tower"])
                 for lora in job.settings.get("loras") or ())


def _is_oom(exc: BaseException) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def _free_cuda_cache() -> None:
    import torch
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# -- choosing the engine ----------------------------------------------------------------------

def default_device() -> str:
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class EngineOptions:
    """How the model engine runs (none of it changes what a take renders to, except where the
    plan keys it: fp8 and the memory preset's settings reach the shots' settings)."""
    device: str | None = None  # cuda, cuda:N or cpu; None: cuda when present
    dtype: str | None = None  # a key of DTYPES; None: the engine's default
    preset: str | None = None  # a memory preset of engine.presets (80gb, 24gb, ...)
    attention: str = "auto"  # auto or one of engine.attention.BACKENDS
    compile: bool = False  # torch.compile the fusion layers


def engine_factory(choice, options: EngineOptions, loaded, ckpt_dir: Path | None,
                   log: Callable[[str], None]) -> Callable[[], ShotEngine]:
    """A factory for the engine the plan chose (`choice`, ovi_studio.checkpoints.EngineChoice;
    the model loads only when a take needs it); a fallback to the preview is announced loudly."""
    if options.dtype is not None and options.dtype not in DTYPES:
        raise UserError(f"--dtype must be one of {', '.join(DTYPES)}, not {options.dtype!r}")
    if options.device is not None and options.device.split(":")[0] not in ("cuda", "cpu"):
        raise UserError(f"--device must be cuda, cuda:N or cpu, not {options.device!r}")
    if choice.fell_back:
        missing = choice.missing
        log("=" * 72)
        log("engine: PREVIEW (no model) — checkpoints not found: " + missing[0]
            + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
        log("this renders an animatic for pacing; pass --engine ovi (or `engine: ovi`) to require the model")
        log("=" * 72)
    if choice.name == "preview":
        return _preview_factory

    if options.device and options.device.startswith("cuda") and default_device() != "cuda":
        raise UserError(f"--device {options.device}: no CUDA device is available here",
                        hint="use --device cpu (slow), or --engine preview for an animatic")

    def make_ovi() -> ShotEngine:
        from engine.layout import fp8_weights
        device = options.device or default_device()
        _check_attention(options.attention, device)
        return OviEngine(ckpt_dir, loaded.variant.name, device=device, dtype=options.dtype,
                         fp8_weights=fp8_weights(ckpt_dir, loaded.variant),
                         preset=options.preset, attention=options.attention,
                         compile=options.compile)  # embedding cache: $OVI_STUDIO_CACHE or default
    return make_ovi


def _check_attention(requested: str, device: str) -> None:
    import torch
    from engine.attention import resolve_attention_backend
    try:
        resolve_attention_backend(requested, torch.device(device))
    except ValueError as exc:
        raise UserError(f"--attention: {exc}", hint="--attention auto picks the fastest one installed") from None


def _preview_factory() -> ShotEngine:
    from ovi_studio.render.preview import PreviewEngine
    return PreviewEngine()
