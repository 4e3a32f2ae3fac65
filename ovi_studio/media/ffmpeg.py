"""A small typed wrapper over the ffmpeg executable.

Commands are argument lists (never shell strings, so paths need no quoting). Every failure
raises `FfmpegError` carrying the full command and the tail of ffmpeg's stderr, because
"ffmpeg failed" alone is useless to debug. The binary is the system one when present, else
the static build bundled with imageio-ffmpeg (which ships no ffprobe, hence media.probe).
"""
from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
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


def run_reporting(args: list[str], on_frames: Callable[[int], None]) -> None:
    """Run one ffmpeg command (built with `command`) that writes video, calling `on_frames`
    with the number of frames written so far as it goes (ffmpeg's `-progress` report, about
    twice a second, and once at the end)."""
    args = [args[0], "-progress", "pipe:1", "-nostats", *args[1:]]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
        try:
            for line in proc.stdout:
                if line.startswith(b"frame="):
                    with contextlib.suppress(ValueError):
                        on_frames(int(line[len(b"frame="):]))
        except BaseException:  # the callback failed (or Ctrl-C): stop ffmpeg too
            proc.kill()
            raise
        finally:
            proc.stdout.close()
            returncode = proc.wait()
        if returncode != 0:
            raise FfmpegError(args, returncode, _read_log(log))


@lru_cache(maxsize=1)
def version() -> str:
    """The first line of `ffmpeg -version` (which names the build): part of the key of anything
    kept because re-encoding it would give the same bytes."""
    return run(command("-version")).stdout.decode(errors="replace").splitlines()[0].strip()


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
    for buf in read_blocks(args, frame_bytes):
        if len(buf) == frame_bytes:  # a truncated last frame is no frame
            yield np.frombuffer(buf, np.uint8).reshape(height, width, 3)


def read_blocks(args: list[str], block_bytes: int) -> Iterator[bytes]:
    """Run one ffmpeg command (built with `command`) that writes to stdout, and yield what it
    writes in blocks of `block_bytes` (a shorter last one only when the output ends inside a
    block): one block in memory at a time, however long the output."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    finished = False
    try:
        while True:
            buf = proc.stdout.read(block_bytes)
            if len(buf) < block_bytes:
                finished = True
                if buf:
                    yield buf
                break
            yield buf
    finally:
        if not finished:  # the caller stopped early: ffmpeg would block on a full pipe
            proc.kill()
        proc.stdout.close()
        stderr = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
        if proc.wait() != 0 and finished:
            raise FfmpegError(args, proc.returncode, stderr)
