"""Write a complete tiny checkpoint folder: all files of the published layout, in their
real formats and key names, with random weights sized by `arch.json`.

Deterministic: the same seed and arch give the same bytes on every machine (CPU generators).
Used by the tests, by the golden-output generator that runs the reference, and by benchmarks.
"""
from __future__ import annotations

import json
from pathlib import Path

from engine.arch import ARCH_FILENAME, parse_arch

# The tiny sizes (docs/model.md, arch.json): every network small enough for 2 CPU cores.
TINY_ARCH: dict = {
    "video_dit": {"model_type": "ti2v", "patch_size": [1, 2, 2], "text_len": 512, "in_dim": 48,
                  "dim": 128, "ffn_dim": 256, "freq_dim": 256, "text_dim": 64, "out_dim": 48,
                  "num_heads": 4, "num_layers": 4, "window_size": [-1, -1], "qk_norm": True,
                  "cross_attn_norm": True, "eps": 1e-06, "temporal_rope_scaling_factor": 1.0},
    "audio_dit": {"model_type": "t2a", "patch_size": [1], "text_len": 512, "in_dim": 20,
                  "dim": 128, "ffn_dim": 256, "freq_dim": 256, "text_dim": 64, "out_dim": 20,
                  "num_heads": 4, "num_layers": 4, "window_size": [-1, -1], "qk_norm": True,
                  "cross_attn_norm": True, "eps": 1e-06, "temporal_rope_scaling_factor": 0.19676},
    "t5": {"vocab": 960, "dim": 64, "dim_attn": 64, "dim_ffn": 128, "num_heads": 4,
           "num_layers": 2, "num_buckets": 32, "shared_pos": False, "dropout": 0.1},
    "video_vae": {"dim": 16, "dec_dim": 24, "z_dim": 48, "dim_mult": [1, 2, 4, 4],
                  "num_res_blocks": 1, "attn_scales": [], "temperal_downsample": [False, True, True],
                  "dropout": 0.0},
    "audio_vae": {"data_dim": 80, "embed_dim": 20, "hidden_dim": 16},
    "vocoder": {"resblock": "1", "num_mels": 80, "upsample_rates": [4, 4, 2, 2, 2, 2],
                "upsample_kernel_sizes": [8, 8, 4, 4, 4, 4], "upsample_initial_channel": 64,
                "resblock_kernel_sizes": [3, 7, 11],
                "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
                "activation": "snakebeta", "snake_logscale": True},
    "variant": {"video_latent_length": 31, "audio_latent_length": 157, "video_area": 16384},
    "_comment": "tiny random Ovi checkpoint",
}


# The tiny sizes with a short clip (17 frames of 64x64, 25 audio latents): a whole shot in about
# a second on the CPU, for multi-shot renders, whole-shot goldens and benchmark smoke runs.
TINY_SHORT_ARCH: dict = {**TINY_ARCH, "variant": {"video_latent_length": 5, "audio_latent_length": 25,
                                                  "video_area": 4096}}

# The tiny sizes with the 10-second model's own clip (61 video latents: 241 frames of 64x64;
# 314 audio latents): the 960x960_10s whole-shot golden.
TEN_SECOND_ARCH: dict = {**TINY_ARCH, "variant": {"video_area": 4096}}


def write_tiny_checkpoint(root: str | Path, *, seed: int = 0, arch_json: dict | None = None,
                          variants: tuple[str, ...] = ("720x720_5s",)) -> Path:
    """Write every file of a checkpoint folder under `root` and return it."""
    from engine.testing.tiny_components import (write_audio_vae, write_t5, write_tokenizer,
                                                write_video_vae, write_vocoder)
    from engine.testing.tiny_fusion import write_fusion

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    arch_json = TINY_ARCH if arch_json is None else arch_json
    (root / ARCH_FILENAME).write_text(json.dumps(arch_json, indent=2), encoding="utf-8")
    arch = parse_arch(arch_json)
    for i, variant in enumerate(variants):
        write_fusion(root, arch, variant, seed=seed + i)
    write_t5(root, arch, seed=seed + 100)
    write_tokenizer(root, arch)
    write_video_vae(root, arch, seed=seed + 200)
    write_audio_vae(root, arch, seed=seed + 300)
    write_vocoder(root, arch, seed=seed + 400)
    return root
