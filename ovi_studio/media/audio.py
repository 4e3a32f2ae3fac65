"""Mono float audio: lossless WAV I/O, resampling, and the sample-exact edits assembly needs.

WAV files are IEEE float32 (format tag 3), so a decoded Ovi waveform round-trips bit-exactly;
the stdlib `wave` module only writes integer PCM.
"""
from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np

from ovi_studio.media import ffmpeg

_FLOAT_TAG = 3
_PCM_TAG = 1


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> None:
    data = np.ascontiguousarray(samples, dtype="<f4")
    if data.ndim != 1:
        raise ValueError(f"expected mono samples [N], got shape {data.shape}")
    payload = data.tobytes()
    header = b"RIFF" + struct.pack("<I", 4 + 26 + 12 + 8 + len(payload)) + b"WAVE"
    # fmt chunk of 18 bytes (cbSize=0) plus a fact chunk, as non-PCM WAV requires.
    fmt = struct.pack("<HHIIHHH", _FLOAT_TAG, 1, sample_rate, sample_rate * 4, 4, 32, 0)
    fact = b"fact" + struct.pack("<II", 4, data.shape[0])
    with open(path, "wb") as f:
        f.write(header + b"fmt " + struct.pack("<I", len(fmt)) + fmt + fact
                + b"data" + struct.pack("<I", len(payload)) + payload)


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a mono (or first channel of a multichannel) float32 or int16 WAV -> (float32, rate)."""
    raw = Path(path).read_bytes()
    if raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a WAV file")
    pos, fmt, data = 12, None, None
    while pos + 8 <= len(raw):
        cid, size = raw[pos:pos + 4], struct.unpack("<I", raw[pos + 4:pos + 8])[0]
        body = raw[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            fmt = struct.unpack("<HHIIHH", body[:16])
        elif cid == b"data":
            data = body
        pos += 8 + size + (size & 1)
    if fmt is None or data is None:
        raise ValueError(f"{path}: WAV without fmt or data chunk")
    tag, channels, rate, _, _, bits = fmt
    if tag == _FLOAT_TAG and bits == 32:
        samples = np.frombuffer(data, "<f4")
    elif tag == _PCM_TAG and bits == 16:
        samples = np.frombuffer(data, "<i2").astype(np.float32) / 32768.0
    else:
        raise ValueError(f"{path}: unsupported WAV encoding (tag {tag}, {bits} bits)")
    return samples.reshape(-1, channels)[:, 0].astype(np.float32), rate


def resample(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """High-quality resampling (ffmpeg's soxr when built in) of mono float32 audio."""
    if src_rate == dst_rate:
        return samples.astype(np.float32)
    if samples.size == 0:
        return np.zeros(0, np.float32)
    args = ffmpeg.command("-f", "f32le", "-ar", str(src_rate), "-ac", "1", "-i", "pipe:0",
                          "-af", f"aresample={dst_rate}:resampler=soxr:precision=28",
                          "-f", "f32le", "-c:a", "pcm_f32le", "pipe:1")
    proc = ffmpeg.run(args, stdin=np.ascontiguousarray(samples, "<f4").tobytes())
    return np.frombuffer(proc.stdout, np.float32).copy()


def fit_length(samples: np.ndarray, length: int) -> np.ndarray:
    """Trim or pad with silence to exactly `length` samples."""
    if samples.shape[0] >= length:
        return samples[:length].copy()
    return np.concatenate([samples, np.zeros(length - samples.shape[0], np.float32)])


def fade_edges(samples: np.ndarray, fade_in: int, fade_out: int) -> np.ndarray:
    """Linear de-click ramps at the start and the end (lengths in samples)."""
    out = samples.astype(np.float32).copy()
    n = out.shape[0]
    if fade_in > 0:
        k = min(fade_in, n)
        out[:k] *= _ramp(k)
    if fade_out > 0:
        k = min(fade_out, n)
        out[n - k:] *= _ramp(k)[::-1]
    return out


def _ramp(k: int) -> np.ndarray:
    """0, 1/k, ..., (k-1)/k: starts silent, reaches full gain right after the ramp."""
    return (np.arange(k, dtype=np.float32) / k).astype(np.float32)


def crossfade(a: np.ndarray, b: np.ndarray, overlap: int) -> np.ndarray:
    """Join a and b overlapping the last/first `overlap` samples with equal-power ramps
    (the same result as ffmpeg `acrossfade` with curve `qsin`); length len(a)+len(b)-overlap."""
    if overlap <= 0:
        return np.concatenate([a, b]).astype(np.float32)
    if overlap > min(len(a), len(b)):
        raise ValueError(f"crossfade of {overlap} samples is longer than a clip")
    t = (np.arange(overlap, dtype=np.float64) + 0.5) / overlap
    fade_out = np.cos(t * np.pi / 2).astype(np.float32)
    fade_in = np.sin(t * np.pi / 2).astype(np.float32)
    mixed = a[-overlap:] * fade_out + b[:overlap] * fade_in
    return np.concatenate([a[:-overlap], mixed, b[overlap:]]).astype(np.float32)


# -- loudness as a meter reads it ----------------------------------------------------------------

_EBUR128_SUMMARY = re.compile(r"Integrated loudness:\s*I:\s*(?P<i>-?[\d.]+|-inf|nan) LUFS.*?"
                              r"Loudness range:\s*LRA:\s*(?P<lra>-?[\d.]+) LU.*?"
                              r"True peak:\s*Peak:\s*(?P<tp>-?[\d.]+|-inf) dBFS", re.S)


def measure_loudness(path: str | Path, dual_mono: bool = False) -> dict:
    """Integrated loudness (LUFS), loudness range (LU) and true peak (dBTP) of a file's first
    audio stream as ffmpeg's own EBU R128 meter (`ebur128=peak=true`) reads it, its channels
    counted as the file has them (`dual_mono`: a mono stream as if played on two speakers)."""
    meter = "ebur128=peak=true" + (":dualmono=true" if dual_mono else "")
    proc = ffmpeg.run(ffmpeg.command("-nostats", "-i", Path(path), "-map", "0:a:0",
                                     "-af", meter, "-f", "null", "-"))
    found = _EBUR128_SUMMARY.search(proc.stderr.decode(errors="replace"))
    if found is None:
        raise ValueError(f"{path}: the ebur128 meter printed no summary")
    return {"integrated_lufs": float(found["i"]), "loudness_range_lu": float(found["lra"]),
            "true_peak_dbtp": float(found["tp"])}
