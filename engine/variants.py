"""Ovi's model variants and the geometry rules that follow from them (pure Python, no torch).

Facts from the reference's variant table and its resolution snapping.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

FPS = 24
AUDIO_SAMPLE_RATE = 16_000
AUDIO_SAMPLES_PER_LATENT = 512  # mel hop 256 x one 2x VAE downsample
VAE_SPATIAL = 16  # Wan2.2 VAE: 2x patchify x three 2x downsamples
VAE_TEMPORAL = 4
SIDE_MULTIPLE = 32  # VAE factor 16 x the DiT's 2x2 patch


@dataclass(frozen=True)
class Variant:
    name: str
    filename: str  # under <ckpt_dir>/Ovi/
    video_latent_length: int
    audio_latent_length: int
    video_area: int
    caption_style: str  # "audcap" (<AUDCAP>..<ENDAUDCAP>) or "audio" (Audio: ...)

    @property
    def frames(self) -> int:
        """Pixel frames the model produces: a causal first frame plus 4 per further latent."""
        return 1 + VAE_TEMPORAL * (self.video_latent_length - 1)

    @property
    def audio_samples(self) -> int:
        return AUDIO_SAMPLES_PER_LATENT * self.audio_latent_length

    @property
    def duration_s(self) -> float:
        """Nominal clip length (5 or 10 s) as creators name it."""
        return round((self.frames - 1) / FPS)

    def with_overrides(self, **fields) -> "Variant":
        return replace(self, **fields)


VARIANTS: dict[str, Variant] = {
    "720x720_5s": Variant("720x720_5s", "model.safetensors", 31, 157, 720 * 720, "audcap"),
    "960x960_5s": Variant("960x960_5s", "model_960x960.safetensors", 31, 157, 960 * 960, "audio"),
    "960x960_10s": Variant("960x960_10s", "model_960x960_10s.safetensors", 61, 314, 960 * 960, "audio"),
}
DEFAULT_VARIANT = "960x960_10s"
FP8_FILENAME = "model_fp8_e4m3fn.safetensors"
FP8_VARIANTS = ("720x720_5s",)  # the published fp8 file is a 720x720_5s checkpoint


def get_variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown model variant {name!r}; choose one of {', '.join(VARIANTS)}") from None


def format_prompt(text: str, variant: Variant) -> str:
    """The reference's per-variant caption formatter, applied to the positive prompt.

    720x720_5s: everything from the first `Audio:` to the end becomes <AUDCAP>..<ENDAUDCAP>.
    960 variants: every <AUDCAP>X<ENDAUDCAP> becomes `Audio: X` in place.
    """
    if variant.caption_style == "audcap":
        return re.sub(r"Audio:\s*(.*)", r"<AUDCAP>\1<ENDAUDCAP>", text, flags=re.S)
    return re.sub(r"<AUDCAP>(.*?)<ENDAUDCAP>", r"Audio: \1", text, flags=re.S)


def snap_t2v_size(height: int, width: int, area: int) -> tuple[int, int]:
    """t2v: rescale (H, W) to the variant's area keeping the aspect, then round each side to
    the nearest multiple of 32 (minimum 32). Python's half-to-even `round` matters: a 720x720
    request on the 720 model becomes 704x704."""
    if height <= 0 or width <= 0:
        raise ValueError(f"height and width must be positive, got {(height, width)}")
    scale = math.sqrt(area / float(height * width))
    h, w = int(round(height * scale)), int(round(width * scale))
    return max(32, int(round(h / 32)) * 32), max(32, int(round(w / 32)) * 32)


def best_i2v_size(height: int, width: int, area: int, multiple: int = SIDE_MULTIPLE) -> tuple[int, int]:
    """i2v: the size a first-frame image of (height, width) is resized to: among
    sizes near the target area in multiples of 32, the one closest in area, then in aspect."""
    if area <= 0:
        return height, width
    ratio = width / float(height)
    units = max(1, area // (multiple * multiple))
    p0 = max(1, int(round(math.sqrt(units / max(ratio, 1e-8)))))
    candidates = []
    for dp in range(-3, 4):
        p = max(1, p0 + dp)
        q = max(1, int(round(p * ratio)))
        candidates.append((p * multiple, q * multiple))
    scale = math.sqrt(area / (height * float(width)))
    candidates.append((
        max(multiple, int(round(height * scale / multiple)) * multiple),
        max(multiple, int(round(width * scale / multiple)) * multiple),
    ))
    return min(candidates, key=lambda hw: (abs(hw[0] * hw[1] - area), abs(hw[1] / max(hw[0], 1e-8) - ratio)))


def latent_shape(height: int, width: int, variant: Variant) -> tuple[int, int, int, int]:
    """Video latent [48, F, H/16, W/16] for a snapped pixel size."""
    return (48, variant.video_latent_length, height // VAE_SPATIAL, width // VAE_SPATIAL)


def video_tokens(height: int, width: int, variant: Variant) -> int:
    return variant.video_latent_length * (height // SIDE_MULTIPLE) * (width // SIDE_MULTIPLE)
