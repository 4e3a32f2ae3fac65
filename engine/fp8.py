"""fp8 weight storage: float8 e4m3 weights with per-block or per-row scales.

fp8 reaches the engine in three forms:
- the published fp8 file (`Ovi/model_fp8_e4m3fn.safetensors`): a plain cast, no scales —
  loaded as is and upcast to bf16 at every matmul, like the reference;
- any bf16 variant converted at load time to e4m3 with one scale per block of 64 input
  channels (better quality than a plain cast, half the bytes of bf16), or with one scale per
  output row where the matmul itself runs in fp8 (below). Converted once and cached on disk;
- a scaled-fp8 file made by another tool (`read_scaled_file`; formats in engine.fp8_files): musubi-tuner's `fp8_scaled`
  (`<layer>.scale_weight` of shape [out, blocks, 1], [out, 1] or [1], with newer files adding a
  tensor-wide `<layer>.scale_weight_tensor`) and ComfyUI / kijai's `fp8_scaled` (a `scaled_fp8`
  marker key and one scalar `<layer>.scale_weight` per layer). Their fp8 values and scales are
  kept as they are (dequantising gives exactly the tool's weights).

How an fp8 layer multiplies (`FP8Linear.forward`):
- `fp8_matmul` (GPUs with fp8 tensor cores, compute capability 8.9+): the activations are
  quantised per row and `torch._scaled_mm` multiplies in fp8 with the row scales of both
  operands — the weights are never expanded. Needs one scale per output row;
- otherwise the weight is expanded to bf16. `FusionModel.layer` holds the expanded weights of
  the layer being run (`hold_dequantized`), so both CFG branches of a step share one expansion:
  once per step per layer, not once per call.

Only Linear weights inside the fusion layers are quantised; norms, biases, modulation tables,
embeddings and the heads stay in bf16 (they are small and precision-sensitive).
"""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from engine.fingerprint import file_fingerprint
from engine.fp8_files import SCALE_SUFFIX, TOOL_SCALE, TOOL_TENSOR_SCALE, is_weight_key, model_key

FP8 = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8).max  # 448
BLOCK = 64
ROWWISE = 0  # as a block size: one scale per output row (what fp8 matmuls take)
FORMAT_VERSION = 1
FP8_MATMUL_CAPABILITY = (8, 9)  # Ada and Hopper onwards have fp8 tensor cores
CONVERTED_FORMAT = "ovi-studio-fp8"  # the metadata tag of a cached conversion


def quantize_blockwise(weight: torch.Tensor, block: int = BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """[out, in] -> (fp8 [out, in], fp32 scales [out, in // block]); one scale per block of
    `block` input channels, chosen so the block's largest magnitude maps to the fp8 maximum.
    One scale per output row when `block` is ROWWISE or does not divide `in`."""
    out_features, in_features = weight.shape
    if block == ROWWISE or in_features % block:
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


def fp8_matmul_available(device: torch.device) -> bool:
    """Whether `device` has fp8 tensor cores (`torch._scaled_mm` runs there)."""
    device = torch.device(device)
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= FP8_MATMUL_CAPABILITY


def scaled_matmul(x: torch.Tensor, weight: torch.Tensor, row_scale: torch.Tensor,
                  bias: torch.Tensor | None) -> torch.Tensor:
    """x [..., in] (bf16) times a row-scaled fp8 weight [out, in] (scales [out, 1]) as one fp8
    matmul: x is quantised with one scale per row, the product comes out in bf16."""
    rows = x.reshape(-1, x.shape[-1])
    x_scale = (rows.abs().amax(dim=-1, keepdim=True).float() / FP8_MAX).clamp_min(1e-12)
    x_fp8 = (rows.float() / x_scale).clamp(-FP8_MAX, FP8_MAX).to(FP8)
    out = torch._scaled_mm(x_fp8, weight.t(), scale_a=x_scale, scale_b=row_scale.float().t(),
                           out_dtype=torch.bfloat16)
    if bias is not None:
        out = out + bias.to(torch.bfloat16)
    return out.reshape(*x.shape[:-1], weight.shape[0])


class FP8Linear(nn.Module):
    """A Linear whose weight is stored as fp8 e4m3 (+ optional block or row scales). Same
    state-dict key for the weight as nn.Linear. `fp8_matmul` (row scales only) multiplies in
    fp8; otherwise the weight is expanded to the compute dtype (or taken from `held`)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 scaled: bool = True, block: int = BLOCK, compute_dtype=torch.bfloat16, device=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.compute_dtype = compute_dtype
        self.fp8_matmul = False
        self.held: torch.Tensor | None = None  # the expanded weight, while its layer runs
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=FP8, device=device),
                                   requires_grad=False)
        blocks = in_features // block if block != ROWWISE and in_features % block == 0 else 1
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

    @property
    def rowwise(self) -> bool:
        return self.scale is not None and self.scale.shape[1] == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fp8_matmul:
            return scaled_matmul(x, self.weight, self.scale, self.bias)
        bias = None if self.bias is None else self.bias.to(self.compute_dtype)
        weight = self.held if self.held is not None else self.dequantized_weight()
        return F.linear(x.to(self.compute_dtype), weight, bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"scaled={self.scale is not None}, fp8_matmul={self.fp8_matmul}")


def fp8_linears(root: nn.Module) -> list[FP8Linear]:
    return [m for m in root.modules() if isinstance(m, FP8Linear)]


def use_fp8_matmul(root: nn.Module) -> int:
    """Switch every row-scaled FP8Linear under `root` to fp8 matmuls; returns how many (the
    dimensions must be multiples of 16 for the tensor cores)."""
    switched = 0
    for m in fp8_linears(root):
        if m.rowwise and m.in_features % 16 == 0 and m.out_features % 16 == 0:
            m.fp8_matmul = True
            switched += 1
    return switched


def hold_dequantized(hold: list[FP8Linear], release: list[FP8Linear]) -> None:
    """Expand the weights of `hold` (the layer about to run, for every call until released) and
    free those of `release` (the layer that ran before)."""
    for m in release:
        m.held = None
    for m in hold:
        if m.held is None and not m.fp8_matmul:
            m.held = m.dequantized_weight()


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


def assign_parameters(root: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Put every tensor of `state` in place as a frozen parameter (shapes as given: a tool's
    scales need not have the shape the module was built with). Every parameter must be given."""
    names = {name for name, _ in root.named_parameters()}
    if names != state.keys():
        raise ValueError(f"parameters missing: {sorted(names - state.keys())[:5]}, "
                         f"unexpected: {sorted(state.keys() - names)[:5]}")
    for key, tensor in state.items():
        owner, _, attr = key.rpartition(".")
        setattr(root.get_submodule(owner), attr, nn.Parameter(tensor, requires_grad=False))


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
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={"format": CONVERTED_FORMAT})
    tmp.replace(path)


def load_converted(path: Path, device="cpu") -> dict[str, torch.Tensor]:
    return load_file(str(path), device=str(device))


def load_converted_or_drop(path: Path, device="cpu") -> dict[str, torch.Tensor] | None:
    """The cached conversion, or None when the file is damaged (truncated, not safetensors,
    another format): then it is deleted with one warning and the caller converts again."""
    try:
        tensors = load_converted(path, device)
        with safe_open(str(path), framework="pt") as f:
            tagged = (f.metadata() or {}).get("format")
        if tagged != CONVERTED_FORMAT:
            raise ValueError("not an ovi-studio fp8 conversion")
        return tensors
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        warnings.warn(f"the fp8 conversion cache {path} is unreadable ({type(exc).__name__}: "
                      f"{exc}); deleting it and converting again", stacklevel=2)
        path.unlink(missing_ok=True)
        return None


def load_scales_into(root: nn.Module, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Translate `<weight>.fp8_scale` keys of a converted file back to FP8Linear `.scale` keys."""
    out = {}
    for key, tensor in tensors.items():
        if key.endswith(".weight" + SCALE_SUFFIX):
            out[key[: -len(".weight" + SCALE_SUFFIX)] + ".scale"] = tensor
        else:
            out[key] = tensor
    return out


# --- scaled-fp8 files of other tools ---------------------------------------------------------------

def _tool_scale(scale: torch.Tensor, tensor_scale: torch.Tensor | None, out_features: int) -> torch.Tensor:
    """A tool's scale ([], [1], [out, 1] or [out, blocks, 1]; times an optional tensor-wide
    factor) as this module's [out, blocks] fp32 scale."""
    scale = scale.float()
    if tensor_scale is not None:
        scale = scale * tensor_scale.float()
    if scale.dim() == 3:
        scale = scale.squeeze(-1)
    return scale.reshape(-1, scale.shape[-1] if scale.dim() == 2 else 1).expand(out_features, -1).contiguous()


def read_scaled_file(tensors: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor] | torch.Tensor]:
    """A scaled-fp8 file's tensors under the fusion model's key names: a layer's weight as
    (fp8 weight, [out, blocks] fp32 scale), every other tensor as stored."""
    out: dict = {}
    for key, tensor in tensors.items():
        if not is_weight_key(key):
            continue
        stem = key[: -len(".weight")]
        scale = tensors.get(stem + TOOL_SCALE, tensors.get(key + SCALE_SUFFIX))
        if tensor.dtype == FP8 and scale is not None:
            out[model_key(key)] = (tensor, _tool_scale(scale, tensors.get(stem + TOOL_TENSOR_SCALE),
                                                       tensor.shape[0]))
        else:
            out[model_key(key)] = tensor
    return out


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖ in fp32: how the benchmark reports fp8 against bf16."""
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).norm() / b.norm().clamp_min(1e-12))
