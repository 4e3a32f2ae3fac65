"""Attention over [B, L, N, d] bf16 tensors, and which kernel computes it on this machine.

The kernels are interchangeable (same maths, different rounding order): `sdpa` is torch's
scaled_dot_product_attention, `flash2`/`flash3` the flash-attn packages when installed. A backend
is resolved once when the model is loaded ("auto" = the best available) and recorded per take.
"""
from __future__ import annotations

import functools
import importlib
import importlib.util

import torch
import torch.nn.functional as F

BACKENDS = ("sdpa", "flash2", "flash3")


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


def available_attention_backends(device: torch.device) -> list[str]:
    """Backends usable on `device`, best first. flash-attn 3 ships as `flash_attn_interface`."""
    found = []
    if device.type == "cuda":
        if _importable("flash_attn_interface"):
            found.append("flash3")
        if _importable("flash_attn"):
            found.append("flash2")
    return found + ["sdpa"]


def resolve_attention_backend(requested: str, device: torch.device) -> str:
    """The backend `requested` ("auto", "sdpa", "flash2", "flash3") resolves to on `device`."""
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
