"""`ovi-studio check FILE…`: lint storyboards and Ovi CSV prompt files.

Exit codes (like ruff): 0 clean or only warnings/info, 1 errors (or warnings with --strict),
2 usage or I/O errors. Imports nothing heavy: no torch, no engine model.
"""
from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from ovi_studio.cli.app import app, err, guarded, print_error
from ovi_studio.errors import UserError


class OutputFormat(str, Enum):
    text = "text"
    json = "json"
    sarif = "sarif"
    github = "github"


def _codes(values: list[str] | None) -> tuple[str, ...]:
    """`--select OVI1,OVI3 --select SB1` -> ("OVI1", "OVI3", "SB1")."""
    return tuple(code.strip().upper() for value in values or [] for code in value.split(",") if code.strip())


@app.command("check")
@guarded
def check_command(
    files: Optional[List[Path]] = typer.Argument(None, help="Storyboards (.yaml/.yml) and Ovi prompt files (.csv)."),
    output_format: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f",
                                               help="text, json, sarif (code scanning) or github (annotations)."),
    fix: bool = typer.Option(False, "--fix", help="Apply safe fixes to storyboards, keeping comments and layout."),
    select: Optional[List[str]] = typer.Option(None, "--select", help="Only these codes or prefixes (OVI3 = all length rules)."),
    ignore: Optional[List[str]] = typer.Option(None, "--ignore", help="Skip these codes or prefixes."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 on warnings too."),
    model: Optional[str] = typer.Option(None, "--model", help="Model for CSV files (default: 720x720_5s when the file uses <AUDCAP>, else 960x960_10s)."),
    ckpt_dir: Optional[Path] = typer.Option(None, "--ckpt-dir", help="Checkpoint folder: count T5 tokens with the real umT5 tokenizer."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the report to this file instead of stdout."),
    show_source: Optional[bool] = typer.Option(None, "--show-source/--no-show-source", help="Show the source line under each diagnostic (default: when stdout is a terminal)."),
    explain: Optional[str] = typer.Option(None, "--explain", help="Print what the rules matching this code or prefix check and how to fix them (ALL: every rule), then exit."),
) -> None:
    """Lint prompts and storyboards; exit 1 when there are errors."""
    from engine.variants import VARIANTS
    from ovi_studio.diagnostics import Severity
    from ovi_studio.lint.formats import render
    from ovi_studio.lint.runner import LintOptions, Selection, lint_path

    if explain is not None:
        _explain(explain)
        return
    if not files:
        raise UserError("no files to check", hint="ovi-studio check storyboards/*.yaml prompts.csv")
    selection = Selection(_codes(select), _codes(ignore))
    unknown = selection.unknown_prefixes()
    if unknown:
        raise UserError(f"unknown rule code or prefix: {', '.join(unknown)}",
                        hint="codes look like OVI101, OVI3 or SB1; `ovi-studio check --explain ALL` lists them")
    if model is not None and model not in VARIANTS:
        raise UserError(f"unknown model `{model}`", hint=f"choose one of {', '.join(VARIANTS)}")
    options = LintOptions(selection, model, str(ckpt_dir) if ckpt_dir else None)

    diagnostics, failed = [], 0
    for path in files:
        try:
            if fix and path.suffix.lower() in (".yaml", ".yml"):
                _fix(path, options)
            elif fix:
                err.print(f"{path}: --fix rewrites storyboards only; fix CSV prompts by hand or "
                          "`ovi-studio import` them", markup=False, highlight=False)
            diagnostics.extend(lint_path(path, options))
        except UserError as exc:
            print_error(exc)
            failed += 1

    tty = output is None and sys.stdout.isatty()
    text = render(diagnostics, output_format.value, show_source=tty if show_source is None else show_source)
    if failed and diagnostics and output_format == OutputFormat.text:  # the summary is not all
        text += f"{failed} file(s) could not be checked (see above).\n"
    # YAML escapes can smuggle lone surrogates into values we quote; never crash printing them
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if output is not None:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot write the report: {exc.strerror}", location=None) from None
    elif text and (diagnostics or not failed):  # not "All checks passed!" after an error
        typer.echo(text, nl=False)

    if failed:
        raise typer.Exit(2)
    worst = {d.severity for d in diagnostics}
    if Severity.ERROR in worst or (strict and Severity.WARNING in worst):
        raise typer.Exit(1)


def _fix(path: Path, options) -> None:
    from ovi_studio.lint.fix import apply_fixes
    report = apply_fixes(path, options)
    if report.changed:
        err.print(f"{path}: fixed {len(report.edits)} value{'s' if len(report.edits) != 1 else ''}",
                  markup=False, highlight=False)


def _explain(code: str) -> None:
    from ovi_studio.lint.registry import all_rules
    prefix = "" if code.strip().upper() == "ALL" else code.strip().upper()
    rules = [rule for rule in all_rules().values() if rule.code.startswith(prefix)]
    if not rules:
        raise UserError(f"no rule matches `{code}`", hint="`ovi-studio check --explain ALL` lists every rule")
    for rule in rules:
        fix = ", fixable" if rule.fixable else ""
        typer.echo(f"{rule.code} ({rule.severity.value}{fix}): {rule.summary}\n    {rule.help}\n")
