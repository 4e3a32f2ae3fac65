"""Write small random LoRA files in the three on-disk formats engine.lora reads, for the tiny
fusion model, and return what a hand merge needs (module -> up, down, alpha)."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from engine.arch import Arch

# A Wan2.2-5B LoRA's modules (tower-relative) and an Ovi LoRA's (absolute, both towers).
WAN_MODULES = ("blocks.0.self_attn.q", "blocks.1.cross_attn.o", "blocks.2.ffn.0", "blocks.3.ffn.2")
OVI_MODULES = ("video_model.blocks.0.self_attn.k", "audio_model.blocks.1.cross_attn.k_fusion",
               "audio_model.blocks.2.ffn.2", "video_model.blocks.3.cross_attn.v_fusion")
# the original Wan names of the modules above -> diffusers' names (what diffusers LoRAs use)
DIFFUSERS_NAMES = {"self_attn.q": "attn1.to_q", "cross_attn.o": "attn2.to_out.0",
                   "ffn.0": "ffn.net.0.proj", "ffn.2": "ffn.net.2"}
FORMATS = ("kohya", "comfyui", "peft")


def _shape(arch: Arch, module: str) -> tuple[int, int]:
    """[out, in] of a Linear of the tiny fusion model."""
    p = arch.video_dit
    if module.endswith("ffn.0"):
        return p.ffn_dim, p.dim
    if module.endswith("ffn.2"):
        return p.dim, p.ffn_dim
    return p.dim, p.dim


def _file_key(module: str, fmt: str) -> str:
    if fmt == "kohya":
        return "lora_unet_" + module.replace(".", "_")
    if fmt == "comfyui":
        return "diffusion_model." + module
    if module.startswith(("video_model.", "audio_model.")):
        return "base_model.model." + module
    block, rest = module.split(".", 2)[:2], module.split(".", 2)[2]
    return "transformer." + ".".join(block) + "." + DIFFUSERS_NAMES[rest]


def write_tiny_lora(path: str | Path, arch: Arch, fmt: str, modules=WAN_MODULES, *, rank: int = 4,
                    alpha: float = 2.0, seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """Write a LoRA file; returns module path -> (up [out, r], down [r, in], alpha). PEFT files
    carry no alpha (it is then the rank)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}")
    g = torch.Generator("cpu").manual_seed(seed)
    tensors, made = {}, {}
    for module in modules:
        out_features, in_features = _shape(arch, module)
        down = (torch.randn(rank, in_features, generator=g) / in_features ** 0.5).bfloat16()
        up = (torch.randn(out_features, rank, generator=g) / rank ** 0.5).bfloat16()
        key = _file_key(module, fmt)
        if fmt == "peft":
            tensors[key + ".lora_A.weight"], tensors[key + ".lora_B.weight"] = down, up
            made[module] = (up, down, float(rank))
        else:
            tensors[key + ".lora_down.weight"], tensors[key + ".lora_up.weight"] = down, up
            tensors[key + ".alpha"] = torch.tensor(alpha)
            made[module] = (up, down, alpha)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return made
