"""Errors the engine raises for things a user can fix (a bad or missing checkpoint file)."""
from __future__ import annotations

from pathlib import Path


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, or does not hold the expected tensors.

    `path` is the offending file, `problem` what is wrong with it, `hint` how to fix it (usually
    where the file comes from, so it can be downloaded again).
    """

    def __init__(self, path: str | Path, problem: str, hint: str):
        self.path = Path(path)
        self.problem = problem
        self.hint = hint
        super().__init__(f"{self.path}: {problem}\n  hint: {hint}")
