"""Running the rules: on one prompt, on a storyboard, on an Ovi CSV file.

Prompt rules see offsets in the compiled prompt; the runner turns them into file positions
through the shot's `TextOrigin`, applies `--select`/`--ignore` and per-shot `noqa`, and returns
diagnostics sorted by position. Nothing here imports torch.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from engine.arch import Arch, ArchError, load_arch
from engine.variants import Variant, get_variant
from ovi_studio.checkpoints import find_ckpt_dir, storyboard_ckpt_dir
from ovi_studio.collector import collector_paused
from ovi_studio.diagnostics import Diagnostic, Fix, Severity
from ovi_studio.errors import UserError, at
from ovi_studio.lint import (rules_length, rules_media, rules_model, rules_placement,
                             rules_storyboard, rules_syntax)
from ovi_studio.lint.findings import Finding, PromptContext, SettingFinding
from ovi_studio.lint.registry import RULES
from ovi_studio.lint.tokens import CHARS_PER_TOKEN, TEXT_LEN, token_counter
from ovi_studio.prompt import CAPTION_OPEN, parse_prompt
from ovi_studio.counting import CountProgress

PROMPT_RULES = (rules_syntax.check, rules_placement.check, rules_length.check, rules_model.check)
STORYBOARD_SUFFIXES = (".yaml", ".yml")
CSV_SUFFIXES = (".csv",)
CSV_AUDCAP_VARIANT, CSV_DEFAULT_VARIANT = "720x720_5s", "960x960_10s"
MAX_FIX_PASSES = 8
# Ten times what umT5 can read: longer text is a mistake (a pasted file?), and the other rules
# would only repeat themselves thousands of times.
MAX_PROMPT_CHARS = 20_000


@dataclass(frozen=True)
class Selection:
    """ruff-style code selection: prefixes (`OVI3` = all length rules); when a code matches both
    lists, the longer (more specific) prefix wins. Empty `select` means every rule."""
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()

    def enabled(self, code: str) -> bool:
        chosen = max((len(p) for p in _prefixes(self.select) if code.startswith(p)),
                     default=-1 if self.select else 0)
        dropped = max((len(p) for p in _prefixes(self.ignore) if code.startswith(p)), default=-1)
        return chosen >= 0 and chosen > dropped

    def unknown_prefixes(self) -> list[str]:
        return [p for p in (*self.select, *self.ignore)
                if p != "ALL" and not any(code.startswith(p) for code in RULES)]


def _prefixes(codes: tuple[str, ...]) -> list[str]:
    return ["" if code == "ALL" else code for code in codes]


@dataclass(frozen=True)
class LintOptions:
    selection: Selection = Selection()
    model: str | None = None  # for CSV files (storyboards name their own model)
    ckpt_dir: str | None = None  # for exact token counts


# -- prompts ---------------------------------------------------------------------------------

def lint_prompt(text: str, ctx: PromptContext) -> list[Finding]:
    if len(text) > MAX_PROMPT_CHARS:
        return [Finding("OVI304", 0, len(text),
                        f"{len(text):,} characters, far beyond the {TEXT_LEN}-token text budget (about "
                        f"{TEXT_LEN * CHARS_PER_TOKEN:,} characters): shorten the prompt (other prompt "
                        "rules were skipped)")]
    parsed = parse_prompt(text)
    findings = [f for check in PROMPT_RULES for f in check(parsed, ctx)]
    return sorted(findings, key=lambda f: (f.start, f.code))


def fix_prompt(text: str, ctx: PromptContext, enabled: Callable[[str], bool] = lambda code: True) -> str:
    """Apply safe fixes one at a time, re-linting in between, until none is left (like ruff)."""
    for _ in range(MAX_FIX_PASSES):
        fix = next((f for f in lint_prompt(text, ctx) if f.fix is not None and enabled(f.code)
                    and f.fix != text), None)
        if fix is None:
            break
        text = fix.fix
    return text


def severity_of(finding: Finding | SettingFinding) -> Severity:
    return finding.severity or RULES[finding.code].severity


# -- files -----------------------------------------------------------------------------------

def lint_path(path: str | Path, options: LintOptions = LintOptions()) -> list[Diagnostic]:
    """Diagnostics for one storyboard or CSV file, sorted by position. Raises UserError when
    the file cannot be read at all."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in STORYBOARD_SUFFIXES:
        with collector_paused():
            diagnostics = StoryboardLinter(path, options).run()
    elif suffix in CSV_SUFFIXES:
        diagnostics = lint_csv(path, options)
    else:
        raise UserError("not a storyboard (.yaml, .yml) or an Ovi prompt file (.csv)",
                        location=at(path), hint="check takes storyboards and Ovi CSV prompt files")
    return sort_diagnostics(diagnostics)


def sort_diagnostics(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    unique = {(d.file, d.line, d.column, d.code, d.message, d.shot): d for d in diagnostics}
    return sorted(unique.values(), key=lambda d: (d.file, d.line, d.column, d.code, d.shot or ""))


def lint_csv(path: Path, options: LintOptions) -> list[Diagnostic]:
    """An Ovi CSV prompt file: one prompt per row, positioned in the file (see _csv_locator).
    The model is `--model`, else 720x720_5s when the file uses <AUDCAP> (the legacy 5 s
    format), else 960x960_10s. Token counts are exact with --ckpt-dir or $OVI_CKPT_DIR."""
    from ovi_studio.csvprompts import read_prompt_csv
    rows = read_prompt_csv(path)
    if options.model:
        variant = get_variant(options.model)
    elif any(CAPTION_OPEN in row.text for row in rows):
        variant = get_variant(CSV_AUDCAP_VARIANT)
    else:
        variant = get_variant(CSV_DEFAULT_VARIANT)
    ctx = PromptContext(variant, float(variant.duration_s),
                        token_counter(find_ckpt_dir(options.ckpt_dir)))
    enabled = options.selection.enabled
    lines = path.read_text(encoding="utf-8-sig").split("\n")
    out = []
    for number, row in enumerate(rows, start=1):
        shot = f"row{number}"
        for finding in lint_prompt(row.text, ctx):
            if enabled(finding.code):
                out.append(_csv_diagnostic(path, lines, row.line, row.text, finding, shot))
        if row.image_path and enabled("OVI406"):
            image = (path.parent / row.image_path)
            for found in rules_media.check_first_frame(image, None):
                out.append(Diagnostic(str(path), row.line, 1, row.line, 1, "OVI406",
                                      found.severity, found.message, shot))
    return out


def _csv_diagnostic(path: Path, lines: list[str], line: int, text: str, finding: Finding,
                    shot: str) -> Diagnostic:
    position = _csv_locator(lines, line, text)
    (l1, c1), (l2, c2) = position(finding.start), position(finding.end)
    return Diagnostic(str(path), l1, c1, l2, c2, finding.code, severity_of(finding), finding.message, shot)


def _csv_locator(lines: list[str], line: int, text: str) -> Callable[[int], tuple[int, int]]:
    """Offset in a prompt -> (line, column) in the CSV file. Exact when the prompt is the row's
    first cell (as in Ovi's files): the cell is the prompt, quoted with `""` escapes or bare.
    Otherwise columns count within the prompt text."""
    row = "\n".join(lines[line - 1:line - 1 + text.count("\n") + 1])
    quoted = '"' + text.replace('"', '""') + '"'
    if row.startswith(quoted):
        def encoded(offset: int) -> int:
            return 1 + offset + text[:offset].count('"')
    elif row.startswith(text):
        def encoded(offset: int) -> int:
            return offset
    else:
        row = text

        def encoded(offset: int) -> int:
            return offset

    def locate(offset: int) -> tuple[int, int]:
        index = encoded(offset)
        before = row[:index]
        return line + before.count("\n"), index - (before.rfind("\n") + 1) + 1
    return locate


class StoryboardLinter:
    """Lints one storyboard: the loader's diagnostics, every shot's prompt and settings, first
    frames, negatives and the shot graph; then noqa and selection."""

    def __init__(self, path: Path, options: LintOptions):
        from ovi_studio.storyboard import load_storyboard
        self.path = path
        self.options = options
        self.loaded = load_storyboard(path)
        self.file = str(path)
        self.out: list[Diagnostic] = []
        self._arch: Arch | None = None

    @property
    def variant(self) -> Variant:
        return self.loaded.variant

    def ckpt_dir(self) -> Path | None:
        """The checkpoint folder, looked up as `plan` and `render` do (for exact token counts)."""
        return storyboard_ckpt_dir(self.loaded, self.options.ckpt_dir)

    def arch(self) -> Arch:
        """The model's sizes (the checkpoint folder's arch.json, else the published ones)."""
        if self._arch is None:
            ckpt = self.ckpt_dir()
            try:
                self._arch = load_arch(ckpt) if ckpt is not None and ckpt.is_dir() else Arch()
            except ArchError:  # `plan` and `render` report a broken arch.json
                self._arch = Arch()
        return self._arch

    def run(self) -> list[Diagnostic]:
        self.out.extend(self.loaded.diagnostics)
        tokens = token_counter(self.ckpt_dir())
        with CountProgress(f"check {self.path.name}", len(self.loaded.shots)) as progress:
            for shot in self.loaded.shots:
                self._shot(shot, tokens)
                progress.advance()
        self._negatives_of(self._defaults(), None)
        self._graph()
        return self._suppress(self.out)

    def _shot(self, shot, tokens) -> None:
        ctx = PromptContext(self.variant, shot.settings.duration, tokens)
        self._prompt(shot, ctx)
        self._settings(shot)
        self._first_frame(shot)
        self._negatives_of(shot.node, shot.id)

    # -- per shot --------------------------------------------------------------------------
    def _prompt(self, shot, ctx: PromptContext) -> None:
        fixable = self.literal_prompt(shot) is not None
        for finding in lint_prompt(shot.raw_prompt, ctx):
            line, column = shot.origin.locate(finding.start)
            end_line, end_column = shot.origin.locate(finding.end)
            if (end_line, end_column) < (line, column):
                end_line, end_column = line, column
            fix = None
            if finding.fix is not None and fixable:
                fix = Fix(finding.fix_description or "safe fix", finding.fix, shot.id, "prompt")
            self.out.append(Diagnostic(self.file, line, column, end_line, end_column, finding.code,
                                       severity_of(finding), finding.message, shot.id, fix))

    @staticmethod
    def literal_prompt(shot) -> str | None:
        """The `prompt:` scalar written in the shot itself (what `--fix` can rewrite)."""
        node = shot.node
        if shot.structured or node is None or not isinstance(node.get("prompt"), str):
            return None
        return node["prompt"]

    def _settings(self, shot) -> None:
        settings = shot.settings
        findings = list(rules_model.check_duration(self.variant, settings.duration))
        if shot.first_frame is None and shot.extends is None:
            findings += rules_model.check_resolution(self.variant, settings.resolution)
        findings += rules_model.check_fp8(self.variant, settings.fp8 and not settings.fp8_file)
        findings += rules_model.check_fp8_file(self.arch(), settings.fp8_file)
        drafted = set(settings.draft_loras) if settings.draft else set()
        findings += rules_model.check_loras(self.arch(), [u for u in settings.loras if u not in drafted],
                                            "loras")
        findings += rules_model.check_loras(self.arch(), settings.draft_loras, "draft_loras")
        for finding in findings:
            self._setting_diagnostic(shot, finding)

    def _setting_diagnostic(self, shot, finding: SettingFinding) -> None:
        (line, column), owner = self._key_position(shot, finding.key)
        fix = None
        if finding.fix is not None and owner is not None:
            import json
            fix = Fix(finding.fix_description or "safe fix", json.dumps(finding.fix),
                      shot.id if owner == "shot" else None,
                      finding.key if owner == "shot" else f"defaults.{finding.key}")
        self.out.append(Diagnostic(self.file, line, column, line, column, finding.code,
                                   severity_of(finding), finding.message,
                                   shot.id if owner != "defaults" else None, fix))

    def _defaults(self):
        document = self.loaded.document
        defaults = document.get("defaults") if isinstance(document, dict) else None
        return defaults if isinstance(defaults, dict) else None

    def _key_position(self, shot, key: str):
        """Where `key` is set for this shot: in the shot, else in `defaults`, else the shot."""
        source = self.loaded.source
        if shot.node is not None and key in shot.node:
            return source.value_position(shot.node, key), "shot"
        defaults = self._defaults()
        if defaults is not None and key in defaults:
            return source.value_position(defaults, key), "defaults"
        return (shot.line, shot.column), None

    def _first_frame(self, shot) -> None:
        if shot.first_frame is None:
            return
        settings = shot.settings
        requested = settings.asked_size(self.variant)
        (line, column), _ = self._key_position(shot, "first_frame")
        for found in rules_media.check_first_frame(shot.first_frame, requested):
            self.out.append(Diagnostic(self.file, line, column, line, column, "OVI406",
                                       found.severity, found.message, shot.id))

    def _negatives_of(self, node, shot_id: str | None) -> None:
        if node is None:
            return
        for key in ("video_negative", "audio_negative"):
            value = node.get(key)
            if not isinstance(value, str):
                continue
            mark = rules_storyboard.negative_has_tags(value)
            if mark is not None:
                line, column = self.loaded.source.value_position(node, key)
                self.out.append(Diagnostic(
                    self.file, line, column, line, column, "SB107", RULES["SB107"].severity,
                    f"`{mark}` in `{key}`: negative prompts are plain words — remove the tag",
                    shot_id))

    # -- whole storyboard ------------------------------------------------------------------
    def _graph(self) -> None:
        shots = self.loaded.shots
        refs = [rules_storyboard.ShotRef(s.id, s.extends, s.first_frame is not None) for s in shots]
        for finding in rules_storyboard.check_graph(refs):
            shot = shots[finding.index]
            (line, column), _ = self._key_position(shot, finding.key)
            self.out.append(Diagnostic(self.file, line, column, line, column, finding.code,
                                       severity_of(finding), finding.message, shot.id))

    def _suppress(self, diagnostics: list[Diagnostic]) -> list[Diagnostic]:
        """Drop what `--select`/`--ignore` exclude and what a shot's `noqa` names; report noqa
        codes that suppressed nothing (OVI001)."""
        enabled = self.options.selection.enabled
        noqa = {s.id: s for s in self.loaded.shots if s.noqa}
        used: set[tuple[str, str]] = set()
        kept = []
        for diag in diagnostics:
            if not enabled(diag.code):
                continue
            shot = noqa.get(diag.shot) if diag.shot else None
            match = next((c for c in shot.noqa if diag.code.startswith(c)), None) if shot else None
            if match is not None:
                used.add((shot.id, match))
                continue
            kept.append(diag)
        if enabled("OVI001"):
            for shot in noqa.values():
                for code in shot.noqa:
                    if (shot.id, code) not in used:
                        (line, column), _ = self._key_position(shot, "noqa")
                        known = any(c.startswith(code) for c in RULES)
                        why = "suppresses nothing here" if known else "is not a rule code"
                        kept.append(Diagnostic(self.file, line, column, line, column, "OVI001",
                                               RULES["OVI001"].severity,
                                               f"noqa code `{code}` {why}: remove it", shot.id))
        return kept
