"""The lint gate in front of every render: what `check` rejects is never rendered.

`render` and `batch` call `lint_gate` before any engine is built. Errors stop the run with the
findings printed exactly as `check` prints them (exit 1, nothing rendered or deleted); warnings
are returned so the caller can show them and go on. An Ovi CSV is linted as the file the user
wrote, so positions point into it, not into the storyboard imported from it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ovi_studio.diagnostics import Diagnostic, Severity
from ovi_studio.errors import UserError


@dataclass(frozen=True)
class LintSummary:
    """What the gate found (the render goes on only when there are no errors)."""
    diagnostics: tuple[Diagnostic, ...]
    skipped: bool = False  # --no-lint

    @property
    def errors(self) -> int:
        return sum(d.severity == Severity.ERROR for d in self.diagnostics)

    @property
    def warnings(self) -> int:
        return sum(d.severity == Severity.WARNING for d in self.diagnostics)

    def to_json(self) -> dict:
        if self.skipped:
            return {"skipped": True, "reason": "--no-lint"}
        return {"skipped": False, "errors": self.errors, "warnings": self.warnings,
                "codes": sorted({d.code for d in self.diagnostics})}

    def text(self) -> str:
        """The findings as `check` prints them (without source lines: this goes to logs)."""
        from ovi_studio.lint.formats import render
        return render(list(self.diagnostics), "text", show_source=False)

    def warnings_text(self) -> str:
        """Errors and warnings as `check` prints them (info findings are left to `check`);
        empty when there are none."""
        from ovi_studio.lint.formats import render
        shown = [d for d in self.diagnostics if d.severity != Severity.INFO]
        return render(shown, "text", show_source=False) if shown else ""


class LintFailed(UserError):
    """The storyboard has lint errors: nothing was rendered."""

    exit_code = 1

    def __init__(self, source: Path, summary: LintSummary):
        super().__init__(f"{source}: {summary.errors} lint error(s); nothing was rendered\n"
                         + summary.text().rstrip(),
                         hint="fix them (`ovi-studio check --fix` applies the safe fixes), or pass "
                              "--no-lint to render anyway")
        self.summary = summary


def lint_gate(source: str | Path, ckpt_dir: str | Path | None = None, *,
              model: str | None = None) -> LintSummary:
    """Lint a storyboard or an Ovi CSV as `check` would; raise LintFailed on any error.
    `model` is the variant a CSV is rendered with (storyboards name their own)."""
    summary = lint_summary(source, ckpt_dir, model=model)
    if summary.errors:
        raise LintFailed(Path(source), summary)
    return summary


def lint_summary(source: str | Path, ckpt_dir: str | Path | None = None, *,
                 model: str | None = None) -> LintSummary:
    """What `check` finds in a storyboard or an Ovi CSV (its default rule selection)."""
    from ovi_studio.lint.runner import LintOptions, lint_path
    options = LintOptions(model=model, ckpt_dir=str(ckpt_dir) if ckpt_dir else None)
    return LintSummary(tuple(lint_path(source, options)))


def lint_skipped() -> LintSummary:
    return LintSummary((), skipped=True)
