"""Command-line strings into the library's typed options: `--set key=value` pairs read with the
storyboard's own YAML dialect (YAML 1.2), so `--set fp8=true` and `fp8: true` mean the same and
`--set aspect=16:9` is a string, and the engine flags that stand for settings."""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer

from ovi_studio.errors import UserError
from ovi_studio.storyboard import MAX_TAKES

# The options `plan` and `render` share (what the plan depends on), defined once.
SHOTS = typer.Argument(None, help="with --force: the shots to render again")
OUT = typer.Option(None, "--out", "-o", help="output folder (default: the storyboard's output.dir, else out/<name>)")
ENGINE = typer.Option(None, "--engine", help="ovi | preview | auto (ovi when the checkpoints are found); default: the storyboard's `engine:`, else auto")
CKPT_DIR = typer.Option(None, "--ckpt-dir", help="checkpoint folder (also OVI_CKPT_DIR, `ckpt_dir:`)")
SET = typer.Option([], "--set", help="key=value over every shot's settings (repeatable), e.g. steps=20; values read as in the storyboard (YAML 1.2)")
FORCE = typer.Option(False, "--force", help="render again even when up to date: every shot, or the SHOTS named after it")
ONLY = typer.Option(None, "--only", help="render only these shots (and what they extend, when stale); repeatable or comma-separated")
TAKES = typer.Option(None, "--takes", min=1, max=MAX_TAKES, help=f"takes per shot, 1 to {MAX_TAKES} (overrides `takes:`)")
PRESET = typer.Option(None, "--preset", help="GPU memory preset: 80gb | 24gb | 16gb | 12gb | 8gb (see `doctor`); blocks to swap, fp8 and tiled VAE follow from it")
FP8 = typer.Option(False, "--fp8", help="fp8 fusion weights for every shot (as --set fp8=true): the published fp8 file where there is one, else converted at load (cached)")
DRAFT = typer.Option(False, "--draft", help="draft tier for every shot (as --set draft=true): fewer steps, guidance-free with `draft_loras`, same seeds; keyed apart from finals")
PICK = typer.Option("best", "--pick", help="shots without `pick:` (what the cut holds and extensions start from): best (the best take by the quality checks) | first (take 0)")
BLOCKS_TO_SWAP = typer.Option(None, "--blocks-to-swap", help="fusion layers streamed from CPU memory, N or auto (as --set blocks_to_swap=…); outputs are bit-identical")


def planned_options(storyboard: Path, shots: Optional[List[str]], out: Optional[Path],
                    engine: Optional[str], ckpt_dir: Optional[Path], set_: List[str], force: bool,
                    only: Optional[List[str]], takes: Optional[int], preset: Optional[str],
                    fp8: bool, draft: bool, blocks_to_swap: Optional[str], **rest):
    """The library's RenderOptions from the shared flags (and `rest`, render's own)."""
    from ovi_studio.render.inputs import RenderOptions
    if shots and not force:
        raise UserError(f"unexpected argument(s) {' '.join(shots)}",
                        hint="shot names after the storyboard go with --force (e.g. --force a b); use --only to select")
    return RenderOptions(
        source=storyboard, out_dir=out, engine=engine, ckpt_dir=ckpt_dir,
        overrides=engine_flags(fp8, blocks_to_swap, draft) | parse_overrides(set_),
        force=shot_names(shots) if force else None, only=shot_names(only) or None,
        takes=takes, preset=preset, **rest)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """{key: value} from `key=value` strings, each value as a storyboard would read it."""
    from ovi_studio.source import parse_scalar
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects key=value, got {pair!r}", hint="e.g. --set steps=20")
        out[key.strip()] = parse_scalar(value.strip())
    return out


def engine_flags(fp8: bool, blocks_to_swap: str | None, draft: bool) -> dict[str, Any]:
    """--fp8, --blocks-to-swap and --draft as the shot settings they stand for (an explicit
    --set wins)."""
    flags: dict[str, Any] = {"fp8": True} if fp8 else {}
    if draft:
        flags["draft"] = True
    if blocks_to_swap is not None:
        flags |= parse_overrides([f"blocks_to_swap={blocks_to_swap}"])
    return flags


def shot_names(values: list[str] | None) -> list[str]:
    """Shot names from repeated and/or comma-separated values."""
    return [n.strip() for v in values or [] for n in v.split(",") if n.strip()]
