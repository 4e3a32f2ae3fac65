"""Progress a person can follow: a rich display on a terminal, plain log lines elsewhere (the
logs of nightly runs), nothing but the essentials with --quiet.

A render shows every phase of every take (prompt encoding, model load, each denoising step,
video decode, audio decode, colour match, writing) and of the cut (assembly): live on a
terminal, one line per phase when piped. The overall bar counts estimated seconds, not shots:
each take contributes its estimate (measured timings of earlier takes where there are any, see
render/timings.py, else the plan's cost model), so the remaining time weighs a 10 s 960x960
take correctly against a 5 s one. Step callbacks advance it within a take. The cut's video
encode reports frames encoded, shots passed, rate and ETA (a bar on a terminal, a line every few
seconds when piped).

Long loops over shots (lint, plan, assembly of large storyboards) use `ovi_studio.counting`.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO

from rich.console import Console
from ovi_studio.counting import LOG_EVERY_S
from ovi_studio.counting import clock_text as _clock
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


# What each phase is called on screen (engine timer sections and the session's own steps).
PHASES = {
    "text": "encoding prompts", "encode_prompts": "encoding prompts", "load_model": "loading the model",
    "image_encode": "encoding the first frame", "denoise": "denoising", "offload": "moving weights off the GPU",
    "audio_decode": "decoding audio", "video_decode": "decoding video", "draw": "drawing frames",
    "guide_speech": "guide speech", "color_match": "matching colour", "write": "writing files",
    "assembly": "assembling the cut",
}


class RenderProgress:
    """Events of a render session, printed as plain lines (the base class) or drawn by rich."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False):
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self.total_takes = 0
        self.done_takes = 0
        self._started = time.monotonic()
        self._encode_started: float | None = None
        self._encode_logged = 0.0

    def __enter__(self) -> "RenderProgress":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def start(self, total_takes: int, total_estimate_s: float) -> None:
        self.total_takes = total_takes
        self.log(f"rendering {total_takes} take(s), estimated {_clock(total_estimate_s)}")

    def take_started(self, label: str, estimate_s: float) -> None:
        self.log(f"[{self.done_takes + 1}/{self.total_takes}] {label} ...")

    def step(self, done: int, total: int) -> None:
        """Plain logs stay quiet per step; the phase lines say where a take is."""

    def phase(self, label: str, name: str) -> None:
        """A take (or the cut) enters a phase: one line per phase in a log."""
        self.log(f"  {label}: {PHASES.get(name, name)}")

    def take_finished(self, label: str, status: str, seconds: float, estimate_s: float) -> None:
        self.done_takes += 1
        self.log(f"[{self.done_takes}/{self.total_takes}] {label} {status} in {seconds:.1f}s")

    def cut_encode(self, frames_done: int, frames_total: int, shots_done: int, shots_total: int) -> None:
        """The cut's video encode advanced (frames still to encode; shots of the cut passed,
        reused pieces included): a line when it starts, every few seconds, and at the end."""
        now = time.monotonic()
        starting = self._encode_started is None or (frames_done == 0 and shots_done == 0)
        if starting:
            self._encode_started = self._encode_logged = now
            self.log(f"  cut: {frames_total:,} frames to encode for {shots_total} shots")
        elif shots_done == shots_total or now - self._encode_logged >= LOG_EVERY_S:
            self._encode_logged = now
            line = encode_line(frames_done, frames_total, shots_done, shots_total, now - self._encode_started)
            self.log(f"  cut: {line}")

    def log(self, message: str, *, important: bool = False) -> None:
        if self.quiet and not important:
            return
        print(message, file=self.stream, flush=True)


class RichRenderProgress(RenderProgress):
    def __init__(self, console: Console, quiet: bool = False):
        super().__init__(console.file, quiet)
        self.console = console
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), console=console, transient=False)
        self._overall = None
        self._shot = None
        self._take_estimate = 0.0
        self._take_credit = 0.0
        self._label = ""
        self._cut = None

    def __enter__(self):
        self._progress.start()
        return self

    def __exit__(self, *exc):
        self._progress.stop()

    def start(self, total_takes: int, total_estimate_s: float) -> None:
        self.total_takes = total_takes
        # The overall bar counts estimated seconds; its label says takes done of total.
        self._overall = self._progress.add_task(f"takes 0/{total_takes}",
                                                total=max(total_estimate_s, 1e-6))

    def take_started(self, label: str, estimate_s: float) -> None:
        self._take_estimate, self._take_credit, self._label = estimate_s, 0.0, label
        if self._shot is not None:
            self._progress.remove_task(self._shot)
        self._shot = self._progress.add_task(f"  {label}", total=None)

    def step(self, done: int, total: int) -> None:
        if self._shot is None:
            return
        self._progress.update(self._shot, completed=done, total=total,
                              description=f"  {self._label} step {done}/{total}")
        credit = self._take_estimate * done / max(total, 1)
        self._progress.advance(self._overall, credit - self._take_credit)
        self._take_credit = credit

    def phase(self, label: str, name: str) -> None:
        if self._shot is not None and label == self._label:
            self._progress.update(self._shot, description=f"  {label}: {PHASES.get(name, name)}")
        else:
            self.log(f"  {label}: {PHASES.get(name, name)}")

    def take_finished(self, label: str, status: str, seconds: float, estimate_s: float) -> None:
        self.done_takes += 1
        self._progress.advance(self._overall, estimate_s - self._take_credit)
        self._take_credit = estimate_s
        self._progress.update(self._overall, description=f"takes {self.done_takes}/{self.total_takes}")
        self.log(f"{label} {status} in {seconds:.1f}s")

    def cut_encode(self, frames_done: int, frames_total: int, shots_done: int, shots_total: int) -> None:
        if self._cut is None or (frames_done == 0 and shots_done == 0):
            if self._cut is not None:
                self._progress.remove_task(self._cut)
            self._encode_started = time.monotonic()
            self._cut = self._progress.add_task("  cut", total=max(frames_total, 1))
        line = encode_line(frames_done, frames_total, shots_done, shots_total,
                           time.monotonic() - self._encode_started, eta=False)
        self._progress.update(self._cut, completed=frames_done if frames_total else shots_done,
                              total=max(frames_total, 1) if frames_total else max(shots_total, 1),
                              description=f"  cut: {line}")

    def log(self, message: str, *, important: bool = False) -> None:
        if self.quiet and not important:
            return
        self._progress.console.print(message, markup=False, highlight=False)


def encode_line(frames_done: int, frames_total: int, shots_done: int, shots_total: int,
                elapsed: float, eta: bool = True) -> str:
    """`1,200/3,630 frames encoded, 10/30 shots (45.0 frames/s, elapsed 0m27s, ETA 0m54s)`;
    a cut whose pieces are all reused encodes no frames and says so."""
    if not frames_total:
        return f"0 frames to encode, {shots_done}/{shots_total} shots (every piece reused)"
    rate = frames_done / elapsed if elapsed > 0 else 0.0
    timing = f"{rate:.1f} frames/s, elapsed {_clock(elapsed)}"
    if eta:
        timing += f", ETA {_clock((frames_total - frames_done) / rate) if rate > 0 else '?'}"
    return f"{frames_done:,}/{frames_total:,} frames encoded, {shots_done}/{shots_total} shots ({timing})"


def make_progress(quiet: bool = False, stream: TextIO | None = None) -> RenderProgress:
    stream = stream or sys.stdout
    if not quiet and stream.isatty():
        return RichRenderProgress(Console(file=stream), quiet)
    return RenderProgress(stream, quiet)
