"""Writing diagnostics: text (ruff-like), json, SARIF 2.1.0 and GitHub workflow annotations."""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from ovi_studio import __version__
from ovi_studio.diagnostics import Diagnostic, Severity
from ovi_studio.lint.registry import all_rules

FORMATS = ("text", "json", "sarif", "github")
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
GITHUB_COMMAND = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


# -- text --------------------------------------------------------------------------------------

def format_text(diagnostics: list[Diagnostic], *, show_source: bool = False,
                read_line: Callable[[str, int], str | None] | None = None) -> str:
    """`path:line:col: CODE message` per diagnostic; with `show_source` the source line and a
    caret under the reported columns follow (the TTY view); then a summary."""
    read_line = read_line or _line_reader()
    out = []
    for diag in diagnostics:
        fixable = " [*]" if diag.fixable else ""
        shot = f" (shot {diag.shot})" if diag.shot else ""
        out.append(f"{diag.file}:{diag.line}:{diag.column}: {diag.code}{fixable} "
                   f"{diag.severity.value}: {diag.message}{shot}")
        if show_source:
            source = read_line(diag.file, diag.line)
            if source is not None:
                out += _caret_view(source, diag)
    out.append(summary(diagnostics))
    return "\n".join(out) + "\n"


def _caret_view(source: str, diag: Diagnostic) -> list[str]:
    source = source.rstrip("\n").expandtabs(1)
    width = diag.end_column - diag.column if diag.end_line == diag.line else len(source) - diag.column + 1
    width = max(1, min(width, max(1, len(source) - diag.column + 1)))
    gutter = f"{diag.line:>5} | "
    return [gutter + source, " " * (len(gutter) - 2) + "| " + " " * (diag.column - 1) + "^" * width]


def _line_reader() -> Callable[[str, int], str | None]:
    cache: dict[str, list[str] | None] = {}

    def read(file: str, line: int) -> str | None:
        if file not in cache:
            try:
                cache[file] = Path(file).read_text(encoding="utf-8-sig").split("\n")
            except (OSError, UnicodeDecodeError):
                cache[file] = None
        lines = cache[file]
        return lines[line - 1] if lines and 0 < line <= len(lines) else None
    return read


def summary(diagnostics: list[Diagnostic]) -> str:
    if not diagnostics:
        return "All checks passed!"
    counts = Counter(d.severity for d in diagnostics)
    parts = [f"{counts[s]} {s.value}{'s' if counts[s] != 1 and s != Severity.INFO else ''}"
             for s in (Severity.ERROR, Severity.WARNING, Severity.INFO) if counts[s]]
    fixable = sum(d.fixable for d in diagnostics)
    text = "Found " + ", ".join(parts) + "."
    if fixable:
        text += f"\n[*] {fixable} fixable with `ovi-studio check --fix`."
    return text


# -- json --------------------------------------------------------------------------------------

def format_json(diagnostics: list[Diagnostic]) -> str:
    return json.dumps([d.to_json() for d in diagnostics], indent=2, ensure_ascii=False) + "\n"


# -- SARIF -------------------------------------------------------------------------------------

def _fingerprint(diag: Diagnostic) -> str:
    """Stable across commits that move the shot: what is wrong in which shot, not where."""
    basis = f"{diag.code}:{Path(diag.file).name}:{diag.shot or ''}:{diag.message}"
    return hashlib.sha256(basis.encode("utf-8", "backslashreplace")).hexdigest()[:32]


def sarif_document(diagnostics: list[Diagnostic], *, root: Path | None = None) -> dict:
    rules = all_rules()
    used = sorted({d.code for d in diagnostics} | set(rules))
    index = {code: i for i, code in enumerate(used)}
    descriptors = []
    for code in used:
        rule = rules.get(code)
        descriptors.append({
            "id": code,
            "name": code,
            "shortDescription": {"text": rule.summary if rule else code},
            "fullDescription": {"text": rule.help if rule else code},
            "help": {"text": rule.help if rule else code},
            "defaultConfiguration": {"level": SARIF_LEVEL[rule.severity] if rule else "warning"},
            "properties": {"fixable": bool(rule and rule.fixable)},
        })
    results = []
    for diag in diagnostics:
        results.append({
            "ruleId": diag.code,
            "ruleIndex": index[diag.code],
            "level": SARIF_LEVEL[diag.severity],
            "message": {"text": diag.message},
            "locations": [{"physicalLocation": {
                "artifactLocation": {"uri": _uri(diag.file, root)},
                "region": {"startLine": diag.line, "startColumn": diag.column,
                           "endLine": max(diag.end_line, diag.line),
                           "endColumn": max(diag.end_column, diag.column + (diag.end_line == diag.line))},
            }}],
            "partialFingerprints": {"ovistudio/v1": _fingerprint(diag)},
            "properties": {"shot": diag.shot, "fixable": diag.fixable},
        })
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "ovi-studio", "version": __version__,
                                "informationUri": "https://github.com/ovi-studio/ovi-studio",
                                "rules": descriptors}},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    }


def _uri(file: str, root: Path | None) -> str:
    """Repository-relative URIs (code scanning matches them against the checkout)."""
    path = Path(file)
    root = root or Path.cwd()
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix() if not path.is_absolute() else path.resolve().as_uri()


def format_sarif(diagnostics: list[Diagnostic]) -> str:
    return json.dumps(sarif_document(diagnostics), indent=2, ensure_ascii=False) + "\n"


# -- GitHub workflow commands ------------------------------------------------------------------

def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def format_github(diagnostics: list[Diagnostic]) -> str:
    lines = []
    for d in diagnostics:
        props = ",".join(f"{key}={_escape_property(str(value))}" for key, value in (
            ("file", d.file), ("line", d.line), ("col", d.column), ("endLine", d.end_line),
            ("endColumn", d.end_column), ("title", f"{d.code} {_title(d.code)}")))
        lines.append(f"::{GITHUB_COMMAND[d.severity]} {props}::{_escape_data(d.message)}")
    return "".join(line + "\n" for line in lines)


def _title(code: str) -> str:
    rule = all_rules().get(code)
    return rule.summary if rule else ""


def render(diagnostics: list[Diagnostic], fmt: str, *, show_source: bool = False) -> str:
    if fmt == "json":
        return format_json(diagnostics)
    if fmt == "sarif":
        return format_sarif(diagnostics)
    if fmt == "github":
        return format_github(diagnostics)
    return format_text(diagnostics, show_source=show_source)
