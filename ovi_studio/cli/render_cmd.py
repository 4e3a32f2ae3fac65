"""`ovi-studio render`: storyboard -> shots -> final cut (library: ovi_studio.render.session)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from ovi_studio.cli.app import app, err, guarded
from ovi_studio.errors import UserError
from ovi_studio.render.picking import POLICIES
from ovi_studio.render.quality import CHECKS, parse_fail_on
from ovi_studio.storyboard import MAX_TAKES

def _names(values: list[str] | None) -> list[str]:
    """Shot names from repeated and/or comma-separated values."""
    return [n.strip() for v in values or [] for n in v.split(",") if n.strip()]


def _engine_flags(fp8: bool, blocks_to_swap: str | None, draft: bool) -> dict[str, str]:
    """--fp8, --blocks-to-swap and --draft as the shot settings they stand for (an explicit
    --set wins)."""
    flags = {"fp8": "true"} if fp8 else {}
    if draft:
        flags["draft"] = "true"
    if blocks_to_swap is not None:
        flags["blocks_to_swap"] = blocks_to_swap
    return flags


@app.command()
@guarded
def render(
    storyboard: Path = typer.Argument(..., help="storyboard .yaml (or an Ovi prompt .csv)"),
    shots: Optional[List[str]] = typer.Argument(None, help="with --force: the shots to render again"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output folder (default: the storyboard's output.dir, else out/<name>)"),
    engine: Optional[str] = typer.Option(None, "--engine", help="ovi | preview | auto (ovi when the checkpoints are found); default: the storyboard's `engine:`, else auto"),
    device: Optional[str] = typer.Option(None, "--device", help="cuda | cpu (default: cuda when present)"),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="model dtype, e.g. bfloat16 | float32"),
    ckpt_dir: Optional[Path] = typer.Option(None, "--ckpt-dir", help="checkpoint folder (also OVI_CKPT_DIR, `ckpt_dir:`)"),
    set_: List[str] = typer.Option([], "--set", help="key=value over every shot's settings (repeatable), e.g. steps=20"),
    force: bool = typer.Option(False, "--force", help="render again even when up to date: every shot, or the SHOTS named after it"),
    only: Optional[List[str]] = typer.Option(None, "--only", help="render only these shots (and stale ancestors); repeatable or comma-separated"),
    takes: Optional[int] = typer.Option(None, "--takes", min=1, max=MAX_TAKES,
                                        help=f"takes per shot, 1 to {MAX_TAKES} (overrides `takes:`)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan and exit"),
    oom_retry: bool = typer.Option(False, "--oom-retry", help="on CUDA out of memory, retry once with more memory saving"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="only errors and the summary"),
    preset: Optional[str] = typer.Option(None, "--preset", help="GPU memory preset: 80gb | 24gb | 16gb | 12gb | 8gb (see `doctor`); blocks to swap, fp8 and tiled VAE follow from it"),
    fp8: bool = typer.Option(False, "--fp8", help="fp8 fusion weights for every shot (as --set fp8=true): the published fp8 file where there is one, else converted at load (cached)"),
    draft: bool = typer.Option(False, "--draft", help="draft tier for every shot (as --set draft=true): fewer steps, guidance-free with `draft_loras`, same seeds; keyed apart from finals"),
    blocks_to_swap: Optional[str] = typer.Option(None, "--blocks-to-swap", help="fusion layers streamed from CPU memory, N or auto (as --set blocks_to_swap=…); outputs are bit-identical"),
    attention: str = typer.Option("auto", "--attention", help="attention kernels: auto (flash-attn 3, else 2, else cuDNN, else SDPA; recorded per take) | flash3 | flash2 | cudnn | sdpa | sage (8-bit SageAttention: faster, not exact)"),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the fusion layers (the first shot pays a one-time compile)"),
    pick: str = typer.Option("best", "--pick", help="shots without `pick:`: best (the best take by the quality checks) | first (take 0)"),
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
    from ovi_studio.render.progress import make_progress
    from ovi_studio.render.inputs import RenderOptions, parse_overrides
    from ovi_studio.render.session import RenderSession

    if pick not in POLICIES:
        raise UserError(f"--pick {pick}: expected {' or '.join(POLICIES)}")
    if shots and not force:
        raise UserError(f"unexpected argument(s) {' '.join(shots)}",
                        hint="shot names after the storyboard go with --force (e.g. --force a b); use --only to select")
    options = RenderOptions(
        source=storyboard, out_dir=out, engine=engine, device=device, dtype=dtype,
        ckpt_dir=ckpt_dir, overrides=_engine_flags(fp8, blocks_to_swap, draft) | parse_overrides(set_),
        force=_names(shots) if force else None, only=_names(only) or None,
        takes=takes, dry_run=dry_run, oom_retry=oom_retry, quiet=quiet, preset=preset,
        attention=attention, compile=compile_, pick=pick, fail_on=parse_fail_on(fail_on),
        lint=not no_lint, wait=wait)
    progress = make_progress(quiet, sys.stderr if json_ else None)  # --json: stdout is the summary
    session = RenderSession(options, progress)
    plan = session.prepare()
    if dry_run:
        print_plan(session, plan)
        raise typer.Exit(1 if plan.blocked else 0)
    with progress:
        outcome = session.run(make_backend(backend, address, workers))
    summarize(outcome, session.out_dir, quiet, json_)
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


def print_plan(session, plan) -> None:
    wanted = session.wanted_steps()
    steps = plan.steps
    will = {id(s) for s in session.takes_to_render()}
    typer.echo(f"plan for {session.loaded.path} -> {session.out_dir} (engine: {session.engine_name})")
    for step in steps:
        if step.status == "blocked":
            typer.echo(f"  {step.shot.id}/take{step.take}: cannot render: {step.reasons[0]}")
            continue
        action = "render" if id(step) in will else ("skip (not selected)" if id(step) not in wanted else "up to date")
        why = f" — {', '.join(step.reasons)}" if step.reasons and id(step) in will else ""
        parent = f" from {step.parent}" if step.parent else ""
        typer.echo(f"  {step.shot.id}/take{step.take}: {step.mode}{parent} {step.width}x{step.height} "
                   f"{step.frames}f seed {step.seed} ~{step.estimate_seconds:.0f}s: {action}{why}")
    total = sum(s.estimate_seconds for s in steps if id(s) in will)
    typer.echo(f"{len(will)} take(s) to render, estimated {total:.0f}s of GPU time")


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
    final = outcome.final
    if final.get("status") in ("done", "cached"):
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
