"""Ovi's CSV batch file: a `text_prompt` column and an optional `image_path` column.

This is the format Ovi's own `inference.py` reads; `import` turns it into a storyboard and
`check` can lint it directly, so both need each row with the line it starts on.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from ovi_studio.textfile import read_user_text
from ovi_studio.errors import UserError, at

TEXT_COLUMN = "text_prompt"
IMAGE_COLUMN = "image_path"
MAX_CSV_BYTES = 50 << 20


@dataclass(frozen=True)
class CsvPrompt:
    line: int  # 1-based line of the file on which the row starts
    text: str
    image_path: str | None  # as written in the file (relative to Ovi's working folder)


def read_prompt_csv(path: str | Path) -> list[CsvPrompt]:
    """Every non-blank row of an Ovi prompt CSV, in file order; a UserError when there is none
    or a row has no prompt text (`check`, `import` and `render` all read the file here)."""
    path = Path(path)
    text = read_user_text(path, what="CSV prompt file", max_bytes=MAX_CSV_BYTES,
                          encoding_hint="save the CSV as UTF-8 (most spreadsheet apps offer 'CSV UTF-8')")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise UserError(f"not a readable CSV file: {exc}", location=at(path, 1)) from None
    if header is None:
        raise UserError("the CSV file is empty", location=at(path),
                        hint=f"Ovi prompt files start with a `{TEXT_COLUMN}` header row")
    columns = [name.strip() for name in header]
    if TEXT_COLUMN not in columns:
        raise UserError(f"no `{TEXT_COLUMN}` column (found: {', '.join(columns) or 'nothing'})",
                        location=at(path, 1, 1),
                        hint=f"the first row must name the columns, e.g. `{TEXT_COLUMN},{IMAGE_COLUMN}`")
    text_at = columns.index(TEXT_COLUMN)
    image_at = columns.index(IMAGE_COLUMN) if IMAGE_COLUMN in columns else None

    prompts = []
    next_line = reader.line_num + 1
    while True:
        start = next_line
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise UserError(f"malformed CSV row: {exc}", location=at(path, start)) from None
        next_line = reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue
        prompt = row[text_at] if text_at < len(row) else ""
        if not prompt.strip():
            raise UserError(f"empty `{TEXT_COLUMN}`", location=at(path, start))
        image = row[image_at].strip() if image_at is not None and image_at < len(row) else ""
        prompts.append(CsvPrompt(line=start, text=prompt, image_path=image or None))
    if not prompts:
        raise UserError("the CSV file has no prompt rows", location=at(path),
                        hint=f"add one row per prompt under the `{TEXT_COLUMN}` header")
    return prompts
