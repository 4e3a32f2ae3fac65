"""Attention over [B, L, N, d] bf16 tensors, and which kernel computes it on this machine.

The exact kernels are interchangeable (same maths, different rounding order): `sdpa` is torch's
scaled_dot_product_attention with torch's own choice of kernel, `cudnn` the same call pinned to
cuDNN's fused attention (fast on Hopper), `flash2`/`flash3` the flash-attn packages when installed
(FlashAttention 3 ships as the `flash_attn_interface` module; the entry script installs it on
Hopper where a wheel for the machine exists). A backend is resolved once when the model is loaded
("auto" = the first available of `AUTO_ORDER`) and recorded per take.

`sage` (the `sageattention` package) quantises q and k to 8 bits: faster, but not exact, so
"auto" never picks it; it is a speed mode whose drift the GPU benchmark reports apart.
"""
from __future__ import annotations

import functools
import importlib
import importlib.util

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

BACKENDS = ("sdpa", "cudnn", "flash2", "flash3", "sage")
AUTO_ORDER = ("flash3", "flash2", "cudnn", "sdpa")  # fastest exact kernel first
CUDNN_CAPABILITY = (9, 0)  # cuDNN's fused attention is the fast path on Hopper and later


@functools.cache
def _importable(module: str) -> bool:
    """Installed and loadable (a flash-attn wheel built for another torch fails at import)."""
    if importlib.util.find_spec(module) is None:
        return False
    try:
        importlib.import_module(module)
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return False
    return True


def _cudnn_usable(device: torch.device) -> bool:
    return (hasattr(SDPBackend, "CUDNN_ATTENTION") and torch.backends.cudnn.is_available()
            and torch.cuda.get_device_capability(device) >= CUDNN_CAPABILITY)


def available_attention_backends(device: torch.device) -> list[str]:
    """Backends usable on `device`: the exact ones best first (`AUTO_ORDER`), then `sage`."""
    device = torch.device(device)
    if device.type != "cuda":
        return ["sdpa"]
    usable = {"flash3": _importable("flash_attn_interface"), "flash2": _importable("flash_attn"),
              "cudnn": _cudnn_usable(device), "sdpa": True}
    return [b for b in AUTO_ORDER if usable[b]] + (["sage"] if _importable("sageattention") else [])


def resolve_attention_backend(requested: str, device: torch.device) -> str:
    """The backend `requested` ("auto" or one of `BACKENDS`) resolves to on `device`."""
    available = available_attention_backends(device)
    if requested == "auto":
        return available[0]
    if requested not in BACKENDS:
        raise ValueError(f"unknown attention backend {requested!r}; choose auto, {', '.join(BACKENDS)}")
    if requested not in available:
        raise ValueError(f"attention backend {requested!r} is not available on {device} "
                         f"(available: {', '.join(available)})")
    return requested


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str) -> torch.Tensor:
    """Unmasked softmax(q k^T / sqrt(d)) v over [B, L, N, d] bf16 tensors -> [B, Lq, N, d].

    The flash backends call the varlen entry points with one full-length sequence per batch row,
    as the reference does, so the same kernels run.
    """
    if backend == "sdpa":
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return out.transpose(1, 2).type(q.dtype)
    if backend == "cudnn":
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return out.transpose(1, 2).type(q.dtype)
    if backend == "sage":
        import sageattention
        return sageattention.sageattn(q, k, v, tensor_layout="NHD", is_causal=False).type(q.dtype)
    b, lq, lk = q.size(0), q.size(1), k.size(1)
    cu_q = torch.arange(0, (b + 1) * lq, lq, dtype=torch.int32, device=q.device)
    cu_k = torch.arange(0, (b + 1) * lk, lk, dtype=torch.int32, device=q.device)
    q_, k_, v_ = q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1)
    if backend == "flash3":
        import flash_attn_interface
        out = flash_attn_interface.flash_attn_varlen_func(
            q=q_, k=k_, v=v_, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, seqused_q=None,
            seqused_k=None, max_seqlen_q=lq, max_seqlen_k=lk)
        out = out[0] if isinstance(out, tuple) else out
    elif backend == "flash2":
        import flash_attn
        out = flash_attn.flash_attn_varlen_func(q=q_, k=k_, v=v_, cu_seqlens_q=cu_q,
                                                cu_seqlens_k=cu_k, max_seqlen_q=lq,
                                                max_seqlen_k=lk)
    else:
        raise ValueError(f"unknown attention backend {backend!r}")
    return out.unflatten(0, (b, lq)).type(q.dtype)
