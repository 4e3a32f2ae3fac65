"""Which names may be written under an output folder.

The tool owns a few names at the root of every output folder (the take folders, the report,
its own state folder); a user-chosen name such as `output.final` must be a relative path that
stays inside the folder and collides with none of them. The storyboard schema, `--set final=`
and the render's own writes all ask this module, so `check` refuses exactly what `render` would.
"""
from __future__ import annotations

import unicodedata
from pathlib import PurePosixPath, PureWindowsPath

SHOTS = "shots"
REPORT = "report.json"
STATE = ".ovi-studio"  # locks and per-run temporary folders
CUT_PIECES = "cut-pieces"  # under STATE: the cut's encoded pieces, which re-assembly reuses
TAKES = ".takes"  # the content-addressed take store
REVIEW_PAGE, REVIEW_ASSETS = "report.html", "review"
RESERVED = frozenset({SHOTS, REPORT, STATE, TAKES, REVIEW_PAGE, REVIEW_ASSETS})
MAX_NAME_BYTES = 255  # one path component on common file systems
SIDECAR_SUFFIXES = (".srt", ".vtt", ".chapters.txt")  # written beside the cut


def output_name_problem(name: object) -> str | None:
    """Why `name` cannot be the name of a file inside the output folder, or None when it can.
    Relative, forward slashes, no `.`/`..` parts, no control characters, not one of the
    tool's own names, and a file name (not a folder) at the end."""
    if not isinstance(name, str) or not name.strip():
        return "must be a non-empty file name"
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in name):
        return "contains a control character"
    if "\\" in name or PureWindowsPath(name).drive:
        return "must use `/` between folders and no drive letter"
    path = PurePosixPath(name)
    if path.is_absolute():
        return "must be relative to the output folder, not an absolute path"
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "must stay inside the output folder (no `..`, `.` or empty parts)"
    if any(len(part.encode("utf-8")) > MAX_NAME_BYTES for part in parts):
        return f"has a part longer than {MAX_NAME_BYTES} bytes"
    if parts[0] in RESERVED:
        return f"`{parts[0]}` is ovi-studio's own (reserved: {', '.join(sorted(RESERVED))})"
    return None
