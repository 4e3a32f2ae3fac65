"""Probing media without ffprobe.

Stream layout comes from parsing `ffmpeg -i` (its stderr banner). Exact counts — frames and
audio samples — come from decoding, because container durations are rounded and AAC adds
priming: `framecrc` lists one line per decoded video frame, and audio decoded to raw float
gives its sample count by its byte length.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ovi_studio.media import ffmpeg

AUDIO_BLOCK_SAMPLES = 1 << 20  # about 22 s at 48 kHz


@dataclass(frozen=True)
class StreamInfo:
    index: int
    kind: str  # "video" | "audio" | "subtitle" | "data"
    codec: str
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    pix_fmt: str | None = None
    sample_rate: int | None = None
    channels: str | None = None


@dataclass(frozen=True)
class MediaInfo:
    duration_s: float | None
    streams: list[StreamInfo] = field(default_factory=list)
    chapters: list[tuple[float, float, str]] = field(default_factory=list)

    def first(self, kind: str) -> StreamInfo | None:
        return next((s for s in self.streams if s.kind == kind), None)

    def of_kind(self, kind: str) -> list[StreamInfo]:
        return [s for s in self.streams if s.kind == kind]


_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_STREAM = re.compile(r"Stream #0:(\d+)(?:\[[^\]]*\])?(?:\([^)]*\))?: (Video|Audio|Subtitle|Data): (\w+)(.*)")
_SIZE = re.compile(r"\b(\d{2,5})x(\d{2,5})\b")
_FPS = re.compile(r"([\d.]+) fps")
_RATE = re.compile(r"(\d+) Hz, ([\w.()]+)")
_CHAPTER = re.compile(r"Chapter #\d+:\d+: start ([\d.]+), end ([\d.]+)")
_TITLE = re.compile(r"^\s+title\s+: (.*)$")


def parse_banner(text: str) -> MediaInfo:
    """Turn the `Input #0` section of `ffmpeg -i` output into a MediaInfo."""
    duration = None
    if m := _DURATION.search(text):
        h, mi, s = m.groups()
        duration = int(h) * 3600 + int(mi) * 60 + float(s)
    streams, chapters = [], []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if m := _STREAM.search(line):
            idx, kind, codec, rest = int(m[1]), m[2].lower(), m[3], m[4]
            info = StreamInfo(idx, kind, codec)
            if kind == "video":
                size = _SIZE.search(rest)
                fps = _FPS.search(rest)
                pix = re.search(r", (\w+)(?:\(|,)", rest)
                info = StreamInfo(idx, kind, codec,
                                  width=int(size[1]) if size else None,
                                  height=int(size[2]) if size else None,
                                  fps=float(fps[1]) if fps else None,
                                  pix_fmt=pix[1] if pix else None)
            elif kind == "audio" and (rate := _RATE.search(rest)):
                info = StreamInfo(idx, kind, codec, sample_rate=int(rate[1]), channels=rate[2])
            streams.append(info)
        elif m := _CHAPTER.search(line):
            title = ""
            for follow in lines[i + 1:i + 4]:
                if t := _TITLE.match(follow):
                    title = t[1].strip()
                    break
            chapters.append((float(m[1]), float(m[2]), title))
    return MediaInfo(duration, streams, chapters)


def probe(path: str | Path) -> MediaInfo:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(path)
    proc = ffmpeg.run([ffmpeg.ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", ffmpeg.path_argument(path)],
                      check=False)
    text = proc.stderr.decode(errors="replace")
    if "Input #0" not in text:
        raise ffmpeg.FfmpegError(proc.args, proc.returncode, text)
    return parse_banner(text)


def count_video_frames(path: str | Path) -> int:
    proc = ffmpeg.run(ffmpeg.command("-i", Path(path), "-map", "0:v:0", "-f", "framecrc", "pipe:1"))
    return sum(1 for line in proc.stdout.decode().splitlines() if line and not line.startswith("#"))


def decode_audio(path: str | Path, sample_rate: int | None = None) -> np.ndarray:
    """The first audio stream as mono float32 (at its own rate unless `sample_rate` is given)."""
    rate = ["-ar", str(sample_rate)] if sample_rate else []
    proc = ffmpeg.run(ffmpeg.command("-i", Path(path), "-map", "0:a:0", "-ac", "1", *rate,
                                     "-f", "f32le", "-c:a", "pcm_f32le", "pipe:1"))
    return np.frombuffer(proc.stdout, np.float32).copy()


def audio_blocks(path: str | Path) -> Iterator[np.ndarray]:
    """The first audio stream as mono float32 at its own rate, AUDIO_BLOCK_SAMPLES at a time:
    what a whole cut's audio is read as, in memory that does not grow with its length."""
    args = ffmpeg.command("-i", Path(path), "-map", "0:a:0", "-ac", "1", "-f", "f32le",
                          "-c:a", "pcm_f32le", "pipe:1")
    for buf in ffmpeg.read_blocks(args, AUDIO_BLOCK_SAMPLES * 4):
        yield np.frombuffer(buf, np.float32)


def count_audio_samples(path: str | Path) -> int:
    return sum(block.size for block in audio_blocks(path))
