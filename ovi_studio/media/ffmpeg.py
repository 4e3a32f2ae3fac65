"""A small typed wrapper over the ffmpeg executable.

Commands are argument lists (never shell strings, so paths need no quoting). Every failure
raises `FfmpegError` carrying the full command and the tail of ffmpeg's stderr, because
"ffmpeg failed" alone is useless to debug. The binary is the system one when present, else
the static build bundled with imageio-ffmpeg (which ships no ffprobe, hence media.probe).
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np

STDERR_TAIL_LINES = 25


class FfmpegError(RuntimeError):
    def __init__(self, command: list[str], returncode: int, stderr: str):
        self.command = command
        self.returncode = returncode
        self.stderr_tail = "\n".join(stderr.strip().splitlines()[-STDERR_TAIL_LINES:])
        super().__init__(
            f"ffmpeg failed (exit {returncode})\n  command: {shlex.join(command)}\n"
            f"  stderr (tail):\n{_indent(self.stderr_tail)}")


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


@lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    system = shutil.which("ffmpeg")
    if system:
        return system
    import imageio_ffmpeg
    return imageio_ffmpeg.get_ffmpeg_exe()


def command(*args: str | Path) -> list[str]:
    """An ffmpeg argument list. Every Path is passed absolute, so a file in a folder named
    `-draft` is not read as an option, nor one in `take:2` as a protocol."""
    return [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", *map(path_argument, args)]


def path_argument(arg: str | Path) -> str:
    return os.path.abspath(arg) if isinstance(arg, Path) else str(arg)


def run(args: list[str], *, stdin: bytes | None = None, check: bool = True,
        timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run one ffmpeg command (built with `command`), capturing stdout (bytes) and stderr."""
    if stdin is not None:
        args = [a for a in args if a != "-nostdin"]
    proc = subprocess.run(args, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise FfmpegError(args, proc.returncode, proc.stderr.decode(errors="replace"))
    return proc


def stream_into(producers: Iterable[list[str]], consumer: list[str]) -> None:
    """Run `consumer` (reading its stdin) once, and the `producers` one after another, each
    writing straight into that stdin: one continuous stream through one process, however many
    producers, with no temporary file and nothing held in this process. A failure raises
    FfmpegError for the command that failed (the consumer's when it stopped reading first)."""
    consumer = [a for a in consumer if a != "-nostdin"]
    with tempfile.TemporaryFile() as consumer_log:
        proc = subprocess.Popen(consumer, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=consumer_log)
        try:
            for args in producers:
                with tempfile.TemporaryFile() as log:
                    producer = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=proc.stdin,
                                                stderr=log)
                    if producer.wait() != 0:
                        if proc.poll() is not None and proc.returncode != 0:
                            raise FfmpegError(consumer, proc.returncode, _read_log(consumer_log))
                        raise FfmpegError(args, producer.returncode, _read_log(log))
            proc.stdin.close()
            if proc.wait() != 0:
                raise FfmpegError(consumer, proc.returncode, _read_log(consumer_log))
        finally:
            if proc.poll() is None:  # a producer failed (or Ctrl-C): stop the consumer too
                proc.kill()
                proc.wait()
            if not proc.stdin.closed:
                proc.stdin.close()


def _read_log(log) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")


def write_rawvideo(args_after_input: list[str | Path], frames: np.ndarray, fps: int) -> None:
    """Pipe uint8 RGB frames [F, H, W, 3] into ffmpeg as rawvideo, then apply the given output args."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [F, H, W, 3], got {frames.dtype} {frames.shape}")
    _, h, w, _ = frames.shape
    args = command("-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps),
                   "-i", "pipe:0", *args_after_input)
    run(args, stdin=np.ascontiguousarray(frames).tobytes())


def read_rawvideo(path: str | Path, width: int, height: int) -> Iterator[np.ndarray]:
    """Decode every video frame of a file as uint8 RGB [H, W, 3], streaming."""
    args = command("-i", Path(path), "-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1")
    frame_bytes = width * height * 3
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    finished = False
    try:
        while True:
            buf = proc.stdout.read(frame_bytes)
            if len(buf) < frame_bytes:
                finished = True
                break
            yield np.frombuffer(buf, np.uint8).reshape(height, width, 3)
    finally:
        if not finished:  # the caller stopped early: ffmpeg would block on a full pipe
            proc.kill()
        proc.stdout.close()
        stderr = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
        if proc.wait() != 0 and finished:
            raise FfmpegError(args, proc.returncode, stderr)
