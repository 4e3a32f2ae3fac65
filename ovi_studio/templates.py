"""Shot templates: a reusable shot fragment with `{param}` placeholders.

A template file (`templates/<name>.yaml`, looked up next to the storyboard first, then among
the templates shipped with ovi-studio, `ovi_studio/data/templates/`) looks like:

    description: One person talks straight to camera.
    params:
      who: {description: "who is talking (a character as {anna}, or a description)",
            example: "A man in a yellow raincoat"}
      line: {description: "what they say", example: "Hello."}
      setting: {default: "a softly lit home office"}
    shot:
      scene: "{who} sits in {setting}, looking into the camera."
      dialogue:
        - {speaker: "{who}", line: "{line}"}
      audio: "Quiet room tone."

A shot uses it with `use: talking-head` and `with: {who: "{anna}", line: "Hello."}`; the shot's
other keys override the fragment's. Placeholders that are not declared parameters (such as a
character reference `{anna}`) are left for the compiler.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ovi_studio.errors import UserError, at
from ovi_studio.source import load_yaml, to_plain

PROJECT_TEMPLATES = Path(__file__).resolve().parent / "data" / "templates"  # shipped in the wheel
TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_-]*)\}")

ParamValue = str | int | float | bool


class ParamSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    description: str | None = None
    default: ParamValue | None = None
    example: ParamValue | None = None  # what `init --template` fills in for a required one


class TemplateFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    description: str | None = None
    params: dict[str, ParamSpec | None] = Field(default_factory=dict)
    shot: dict


@dataclass(frozen=True)
class Template:
    name: str
    path: Path
    description: str | None
    params: dict[str, ParamSpec]
    shot: dict

    @property
    def required(self) -> list[str]:
        return [name for name, spec in self.params.items() if spec.default is None]


def template_dirs(storyboard_dir: Path) -> list[Path]:
    return [storyboard_dir / "templates", PROJECT_TEMPLATES]


def find_template(name: str, storyboard_dir: Path) -> Path | None:
    if not TEMPLATE_NAME.match(name):
        return None
    for folder in template_dirs(storyboard_dir):
        for suffix in (".yaml", ".yml"):
            candidate = folder / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def available_templates(storyboard_dir: Path) -> list[str]:
    names = set()
    for folder in template_dirs(storyboard_dir):
        if folder.is_dir():
            names.update(p.stem for p in folder.iterdir() if p.suffix in (".yaml", ".yml"))
    return sorted(names)


def load_template(path: Path) -> Template:
    """Parse a template file; a malformed one is a UserError pointing into it."""
    document = load_yaml(path, what="template")
    try:
        parsed = TemplateFile.model_validate(to_plain(document.data))
    except ValidationError as exc:
        first = exc.errors()[0]
        line, col = document.path_position(tuple(first["loc"]))
        raise UserError(f"invalid template: {'.'.join(map(str, first['loc']))}: {first['msg']}",
                        location=at(path, line, col)) from None
    params = {name: spec or ParamSpec() for name, spec in parsed.params.items()}
    return Template(path.stem, path, parsed.description, params, parsed.shot)


def expand(template: Template, args: dict) -> tuple[dict, list[str], list[str]]:
    """The template's shot with `args` (plus defaults) substituted.
    Returns (shot fragment, missing required parameters, unknown arguments)."""
    values = {name: spec.default for name, spec in template.params.items() if spec.default is not None}
    values.update({k: v for k, v in args.items() if k in template.params})
    missing = [name for name in template.params if name not in values]
    unknown = [name for name in args if name not in template.params]
    return _substitute(template.shot, values), missing, unknown


def _substitute(node, values: dict):
    if isinstance(node, dict):
        return {key: _substitute(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [_substitute(item, values) for item in node]
    if isinstance(node, str):
        whole = _PLACEHOLDER.fullmatch(node)
        if whole and whole.group(1) in values:  # `seed: "{seed}"` keeps the number a number
            return values[whole.group(1)]
        return _PLACEHOLDER.sub(
            lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), node)
    return node

