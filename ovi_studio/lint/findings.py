"""What a prompt rule sees (the parsed prompt and its context) and what it returns."""
from __future__ import annotations

from dataclasses import dataclass

from engine.variants import Variant
from ovi_studio.diagnostics import Severity
from ovi_studio.lint.tokens import TokenCounter


@dataclass(frozen=True)
class Finding:
    """A problem at prompt offsets start..end. `fix` is the whole prompt after the safe fix."""
    code: str
    start: int
    end: int
    message: str
    severity: Severity | None = None  # None: the rule's default severity
    fix: str | None = None
    fix_description: str | None = None


@dataclass(frozen=True)
class PromptContext:
    """The model a prompt is rendered with and how long the shot is."""
    variant: Variant
    duration: float  # seconds
    tokens: TokenCounter


@dataclass(frozen=True)
class SettingFinding:
    """A problem with a shot setting (`key` as written in the storyboard, e.g. "duration").
    `fix` is the value the safe fix writes for that key."""
    code: str
    key: str
    message: str
    severity: Severity | None = None
    fix: object | None = None
    fix_description: str | None = None
