"""Errors that reach the user as a message, never as a traceback.

Anything the user can fix (a bad file, a missing checkpoint, a bad flag) raises `UserError`;
the CLI prints it as `file:line:col: message` plus a hint and exits 2.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Location:
    file: str
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based

    def __str__(self) -> str:
        parts = [self.file]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)


class UserError(Exception):
    """A problem with the user's input or environment, reported without a traceback."""

    exit_code = 2

    def __init__(self, message: str, *, location: Location | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.location = location
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}" if self.location else self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


def at(path: str | Path, line: int | None = None, column: int | None = None) -> Location:
    return Location(str(path), line, column)
