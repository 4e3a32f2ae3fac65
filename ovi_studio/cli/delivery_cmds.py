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


@app.command()
@guarded
def pick(
    storyboard: Path = typer.Argument(..., help="the storyboard"),
    shot: str = typer.Argument(..., help="shot id"),
    take: int = typer.Argument(..., help="take number (0, 1, …) as report.html lists them"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="the render's output folder (default: as `render` chooses it)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="only errors and the summary"),
) -> None:
    """Choose the take of SHOT that goes in the cut: writes `pick: TAKE` on the shot in the
    storyboard and re-assembles the cut from the takes already rendered (the engine is never
    loaded; only the pieces of the cut that hold SHOT's frames are encoded again, and the log
    says which). Shots that extend SHOT start from the picked take, so they become stale; the
    plan and this command say so."""
    from ovi_studio.api import pick as pick_take
    from ovi_studio.cli.render_cmd import summarize
    from ovi_studio.render.progress import make_progress
    from ovi_studio.render.report import CUT_MADE
    progress = make_progress(quiet)
    outcome = pick_take(storyboard, shot, take, out, progress=progress)
    typer.echo(f"{storyboard}: shot {shot} now uses take {take}")
    for record in outcome.records:
        if record.status == "stale" and record.take == outcome.chosen.get(record.shot):
            typer.echo(f"stale: {record.shot}/take{record.take}: {record.reason}", err=True)
    summarize(outcome, outcome.out_dir, quiet)
    raise typer.Exit(1 if outcome.final.get("status") not in CUT_MADE else outcome.exit_code)
