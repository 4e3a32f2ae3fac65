"""Progress of long loops over shots (lint, plan, assembly of large storyboards): shots done,
rate and ETA, redrawn in place on a terminal and printed every few seconds when piped (the
logs of nightly runs). Silent below `LARGE` items, where it would only be noise. Every layer
may use it: it imports nothing of the project.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO

LARGE = 200  # CountProgress shows itself from this many items
LOG_EVERY_S = 5.0  # a piped line at most this often


class CountProgress:
    """Items done of a total, with rate and ETA: `with CountProgress("check", n) as p: p.advance()`.
    On a terminal a line redrawn in place; piped, a line every few seconds and one at the end."""

    def __init__(self, what: str, total: int, stream: TextIO | None = None, unit: str = "shots"):
        self.what, self.total, self.unit = what, total, unit
        self.stream = stream or sys.stderr
        self.done = 0
        self.shown = total >= LARGE
        self._tty = self.stream.isatty()
        self._started = self._last = time.monotonic()

    def __enter__(self) -> "CountProgress":
        return self

    def __exit__(self, *exc) -> None:
        if self.shown and 0 < self.done < self.total:  # stopped early: say how far it got
            self._emit(final=True)

    def advance(self, n: int = 1) -> None:
        """Count `n` more done; the last one prints the final line."""
        self.done += n
        now = time.monotonic()
        if not self.shown:
            return
        if self.done >= self.total:
            self._emit(final=True)
        elif now - self._last >= (0.1 if self._tty else LOG_EVERY_S):
            self._last = now
            self._emit(final=False)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        return (f"{self.what}: {self.done}/{self.total} {self.unit} ({rate:,.0f}/s, "
                f"elapsed {clock_text(elapsed)}, ETA {clock_text(eta)})")

    def _emit(self, final: bool) -> None:
        if self._tty:
            end = "\n" if final else ""
            print(f"\r{self.line()}\x1b[K", end=end, file=self.stream, flush=True)
        else:
            print(self.line(), file=self.stream, flush=True)


def clock_text(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"
