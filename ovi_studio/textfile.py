"""Reading a user's file (storyboard, prompt CSV, template, image) with messages instead of
tracebacks, and bounded work: only a regular file is opened, and never more of it is read than
the limit allows (a named pipe would block, a device or a growing file would never end)."""
from __future__ import annotations

import stat
from pathlib import Path

from ovi_studio.errors import UserError, at

_KINDS = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def not_a_regular_file(path: Path) -> str | None:
    """What `path` is when it is something other than a readable regular file ("missing", "a
    folder", "a named pipe", ...), else None. Only stats: never opens the file."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def read_bounded(path: Path, *, what: str, max_bytes: int) -> bytes:
    """The bytes of a regular file no larger than `max_bytes`; a UserError naming the file
    otherwise. The size is checked before and while reading (the file may grow meanwhile)."""
    kind = not_a_regular_file(path)
    if kind == "missing":
        raise UserError("no such file", location=at(path))
    if kind is not None:
        raise UserError(f"is {kind}, not a {what}", location=at(path))
    too_big = UserError(f"the {what} is larger than the limit of {_size(max_bytes)}",
                        location=at(path), hint="is this the right file?")
    try:
        if path.stat().st_size > max_bytes:
            raise too_big
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise UserError(f"cannot read the file: {exc.strerror}", location=at(path)) from None
    if len(data) > max_bytes:
        raise too_big
    return data


def read_user_text(path: Path, *, what: str, max_bytes: int,
                   encoding_hint: str = "save the file as UTF-8") -> str:
    """The file's text (UTF-8, BOM allowed); a UserError naming the file (and the line of a
    bad byte) when it is missing, not a regular file, too large, binary or not UTF-8."""
    data = read_bounded(path, what=what, max_bytes=max_bytes)
    if b"\x00" in data:
        raise UserError(f"this is a binary file, not a {what}", location=at(path))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise UserError("the file is not valid UTF-8 text", location=at(path, line),
                        hint=encoding_hint) from None


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB" if n >= 1 << 10 else f"{n} bytes"
