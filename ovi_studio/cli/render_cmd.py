"""`ovi-studio render`: storyboard -> shots -> final cut (library: ovi_studio.render.session)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from ovi_studio.cli import options
from ovi_studio.cli.app import app, err, guarded
from ovi_studio.errors import UserError
from ovi_studio.render.quality import CHECKS, parse_fail_on

@app.command()
@guarded
def render(
    storyboard: Path = typer.Argument(..., help="storyboard .yaml (or an Ovi prompt .csv)"),
    shots: Optional[List[str]] = options.SHOTS,
    out: Optional[Path] = options.OUT,
    engine: Optional[str] = options.ENGINE,
    device: Optional[str] = typer.Option(None, "--device", help="cuda | cpu (default: cuda when present)"),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="model dtype, e.g. bfloat16 | float32"),
    ckpt_dir: Optional[Path] = options.CKPT_DIR,
    set_: List[str] = options.SET,
    force: bool = options.FORCE,
    only: Optional[List[str]] = options.ONLY,
    takes: Optional[int] = options.TAKES,
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan and exit (what `plan` prints)"),
    oom_retry: bool = typer.Option(False, "--oom-retry", help="on CUDA out of memory, retry once with more memory saving"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="only errors and the summary"),
    preset: Optional[str] = options.PRESET,
    fp8: bool = options.FP8,
    draft: bool = options.DRAFT,
    blocks_to_swap: Optional[str] = options.BLOCKS_TO_SWAP,
    attention: str = typer.Option("auto", "--attention", help="attention kernels: auto (flash-attn 3, else 2, else cuDNN, else SDPA; recorded per take) | flash3 | flash2 | cudnn | sdpa | sage (8-bit SageAttention: faster, not exact)"),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the fusion layers (the first shot pays a one-time compile)"),
    pick: str = options.PICK,
    junit: Optional[Path] = typer.Option(None, "--junit", help="write a JUnit XML file for CI: one test case per take and one for the cut"),
    json_: bool = typer.Option(False, "--json", help="print the run's summary as JSON on stdout (everything else goes to stderr)"),
    fail_on: Optional[str] = typer.Option(None, "--fail-on", help="quality checks that make the exit code 1, comma-separated (or all): " + ", ".join(CHECKS)),
    no_lint: bool = typer.Option(False, "--no-lint", help="render even when `check` finds errors (recorded in report.json)"),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="when another render holds the output folder: wait for it (default), or exit 2 naming it"),
    backend: str = typer.Option("local", "--backend", help="local (this process) | ray (one worker per GPU of a Ray cluster)"),
    address: Optional[str] = typer.Option(None, "--address", help="with --backend ray: the cluster (auto: the running one; none: start a local one)"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="with --backend ray: how many workers (default: one per GPU)"),
) -> None:
    """Render a storyboard: every stale shot through the engine, then the final cut."""
    from ovi_studio.api import render as render_storyboard
    from ovi_studio.cli.plan_table import print_plan
    from ovi_studio.render.progress import make_progress

    run_options = options.planned_options(
        storyboard, shots, out, engine, ckpt_dir, set_, force, only, takes, preset, fp8, draft,
        blocks_to_swap, device=device, dtype=dtype, oom_retry=oom_retry, attention=attention,
        compile=compile_, pick=pick, fail_on=parse_fail_on(fail_on), lint=not no_lint, wait=wait)
    progress = make_progress(quiet, sys.stderr if json_ else None)  # --json: stdout is the summary
    chosen_backend = make_backend(backend, address, workers)
    exit_code = 0

    def on_plan(plan) -> bool:
        nonlocal exit_code
        if dry_run:
            print_plan(plan, typer.echo)
            exit_code = 1 if plan.blocked else 0
            return False
        print_plan(plan, progress.log, rendering_only=True)
        return True
    outcome = render_storyboard(storyboard, run_options, progress=progress, backend=chosen_backend,
                                on_plan=on_plan)
    if outcome is None:  # a dry run
        raise typer.Exit(exit_code)
    summarize(outcome, outcome.out_dir, quiet, json_)
    hand_off(outcome, junit, json_)
    raise typer.Exit(outcome.exit_code)


def hand_off(outcome, junit: Path | None, as_json: bool) -> None:
    """For nightly CI: the JUnit file, the JSON summary on stdout, and one line at the end."""
    import json
    from ovi_studio.render.junit import write_junit
    from ovi_studio.render.report import run_summary, summary_line
    report = json.loads(outcome.report_path.read_text(encoding="utf-8")) if outcome.report_path else None
    if report is None:
        return
    if junit is not None:
        typer.echo(f"junit: {write_junit(junit, [report])}", err=as_json)
    summary = run_summary(report, outcome.report_path)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    typer.echo(summary_line(summary), err=as_json)


def make_backend(name: str, address: str | None, workers: int | None):
    """The scheduler's workers: None for this process, or a RayBackend."""
    if name == "local":
        if address or workers:
            raise UserError("--address and --workers go with --backend ray")
        return None
    if name != "ray":
        raise UserError(f"--backend must be local or ray, not {name!r}")
    from ovi_studio.render.ray_backend import RayBackend
    return RayBackend(address, workers)


def summarize(outcome, out_dir: Path, quiet: bool, to_stderr: bool = False) -> None:
    from ovi_studio.render.report import CUT_MADE
    final = outcome.final
    if final.get("status") in CUT_MADE:
        typer.echo(f"final cut: {out_dir / final['path']} ({final['duration_s']:.2f}s)", err=to_stderr)
    for record in outcome.records:
        if record.status == "failed":
            err.print(f"[red]failed:[/] {record.shot}/take{record.take}: {escape(str(record.reason))}",
                      highlight=False)
        elif record.status == "skipped" and not quiet:
            err.print(f"skipped: {record.shot}/take{record.take}: {record.reason}", markup=False,
                      highlight=False)
    for failure in outcome.quality_failures:
        err.print(f"[red]quality check failed (--fail-on):[/] {escape(failure)}", highlight=False)
    if outcome.failed_shots:
        err.print(f"[red]{len(outcome.failed_shots)} shot(s) failed:[/] {escape(', '.join(outcome.failed_shots))}",
                  highlight=False)
    if outcome.report_path and not quiet:
        typer.echo(f"report: {outcome.report_path}", err=to_stderr)
