"""`check --fix`: rewrite the values safe fixes change, and nothing else of the file.

Each changed value is replaced in the file's text at its exact span (the loader records every
scalar's span), rendered in its original style: a block literal stays a block literal with its
header, indentation and trailing blank lines; quoted stays quoted. Comments, key order,
indentation and blank lines elsewhere are untouched byte for byte. Before anything is written
the new text is parsed again and every rewritten value compared with what was intended.
"""
from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from ovi_studio.errors import UserError, at
from ovi_studio.files import write_text_atomic
from ovi_studio.lint.findings import PromptContext
from ovi_studio.lint.runner import LintOptions, StoryboardLinter, fix_prompt
from ovi_studio.lint.tokens import token_counter


@dataclass(frozen=True)
class Edit:
    start: int  # character span in the file text
    end: int
    text: str
    path: tuple  # where the value lives in the document, for the check after writing
    value: object


@dataclass
class FixReport:
    path: Path
    edits: list[Edit]

    @property
    def changed(self) -> bool:
        return bool(self.edits)


def apply_fixes(path: str | Path, options: LintOptions = LintOptions(), *, write: bool = True) -> FixReport:
    """Apply every enabled safe fix of a storyboard; write the file atomically if it changed."""
    path = Path(path)
    linter = StoryboardLinter(path, options)
    diagnostics = linter.run()
    source = linter.loaded.source
    if source is None or not any(d.fixable for d in diagnostics):
        return FixReport(path, [])
    fixable = [d for d in diagnostics if d.fixable]
    edits = (_prompt_edits(linter) + _key_edits(linter, [d for d in fixable if d.fix.rename])
             + _setting_edits(linter, [d for d in fixable if not d.fix.rename]))
    if not edits:
        return FixReport(path, [])
    text = source.text
    for edit in sorted(edits, key=lambda e: e.start, reverse=True):
        text = text[:edit.start] + edit.text + text[edit.end:]
    _verify(path, text, edits)
    if write:
        write_text_atomic(path, text)
    return FixReport(path, edits)


def _enabled_for(linter: StoryboardLinter, shot):
    selection = linter.options.selection
    return lambda code: selection.enabled(code) and not any(code.startswith(c) for c in shot.noqa)


def _prompt_edits(linter: StoryboardLinter) -> list[Edit]:
    loaded, source = linter.loaded, linter.loaded.source
    tokens = token_counter(linter.ckpt_dir())
    edits = []
    for shot in loaded.shots:
        literal = linter.literal_prompt(shot)
        if literal is None:
            continue
        ctx = PromptContext(loaded.variant, shot.settings.duration, tokens)
        fixed = fix_prompt(literal, ctx, _enabled_for(linter, shot))
        if fixed == literal:
            continue
        position = source.value_position(shot.node, "prompt")
        span = source.scalars.get(position)
        if span is None:
            continue
        original = source.text[span.start:span.end]
        edits.append(Edit(span.start, span.end, render_scalar(original, span.style, fixed),
                          ("shots", shot.index, "prompt"), fixed))
    return edits


def _key_edits(linter: StoryboardLinter, renames) -> list[Edit]:
    """Misspelt keys renamed where they are written (plain keys only; the value is untouched)."""
    source = linter.loaded.source
    edits = []
    for diag in renames:
        start = source.lines.index(diag.line, diag.column)
        old, new = diag.fix.key, diag.fix.replacement
        if source.text[start:start + len(old)] != old:
            continue  # a quoted or complex key: leave it to the user
        path = _key_path(source.data, diag.line, diag.column, old)
        if path is not None:
            edits.append(Edit(start, start + len(old), new, path[:-1] + (new,), path[-1]))
    return edits


def _key_path(node, line: int, column: int, key: str, path: tuple = ()):
    """(document path to the mapping, …, the key's value) of `key` written at (line, column)."""
    if isinstance(node, CommentedMap):
        if key in node and node.lc.key(key) == (line - 1, column - 1):
            return path + (node[key],)
        items = node.items()
    elif isinstance(node, CommentedSeq):
        items = enumerate(node)
    else:
        return None
    for part, child in items:
        found = _key_path(child, line, column, key, path + (part,))
        if found is not None:
            return found
    return None


def _setting_edits(linter: StoryboardLinter, fixable) -> list[Edit]:
    """Value fixes (OVI404's snapped resolution): replace each item of the [h, w] list."""
    loaded, source = linter.loaded, linter.loaded.source
    document = loaded.document
    edits, done = [], set()
    for diag in fixable:
        if diag.fix.key == "prompt":
            continue
        if diag.fix.key.startswith("defaults."):
            node, key = document.get("defaults"), diag.fix.key.split(".", 1)[1]
            where = ("defaults", key)
        else:
            shot = next((s for s in loaded.shots if s.id == diag.fix.shot), None)
            node, key = (shot.node if shot else None), diag.fix.key
            where = ("shots", shot.index if shot else -1, key)
        if where in done or not isinstance(node, CommentedMap) or not isinstance(node.get(key), CommentedSeq):
            continue
        done.add(where)
        values = json.loads(diag.fix.replacement)
        seq = node[key]
        for index, value in enumerate(values[:len(seq)]):
            span = source.scalars.get(source.item_position(seq, index))
            if span is not None:
                edits.append(Edit(span.start, span.end, str(value), where + (index,), value))
    return edits


def render_scalar(original: str, style: str | None, value: str) -> str:
    """`value` written in the style of the scalar whose source text is `original`."""
    if style in ("|", ">") and "\n" in original:
        header, body = original.split("\n", 1)
        if style == ">" and "\n" in value.rstrip("\n"):
            header = "|" + header[1:]  # a folded scalar cannot hold the new line breaks
        indent = next((ln[:len(ln) - len(ln.lstrip(" "))] for ln in body.split("\n") if ln.strip()), "  ")
        tail = re.search(r"(?:\n[ \t]*)*\Z", original).group(0)
        lines = value.rstrip("\n").split("\n")
        return header + "\n" + "\n".join(indent + ln if ln else "" for ln in lines) + tail
    if style == "'" and "\n" not in value:
        return "'" + value.replace("'", "''") + "'"
    if style is None and _plain_safe(value):
        return value
    return json.dumps(value, ensure_ascii=False)


def _plain_safe(value: str) -> bool:
    return (bool(value) and value == value.strip() and "\n" not in value and ": " not in value
            and " #" not in value and not re.match(r"[-?:,\[\]{}#&*!|>'\"%@`]", value))


def _verify(path: Path, text: str, edits: list[Edit]) -> None:
    """Parse the rewritten text and check that every edited value reads back as intended."""
    try:
        data = YAML(typ="rt").load(io.StringIO(text))
    except Exception as exc:  # noqa: BLE001 - any parser failure means the fix is unsafe
        raise UserError(f"--fix would break the YAML ({exc}); the file was not changed",
                        location=at(path)) from None
    for edit in edits:
        node = data
        for part in edit.path:
            node = node[part]
        if node != edit.value:
            raise UserError(f"--fix could not rewrite `{'.'.join(map(str, edit.path))}` safely; "
                            "the file was not changed", location=at(path),
                            hint="write the prompt as a block literal (`prompt: |`)")
