"""Continuity between chained shots: which parent frame seeds an
extension, and colour anchoring of an extension to its chain.

Colour statistics are per-channel mean and standard deviation in CIE Lab over a subsample of
pixels; matching maps each channel of the extension linearly onto the reference statistics
(Reinhard-style transfer, done in Lab). Anchoring to the chain's *first* shot stops cumulative
drift; anchoring to the *previous* shot follows it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHARPEST_WINDOW = 6  # how many trailing frames `seed_frame: sharpest` considers
_STATS_STRIDE = 4  # pixel subsampling for statistics

# sRGB (D65) <-> XYZ
_RGB2XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                     [0.2126729, 0.7151522, 0.0721750],
                     [0.0193339, 0.1191920, 0.9503041]], np.float32)
_XYZ2RGB = np.linalg.inv(_RGB2XYZ).astype(np.float32)
_WHITE = np.array([0.95047, 1.0, 1.08883], np.float32)
_EPS = 216 / 24389
_KAPPA = 24389 / 27


@dataclass(frozen=True)
class ColorStats:
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def to_json(self) -> dict:
        return {"space": "Lab", "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_json(cls, data: dict) -> "ColorStats":
        return cls(tuple(data["mean"]), tuple(data["std"]))


def laplacian_variance(frame: np.ndarray) -> float:
    """Sharpness: variance of the 4-neighbour Laplacian of the luma."""
    gray = frame.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    lap = (gray[1:-1, :-2] + gray[1:-1, 2:] + gray[:-2, 1:-1] + gray[2:, 1:-1]
           - 4 * gray[1:-1, 1:-1])
    return float(lap.var())


def choose_seed_frame(tail: list[np.ndarray], mode: str) -> int:
    """Index into `tail` (the parent's last frames, oldest first) of the frame that seeds the
    extension. `sharpest` takes the highest variance of Laplacian, the later frame on ties."""
    if not tail:
        raise ValueError("no frames to choose a seed frame from")
    if mode == "last":
        return len(tail) - 1
    if mode != "sharpest":
        raise ValueError(f"seed_frame must be 'last' or 'sharpest', got {mode!r}")
    scores = [laplacian_variance(f) for f in tail]
    best = max(scores)
    return max(i for i, s in enumerate(scores) if s >= best)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 or [0,1] float RGB [..., 3] -> Lab float32."""
    c = rgb.astype(np.float32) / (255.0 if rgb.dtype == np.uint8 else 1.0)
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = lin @ _RGB2XYZ.T / _WHITE
    f = np.where(xyz > _EPS, np.cbrt(xyz), (_KAPPA * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1).astype(np.float32)


def lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """Lab float -> uint8 RGB (clipped to the sRGB gamut)."""
    fy = (lab[..., 0] + 16) / 116
    fx = fy + lab[..., 1] / 500
    fz = fy - lab[..., 2] / 200
    f = np.stack([fx, fy, fz], axis=-1)
    xyz = np.where(f ** 3 > _EPS, f ** 3, (116 * f - 16) / _KAPPA) * _WHITE
    lin = np.clip(xyz @ _XYZ2RGB.T, 0.0, 1.0)
    c = np.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin ** (1 / 2.4) - 0.055)
    return np.clip(np.round(c * 255.0), 0, 255).astype(np.uint8)


def color_stats(frames: np.ndarray) -> ColorStats:
    """Lab statistics of frames [F, H, W, 3] (every few frames and pixels: a whole shot at
    960x960 would otherwise need gigabytes of float Lab)."""
    sample = frames[::_STATS_STRIDE, ::_STATS_STRIDE, ::_STATS_STRIDE]
    lab = srgb_to_lab(sample).reshape(-1, 3)
    return ColorStats(tuple(map(float, lab.mean(0))), tuple(map(float, lab.std(0))))


def match_color(frames: np.ndarray, reference: ColorStats) -> np.ndarray:
    """Map the frames' Lab statistics onto `reference` with one transform for the whole shot
    (per-frame statistics would flicker)."""
    source = color_stats(frames)
    src_mean, src_std = np.array(source.mean, np.float32), np.array(source.std, np.float32)
    gain = np.array(reference.std, np.float32) / np.maximum(src_std, 1e-3)
    offset = np.array(reference.mean, np.float32) - src_mean * gain

    def transform(rgb: np.ndarray) -> np.ndarray:
        return lab_to_srgb(srgb_to_lab(rgb) * gain + offset)

    if frames[..., 0].size > TABULATE_ABOVE:  # cheaper to tabulate every colour once
        return _apply_table(frames, _colour_table(transform))
    out = np.empty_like(frames)
    for i, frame in enumerate(frames):  # frame by frame bounds the float working set
        out[i] = transform(frame)
    return out


_COLOURS = 1 << 24
TABULATE_ABOVE = _COLOURS  # pixels per shot beyond which a full colour table is cheaper


def _colour_table(transform) -> np.ndarray:
    """transform() of every 24-bit RGB colour, indexed by (r << 16) | (g << 8) | b."""
    table = np.empty((_COLOURS, 3), np.uint8)
    codes = np.arange(1 << 20, dtype=np.uint32)
    for start in range(0, _COLOURS, 1 << 20):
        c = codes + start
        rgb = np.stack([(c >> 16) & 255, (c >> 8) & 255, c & 255], axis=-1).astype(np.uint8)
        table[start:start + (1 << 20)] = transform(rgb)
    return table


def _apply_table(frames: np.ndarray, table: np.ndarray) -> np.ndarray:
    out = np.empty_like(frames)
    for i, frame in enumerate(frames):
        f = frame.astype(np.uint32)
        out[i] = table[(f[..., 0] << 16) | (f[..., 1] << 8) | f[..., 2]]
    return out
