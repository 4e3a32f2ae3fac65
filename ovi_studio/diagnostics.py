"""Diagnostics: what `check` reports and what loading a storyboard can warn about."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"error": 2, "warning": 1, "info": 0}[self.value]


@dataclass
class Fix:
    """A safe edit: replace the scalar at (line, column) .. (end_line, end_column) of the YAML
    file, or — for prompt rewrites — the whole prompt text of `shot`'s `key` with `replacement`."""
    description: str
    replacement: str
    shot: str | None = None
    key: str | None = None
    rename: bool = False  # the edit renames the key itself (at the diagnostic's position) to `replacement`


@dataclass
class Diagnostic:
    file: str
    line: int  # 1-based
    column: int  # 1-based
    end_line: int
    end_column: int
    code: str
    severity: Severity
    message: str
    shot: str | None = None
    fix: Fix | None = field(default=None, compare=False)

    @property
    def fixable(self) -> bool:
        return self.fix is not None

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("fix")
        data["severity"] = self.severity.value
        data["fixable"] = self.fixable
        return data

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.code} [{self.severity.value}] {self.message}"
