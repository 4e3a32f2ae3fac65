"""One shot, start to finish: texts (+ an optional first frame) -> frames, waveform and latents.

    nets = Networks(ckpt_dir, "960x960_10s", device="cuda")
    memory = resolve_memory("24gb", free_bytes=free_device_bytes("cuda"))
    encode_prompts(nets, all_texts, memory)            # once per render, then the T5 is freed
    result = generate(nets, ShotRequest(..., memory=memory))

The reference's generation flow, in-process and reusable across shots: text embeddings come
from the on-disk cache (the T5 runs only for texts never seen, and is freed before the fusion
model loads); i2v encodes the first frame with the video VAE; the fusion model denoises
(engine.sampling); audio then video are decoded; frames become uint8 by the reference's
truncating conversion. Every memory decision is the request's `MemoryConfig` (engine.presets).
"""
from __future__ import annotations

from collections.abc import Callable

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch
from PIL import Image

from engine.attention import resolve_attention_backend
from engine.device import peak_memory_bytes, reset_peak_memory
from engine.fingerprint import folder_fingerprint
from engine.image import image_tensor
from engine.layout import required_files
from engine.lora_keys import LoraSpec
from engine.memory_model import ShotSize, stream_text_encoder
from engine.networks import Networks
from engine.presets import MemoryConfig, blocks_to_swap
from engine.sampling import Callback, SamplerSettings, SamplingStats, denoise
from engine.variants import snap_t2v_size
from engine.video_vae import Tiling

ENGINE_VERSION = "0.1.0"


@dataclass(frozen=True)
class ShotRequest:
    prompt: str  # already formatted for the variant (engine.variants.format_prompt)
    video_negative: str
    audio_negative: str
    height: int  # requested size: snapped to the variant's area for t2v; i2v takes the image's
    width: int
    first_frame: Image.Image | None = None
    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    loras: tuple[LoraSpec, ...] = ()  # merged into the fusion weights (engine.lora)
    # a musubi-tuner or ComfyUI/kijai fp8_scaled fusion file, read instead of the folder's
    # weights (with memory.fp8 == "scaled")
    fp8_file: Path | None = None


@dataclass
class ShotResult:
    frames: torch.Tensor  # uint8 [F, H, W, 3]
    audio: torch.Tensor  # float32 [samples], 16 kHz
    video_latents: torch.Tensor  # bf16 [48, F_lat, h, w]
    audio_latents: torch.Tensor  # bf16 [L, 20]
    height: int
    width: int
    timings: dict[str, float]
    peak_memory_bytes: int | None
    memory: dict = field(default_factory=dict)  # how the shot was placed: blocks_to_swap, offload…
    skipped_steps: list[int] = field(default_factory=list)  # denoising steps the step cache skipped


def frames_uint8(video: torch.Tensor) -> torch.Tensor:
    """[3, F, H, W] in [-1, 1] -> uint8 [F, H, W, 3], truncating as the reference's writer does."""
    video = video.float().clamp(-1, 1)
    return ((video + 1) / 2 * 255).to(torch.uint8).permute(1, 2, 3, 0).contiguous()


class _Timer:
    """Accumulates wall time per named section (synchronising CUDA so GPU work is counted)."""

    def __init__(self, device: torch.device, on_section: Callable[[str], None] | None = None):
        self.device = device
        self.timings: dict[str, float] = {}
        self.on_section = on_section  # told each section's name as it starts (progress display)

    @contextlib.contextmanager
    def section(self, name: str):
        if self.on_section is not None:
            self.on_section(name)
        start = time.perf_counter()
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start


def encode_prompts(nets: Networks, texts: Iterable[str], memory: MemoryConfig) -> None:
    """Fill the embedding cache for every text of a render, then free the encoder. Its blocks
    stream when the whole encoder would not fit the memory budget."""
    nets.embeddings.ensure(texts, stream=stream_text_encoder(nets.arch, memory.budget_bytes))
    nets.embeddings.release()


def shot_size(nets: Networks, height: int, width: int) -> ShotSize:
    """The token counts of a shot at a (snapped) pixel size."""
    _, ph, pw = nets.arch.video_dit.patch_size
    latent_h, latent_w = height // 16, width // 16
    return ShotSize(height, width, nets.variant.video_latent_length * (latent_h // ph) * (latent_w // pw),
                    nets.variant.audio_latent_length)


@torch.inference_mode()
def generate(nets: Networks, request: ShotRequest, callback: Callback | None = None,
             on_phase: Callable[[str], None] | None = None) -> ShotResult:
    """`callback(done, total)` after each denoising step; `on_phase(name)` as each phase
    (text, image_encode, load_model, denoise, audio_decode, video_decode) starts."""
    memory, device = request.memory, nets.device
    timer = _Timer(device, on_phase)
    reset_peak_memory(device)
    texts = (request.prompt, request.video_negative, request.audio_negative)
    with timer.section("text"):
        encode_prompts(nets, texts, memory)
        text, video_negative, audio_negative = (nets.embeddings.get(t) for t in texts)

    first_frame_latent = None
    if request.first_frame is not None:
        with timer.section("image_encode"):
            image = image_tensor(request.first_frame, nets.variant.video_area, device=device)
            height, width = image.shape[-2:]
            first_frame_latent = nets.video_vae().encode(image[:, :, None]).to(torch.bfloat16)[0]
    else:
        height, width = snap_t2v_size(request.height, request.width, nets.variant.video_area)
    video_shape = (nets.arch.video_dit.in_dim, nets.variant.video_latent_length, height // 16, width // 16)
    audio_shape = (nets.variant.audio_latent_length, nets.arch.audio_dit.in_dim)

    with timer.section("load_model"):
        if memory.offload:
            nets.park_decoders()
        model = nets.fusion(memory.fp8, blocks_to_swap(memory, nets.arch, shot_size(nets, height, width)),
                            request.loras, request.fp8_file)
    stats = SamplingStats()
    with timer.section("denoise"):
        video_latents, audio_latents = denoise(
            model, settings=request.sampler, text=text, video_negative=video_negative,
            audio_negative=audio_negative, video_shape=video_shape, audio_shape=audio_shape,
            first_frame_latent=first_frame_latent, device=device, callback=callback,
            streamer=nets.streamer, stats=stats)
    if memory.offload:
        with timer.section("offload"):
            nets.park_fusion()

    with timer.section("audio_decode"):
        decoder, vocoder = nets.audio_decoder()
        audio = vocoder(decoder(audio_latents[None].transpose(1, 2))).float().reshape(-1).cpu()
    with timer.section("video_decode"):
        vae = nets.video_vae()
        latents = video_latents[None]
        tiled = vae.needs_tiling(latents.shape) if memory.tiled_vae is None else memory.tiled_vae
        frames = frames_uint8(vae.decode(latents, Tiling() if tiled else None)[0]).cpu()
    placed = {"blocks_to_swap": nets.blocks_swapped, "offload": memory.offload, "tiled_vae": tiled,
              "fp8": memory.fp8}
    return ShotResult(frames=frames, audio=audio, video_latents=video_latents.cpu(),
                      audio_latents=audio_latents.cpu(), height=height, width=width,
                      timings=timer.timings, peak_memory_bytes=peak_memory_bytes(device), memory=placed,
                      skipped_steps=stats.skipped_steps)


def describe(nets: Networks, memory: MemoryConfig, loras: tuple[LoraSpec, ...] = (),
             fp8_file: Path | None = None) -> dict:
    """The engine's identity under `memory`, `loras` and `fp8_file`, as recorded in each
    take's meta.json."""
    model = nets.model
    return {
        "engine_version": ENGINE_VERSION,
        "variant": nets.variant.name,
        "checkpoint": folder_fingerprint(nets.root, required_files(nets.variant, memory.fp8 is True)),
        "device": str(nets.device),
        "dtype": str(nets.dtype).removeprefix("torch."),
        "attention": (model.attention_backend if model is not None
                      else resolve_attention_backend(nets.attention, nets.device)),
        "compile": nets.compile,
        "fp8": memory.fp8,
        "fp8_matmul": nets.fp8_matmul and memory.fp8 == "scaled",
        "fp8_file": str(fp8_file) if fp8_file is not None else None,
        "loras": [{"path": str(lora.path), "scale": lora.scale, "tower": lora.tower} for lora in loras],
        "preset": memory.preset,
        "blocks_to_swap": memory.blocks_to_swap,
        "offload": memory.offload,
    }
