"""Write a small random fusion-DiT checkpoint in the published format (bf16 safetensors, the
reference's exact keys), sized by an `Arch`.

The weights are chosen so that a tiny model is *sensitive*: with naive tiny inits the
outputs hardly depend on the details a port can get wrong, and harmless rounding differences
blow up over sampling. So: unit-gain Linear/Conv weights, affine LayerNorm scales and biases near
1, RMSNorm scales near 2 (attention logits with a standard deviation of a few units: moderately
sharp), and time/text embeddings with unit gain so the timestep and the prompt matter.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from engine.arch import Arch
from engine.layout import fusion_weights
from engine.variants import get_variant

FP8_DTYPE = torch.float8_e4m3fn


def _value(name: str, shape: torch.Size, g: torch.Generator) -> torch.Tensor:
    noise = torch.randn(shape, generator=g, dtype=torch.float32)
    if name.endswith("modulation"):
        return noise / shape[-1] ** 0.5
    if "norm_q" in name or "norm_k" in name:  # RMSNorm scales -> attention sharpness
        return 2.0 + 0.2 * noise
    if "norm" in name:  # affine LayerNorms (norm3, pre_attn_norm_fusion): weight and bias near 1
        return 1.0 + 0.1 * noise
    if name.endswith("bias"):
        return 0.1 * noise
    fan_in = shape[1:].numel()
    return noise / fan_in ** 0.5


def tiny_fusion_state_dict(arch: Arch, seed: int) -> dict[str, torch.Tensor]:
    """Deterministic bf16 weights for every key of the fusion model sized by `arch`."""
    from engine.model import FusionModel

    with torch.device("meta"):
        model = FusionModel(arch.video_dit, arch.audio_dit)
    g = torch.Generator("cpu").manual_seed(seed)
    return {name: _value(name, p.shape, g).to(torch.bfloat16).contiguous()
            for name, p in sorted(model.state_dict().items())}


def to_fp8(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The published fp8 file's layout: every tensor named without "norm" or "bias" in e4m3fn."""
    return {k: v if ("norm" in k or "bias" in k) else v.to(FP8_DTYPE) for k, v in state.items()}


def write_fusion(root: str | Path, arch: Arch, variant_name: str, seed: int,
                 fp8: bool = False) -> Path:
    """Write `<root>/Ovi/<variant file>` (or the fp8 file) and return its path."""
    state = tiny_fusion_state_dict(arch, seed)
    path = Path(root) / fusion_weights(get_variant(variant_name), fp8)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(to_fp8(state) if fp8 else state, str(path), metadata={"format": "pt"})
    return path


def state_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """sha256 over key names, dtypes, shapes and bytes (sorted keys): identifies a set of weights."""
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(state):
        t = state[name].contiguous()
        digest.update(f"{name}|{t.dtype}|{list(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
