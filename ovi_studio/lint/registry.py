"""The rule table: every code `check` can report, its default severity and its help text.

Rule modules register their rules here when imported; the runner, `--select`/`--ignore`, the
SARIF `rules` array and `check --explain` all read this one table.
"""
from __future__ import annotations

from dataclasses import dataclass

from ovi_studio.diagnostics import Severity

@dataclass(frozen=True)
class Rule:
    code: str
    severity: Severity  # the default; a rule may report a finding at another level (OVI301)
    summary: str  # one line: what is wrong
    help: str  # why it matters and how to fix it
    fixable: bool = False


RULES: dict[str, Rule] = {}


def rule(code: str, severity: Severity, summary: str, help: str, *, fixable: bool = False) -> Rule:
    if code in RULES:
        raise ValueError(f"rule {code} registered twice")
    RULES[code] = Rule(code, severity, summary, help, fixable)
    return RULES[code]


def all_rules() -> dict[str, Rule]:
    """Every rule, after importing each rule family (they register themselves)."""
    from ovi_studio.lint import (rules_length, rules_media, rules_model,  # noqa: F401
                                 rules_placement, rules_storyboard, rules_syntax)
    return dict(sorted(RULES.items()))
