"""Reading a user's text file (storyboard, prompt CSV) with messages instead of tracebacks."""
from __future__ import annotations

from pathlib import Path

from ovi_studio.errors import UserError, at


def read_user_text(path: Path, *, what: str, max_bytes: int,
                   encoding_hint: str = "save the file as UTF-8") -> str:
    """The file's text (UTF-8, BOM allowed); a UserError naming the file (and the line of a
    bad byte) when it is missing, a folder, too large, binary or not UTF-8."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise UserError(f"the {what} is {size / (1 << 20):.1f} MiB; the limit is "
                            f"{max_bytes >> 20} MiB", location=at(path), hint="is this the right file?")
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError("no such file", location=at(path)) from None
    except IsADirectoryError:
        raise UserError(f"is a folder, not a {what}", location=at(path)) from None
    except OSError as exc:
        raise UserError(f"cannot read the file: {exc.strerror}", location=at(path)) from None
    if b"\x00" in data:
        raise UserError(f"this is a binary file, not a {what}", location=at(path))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise UserError("the file is not valid UTF-8 text", location=at(path, line),
                        hint=encoding_hint) from None
