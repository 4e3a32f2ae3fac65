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


class WavWriter:
    """Streams mono float32 samples into a WAV file: the header's sizes are written when it
    closes, so a programme of any length is written piece by piece, never held whole."""

    def __init__(self, path: str | Path, sample_rate: int):
        self.sample_rate = sample_rate
        self.samples = 0
        self._file = open(path, "wb")
        self._file.write(self._header())

    def _header(self) -> bytes:
        payload = self.samples * 4
        # fmt chunk of 18 bytes (cbSize=0) plus a fact chunk, as non-PCM WAV requires.
        fmt = struct.pack("<HHIIHHH", _FLOAT_TAG, 1, self.sample_rate, self.sample_rate * 4, 4, 32, 0)
        return (b"RIFF" + struct.pack("<I", 4 + 26 + 12 + 8 + payload) + b"WAVE"
                + b"fmt " + struct.pack("<I", len(fmt)) + fmt
                + b"fact" + struct.pack("<II", 4, self.samples)
                + b"data" + struct.pack("<I", payload))

    def write(self, samples: np.ndarray) -> None:
        data = np.ascontiguousarray(samples, dtype="<f4")
        if data.ndim != 1:
            raise ValueError(f"expected mono samples [N], got shape {data.shape}")
        self._file.write(data.tobytes())
        self.samples += data.shape[0]

    def close(self) -> None:
        self._file.seek(0)
        self._file.write(self._header())
        self._file.close()

    def __enter__(self) -> "WavWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> None:
    with WavWriter(path, sample_rate) as out:
        out.write(samples)


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


def equal_power_overlap(tail: np.ndarray, head: np.ndarray) -> np.ndarray:
    """The overlap of a crossfade: the end of one clip fading out under the start of the next
    with equal-power ramps (the curve of ffmpeg `acrossfade`'s `qsin`), exactly as long as
    both (which must be of one length)."""
    if tail.shape != head.shape:
        raise ValueError(f"crossfade of {len(head)} samples is longer than a clip")
    overlap = tail.shape[0]
    t = (np.arange(overlap, dtype=np.float64) + 0.5) / overlap
    fade_out = np.cos(t * np.pi / 2).astype(np.float32)
    fade_in = np.sin(t * np.pi / 2).astype(np.float32)
    return (tail * fade_out + head * fade_in).astype(np.float32)


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
