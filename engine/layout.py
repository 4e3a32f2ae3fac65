"""Where each file of a checkpoint folder lives, and where it comes from."""
from __future__ import annotations

from pathlib import Path

from engine.variants import FP8_FILENAME, FP8_VARIANTS, Variant

T5_WEIGHTS = "Wan2.2-TI2V-5B/models_t5_umt5-xxl-enc-bf16.pth"
TOKENIZER_DIR = "Wan2.2-TI2V-5B/google/umt5-xxl"
VIDEO_VAE_WEIGHTS = "Wan2.2-TI2V-5B/Wan2.2_VAE.pth"
AUDIO_VAE_WEIGHTS = "MMAudio/ext_weights/v1-16.pth"
VOCODER_WEIGHTS = "MMAudio/ext_weights/best_netG.pt"

# Hugging Face repositories the published files come from (for "where it comes from" messages).
SOURCES = {
    "Wan2.2-TI2V-5B": "Wan-AI/Wan2.2-TI2V-5B",
    "MMAudio": "hkchengrex/MMAudio",
    "Ovi/" + FP8_FILENAME: "rkfg/Ovi-fp8_quantized",
    "Ovi": "chetwinlow1/Ovi",
}


def fusion_weights(variant: Variant, fp8: bool = False) -> str:
    return "Ovi/" + (FP8_FILENAME if fp8 else variant.filename)


def required_files(variant: Variant, fp8: bool = False) -> list[str]:
    """Every path (relative to the checkpoint folder) a render with this variant reads."""
    return [fusion_weights(variant, fp8), T5_WEIGHTS, TOKENIZER_DIR, VIDEO_VAE_WEIGHTS,
            AUDIO_VAE_WEIGHTS, VOCODER_WEIGHTS]


def fp8_weights(ckpt_dir: str | Path, variant: Variant) -> bool | str:
    """What fp8 weights are for `variant` in this folder: True, the published fp8 file, where
    the variant has one and it is there; else "scaled", the bf16 file converted at load to
    block-scaled fp8 (engine.fp8; cached on disk)."""
    if variant.name in FP8_VARIANTS and (Path(ckpt_dir) / fusion_weights(variant, True)).exists():
        return True
    return "scaled"


def reads_published_fp8(ckpt_dir: str | Path, variant: Variant, fp8: bool) -> bool:
    """Whether a shot with the `fp8` setting reads the published fp8 file from this folder
    (else the bf16 file, converted at load when fp8 is set)."""
    return fp8 and fp8_weights(ckpt_dir, variant) is True


def source_of(relative_path: str) -> str:
    """The Hugging Face repository a checkpoint file (or folder) is downloaded from."""
    for prefix, repo in SOURCES.items():  # the fp8 file is listed before the rest of Ovi/
        if relative_path == prefix or relative_path.startswith(prefix + "/"):
            return repo
    return "unknown"


def path_in_source(relative_path: str) -> str:
    """Where a checkpoint file (or folder) is inside its repository (`source_of`): each
    repository is downloaded into the top folder, so the rest of the path is the same."""
    return relative_path.partition("/")[2]


def missing_files(ckpt_dir: str | Path, variant: Variant, published_fp8: bool = False) -> list[str]:
    root = Path(ckpt_dir)
    return [rel for rel in required_files(variant, published_fp8) if not (root / rel).exists()]
