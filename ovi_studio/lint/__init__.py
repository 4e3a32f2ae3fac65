"""`ovi-studio check`: lint rules for Ovi prompts and storyboards (no torch, no engine model).

Public API:
    lint_path(path, options) -> list[Diagnostic]      one storyboard (.yaml/.yml) or Ovi CSV
    lint_prompt(text, ctx) -> list[Finding]           one prompt, offsets into the text
    fix_prompt(text, ctx, enabled) -> str             the prompt with every safe fix applied
    apply_fixes(path, options) -> FixReport           rewrite a storyboard's fixable values
    all_rules() -> dict[str, Rule]                    the rule table
"""
from ovi_studio.lint.findings import Finding, PromptContext
from ovi_studio.lint.fix import FixReport, apply_fixes
from ovi_studio.lint.registry import Rule, all_rules
from ovi_studio.lint.runner import LintOptions, Selection, fix_prompt, lint_path, lint_prompt

__all__ = ["Finding", "FixReport", "LintOptions", "PromptContext", "Rule", "Selection", "all_rules",
           "apply_fixes", "fix_prompt", "lint_path", "lint_prompt"]
