"""`ovi-studio fetch`: get the model files in one command."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from ovi_studio.cli.app import app, err, guarded


@app.command("fetch")
@guarded
def fetch_command(
    ckpt_dir: Optional[Path] = typer.Option(None, "--ckpt-dir", help="checkpoint folder "
                                            "(default: $OVI_CKPT_DIR, else ./ckpts)"),
    models: Optional[str] = typer.Option(None, "--models", help="comma-separated model variants "
                                         "(default: all of 720x720_5s,960x960_5s,960x960_10s)"),
    fp8: bool = typer.Option(False, "--fp8", help="the published fp8 file instead of the bf16 one "
                             "where a variant has one (720x720_5s)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="list the files and sizes; download nothing"),
    print_urls: bool = typer.Option(False, "--print-urls", help="print URL, destination, size and hash "
                                    "of every file (tab-separated) to download elsewhere"),
) -> None:
    """Download the model files (official layout) from the Hugging Face Hub: resumable, each file
    verified against the hub's size and hash before it is put in place. Honours HF_ENDPOINT,
    HF_TOKEN, HTTPS_PROXY and HF_HOME."""
    from ovi_studio.checkpoints import DEFAULT_CKPT_DIR, find_ckpt_dir
    from ovi_studio.fetch import DEFAULT_MODELS, file_url, format_size, plan_fetch, run_fetch

    folder = find_ckpt_dir(ckpt_dir) or DEFAULT_CKPT_DIR
    chosen = tuple(name.strip() for name in models.split(",") if name.strip()) if models else DEFAULT_MODELS
    plan = plan_fetch(folder, chosen, fp8)
    out = Console(highlight=False, soft_wrap=True)
    if print_urls:
        for item in plan.items:
            file = item.file
            typer.echo(f"{file_url(file, plan.endpoint)}\t{folder / file.dest}\t{file.size}\t"
                       f"{file.hash_kind}:{file.expected_hash}")
        return
    out.print(f"models {', '.join(chosen)}{' (fp8)' if fp8 else ''} from {plan.endpoint} into {folder}:",
              markup=False)
    for item in plan.items:
        state = ("present" if item.present else
                 f"resume at {format_size(item.partial_bytes)}" if item.partial_bytes else "download")
        out.print(f"  {item.file.dest:<60} {format_size(item.file.size):>10}  {state}", markup=False)
    todo = plan.to_download
    out.print(f"{len(plan.items)} files, {format_size(plan.total_size)}; to download: {len(todo)} files, "
              f"{format_size(plan.download_size)}", markup=False)
    if dry_run or not todo:
        if not todo:
            out.print("nothing to fetch: every file is present and verified", markup=False)
        return
    fetched = run_fetch(plan)
    err.print(f"fetched {len(fetched)} files into {folder}, each verified", markup=False)
