"""One call for a whole shot: texts (+ an optional first frame) -> frames, waveform and latents.

The reference's `OviFusionEngine.generate` flow (spec §4.1), in-process and reusable across
shots: text embeddings come from the on-disk cache (the T5 is loaded only for texts never seen
and freed before the fusion model is loaded); i2v encodes the first frame with the video VAE;
the fusion model denoises; audio then video are decoded; frames become uint8 by the reference's
truncating conversion.

Networks are loaded on first use and kept for the next shot; `close()` frees them.

Memory (issue 6, performance-anchors §9): `blocks_to_swap` streams that many fusion layers from
CPU memory (engine.offload; "auto" sizes it from free GPU memory and the shot), `fp8="scaled"`
stores the layers' weights in block-scaled fp8 (engine.fp8), `offload` parks networks not in
use in CPU memory (the VAEs while the DiT samples, the DiT's resident weights while decoding),
and a `preset` ("80gb" … "8gb", engine.presets) sets all of these for a GPU size. The text
encoder's blocks stream too when the whole encoder would not fit the budget. `compile`
`torch.compile`s the fusion layers.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch
from PIL import Image

from engine.arch import load_arch
from engine.audio_vae import load_audio_vae_decoder
from engine.checkpoint import load_fusion_model, release_fusion_model
from engine.embedding_cache import EmbeddingCache
from engine.errors import CheckpointError
from engine.fingerprint import folder_fingerprint
from engine.fp8 import fp8_matmul_available
from engine.image import image_tensor
from engine.layout import missing_files, required_files, source_of
from engine.attention import resolve_attention_backend
from engine.lora_keys import LoraSpec
from engine.offload import move_except, stream_model
from engine.presets import GB, PRESETS, Preset, plan_memory, stream_text_encoder
from engine.device import peak_memory_bytes, reset_peak_memory
from engine.sampling import Callback, SamplerSettings, denoise
from engine.text import PromptEmbeddings
from engine.variants import get_variant, snap_t2v_size
from engine.video_vae import Tiling, VideoVAE
from engine.vocoder import load_vocoder

ENGINE_VERSION = "0.1.0"


@dataclass
class ShotRequest:
    prompt: str  # already formatted for the variant (engine.variants.format_prompt)
    video_negative: str
    audio_negative: str
    height: int  # requested size: snapped to the variant's area for t2v; i2v takes the image's
    width: int
    first_frame: Image.Image | None = None
    sampler: SamplerSettings = field(default_factory=SamplerSettings)


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


def frames_uint8(video: torch.Tensor) -> torch.Tensor:
    """[3, F, H, W] in [-1, 1] -> uint8 [F, H, W, 3], truncating as the reference's writer does."""
    video = video.float().clamp(-1, 1)
    return ((video + 1) / 2 * 255).to(torch.uint8).permute(1, 2, 3, 0).contiguous()


class _Timer:
    """Accumulates wall time per named section (synchronising CUDA so GPU work is counted)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def section(self, name: str):
        start = time.perf_counter()
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start


class OviPipeline:
    def __init__(self, ckpt_dir: str | Path, variant: str, *, device="cpu", dtype=torch.bfloat16,
                 fp8: bool | str | None = None, cache_dir: str | Path | None = None,
                 tiled_vae: bool | None = None, attention: str = "auto",
                 blocks_to_swap: int | str | None = None, preset: str | None = None,
                 offload: bool | None = None, compile: bool = False,
                 fp8_matmul: bool | None = None, loras: tuple[LoraSpec, ...] = ()):
        """fp8: False, True (the published fp8 file, 720x720_5s) or "scaled" (any variant,
        converted at load and cached). blocks_to_swap: a number of fusion layers or "auto".
        preset: a key of engine.presets.PRESETS; it fills fp8, tiled_vae, offload and
        blocks_to_swap ("auto" within the preset's budget) where they are left None.
        compile: `torch.compile` the fusion layers (engine.model.FusionModel.compile_layers);
        the first shot pays the compile time, later shots reuse it. fp8_matmul: with
        fp8="scaled", multiply in fp8 (None: where the GPU has fp8 tensor cores; engine.fp8).
        loras: merged at load (engine.lora); `set_loras` changes them between shots."""
        if preset is not None and preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        if not (blocks_to_swap in (None, "auto") or isinstance(blocks_to_swap, int)):
            raise ValueError(f"blocks_to_swap must be a number or 'auto', got {blocks_to_swap!r}")
        self.preset: Preset | None = PRESETS[preset] if preset is not None else None
        p = self.preset
        self.root = Path(ckpt_dir)
        self.device = torch.device(device)
        self.dtype = dtype
        self.fp8 = fp8 if fp8 is not None else ("scaled" if p is not None and p.fp8 else False)
        self.attention = attention
        self.compile = compile
        self.fp8_matmul = fp8_matmul_available(self.device) if fp8_matmul is None else fp8_matmul
        self.loras = tuple(loras)
        self.tiled_vae = tiled_vae if tiled_vae is not None or p is None else (p.tiled_vae or None)
        self.offload = offload if offload is not None else bool(p is not None and p.offload_dit_for_decode)
        self.blocks_to_swap = blocks_to_swap if blocks_to_swap is not None else (
            "auto" if p is not None else 0)
        self.cache_dir = cache_dir
        self._check_files(variant, self.fp8)
        self.arch = load_arch(self.root)
        self.variant = self.arch.variant.apply(get_variant(variant))
        self.cache = EmbeddingCache(cache_dir)
        self.embeddings = PromptEmbeddings(self.root, self.arch.t5, self.cache, device=self.device)
        self._model = None
        self._streamer = None
        self._swapped = 0
        self._budget: int | None = None
        self._video_vae: VideoVAE | None = None
        self._audio_decoder = None
        self._vocoder = None

    def _check_files(self, variant: str, fp8: bool | str) -> None:
        missing = missing_files(self.root, get_variant(variant), fp8 is True)
        if missing:
            listing = "; ".join(f"{rel} (from {source_of(rel)})" for rel in missing)
            raise CheckpointError(self.root, f"{len(missing)} checkpoint file(s) missing: {listing}",
                                  "download them with the reference's download_weights.py or "
                                  "`huggingface-cli download <repo> --include <path> --local-dir "
                                  f"{self.root}/<top folder>`")

    # --- networks, loaded on first use --------------------------------------------------------

    def _budget_bytes(self) -> int:
        """The device memory a shot may use: the preset's size, else the free GPU memory (taken
        once, before anything of ours is resident); 0 on the CPU, where nothing needs saving."""
        if self._budget is None:
            if self.preset is not None:
                self._budget = self.preset.gpu_gb * GB
            elif self.device.type == "cuda":
                self._budget = torch.cuda.mem_get_info(self.device)[0]
            else:
                self._budget = 0
        return self._budget

    def _swap_for(self, video_tokens: int, audio_tokens: int, height: int, width: int) -> int:
        """How many fusion layers this shot streams."""
        if isinstance(self.blocks_to_swap, int):
            return self.blocks_to_swap
        if self._budget_bytes() == 0:
            return 0
        preset = self.preset or Preset("auto", 0, fp8=bool(self.fp8), tiled_vae=bool(self.tiled_vae),
                                       offload_dit_for_decode=self.offload, note="free GPU memory")
        return plan_memory(self.arch, preset, height=height, width=width, video_tokens=video_tokens,
                           audio_tokens=audio_tokens, budget_bytes=self._budget).blocks_to_swap

    def _fusion(self, blocks_to_swap: int):
        """The fusion model with at least `blocks_to_swap` layers streamed, on the device."""
        if self._model is not None and blocks_to_swap <= self._swapped:
            self._place_dit(self.device)  # back from CPU memory if the last decode parked it
            return self._model
        self._release_fusion()
        load = dict(device=self.device, dtype=self.dtype, fp8=self.fp8, attention=self.attention,
                    cache_dir=self.cache_dir, loras=self.loras,
                    fp8_matmul=self.fp8_matmul and self.fp8 == "scaled")
        if blocks_to_swap:
            self._model, _ = load_fusion_model(self.root, self.variant.name, read_device="cpu", **load)
            self._streamer = stream_model(self._model, blocks_to_swap, self.device)
        else:
            self._model, _ = load_fusion_model(self.root, self.variant.name, **load)
        if self.compile:
            self._model.compile_layers()
        self._swapped = blocks_to_swap
        return self._model

    def set_fp8(self, fp8: bool | str) -> None:
        """Switch the fusion weights (False, True: the published fp8 file, "scaled"); the model
        is reloaded for the next shot when the setting changes."""
        if fp8 == self.fp8:
            return
        if fp8 is True:
            self._check_files(self.variant.name, fp8)
        self._release_fusion()
        self.fp8 = fp8

    def set_loras(self, loras: tuple[LoraSpec, ...]) -> None:
        """The LoRAs of the next shot; the model is reloaded from its files (so the weights are
        exactly the checkpoint's plus these LoRAs) when they differ from the loaded ones."""
        loras = tuple(loras)
        if loras == self.loras:
            return
        self._release_fusion()
        self.loras = loras

    def _place_dit(self, device: torch.device) -> None:
        """Move the DiT's resident weights (the streamed ones stay in CPU memory)."""
        keep = self._streamer.streamed_ids if self._streamer is not None else frozenset()
        move_except(self._model, device, keep)

    def _release_fusion(self) -> None:
        if self._model is not None:
            release_fusion_model(self._model)
        self._model = self._streamer = None
        self._swapped = 0

    def _park_decoders(self) -> None:
        """The VAEs leave the GPU while the DiT samples."""
        if self._video_vae is not None:
            self._video_vae.to("cpu")
        for module in (self._audio_decoder, self._vocoder):
            if module is not None:
                module.to("cpu")

    def _vae(self) -> VideoVAE:
        if self._video_vae is None:
            self._video_vae = VideoVAE.load(self.root, self.arch.video_vae, device=self.device)
        return self._video_vae.to(self.device)

    def _audio(self):
        if self._audio_decoder is None:
            self._audio_decoder = load_audio_vae_decoder(self.root, self.arch.audio_vae, device=self.device)
            self._vocoder = load_vocoder(self.root, self.arch.vocoder, device=self.device)
        return self._audio_decoder.to(self.device), self._vocoder.to(self.device)

    # --- public API ---------------------------------------------------------------------------

    def encode_prompts(self, texts: Iterable[str]) -> None:
        """Fill the embedding cache for every text of a render, then free the encoder. The
        encoder's blocks stream when the whole encoder would not fit the memory budget."""
        budget = self._budget_bytes()
        self.embeddings.stream = budget > 0 and stream_text_encoder(self.arch, budget)
        self.embeddings.ensure(texts)
        self.embeddings.release()

    @torch.inference_mode()
    def generate(self, request: ShotRequest, callback: Callback | None = None) -> ShotResult:
        timer = _Timer(self.device)
        reset_peak_memory(self.device)
        texts = (request.prompt, request.video_negative, request.audio_negative)
        with timer.section("text"):
            self.encode_prompts(texts)
            text, video_negative, audio_negative = (self.embeddings.get(t) for t in texts)

        first_frame_latent = None
        if request.first_frame is not None:
            with timer.section("image_encode"):
                image = image_tensor(request.first_frame, self.variant.video_area, device=self.device)
                height, width = image.shape[-2:]
                first_frame_latent = self._vae().encode(image[:, :, None]).to(torch.bfloat16)[0]
        else:
            height, width = snap_t2v_size(request.height, request.width, self.variant.video_area)
        video_shape = (self.arch.video_dit.in_dim, self.variant.video_latent_length, height // 16, width // 16)
        audio_shape = (self.variant.audio_latent_length, self.arch.audio_dit.in_dim)
        _, ph, pw = self.arch.video_dit.patch_size
        video_tokens = video_shape[1] * (video_shape[2] // ph) * (video_shape[3] // pw)
        swap = self._swap_for(video_tokens, audio_shape[0], height, width)

        with timer.section("load_model"):
            if self.offload:
                self._park_decoders()
            model = self._fusion(swap)
        with timer.section("denoise"):
            video_latents, audio_latents = denoise(
                model, settings=request.sampler, text=text, video_negative=video_negative,
                audio_negative=audio_negative, video_shape=video_shape, audio_shape=audio_shape,
                first_frame_latent=first_frame_latent, device=self.device, callback=callback,
                streamer=self._streamer)
        if self.offload:
            with timer.section("offload"):
                self._place_dit(torch.device("cpu"))

        with timer.section("audio_decode"):
            decoder, vocoder = self._audio()
            waveform = vocoder(decoder(audio_latents[None].transpose(1, 2)))
            audio = waveform.float().reshape(-1).cpu()
        with timer.section("video_decode"):
            vae = self._vae()
            latents = video_latents[None]
            tiled = vae.needs_tiling(latents.shape) if self.tiled_vae is None else self.tiled_vae
            video = vae.decode(latents, Tiling() if tiled else None)[0]
            frames = frames_uint8(video).cpu()
        peak = peak_memory_bytes(self.device)
        memory = {"blocks_to_swap": self._swapped, "offload": self.offload, "tiled_vae": tiled,
                  "fp8": self.fp8}
        return ShotResult(frames=frames, audio=audio, video_latents=video_latents.cpu(),
                          audio_latents=audio_latents.cpu(), height=height, width=width,
                          timings=timer.timings, peak_memory_bytes=peak, memory=memory)

    def describe(self) -> dict:
        model = self._model
        return {
            "engine_version": ENGINE_VERSION,
            "variant": self.variant.name,
            "checkpoint": folder_fingerprint(self.root, required_files(self.variant, self.fp8 is True)),
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "attention": (model.attention_backend if model is not None
                          else resolve_attention_backend(self.attention, self.device)),
            "compile": self.compile,
            "fp8": self.fp8,
            "fp8_matmul": self.fp8_matmul and self.fp8 == "scaled",
            "loras": [{"path": str(lora.path), "scale": lora.scale, "tower": lora.tower}
                      for lora in self.loras],
            "preset": self.preset.name if self.preset is not None else None,
            "blocks_to_swap": self.blocks_to_swap,
            "offload": self.offload,
        }

    def close(self) -> None:
        """Free every network now; the pipeline reloads them if used again."""
        self._release_fusion()
        self._video_vae = self._audio_decoder = self._vocoder = None
        self.embeddings.release()
        self.cache.close()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
