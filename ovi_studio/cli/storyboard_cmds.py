"""Commands around the storyboard file: `import`, `plan`, `schema`, `init`, `doctor`.

None of them imports torch except `doctor`, which does so inside the command.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape

from ovi_studio.cli import options
from ovi_studio.cli.app import app, err, guarded, out_console
from ovi_studio.errors import UserError



def _out() -> Console:
    return out_console()


@app.command("import")
@guarded
def import_command(
    csv_file: Path = typer.Argument(..., help="Ovi prompt CSV (text_prompt[, image_path])."),
    output: Path = typer.Option(..., "-o", "--output", help="storyboard file to write"),
    model: Optional[str] = typer.Option(None, "--model", help="model variant (default: from the caption style)"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing file"),
) -> None:
    """Turn an Ovi CSV batch file into a storyboard, one shot per row."""
    from ovi_studio.importer import write_import
    result = write_import(csv_file, output, model=model, force=force)
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/] {escape(str(warning))}")
    _out().print(f"wrote {output}: {result.shots} shots, model {result.model}", markup=False)


@app.command("plan")
@guarded
def plan_command(
    storyboard: Path = typer.Argument(..., help="storyboard .yaml (or an Ovi prompt .csv)"),
    shots: Optional[List[str]] = options.SHOTS,
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
    out: Optional[Path] = options.OUT,
    ckpt_dir: Optional[Path] = options.CKPT_DIR,
    engine: Optional[str] = options.ENGINE,
    set_: List[str] = options.SET,
    force: bool = options.FORCE,
    only: Optional[List[str]] = options.ONLY,
    takes: Optional[int] = options.TAKES,
    preset: Optional[str] = options.PRESET,
    fp8: bool = options.FP8,
    draft: bool = options.DRAFT,
    blocks_to_swap: Optional[str] = options.BLOCKS_TO_SWAP,
    pick: str = options.PICK,
) -> None:
    """Show what `render` with the same options will do: every take in order, its size and
    seed, whether it renders and why, and the GPU time. Exits 1 when a shot cannot render (e.g.
    an unreadable first frame) or `check` finds errors."""
    from ovi_studio.api import build_plan
    from ovi_studio.cli.plan_table import print_plan
    from ovi_studio.lint.gate import lint_summary
    run_options = options.planned_options(storyboard, shots, out, engine, ckpt_dir, set_, force,
                                          only, takes, preset, fp8, draft, blocks_to_swap, pick=pick)
    summary = lint_summary(storyboard, ckpt_dir)  # the findings and count `check` gives
    if (summary.warnings or summary.errors) and not as_json:  # --json: in the JSON's "lint"
        err.print(summary.warnings_text().rstrip(), markup=False, highlight=False)
        if summary.errors:
            err.print(f"{summary.errors} lint error(s): `render` refuses this storyboard until "
                      "they are fixed", markup=False, highlight=False)
    try:
        plan = build_plan(storyboard, run_options)
    except UserError:
        if summary.errors:  # already listed above, as `check` lists them
            raise typer.Exit(1) from None
        raise
    failed = 1 if plan.blocked or summary.errors else 0
    if as_json:
        typer.echo(json.dumps({**plan.to_json(), "lint": summary.to_json()}, indent=2, sort_keys=False))
    else:
        out_console_ = _out()
        print_plan(plan, lambda line: out_console_.print(line, markup=False))
    raise typer.Exit(failed)


@app.command("schema")
@guarded
def schema_command() -> None:
    """Print the storyboard JSON Schema (for editor completion)."""
    from ovi_studio.storyboard import storyboard_schema
    typer.echo(json.dumps(storyboard_schema(), indent=2))


@app.command("init")
@guarded
def init_command(
    folder: Path = typer.Argument(Path("."), help="folder to create the storyboard in"),
    template: Optional[str] = typer.Option(None, "--template", help="start from this shot template"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing story.yaml"),
) -> None:
    """Scaffold a storyboard folder: story.yaml, templates/, README.md."""
    from ovi_studio.scaffold import init_folder
    for path in init_folder(folder, template, force):
        _out().print(f"wrote {path}", markup=False)


@app.command("doctor")
@guarded
def doctor_command(
    ckpt_dir: Optional[Path] = typer.Option(None, "--ckpt-dir", help="checkpoint folder "
                                            "(default: $OVI_CKPT_DIR, else ./ckpts)"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
    deep: bool = typer.Option(False, "--deep", help="also open every checkpoint file: headers, "
                              "keys and tensor shapes (names a truncated or wrong file)"),
) -> None:
    """Check Python, torch, CUDA, flash-attn, ffmpeg, espeak-ng and the checkpoint files."""
    import dataclasses
    from ovi_studio.doctor import exit_code, run_doctor
    findings = run_doctor(ckpt_dir, deep)
    if as_json:
        typer.echo(json.dumps({"ok": exit_code(findings) == 0,
                               "findings": [dataclasses.asdict(f) for f in findings]}, indent=2))
        raise typer.Exit(exit_code(findings))
    marks = {"ok": "[green]✓[/]", "warn": "[yellow]![/]", "fail": "[red]✗[/]"}
    out = _out()
    for finding in findings:
        out.print(f"{marks[finding.status]} [bold]{escape(finding.name)}[/]: {escape(finding.detail)}")
        if finding.fix:
            out.print(f"    fix: {finding.fix}", markup=False)
    raise typer.Exit(exit_code(findings))


