"""What happens to an exception nobody expected: one line for the user, the traceback in a log.

A bug must not look like a bad input (exit 2) nor scroll a traceback over the render's output.
The CLI prints `internal error while <doing what> (storyboard S, shot X): Type: message`, names
a log file holding the full traceback, and exits 1. The session says which shot it is working on
through `working_on`, so the line can name it.
"""
from __future__ import annotations

import contextlib
import os
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

EXIT_CODE = 1
LOG_DIR_ENV = "OVI_STUDIO_LOG_DIR"

SHOT_ATTRIBUTE = "ovi_studio_shot"


@contextlib.contextmanager
def working_on(shot: str) -> Iterator[None]:
    """Tag an exception leaving the block with the shot, so the crash line can name it."""
    try:
        yield
    except Exception as exc:
        if getattr(exc, SHOT_ATTRIBUTE, None) is None:
            with contextlib.suppress(AttributeError, TypeError):
                setattr(exc, SHOT_ATTRIBUTE, shot)
        raise


def shot_of(exc: BaseException) -> str | None:
    return getattr(exc, SHOT_ATTRIBUTE, None)


def log_dir() -> Path:
    """$OVI_STUDIO_LOG_DIR, else the user's cache folder (never the output folder, which may be
    the thing that is broken)."""
    if os.environ.get(LOG_DIR_ENV):
        return Path(os.environ[LOG_DIR_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ovi-studio" / "crash-logs"


def write_crash_log(exc: BaseException, command: str, storyboard: str | None) -> Path | None:
    """The traceback in a new log file; None when no log can be written anywhere."""
    text = (f"ovi-studio {command}\nstoryboard: {storyboard}\nshot: {shot_of(exc)}\n"
            f"time: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n\n"
            + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    name = f"crash-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{os.getpid()}.log"
    try:
        folder = log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        path.write_text(text, encoding="utf-8", errors="backslashreplace")
        return path
    except OSError:
        return None


def crash_line(exc: BaseException, command: str, storyboard: str | None, log: Path | None) -> str:
    where = ", ".join(part for part in (
        f"storyboard {storyboard}" if storyboard else "",
        f"shot {shot_of(exc)}" if shot_of(exc) else "") if part)
    message = (str(exc).strip().splitlines() or [""])[0]
    text = f"internal error in `{command}`" + (f" ({where})" if where else "")
    text += f": {type(exc).__name__}" + (f": {message}" if message else "")
    text += f"; traceback in {log}" if log else "; (no log could be written)"
    return text
