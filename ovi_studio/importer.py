"""`ovi-studio import`: an Ovi CSV batch file becomes a storyboard, one shot per row.

Prompts are written as block literals (`|-`) so that the text in the storyboard is exactly the
text of the CSV and lint positions inside it are exact; a prompt a block literal cannot hold
(control characters, carriage returns, edge whitespace) is written double-quoted instead. Image paths, relative to the CSV's
folder in Ovi's layout, are rewritten relative to the new storyboard's folder.
"""
from __future__ import annotations

import io
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, LiteralScalarString

from engine.variants import DEFAULT_VARIANT, VARIANTS
from ovi_studio.csvprompts import CsvPrompt, read_prompt_csv
from ovi_studio.errors import UserError
from ovi_studio.source import new_yaml

LEGACY_CAPTION = "<AUDCAP>"
LINE_BREAKS_BEYOND_LF = "\r\x85\u2028\u2029\ufeff"  # YAML parsers disagree on these in blocks
LEGACY_MODEL = "720x720_5s"


@dataclass
class ImportResult:
    yaml_text: str
    model: str
    shots: int
    warnings: list[str]


def guess_model(prompts: list[CsvPrompt]) -> str:
    """Legacy <AUDCAP> captions were written for the 720x720_5s model; `Audio:` for 960."""
    if any(LEGACY_CAPTION in p.text for p in prompts):
        return LEGACY_MODEL
    return DEFAULT_VARIANT


def import_csv(csv_path: str | Path, out_path: str | Path, model: str | None = None) -> ImportResult:
    """Build the storyboard text for `csv_path` as it will live at `out_path` (not written)."""
    csv_path, out_path = Path(csv_path), Path(out_path)
    if model is not None and model not in VARIANTS:
        raise UserError(f"unknown model `{model}`", hint=f"choose one of {', '.join(VARIANTS)}")
    prompts = read_prompt_csv(csv_path)
    model = model or guess_model(prompts)
    warnings: list[str] = []
    shots = CommentedSeq()
    width = max(3, len(str(len(prompts))))
    for number, prompt in enumerate(prompts, start=1):
        shot = CommentedMap()
        shot["id"] = f"shot-{number:0{width}d}"
        shot["prompt"] = prompt_scalar(prompt.text)
        if prompt.image_path:
            image = _image_location(prompt.image_path, csv_path)
            if not image.is_file():
                warnings.append(f"{csv_path}:{prompt.line}: image `{prompt.image_path}` not found "
                                f"(looked for {image})")
            shot["first_frame"] = Path(os.path.relpath(image, out_path.absolute().parent)).as_posix()
        shots.append(shot)

    story = CommentedMap()
    story["version"] = 1
    story["title"] = csv_path.stem
    story["model"] = model
    story["shots"] = shots
    story.yaml_set_start_comment(f"Imported from {csv_path.name} by `ovi-studio import` "
                                 f"({len(prompts)} prompts).")
    buffer = io.StringIO()
    new_yaml().dump(story, buffer)
    return ImportResult(buffer.getvalue(), model, len(prompts), warnings)


def prompt_scalar(text: str) -> LiteralScalarString | DoubleQuotedScalarString:
    """A block literal when it reads back as exactly `text`, else a double-quoted string
    (which escapes control characters, carriage returns and edge whitespace)."""
    if any(ch in LINE_BREAKS_BEYOND_LF or (unicodedata.category(ch) == "Cc" and ch not in "\n\t")
           for ch in text):
        return DoubleQuotedScalarString(text)
    literal = LiteralScalarString(text)
    buffer = io.StringIO()
    yaml = new_yaml()
    try:
        yaml.dump({"p": literal}, buffer)
        if yaml.load(buffer.getvalue())["p"] == text:
            return literal
    except YAMLError:
        pass
    return DoubleQuotedScalarString(text)


def write_import(csv_path: str | Path, out_path: str | Path, model: str | None = None,
                 force: bool = False) -> ImportResult:
    out_path = Path(out_path)
    if out_path.exists() and not force:
        raise UserError(f"{out_path} already exists", hint="pass --force to overwrite it")
    result = import_csv(csv_path, out_path, model)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(result.yaml_text, encoding="utf-8")
    return result


def _image_location(image_path: str, csv_path: Path) -> Path:
    """Ovi's image paths are relative to the folder the CSV is run from: its own folder."""
    image = Path(image_path)
    return image if image.is_absolute() else csv_path.absolute().parent / image
