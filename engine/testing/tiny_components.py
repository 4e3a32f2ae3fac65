"""Small random Wan/MMAudio component files in the published formats and key names, sized by an `Arch`. Deterministic: a CPU generator per file.

Formats: T5 `.pth` in bf16 with Wan's key names; Wan2.2 VAE `.pth` in fp32 with the reference's
key names; `v1-16.pth` in fp32 including the encoder and the published mel statistics;
`best_netG.pt` as `{"generator": state_dict}` with legacy `weight_g`/`weight_v` names.

Random weights are scaled so that a real mistake changes the outputs visibly: norm
gains near 1 but not equal, fan-in scaled projections, sharp enough relative-position biases.
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import torch

from engine.arch import Arch
from engine.audio_vae import checkpoint_shapes
from engine.layout import AUDIO_VAE_WEIGHTS, T5_WEIGHTS, TOKENIZER_DIR, VIDEO_VAE_WEIGHTS, VOCODER_WEIGHTS
from engine.text import T5Encoder
from engine.video_vae import build_autoencoder, to_reference_keys
from engine.vocoder import Vocoder, kaiser_sinc_taps

TOKENIZER_FILES = Path(__file__).parent / "data" / "tokenizer"

# MMAudio's published 80-bin log-mel statistics (the `data_mean` / `data_std` buffers).
MEL_MEAN_80 = (
    -1.6058, -1.3676, -1.2520, -1.2453, -1.2078, -1.2224, -1.2419, -1.2439, -1.2922, -1.2927,
    -1.3170, -1.3543, -1.3401, -1.3836, -1.3907, -1.3912, -1.4313, -1.4152, -1.4527, -1.4728,
    -1.4568, -1.5101, -1.5051, -1.5172, -1.5623, -1.5373, -1.5746, -1.5687, -1.6032, -1.6131,
    -1.6081, -1.6331, -1.6489, -1.6489, -1.6700, -1.6738, -1.6953, -1.6969, -1.7048, -1.7280,
    -1.7361, -1.7495, -1.7658, -1.7814, -1.7889, -1.8064, -1.8221, -1.8377, -1.8417, -1.8643,
    -1.8857, -1.8929, -1.9173, -1.9379, -1.9531, -1.9673, -1.9824, -2.0042, -2.0215, -2.0436,
    -2.0766, -2.1064, -2.1418, -2.1855, -2.2319, -2.2767, -2.3161, -2.3572, -2.3954, -2.4282,
    -2.4659, -2.5072, -2.5552, -2.6074, -2.6584, -2.7107, -2.7634, -2.8266, -2.8981, -2.9673,
)
MEL_STD_80 = (
    1.0291, 1.0411, 1.0043, 0.9820, 0.9677, 0.9543, 0.9450, 0.9392, 0.9343, 0.9297, 0.9276, 0.9263,
    0.9242, 0.9254, 0.9232, 0.9281, 0.9263, 0.9315, 0.9274, 0.9247, 0.9277, 0.9199, 0.9188, 0.9194,
    0.9160, 0.9161, 0.9146, 0.9161, 0.9100, 0.9095, 0.9145, 0.9076, 0.9066, 0.9095, 0.9032, 0.9043,
    0.9038, 0.9011, 0.9019, 0.9010, 0.8984, 0.8983, 0.8986, 0.8961, 0.8962, 0.8978, 0.8962, 0.8973,
    0.8993, 0.8976, 0.8995, 0.9016, 0.8982, 0.8972, 0.8974, 0.8949, 0.8940, 0.8947, 0.8936, 0.8939,
    0.8951, 0.8956, 0.9017, 0.9167, 0.9436, 0.9690, 1.0003, 1.0225, 1.0381, 1.0491, 1.0545, 1.0604,
    1.0761, 1.0929, 1.1089, 1.1196, 1.1176, 1.1156, 1.1117, 1.1070,
)


def _normal(shape, std: float, gen: torch.Generator, mean: float = 0.0) -> torch.Tensor:
    return torch.randn(tuple(shape), generator=gen) * std + mean


def _fan_in(shape) -> int:
    return max(1, math.prod(shape[1:]))


def _meta_shapes(build) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a module's state dict, built on the meta device (no memory used)."""
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in build().state_dict().items()}


def _save(obj, root: Path, relative: str) -> Path:
    path = Path(root) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return path


def write_t5(root, arch: Arch, seed: int = 0) -> Path:
    gen = torch.Generator().manual_seed(seed)
    shapes = _meta_shapes(lambda: T5Encoder(arch.t5))
    state = {}
    for key, shape in shapes.items():
        if key.endswith("norm1.weight") or key.endswith("norm2.weight") or key == "norm.weight":
            state[key] = _normal(shape, 0.1, gen, mean=1.0)
        elif key == "token_embedding.weight":
            state[key] = _normal(shape, 1.0, gen)
        elif "pos_embedding" in key:
            state[key] = _normal(shape, 0.5, gen)  # position must matter in the tiny encoder
        else:
            state[key] = _normal(shape, _fan_in(shape) ** -0.5, gen)
    return _save({k: v.to(torch.bfloat16) for k, v in state.items()}, root, T5_WEIGHTS)


def write_tokenizer(root, arch: Arch) -> Path:
    from tokenizers import Tokenizer

    target = Path(root) / TOKENIZER_DIR
    target.mkdir(parents=True, exist_ok=True)
    for source in TOKENIZER_FILES.iterdir():
        shutil.copyfile(source, target / source.name)
    size = Tokenizer.from_file(str(target / "tokenizer.json")).get_vocab_size(with_added_tokens=True)
    if size > arch.t5.vocab:
        raise ValueError(f"the test tokenizer has {size} tokens, more than t5.vocab={arch.t5.vocab}")
    return target


def write_video_vae(root, arch: Arch, seed: int = 0) -> Path:
    gen = torch.Generator().manual_seed(seed)
    shapes = _meta_shapes(lambda: build_autoencoder(arch.video_vae))
    state = {}
    for key, shape in sorted(shapes.items()):
        if key.endswith(".gamma"):
            state[key] = _normal(shape, 0.1, gen, mean=1.0)
        elif key.endswith(".bias"):
            state[key] = _normal(shape, 0.05, gen)
        else:
            state[key] = _normal(shape, _fan_in(shape) ** -0.5, gen)
    return _save(to_reference_keys(state, arch.video_vae), root, VIDEO_VAE_WEIGHTS)


def write_audio_vae(root, arch: Arch, seed: int = 0) -> Path:
    p = arch.audio_vae
    if p.data_dim != 80:
        raise ValueError("the 16 kHz MMAudio VAE has 80 mel bins (mel statistics exist for 80 only here)")
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in sorted(checkpoint_shapes(p).items()):
        if key == "data_mean":
            state[key] = torch.tensor(MEL_MEAN_80).view(shape)
        elif key == "data_std":
            state[key] = torch.tensor(MEL_STD_80).view(shape)
        elif key.endswith("learnable_gain"):
            state[key] = _normal(shape, 0.2, gen)  # a forgotten gain must show
        else:
            state[key] = _normal(shape, 1.0, gen)  # filters are normalised at load anyway
    return _save(state, root, AUDIO_VAE_WEIGHTS)


def write_vocoder(root, arch: Arch, seed: int = 0) -> Path:
    gen = torch.Generator().manual_seed(seed)
    shapes = _meta_shapes(lambda: Vocoder(arch.vocoder))
    state = {}
    for key, shape in sorted(shapes.items()):
        if key.endswith(".filter"):
            state[key] = kaiser_sinc_taps()
        elif key.endswith(".alpha") or key.endswith(".beta"):
            state[key] = _normal(shape, 0.3, gen)  # log scale
        elif key.endswith(".bias"):
            state[key] = _normal(shape, 0.02, gen)
        else:  # a weight-normed conv: direction v, magnitude g per output (or, transposed, input) channel
            module = key[: -len(".weight")]
            state[module + ".weight_v"] = _normal(shape, 1.0, gen)
            # unit-norm filters; the output conv smaller so that tanh is not saturated
            magnitude = 0.1 if module == "conv_post" else 1.0
            state[module + ".weight_g"] = _normal((shape[0], 1, 1), 0.1 * magnitude, gen, mean=magnitude)
    return _save({"generator": state}, root, VOCODER_WEIGHTS)
