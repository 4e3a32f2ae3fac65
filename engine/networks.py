"""The networks of one checkpoint folder: loaded on first use, kept for the next shot, parked in
CPU memory while another phase needs the device, and freed on `close()`.

This is the only stateful part of the engine; the pipeline's functions ask it for a network
in the form a shot needs (`fusion(fp8, blocks_to_swap)`, `video_vae()`, `audio_decoder()`)
and tell it what to park (`park`).
"""
from __future__ import annotations

from pathlib import Path

import torch

from engine.arch import Arch, load_arch
from engine.audio_vae import load_audio_vae_decoder
from engine.checkpoint import load_fusion_model, release_fusion_model
from engine.embedding_cache import EmbeddingCache
from engine.errors import CheckpointError
from engine.fp8 import fp8_matmul_available
from engine.layout import missing_files, source_of
from engine.lora_keys import LoraSpec
from engine.model import FusionModel
from engine.offload import LayerStreamer, move_except, stream_model
from engine.text import PromptEmbeddings
from engine.variants import Variant, get_variant
from engine.video_vae import VideoVAE
from engine.vocoder import load_vocoder


def check_files(root: Path, variant: Variant, fp8: bool | str) -> None:
    """Every file the variant (and the published fp8 file, when `fp8` is True) needs is there."""
    missing = missing_files(root, variant, fp8 is True)
    if missing:
        listing = "; ".join(f"{rel} (from {source_of(rel)})" for rel in missing)
        raise CheckpointError(root, f"{len(missing)} checkpoint file(s) missing: {listing}",
                              "download them with the reference's download_weights.py or "
                              "`huggingface-cli download <repo> --include <path> --local-dir "
                              f"{root}/<top folder>`")


class Networks:
    def __init__(self, ckpt_dir: str | Path, variant: str, *, device="cpu", dtype=torch.bfloat16,
                 attention: str = "auto", compile: bool = False,
                 cache_dir: str | Path | None = None, fp8_matmul: bool | None = None):
        """attention: a backend of engine.attention ("auto" picks the best); compile:
        `torch.compile` the fusion layers (the first shot pays the compile time); fp8_matmul:
        scaled-fp8 weights multiply in fp8 (None: where the GPU has fp8 tensor cores)."""
        self.root = Path(ckpt_dir)
        check_files(self.root, get_variant(variant), False)
        self.arch: Arch = load_arch(self.root)
        self.variant: Variant = self.arch.variant.apply(get_variant(variant))
        self.device = torch.device(device)
        self.dtype, self.attention, self.compile, self.cache_dir = dtype, attention, compile, cache_dir
        self.fp8_matmul = fp8_matmul_available(self.device) if fp8_matmul is None else fp8_matmul
        self.cache = EmbeddingCache(cache_dir)
        self.embeddings = PromptEmbeddings(self.root, self.arch.t5, self.cache, device=self.device)
        self.model: FusionModel | None = None
        self.streamer: LayerStreamer | None = None
        self._fusion_key: tuple | None = None  # (fp8, fp8 file, LoRAs, streamed layers) of the loaded model
        self._video_vae: VideoVAE | None = None
        self._audio: tuple[torch.nn.Module, torch.nn.Module] | None = None

    def fusion(self, fp8: bool | str, blocks_to_swap: int, loras: tuple[LoraSpec, ...] = (),
               fp8_file: Path | None = None) -> FusionModel:
        """The fusion model with these weights (fp8 form, LoRAs merged) and at least
        `blocks_to_swap` layers streamed, on the device. It is loaded again from its files
        only when the weights change (so they are exactly the checkpoint's plus these LoRAs)
        or more layers must stream. fp8_file (with fp8="scaled"): a musubi-tuner or
        ComfyUI/kijai fp8_scaled fusion file read instead of the folder's bf16 weights."""
        if self.model is not None:
            loaded_fp8, loaded_file, loaded_loras, swapped = self._fusion_key
            if (loaded_fp8, loaded_file, loaded_loras) == (fp8, fp8_file, loras) and blocks_to_swap <= swapped:
                self._place_fusion(self.device)  # back from CPU memory if a decode parked it
                return self.model
            self.release_fusion()
        if fp8 is True:
            check_files(self.root, self.variant, fp8)
        load = dict(device=self.device, dtype=self.dtype, fp8=fp8, attention=self.attention,
                    cache_dir=self.cache_dir, loras=loras, fp8_matmul=self.fp8_matmul and fp8 == "scaled",
                    fp8_file=fp8_file)
        if blocks_to_swap:
            self.model, _ = load_fusion_model(self.root, self.variant.name, read_device="cpu", **load)
            self.streamer = stream_model(self.model, blocks_to_swap, self.device)
        else:
            self.model, _ = load_fusion_model(self.root, self.variant.name, **load)
        if self.compile:
            self.model.compile_layers()
        self._fusion_key = (fp8, fp8_file, loras, blocks_to_swap)
        return self.model

    @property
    def blocks_swapped(self) -> int:
        return self._fusion_key[3] if self._fusion_key is not None else 0

    def video_vae(self) -> VideoVAE:
        if self._video_vae is None:
            self._video_vae = VideoVAE.load(self.root, self.arch.video_vae, device=self.device)
        return self._video_vae.to(self.device)

    def audio_decoder(self) -> tuple[torch.nn.Module, torch.nn.Module]:
        """(audio VAE decoder, vocoder) on the device."""
        if self._audio is None:
            self._audio = (load_audio_vae_decoder(self.root, self.arch.audio_vae, device=self.device),
                           load_vocoder(self.root, self.arch.vocoder, device=self.device))
        return tuple(module.to(self.device) for module in self._audio)

    def park_decoders(self) -> None:
        """The VAEs and the vocoder leave the device (while the DiT samples)."""
        if self._video_vae is not None:
            self._video_vae.to("cpu")
        for module in self._audio or ():
            module.to("cpu")

    def park_fusion(self) -> None:
        """The DiT's resident weights leave the device (while the decoders run)."""
        if self.model is not None:
            self._place_fusion(torch.device("cpu"))

    def _place_fusion(self, device: torch.device) -> None:
        keep = self.streamer.streamed_ids if self.streamer is not None else frozenset()
        move_except(self.model, device, keep)  # the streamed weights live in CPU memory for good

    def release_fusion(self) -> None:
        if self.model is not None:
            release_fusion_model(self.model)
        self.model = self.streamer = self._fusion_key = None

    def close(self) -> None:
        """Free every network now; they are loaded again if used again."""
        self.release_fusion()
        self._video_vae = self._audio = None
        self.embeddings.release()
        self.cache.close()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
