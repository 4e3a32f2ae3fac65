"""Commands that hand a render on: `export` (an editor's timeline) and `pick` (choose a take)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ovi_studio.cli.app import app, guarded
from ovi_studio.errors import UserError


def _render_dir(storyboard: Path, render_dir: Path | None) -> tuple[Path, str]:
    """The storyboard's output folder (as `render` chooses it) and the timeline's name."""
    from ovi_studio.plan import default_out_dir
    from ovi_studio.storyboard import load_storyboard
    if not storyboard.is_file():
        raise UserError(f"{storyboard} does not exist", hint="pass the storyboard you rendered")
    loaded = load_storyboard(storyboard)
    if loaded.model is None:
        raise UserError(f"{storyboard} has errors", hint="run `ovi-studio check` to see them")
    name = loaded.model.title or storyboard.stem
    return (render_dir or default_out_dir(loaded)), name


@app.command()
@guarded
def export(
    storyboard: Path = typer.Argument(..., help="the storyboard whose render to export"),
    fmt: str = typer.Option("otio", "--format", "-f", help="otio | otioz (media bundled) | fcpxml (Final Cut Pro X, Resolve) | xml (FCP7 XML, Premiere) | edl (CMX 3600)"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="file to write (default: beside the cut, named after it)"),
    render_dir: Optional[Path] = typer.Option(None, "--render-dir", help="the render's output folder if `render -o` moved it"),
) -> None:
    """Write the rendered cut as a timeline an editor opens: one clip per shot with in/out
    points, transitions, and markers for shot ids and dialogue lines."""
    from ovi_studio.export import export as write
    out_dir, name = _render_dir(storyboard, render_dir)
    typer.echo(f"wrote {write(out_dir, fmt, output, name)}")
