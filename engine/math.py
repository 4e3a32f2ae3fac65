"""Pure tensor functions of the fusion DiT: RoPE and the timestep embedding.

Precision follows the reference: RoPE rotates in complex128 and rounds the
result to bf16; the sinusoidal embedding is float64 (the caller rounds it).
"""
from __future__ import annotations

import torch

ROPE_THETA = 10000.0


# --- RoPE -------------------------------------------------------------------------------------

def rope_frequencies(length: int, width: int, scale: float = 1.0) -> torch.Tensor:
    """exp(i * pos * scale * theta^(-2k/width)) for pos < length, k < width/2: complex128 [length, width/2]."""
    freqs = 1.0 / torch.pow(ROPE_THETA, torch.arange(0, width, 2).to(torch.float64).div(width))
    freqs = torch.outer(torch.arange(length), scale * freqs)
    return torch.polar(torch.ones_like(freqs), freqs)


def video_rope(grid: tuple[int, int, int], head_dim: int, device=None) -> torch.Tensor:
    """Per-token rotations of a (frames, rows, columns) token grid, row-major: complex128 [S, 1, d/2].

    Pairs are split d-4*floor(d/6) / 2*floor(d/6) / 2*floor(d/6) real dims (44/42/42 at d=128)
    between the frame, row and column index.
    """
    f, h, w = grid
    band = 2 * (head_dim // 6)
    tables = [rope_frequencies(n, width).to(device)
              for n, width in ((f, head_dim - 2 * band), (h, band), (w, band))]
    table = torch.cat([
        tables[0].view(f, 1, 1, -1).expand(f, h, w, -1),
        tables[1].view(1, h, 1, -1).expand(f, h, w, -1),
        tables[2].view(1, 1, w, -1).expand(f, h, w, -1),
    ], dim=-1)
    return table.reshape(f * h * w, 1, -1)


def audio_rope(length: int, head_dim: int, scale: float, device=None) -> torch.Tensor:
    """Rotations of a 1-D audio sequence: only the first d-4*floor(d/6) real dims, by position*scale.

    Returns complex128 [L, 1, c] with c < d/2; the remaining pairs pass through unrotated.
    """
    return rope_frequencies(length, head_dim - 4 * (head_dim // 6), scale).to(device)[:, None, :]


ROPE_CHUNK = 4096  # tokens rotated at a time: bounds the float64 temporaries (24 B per element)


def apply_rope(x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs (2j, 2j+1) of x [B, S, N, d] by rope [S, 1, c] (c <= d/2) -> bf16.

    The rotation runs in float64 like the reference's; it is elementwise, so doing it
    `ROPE_CHUNK` tokens at a time gives the same bits with a fraction of the memory."""
    if x.shape[1] <= ROPE_CHUNK:
        return _rotate(x, rope)
    out = torch.empty(x.shape, dtype=torch.bfloat16, device=x.device)
    for start in range(0, x.shape[1], ROPE_CHUNK):
        end = start + ROPE_CHUNK
        out[:, start:end] = _rotate(x[:, start:end], rope[start:end])
    return out


def _rotate(x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
    b, s, n, _ = x.shape
    pairs = torch.view_as_complex(x.to(torch.float64).reshape(b, s, n, -1, 2))
    c = rope.shape[-1]
    rotated = pairs[..., :c] * rope
    if c < pairs.shape[-1]:
        rotated = torch.cat([rotated, pairs[..., c:]], dim=-1)
    return torch.view_as_real(rotated).flatten(3).bfloat16()


# --- timestep embedding -----------------------------------------------------------------------

def sinusoidal_embedding(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """[cos(p * f_k), sin(p * f_k)] with f_k = 10000^(-k/(dim/2)), in float64: [len(p), dim]."""
    half = dim // 2
    positions = positions.to(torch.float64)
    angles = torch.outer(positions, torch.pow(10000, -torch.arange(half).to(positions).div(half)))
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)

