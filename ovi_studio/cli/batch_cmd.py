"""`ovi-studio batch`: render many storyboards as one job and print one summary table."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from ovi_studio.cli import options
from ovi_studio.cli.app import app, guarded
from ovi_studio.cli.render_cmd import make_backend


@app.command("batch")
@guarded
def batch_command(
    paths: List[Path] = typer.Argument(..., help="storyboards, or folders of them"),
    engine: Optional[str] = typer.Option(None, "--engine", help="ovi | preview | auto (per storyboard by default)"),
    ckpt_dir: Optional[Path] = typer.Option(None, "--ckpt-dir", help="checkpoint folder (also OVI_CKPT_DIR, `ckpt_dir:`)"),
    device: Optional[str] = typer.Option(None, "--device", help="cuda | cpu (default: cuda when present)"),
    set_: List[str] = typer.Option([], "--set", help="key=value over every shot of every storyboard (repeatable)"),
    backend: str = typer.Option("local", "--backend", help="local (this process) | ray (one worker per GPU of a Ray cluster)"),
    address: Optional[str] = typer.Option(None, "--address", help="with --backend ray: the cluster (auto: the running one; none: start a local one)"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="with --backend ray: how many workers (default: one per GPU)"),
    pick: str = options.PICK,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="only errors and the summary"),
    no_lint: bool = typer.Option(False, "--no-lint", help="render storyboards even when `check` finds errors"),
    junit: Optional[Path] = typer.Option(None, "--junit", help="write a JUnit XML file for CI: one test suite per storyboard, one test case per take and one per cut"),
    json_: bool = typer.Option(False, "--json", help="print every storyboard's summary as JSON on stdout (the table and progress go to stderr)"),
) -> None:
    """Render every storyboard (each into its own output folder, as `render` would) as one job;
    exit status 1 when any shot failed. A storyboard with lint errors is not rendered (the
    others are), as `render` refuses it."""
    import sys

    from ovi_studio.api import RenderOptions, batch
    from ovi_studio.render.progress import make_progress

    overrides = options.parse_overrides(set_)
    progress = make_progress(quiet, sys.stderr if json_ else None)  # --json: stdout is the summary
    with progress:
        rows = batch(paths, RenderOptions(engine=engine, device=device, ckpt_dir=ckpt_dir,
                                          overrides=overrides, lint=not no_lint, pick=pick),
                     progress=progress, backend=make_backend(backend, address, workers))
    table = Table(title="batch")
    for column in ("storyboard", "rendered", "fresh", "failed", "GPU s", "cut"):
        table.add_column(column, justify="right" if column in ("rendered", "fresh", "failed", "GPU s") else "left")
    for row in rows:
        table.add_row(str(row.storyboard), str(row.count("rendered")), str(row.count("cached")),
                      str(row.count("failed", "skipped")) if row.error is None else "not planned",
                      f"{row.gpu_seconds:.1f}", str(row.cut or row.error or "-"))
    Console(width=200, highlight=False, stderr=json_).print(table)
    hand_off(rows, junit, json_)
    raise typer.Exit(0 if all(row.ok for row in rows) else 1)


def hand_off(rows, junit: Path | None, as_json: bool) -> None:
    """For nightly CI: the JUnit file (a suite per storyboard), every storyboard's summary as
    JSON on stdout, and one line at the end with the totals."""
    import json
    from ovi_studio.render.junit import write_junit
    from ovi_studio.render.report import batch_line, run_summary
    entries = []  # in the table's order: a storyboard's summary, or why it was not planned
    reports = []
    for row in rows:
        if row.outcome is not None and row.outcome.report_path is not None:
            reports.append(json.loads(row.outcome.report_path.read_text(encoding="utf-8")))
            entries.append(run_summary(reports[-1], row.outcome.report_path))
        elif row.error is not None:
            entries.append({"storyboard": str(row.storyboard), "status": "not planned", "error": row.error})
    if junit is not None:
        typer.echo(f"junit: {write_junit(junit, reports)}", err=as_json)
    if as_json:
        typer.echo(json.dumps({"storyboards": entries}, indent=2))
    typer.echo(batch_line(entries), err=as_json)
