"""Lossless frame storage: FFV1 in Matroska, RGB planar (gbrp), bit-exact for uint8 RGB.

One file per take instead of hundreds of PNGs; ffmpeg encodes it multithreaded and reads it back
frame-exactly, which is what seed frames and the final encode are taken from.
"""
from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np

from ovi_studio.media import ffmpeg
from ovi_studio.media.rates import FPS



def write_lossless(path: str | Path, frames: np.ndarray, fps: int = FPS) -> None:
    ffmpeg.write_rawvideo(["-c:v", "ffv1", "-level", "3", "-pix_fmt", "gbrp", "-slices", "4",
                           "-f", "matroska", Path(path)], frames, fps)


def read_frames(path: str | Path, width: int, height: int) -> np.ndarray:
    return np.stack(list(ffmpeg.read_rawvideo(path, width, height)))


def read_tail(path: str | Path, width: int, height: int, count: int) -> tuple[list[np.ndarray], int]:
    """The last `count` frames (oldest first) and the total number of frames."""
    tail: deque[np.ndarray] = deque(maxlen=count)
    total = 0
    for frame in ffmpeg.read_rawvideo(path, width, height):
        tail.append(frame.copy())
        total += 1
    return list(tail), total
