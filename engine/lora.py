"""Merging LoRAs into the fusion model's weights (formats and key mapping: engine.lora_keys).

Exact arithmetic in fp32, rounded once to the weight's dtype:
W' = W + sum over LoRAs of scale * alpha / rank * (up @ down) (+ scale * diff). A LoRA at scale 0
leaves the weights bit-identical. The tensors are read when a model is loaded; with fp8 the merge
comes before quantisation.
"""
from __future__ import annotations

import torch
from safetensors.torch import load_file

from engine.lora_keys import LoraFile, LoraModule, LoraSpec, lora_targets, model_module_paths, read_lora


# --- merging ------------------------------------------------------------------------------------

def lora_deltas(module: LoraModule, tensors: dict[str, torch.Tensor], scale: float
                ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """fp32 differences this module adds to its weight and its bias at `scale` (None: none)."""
    t = {role: tensors[key].float() for role, key in module.keys.items()}
    weight = None
    if "down" in t:
        rank = t["down"].shape[0]
        alpha = float(t["alpha"]) if "alpha" in t else rank
        weight = (scale * alpha / rank) * (t["up"] @ t["down"])
    if "diff" in t:
        weight = scale * t["diff"] if weight is None else weight + scale * t["diff"]
    return weight, (scale * t["diff_b"] if "diff_b" in t else None)


def merge_loras(state: dict[str, torch.Tensor], loras: list[tuple[LoraSpec, LoraFile]]) -> list[str]:
    """Add every LoRA to the bf16/fp32 tensors of `state` (fusion-model keys) in place, each
    weight rounded once; returns the keys changed. LoRAs at scale 0 are skipped (bit-identical)."""
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    deltas: dict[str, torch.Tensor] = {}
    for spec, lora in loras:
        if spec.scale == 0:
            continue
        tensors = load_file(str(lora.path))
        for target, module in lora_targets(lora, spec.tower, shapes).items():
            for key, delta in zip((target + ".weight", target + ".bias"),
                                  lora_deltas(module, tensors, spec.scale)):
                if delta is not None:
                    deltas[key] = delta if key not in deltas else deltas[key] + delta
    for key, delta in deltas.items():
        state[key] = (state[key].float() + delta.to(state[key].device)).to(state[key].dtype)
    return sorted(deltas)


def load_loras(specs: list[LoraSpec], param_shapes: dict[str, tuple[int, ...]]
               ) -> list[tuple[LoraSpec, LoraFile]]:
    """Read every LoRA and check it against the model (raises LoraError on the first bad one)."""
    paths = model_module_paths(param_shapes)
    loaded = []
    for spec in specs:
        lora = read_lora(spec.path, paths)
        lora_targets(lora, spec.tower, param_shapes)
        loaded.append((spec, lora))
    return loaded
