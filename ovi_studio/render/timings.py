"""Measured take timings, kept in the cache, so estimates come from this machine.

After each rendered take the session records how long it took, keyed by what decides speed:
device, engine, variant, memory preset and the take's size. A later render's estimate for a
take with the same key is the mean of the recent measurements (scaled by steps for the model,
whose time is mostly the denoising loop); without one the plan's cost model answers, and the
preview engine, which uses no GPU, falls back to a flat second a take.
"""
from __future__ import annotations

import json
from pathlib import Path

from ovi_studio.files import write_text_atomic

FILE = "timings.json"
KEEP = 8  # recent measurements per key
PREVIEW_FALLBACK_S = 1.0


def timing_key(device: str, engine: str, variant: str, preset: str | None, height: int,
               width: int) -> str:
    return f"{device}|{engine}|{variant}|{preset or '-'}|{height}x{width}"


class TimingStore:
    """timings.json in the cache folder: key -> recent (seconds per step, fixed seconds)."""

    def __init__(self, cache_dir: Path | None):
        self.path = Path(cache_dir) / FILE if cache_dir is not None else None
        self._data: dict[str, list[list[float]]] | None = None

    def _load(self) -> dict[str, list[list[float]]]:
        if self._data is None:
            try:
                self._data = json.loads(self.path.read_text(encoding="utf-8")) if self.path else {}
            except (OSError, ValueError):
                self._data = {}
        return self._data

    def estimate(self, key: str, steps: int) -> float | None:
        """Seconds a take with this key and step count should take, or None when unmeasured."""
        samples = self._load().get(key)
        if not samples:
            return None
        per_step = sum(s[0] for s in samples) / len(samples)
        fixed = sum(s[1] for s in samples) / len(samples)
        return fixed + per_step * steps

    def record(self, key: str, steps: int, total_s: float, denoise_s: float | None) -> None:
        """Keep one take's measurement (the denoising share scales with steps; the rest is
        fixed per take). Never fails a render: an unwritable cache only loses the sample."""
        per_step = (denoise_s / steps) if denoise_s and steps else 0.0
        fixed = max(0.0, total_s - (denoise_s or 0.0))
        data = self._load()
        data[key] = (data.get(key, []) + [[per_step, fixed]])[-KEEP:]
        if self.path is None:
            return
        try:
            write_text_atomic(self.path, json.dumps(data, indent=1))
        except OSError:
            pass
