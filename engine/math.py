"""Pure tensor functions of the fusion DiT: RoPE and the timestep embedding.

Precision: RoPE rotates in fp32 with fp32 cos/sin tables built once per shot (the reference
uses complex128 per call; the result rounds to the same bf16 but for rare boundary cases); the
sinusoidal embedding is float64 as in the reference (the caller rounds it).
"""
from __future__ import annotations

import torch

ROPE_THETA = 10000.0


# --- RoPE -------------------------------------------------------------------------------------

Rope = tuple[torch.Tensor, torch.Tensor]  # (cos, sin), fp32 [S, 1, d/2]: one angle per pair


def rope_angles(length: int, width: int, scale: float = 1.0) -> torch.Tensor:
    """pos * scale * theta^(-2k/width) for pos < length, k < width/2: float64 [length, width/2]."""
    freqs = 1.0 / torch.pow(ROPE_THETA, torch.arange(0, width, 2).to(torch.float64).div(width))
    return torch.outer(torch.arange(length).to(torch.float64), scale * freqs)


def _tables(angles: torch.Tensor, device) -> Rope:
    """cos and sin of float64 angles [S, c], rounded once to fp32 [S, 1, c]."""
    return tuple(f(angles).float()[:, None, :].to(device) for f in (torch.cos, torch.sin))


def video_rope(grid: tuple[int, int, int], head_dim: int, device=None) -> Rope:
    """Per-token rotations of a (frames, rows, columns) token grid, row-major: [S, 1, d/2] each.

    Pairs are split d-4*floor(d/6) / 2*floor(d/6) / 2*floor(d/6) real dims (44/42/42 at d=128)
    between the frame, row and column index.
    """
    f, h, w = grid
    band = 2 * (head_dim // 6)
    frame, row, column = (rope_angles(n, width) for n, width in ((f, head_dim - 2 * band), (h, band), (w, band)))
    angles = torch.cat([
        frame.view(f, 1, 1, -1).expand(f, h, w, -1),
        row.view(1, h, 1, -1).expand(f, h, w, -1),
        column.view(1, 1, w, -1).expand(f, h, w, -1),
    ], dim=-1)
    return _tables(angles.reshape(f * h * w, -1), device)


def audio_rope(length: int, head_dim: int, scale: float, device=None) -> Rope:
    """Rotations of a 1-D audio sequence: only the first d-4*floor(d/6) real dims, by position*scale;
    the other pairs get angle 0 (cos 1, sin 0), which passes them through unchanged."""
    angles = rope_angles(length, head_dim - 4 * (head_dim // 6), scale)
    unrotated = angles.new_zeros(length, head_dim // 2 - angles.shape[1])
    return _tables(torch.cat([angles, unrotated], dim=1), device)


ROPE_CHUNK = 4096  # tokens rotated at a time in eager mode: bounds the fp32 temporaries


def apply_rope(x: torch.Tensor, rope: Rope) -> torch.Tensor:
    """Rotate interleaved pairs (2j, 2j+1) of bf16 x [B, S, N, d] by the tables [S, 1, d/2] -> bf16.

    The reference rotates in complex128; fp32 arithmetic on fp32 tables rounds to the same bf16
    result except within ~1e-7 of a rounding boundary (bench/RESULTS.md has the measured
    difference). The rotation is elementwise, so eager mode does it `ROPE_CHUNK` tokens at a
    time; under torch.compile it fuses into one kernel with no temporaries at all."""
    if x.shape[1] <= ROPE_CHUNK or torch.compiler.is_compiling():
        return _rotate(x, *rope)
    cos, sin = rope
    out = torch.empty(x.shape, dtype=torch.bfloat16, device=x.device)
    for start in range(0, x.shape[1], ROPE_CHUNK):
        end = start + ROPE_CHUNK
        out[:, start:end] = _rotate(x[:, start:end], cos[start:end], sin[start:end])
    return out


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    pairs = x.float().unflatten(-1, (-1, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(3).bfloat16()


# --- timestep embedding -----------------------------------------------------------------------

def sinusoidal_embedding(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """[cos(p * f_k), sin(p * f_k)] with f_k = 10000^(-k/(dim/2)), in float64: [len(p), dim]."""
    half = dim // 2
    positions = positions.to(torch.float64)
    angles = torch.outer(positions, torch.pow(10000, -torch.arange(half).to(positions).div(half)))
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)

