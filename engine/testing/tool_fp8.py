"""Write a fusion state dict as the scaled-fp8 files other tools make: ComfyUI/kijai's and
musubi-tuner's `fp8_scaled` layouts (engine.fp8_files), for tests of loading and choosing them."""
from __future__ import annotations

import torch
from safetensors.torch import save_file

from engine.fp8 import FP8, FP8_MAX


def _is_linear_weight(key: str, tensor: torch.Tensor) -> bool:
    return key.endswith(".weight") and tensor.dim() == 2 and "norm" not in key and "modulation" not in key


def write_kijai_fp8(state: dict, path):
    """ComfyUI/kijai layout: `model.diffusion_model.` keys, a `scaled_fp8` marker, one scalar
    scale per Linear (the embeddings' Linears too), everything else in fp32."""
    out = {"scaled_fp8": torch.zeros(0, dtype=FP8)}
    for key, t in state.items():
        name = "model.diffusion_model." + key
        if _is_linear_weight(key, t):
            scale = t.float().abs().max() / FP8_MAX
            out[name] = (t.float() / scale).to(FP8)
            out[name[: -len(".weight")] + ".scale_weight"] = scale.reshape(())
        else:
            out[name] = t.float()
    save_file(out, str(path))
    return out


def write_musubi_fp8(state: dict, path, block=64):
    """musubi-tuner layout: the model's keys, block scales [out, blocks, 1] relative to a
    tensor-wide `scale_weight_tensor`, Linears of the fusion blocks only."""
    out = {}
    for key, t in state.items():
        if _is_linear_weight(key, t) and ".blocks." in key:
            w = t.float().reshape(t.shape[0], -1, block)
            blockwise = w.abs().amax(dim=-1, keepdim=True) / FP8_MAX
            tensor_scale = blockwise.max()
            out[key] = (w / blockwise).to(FP8).reshape(t.shape)
            out[key[: -len(".weight")] + ".scale_weight"] = blockwise / tensor_scale
            out[key[: -len(".weight")] + ".scale_weight_tensor"] = tensor_scale.reshape(1)
        else:
            out[key] = t
    save_file(out, str(path))
    return out
