"""Architecture sizes of every network in a checkpoint folder (pure Python, no torch).

A folder without `arch.json` is the published full size. With one, each section overrides the
published sizes of one network, field by field (docs/model.md, arch.json). Tests load
tiny checkpoints this way; a future smaller or distilled Ovi would load the same way.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from .variants import Variant

ARCH_FILENAME = "arch.json"
MAX_ARCH_BYTES = 1 << 20


class ArchError(ValueError):
    """arch.json is unreadable or describes an impossible network."""


@dataclass(frozen=True)
class DiTParams:
    """One tower of the fusion DiT (the keys of Ovi's video.json / audio.json)."""
    model_type: str
    patch_size: tuple[int, ...]
    in_dim: int
    out_dim: int
    dim: int = 3072
    ffn_dim: int = 14336
    freq_dim: int = 256
    text_dim: int = 4096
    text_len: int = 512
    num_heads: int = 24
    num_layers: int = 30
    window_size: tuple[int, int] = (-1, -1)
    qk_norm: bool = True
    cross_attn_norm: bool = True
    eps: float = 1e-6
    temporal_rope_scaling_factor: float = 1.0

    @property
    def is_audio(self) -> bool:
        return "a" in self.model_type

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def rope_bands(self) -> tuple[int, int, int]:
        """Real dimensions per head rotated by (frame, row, column): d-4*floor(d/6), 2*floor(d/6) x2."""
        d = self.head_dim
        return d - 4 * (d // 6), 2 * (d // 6), 2 * (d // 6)

    @property
    def audio_stem_hidden(self) -> int:
        """Hidden width of the audio patch-embedding ConvMLP: ceil(8*dim/3 / 256) * 256."""
        return 256 * math.ceil((2 * (4 * self.dim) / 3) / 256)


VIDEO_DIT = DiTParams(model_type="ti2v", patch_size=(1, 2, 2), in_dim=48, out_dim=48)
AUDIO_DIT = DiTParams(model_type="t2a", patch_size=(1,), in_dim=20, out_dim=20,
                      temporal_rope_scaling_factor=0.19676)


@dataclass(frozen=True)
class T5Params:
    vocab: int = 256384
    dim: int = 4096
    dim_attn: int = 4096
    dim_ffn: int = 10240
    num_heads: int = 64
    num_layers: int = 24
    num_buckets: int = 32
    shared_pos: bool = False
    dropout: float = 0.1


@dataclass(frozen=True)
class VideoVAEParams:
    dim: int = 160
    dec_dim: int = 256
    z_dim: int = 48
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attn_scales: tuple[float, ...] = ()
    temperal_downsample: tuple[bool, ...] = (False, True, True)
    dropout: float = 0.0


@dataclass(frozen=True)
class AudioVAEParams:
    data_dim: int = 80
    embed_dim: int = 20
    hidden_dim: int = 384


@dataclass(frozen=True)
class VocoderParams:
    resblock: str = "1"
    num_mels: int = 80
    upsample_rates: tuple[int, ...] = (4, 4, 2, 2, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (8, 8, 4, 4, 4, 4)
    upsample_initial_channel: int = 1536
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    activation: str = "snakebeta"
    snake_logscale: bool = True


@dataclass(frozen=True)
class VariantOverrides:
    """`variant` section: overrides of the loaded variant's table entry (None = keep)."""
    video_latent_length: int | None = None
    audio_latent_length: int | None = None
    video_area: int | None = None

    def apply(self, variant: Variant) -> Variant:
        changes = {k: v for k, v in asdict(self).items() if v is not None}
        return variant.with_overrides(**changes) if changes else variant


@dataclass(frozen=True)
class Arch:
    """Sizes of every network in one checkpoint folder."""
    video_dit: DiTParams = VIDEO_DIT
    audio_dit: DiTParams = AUDIO_DIT
    t5: T5Params = field(default_factory=T5Params)
    video_vae: VideoVAEParams = field(default_factory=VideoVAEParams)
    audio_vae: AudioVAEParams = field(default_factory=AudioVAEParams)
    vocoder: VocoderParams = field(default_factory=VocoderParams)
    variant: VariantOverrides = field(default_factory=VariantOverrides)

    @property
    def is_published_size(self) -> bool:
        return self == Arch()

    def to_json(self) -> dict:
        return {name: asdict(getattr(self, name)) for name in _SECTIONS}


_SECTIONS = {
    "video_dit": VIDEO_DIT,
    "audio_dit": AUDIO_DIT,
    "t5": T5Params(),
    "video_vae": VideoVAEParams(),
    "audio_vae": AudioVAEParams(),
    "vocoder": VocoderParams(),
    "variant": VariantOverrides(),
}


def _tupled(value):
    """JSON lists become tuples so that params stay hashable and compare equal."""
    if isinstance(value, list):
        return tuple(_tupled(v) for v in value)
    return value


def _section(name: str, published, data, source: str):
    if not isinstance(data, dict):
        raise ArchError(f"{source}: section {name!r} must be a JSON object")
    known = {f.name for f in fields(published)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ArchError(f"{source}: unknown field(s) {', '.join(unknown)} in section {name!r}; "
                        f"known fields: {', '.join(sorted(known))}")
    for key, value in data.items():
        problem = _value_problem(getattr(published, key), value)
        if problem:
            raise ArchError(f"{source}: {name}.{key} is {json.dumps(value)}; {problem}")
    return replace(published, **{k: _tupled(v) for k, v in data.items()})


def _value_problem(published, value) -> str | None:
    """Why `value` cannot stand where the published size is `published` (same kind of value;
    counts and widths positive; no NaN or infinity anywhere), else None."""
    if isinstance(published, bool) or isinstance(value, bool):
        return None if isinstance(published, bool) and isinstance(value, bool) else "expected true or false"
    if isinstance(published, int) or published is None:  # a size, a count (None: optional one)
        if published is None and value is None:
            return None
        return None if isinstance(value, int) and value > 0 else "expected a whole number above 0"
    if isinstance(published, float):
        ok = isinstance(value, (int, float)) and math.isfinite(value) and value >= 0
        return None if ok else "expected a finite number, 0 or more"
    if isinstance(published, str):
        return None if isinstance(value, str) and value else "expected a non-empty string"
    if isinstance(published, tuple):
        if not isinstance(value, list):
            return "expected a list"
        if not all(isinstance(v, (bool, list)) or (isinstance(v, (int, float)) and math.isfinite(v))
                   for v in value):
            return "expected a list of finite numbers"
        return next((_value_problem(p, v) for p, v in zip(published, value)
                     if isinstance(p, tuple) and _value_problem(p, v)), None)
    return None


def parse_arch(data: dict, source: str = ARCH_FILENAME) -> Arch:
    if not isinstance(data, dict):
        raise ArchError(f"{source}: must hold a JSON object")
    unknown = sorted(k for k in data if not k.startswith("_") and k not in _SECTIONS)
    if unknown:
        raise ArchError(f"{source}: unknown section(s) {', '.join(unknown)}; "
                        f"known sections: {', '.join(_SECTIONS)}")
    arch = Arch(**{name: _section(name, published, data[name], source)
                   for name, published in _SECTIONS.items() if name in data})
    validate_arch(arch, source)
    return arch


def validate_arch(arch: Arch, source: str = ARCH_FILENAME) -> None:
    v, a = arch.video_dit, arch.audio_dit
    problems = []
    if "v" not in v.model_type or "a" not in a.model_type:
        problems.append("video_dit.model_type must contain 'v' and audio_dit.model_type 'a'")
    for name, tower in (("video_dit", v), ("audio_dit", a)):
        if tower.dim % tower.num_heads or tower.head_dim % 2:
            problems.append(f"{name}: dim must split into num_heads heads of even width")
    if (v.dim, v.num_heads, v.num_layers) != (a.dim, a.num_heads, a.num_layers):
        problems.append("video_dit and audio_dit must have equal dim, num_heads and num_layers")
    if v.text_dim != arch.t5.dim or a.text_dim != arch.t5.dim:
        problems.append("video_dit.text_dim and audio_dit.text_dim must equal t5.dim")
    if v.in_dim != arch.video_vae.z_dim:
        problems.append("video_dit.in_dim must equal video_vae.z_dim")
    if a.in_dim != arch.audio_vae.embed_dim:
        problems.append("audio_dit.in_dim must equal audio_vae.embed_dim")
    if arch.video_vae.z_dim != 48:
        problems.append("video_vae.z_dim must stay 48 (the latent mean/std constants have 48 entries)")
    if math.prod(arch.vocoder.upsample_rates) != 256:
        problems.append("vocoder.upsample_rates must multiply to 256 (the mel hop)")
    if problems:
        raise ArchError(f"{source}: " + "; ".join(problems))


def load_arch(ckpt_dir: str | Path) -> Arch:
    """The sizes of a checkpoint folder: its arch.json, or the published sizes without one."""
    path = Path(ckpt_dir) / ARCH_FILENAME
    if not path.exists():
        return Arch()
    if not path.is_file() or path.stat().st_size > MAX_ARCH_BYTES:
        raise ArchError(f"{path}: not a regular JSON file of at most {MAX_ARCH_BYTES >> 10} KiB")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ArchError(f"{path}: cannot read arch.json ({exc})") from None
    return parse_arch(data, str(path))
