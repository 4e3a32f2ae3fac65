"""The Wan2.2 video VAE: first-frame encode for i2v, latent decode to frames.

The network is diffusers' `AutoencoderKLWan` in its Wan2.2 configuration (2x2 patchify, residual
up/down blocks, 16x spatial / 4x temporal); it is the same computation as the reference's, the
checkpoint only names its tensors differently. diffusers' own single-file converter
mislabels this file as Wan2.1, so the key map below is ours.

Precision: the reference casts the VAE weights to bf16 and runs it inside an fp32 autocast, i.e.
fp32 arithmetic on bf16-rounded weights. We hold the bf16-rounded weights in fp32, which is the
same arithmetic on every device (CPU autocast has no fp32 mode).

Tiled decode (diffusers' spatial tiles, blended linearly over the overlap in the patchified
space) bounds memory on large frames. Stated tolerance: the tiling adds no error of its own —
with one tile it is bit-identical to the untiled decode, and for a decoder whose response is
local to the overlap it agrees to 1e-5 (fp32 rounding; tests/test_video_vae.py checks both).
What remains is the trained decoder's own reach across a seam (its middle attention is global
over a frame, its convolutions see only their tile); random test weights exaggerate it, so it
is measured on the published weights with `bench/bench_components.py --vae-ckpt-dir`.
Auto mode therefore tiles only when an untiled decode would not fit.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.arch import VideoVAEParams
from engine.layout import VIDEO_VAE_WEIGHTS
from engine.pth_weights import check_keys, read_pth_state_dict

# Per-channel latent statistics; latents the DiT sees are (mu - mean) / std.
LATENT_MEAN = (
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
    -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825,
    -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230,
    -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
    0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
)
LATENT_STD = (
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013,
    0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978,
    0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093,
    0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
    0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
)

@dataclass(frozen=True)
class Tiling:
    """Spatial tiles in output pixels: tiles of `size`, a new tile every `stride` (overlap =
    size - stride, blended linearly). Both must be multiples of 32 (16 x the 2x2 patchify)."""
    size: int = 256
    stride: int = 192


def _key_rules(p: VideoVAEParams) -> list[tuple[str, str]]:
    """(reference prefix, diffusers prefix) templates; `{s}`, `{j}` stand for any index.
    The first rule whose reference side matches a key wins, so literal indices come first."""
    n = str(p.num_res_blocks)
    n_up = str(p.num_res_blocks + 1)
    rules = [
        ("conv1.", "quant_conv."),
        ("conv2.", "post_quant_conv."),
        ("encoder.downsamples.{s}.downsamples." + n + ".", "encoder.down_blocks.{s}.downsampler."),
        ("encoder.downsamples.{s}.downsamples.{j}.", "encoder.down_blocks.{s}.resnets.{j}."),
        ("decoder.upsamples.{s}.upsamples." + n_up + ".", "decoder.up_blocks.{s}.upsampler."),
        ("decoder.upsamples.{s}.upsamples.{j}.", "decoder.up_blocks.{s}.resnets.{j}."),
    ]
    for part in ("encoder", "decoder"):
        rules += [
            (f"{part}.conv1.", f"{part}.conv_in."),
            (f"{part}.middle.0.", f"{part}.mid_block.resnets.0."),
            (f"{part}.middle.1.", f"{part}.mid_block.attentions.0."),
            (f"{part}.middle.2.", f"{part}.mid_block.resnets.1."),
            (f"{part}.head.0.", f"{part}.norm_out."),
            (f"{part}.head.2.", f"{part}.conv_out."),
        ]
    return rules


# Inside a residual block (applied after the prefix rules).
_RESNET_PARTS = [("residual.0.", "norm1."), ("residual.2.", "conv1."), ("residual.3.", "norm2."),
                 ("residual.6.", "conv2."), ("shortcut.", "conv_shortcut.")]


def _template_regex(template: str) -> re.Pattern:
    pattern = re.escape(template).replace(r"\{s\}", r"(?P<s>\d+)").replace(r"\{j\}", r"(?P<j>\d+)")
    return re.compile("^" + pattern)


def _rename(key: str, rules: list[tuple[str, str]], parts: list[tuple[str, str]]) -> str:
    for src, dst in rules:
        m = _template_regex(src).match(key)
        if m:
            rest = key[m.end():]
            if ".resnets." in src + dst:  # a residual block: rename its inner layers too
                for a, b in parts:
                    if rest.startswith(a):
                        rest = b + rest[len(a):]
                        break
            return dst.format(**m.groupdict()) + rest
    return key


def to_diffusers_keys(state: dict, p: VideoVAEParams) -> dict:
    """Wan2.2 checkpoint names -> AutoencoderKLWan names."""
    rules = _key_rules(p)
    return {_rename(k, rules, _RESNET_PARTS): v for k, v in state.items()}


def to_reference_keys(state: dict, p: VideoVAEParams) -> dict:
    """AutoencoderKLWan names -> Wan2.2 checkpoint names (writing test checkpoints)."""
    rules = [(dst, src) for src, dst in _key_rules(p)]
    # `{part}.conv_in.` must win over the bare `conv1.`/`conv2.` reverse rules: order by length
    rules.sort(key=lambda r: -len(r[0]))
    parts = [(b, a) for a, b in _RESNET_PARTS]
    return {_rename(k, rules, parts): v for k, v in state.items()}


def build_autoencoder(p: VideoVAEParams):
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan(
        base_dim=p.dim, decoder_base_dim=p.dec_dim, z_dim=p.z_dim, dim_mult=list(p.dim_mult),
        num_res_blocks=p.num_res_blocks, attn_scales=list(p.attn_scales),
        temperal_downsample=list(p.temperal_downsample), dropout=p.dropout, is_residual=True,
        in_channels=12, out_channels=12, patch_size=2, scale_factor_spatial=16, scale_factor_temporal=4)


@functools.cache
def weight_bytes(p: VideoVAEParams) -> int:
    """Device bytes of the VAE's weights as we hold them (fp32; see the module docstring)."""
    with torch.device("meta"):
        model = build_autoencoder(p)
    return 4 * sum(t.numel() for t in model.parameters())


def decode_bytes_estimate(latent_shape: tuple[int, ...], p: VideoVAEParams,
                          tiling: Tiling | None = None) -> int:
    """A conservative estimate of the peak device memory of decoding [B, 48, F, h, w]: the
    weights, the fp32 output (and its concatenation copy; tiled, also every tile's output), and
    a dozen full-resolution activations of the last decoder stage over one 4-frame chunk with
    its 2-frame causal cache — over the whole frame, or over one tile when tiled."""
    _, _, f, h, w = latent_shape
    frames = 1 + 4 * (f - 1)
    output = 3 * frames * (16 * h) * (16 * w) * 4
    copies = 2  # the decoded chunks, then their concatenation
    if tiling is not None:  # + every tile's output, overlaps included (area ratio size²/stride²)
        copies += (tiling.size / tiling.stride) ** 2
        h, w = min(h, tiling.size // 16), min(w, tiling.size // 16)
    widest = p.dec_dim * max(p.dim_mult[0], 1)
    activations = 12 * widest * 6 * (8 * h) * (8 * w) * 4 * 1.25  # 25%: allocator, workspaces
    return int(weight_bytes(p) + copies * output + activations)


class VideoVAE:
    """Encode [B, 3, T, H, W] in [-1, 1] -> normalised latents; decode them back (fp32)."""

    def __init__(self, model, params: VideoVAEParams, device):
        self.model = model
        self.params = params
        self.device = torch.device(device)
        self.mean = torch.tensor(LATENT_MEAN, dtype=torch.float32, device=self.device).view(1, -1, 1, 1, 1)
        self.inv_std = 1.0 / torch.tensor(LATENT_STD, dtype=torch.float32, device=self.device).view(1, -1, 1, 1, 1)

    @classmethod
    def load(cls, ckpt_dir: str | Path, params: VideoVAEParams, *, device="cpu") -> "VideoVAE":
        root = Path(ckpt_dir)
        state = to_diffusers_keys(read_pth_state_dict(root, VIDEO_VAE_WEIGHTS), params)
        with torch.device("meta"):
            model = build_autoencoder(params)
        check_keys({k: tuple(v.shape) for k, v in model.state_dict().items()}, state, root, VIDEO_VAE_WEIGHTS)
        # the reference's bf16 weights, computed with in fp32 (see the module docstring)
        state = {k: v.to(torch.bfloat16).to(torch.float32) for k, v in state.items()}
        model.load_state_dict(state, strict=True, assign=True)
        return cls(model.to(device).eval().requires_grad_(False), params, device)

    def to(self, device) -> "VideoVAE":
        """Move the VAE (weights and normalisation) in place; the pipeline parks it in CPU
        memory while the DiT samples."""
        self.device = torch.device(device)
        self.model.to(self.device)
        self.mean, self.inv_std = self.mean.to(self.device), self.inv_std.to(self.device)
        return self

    @torch.inference_mode()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Pixels [B, 3, 1+4k, H, W] in [-1, 1] -> latents [B, 48, 1+k, H/16, W/16], normalised."""
        self.model.disable_tiling()
        moments = self.model.encode(video.to(self.device, torch.float32)).latent_dist
        return (moments.mean - self.mean) * self.inv_std

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor, tiling: Tiling | None = None) -> torch.Tensor:
        """Latents [B, 48, F, h, w] -> pixels [B, 3, 1+4(F-1), 16h, 16w] in [-1, 1], fp32."""
        z = latents.to(self.device, torch.float32) / self.inv_std + self.mean
        if tiling is None:
            self.model.disable_tiling()
        else:
            if tiling.size % 32 or tiling.stride % 32 or not 0 < tiling.stride <= tiling.size:
                raise ValueError(f"tile size and stride must be multiples of 32 with 0 < stride <= size, "
                                 f"got {tiling}")
            self.model.enable_tiling(tile_sample_min_height=tiling.size, tile_sample_min_width=tiling.size,
                                     tile_sample_stride_height=tiling.stride,
                                     tile_sample_stride_width=tiling.stride)
        return self.model.decode(z).sample.float()

    def needs_tiling(self, latent_shape: tuple[int, ...]) -> bool:
        """True when an untiled decode would not fit in the device's free memory."""
        if self.device.type != "cuda":
            return False
        free, _ = torch.cuda.mem_get_info(self.device)  # the weights are already on the device
        return decode_bytes_estimate(latent_shape, self.params) - weight_bytes(self.params) > free
