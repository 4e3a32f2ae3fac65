"""fp8 weight storage: float8 e4m3 weights with per-block scales, computing in bf16.

Two fp8 forms reach the engine:
- the published fp8 file (`Ovi/model_fp8_e4m3fn.safetensors`): a plain cast, no scales
  (spec §11) — loaded as is and upcast to bf16 at every matmul, like the reference;
- any bf16 variant converted at load time to e4m3 with one scale per block of 64 input
  channels (musubi-tuner's `fp8_scaled` layout, performance-anchors §5): better quality than
  a plain cast, half the bytes of bf16. Converted once and cached on disk.

Only Linear weights inside the fusion layers are quantised; norms, biases, modulation tables,
embeddings and the heads stay in bf16 (they are small and precision-sensitive).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from engine.fingerprint import file_fingerprint

FP8 = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8).max  # 448
BLOCK = 64
SCALE_SUFFIX = ".fp8_scale"
FORMAT_VERSION = 1


def quantize_blockwise(weight: torch.Tensor, block: int = BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """[out, in] -> (fp8 [out, in], fp32 scales [out, in // block]); one scale per block of
    `block` input channels, chosen so the block's largest magnitude maps to the fp8 maximum.
    Falls back to one scale per output row when `in` is not a multiple of `block`."""
    out_features, in_features = weight.shape
    if in_features % block:
        block = in_features
    w = weight.float().reshape(out_features, in_features // block, block)
    amax = w.abs().amax(dim=-1, keepdim=True)
    scale = torch.where(amax > 0, amax / FP8_MAX, torch.ones_like(amax))
    q = (w / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8)
    return q.reshape(out_features, in_features), scale.squeeze(-1)


def dequantize_blockwise(q: torch.Tensor, scale: torch.Tensor, dtype=torch.bfloat16) -> torch.Tensor:
    out_features, in_features = q.shape
    blocks = scale.shape[1]
    w = q.float().reshape(out_features, blocks, in_features // blocks) * scale.unsqueeze(-1)
    return w.reshape(out_features, in_features).to(dtype)


class FP8Linear(nn.Module):
    """A Linear whose weight is stored as fp8 e4m3 (+ optional block scales) and expanded to
    the compute dtype for each call. Same state-dict key for the weight as nn.Linear."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 scaled: bool = True, block: int = BLOCK, compute_dtype=torch.bfloat16, device=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.compute_dtype = compute_dtype
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=FP8, device=device),
                                   requires_grad=False)
        blocks = in_features // block if in_features % block == 0 else 1
        self.scale = (nn.Parameter(torch.ones(out_features, blocks, device=device), requires_grad=False)
                      if scaled else None)
        self.bias = (nn.Parameter(torch.empty(out_features, dtype=compute_dtype, device=device),
                                  requires_grad=False) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, scaled: bool = True, block: int = BLOCK) -> "FP8Linear":
        module = cls(linear.in_features, linear.out_features, linear.bias is not None,
                     scaled=scaled, block=block, compute_dtype=torch.bfloat16, device="meta")
        if linear.weight.is_meta:  # structure only: a converted file's tensors are assigned later
            return module
        if scaled:
            q, s = quantize_blockwise(linear.weight.data, block)
            module.scale = nn.Parameter(s, requires_grad=False)
        else:
            q = linear.weight.data.to(FP8)
        module.weight = nn.Parameter(q, requires_grad=False)
        if linear.bias is not None:
            module.bias = nn.Parameter(linear.bias.data.to(torch.bfloat16), requires_grad=False)
        return module

    def dequantized_weight(self) -> torch.Tensor:
        if self.scale is None:
            return self.weight.to(self.compute_dtype)
        return dequantize_blockwise(self.weight, self.scale, self.compute_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(self.compute_dtype)
        return F.linear(x.to(self.compute_dtype), self.dequantized_weight(), bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"scaled={self.scale is not None}")


def _linear_children(root: nn.Module):
    for name, module in root.named_modules():
        for child_name, child in module.named_children():
            if isinstance(child, nn.Linear):
                yield module, child_name, (f"{name}.{child_name}" if name else child_name), child


def quantize_linears(root: nn.Module, *, scaled: bool = True, block: int = BLOCK) -> list[str]:
    """Replace every nn.Linear under `root` by an FP8Linear (in place); returns their names."""
    replaced = []
    for parent, child_name, full_name, child in list(_linear_children(root)):
        setattr(parent, child_name, FP8Linear.from_linear(child, scaled=scaled, block=block))
        replaced.append(full_name)
    return replaced


def scaled_state_dict(root: nn.Module) -> dict[str, torch.Tensor]:
    """State dict of a quantised module tree, scales stored as `<weight key>.fp8_scale`."""
    out = {}
    for key, tensor in root.state_dict().items():
        if key.endswith(".scale"):
            out[key[: -len(".scale")] + ".weight" + SCALE_SUFFIX] = tensor
        else:
            out[key] = tensor
    return out


def converted_cache_path(cache_dir: str | Path, source: str | Path, block: int = BLOCK,
                         extra: str = "") -> Path:
    """Where the fp8 conversion of one checkpoint file is cached (keyed by its fingerprint and
    `extra`: whatever else went into the weights, such as merged LoRAs)."""
    ident = file_fingerprint(source).replace("sha256:", "")
    if extra:
        ident += "-" + hashlib.sha256(extra.encode()).hexdigest()[:16]
    return Path(cache_dir) / "fp8" / f"{Path(source).stem}-{ident}-b{block}-v{FORMAT_VERSION}.safetensors"


def save_converted(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Atomic write, so an interrupted conversion is never mistaken for a finished one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={"format": "ovi-studio-fp8"})
    tmp.replace(path)


def load_converted(path: Path, device="cpu") -> dict[str, torch.Tensor]:
    return load_file(str(path), device=str(device))


def load_scales_into(root: nn.Module, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Translate `<weight>.fp8_scale` keys of a converted file back to FP8Linear `.scale` keys."""
    out = {}
    for key, tensor in tensors.items():
        if key.endswith(".weight" + SCALE_SUFFIX):
            out[key[: -len(".weight" + SCALE_SUFFIX)] + ".scale"] = tensor
        else:
            out[key] = tensor
    return out


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖ in fp32: how the benchmark reports fp8 against bf16."""
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).norm() / b.norm().clamp_min(1e-12))
