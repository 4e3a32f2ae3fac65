"""`ovi-studio cache info|clear|gc`: the on-disk cache (text embeddings, fp8 conversions) and
an output folder's take store."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

import typer

from ovi_studio.cli.app import app, guarded

cache_app = typer.Typer(help="Inspect or empty the cache (text embeddings, fp8 conversions), or "
                        "remove an output folder's unused takes.",
                        no_args_is_help=True)
app.add_typer(cache_app, name="cache")

CACHE_DIR_OPTION = typer.Option(None, "--cache-dir",
                                help="cache folder (default: $OVI_STUDIO_CACHE, else <repo>/cache)")
FILE_FOLDERS = ("fp8",)  # subfolders of plain files (the embeddings are a diskcache store)


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


@cache_app.command("info")
@guarded
def info(cache_dir: Optional[Path] = CACHE_DIR_OPTION) -> None:
    """Where the cache is and how much it holds."""
    from engine.embedding_cache import EmbeddingCache, cache_root

    root = cache_root(cache_dir)
    typer.echo(f"cache folder: {root}")
    with EmbeddingCache(root) as cache:
        stats = cache.info()
    typer.echo(f"text embeddings: {stats.entries} entries, {_human(stats.size_bytes)} "
               f"(limit {_human(stats.size_limit)}, least recently used evicted first)")
    for name in FILE_FOLDERS:
        folder = root / name
        count = sum(1 for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0
        typer.echo(f"{name}: {count} files, {_human(_size(folder))}")


@cache_app.command("clear")
@guarded
def clear(cache_dir: Optional[Path] = CACHE_DIR_OPTION) -> None:
    """Delete the cached text embeddings and fp8 conversions (they are recomputed when needed)."""
    from engine.embedding_cache import EmbeddingCache, cache_root

    root = cache_root(cache_dir)
    with EmbeddingCache(root) as cache:
        removed = cache.clear()
    typer.echo(f"removed {removed} text embeddings from {root}")
    for name in FILE_FOLDERS:
        folder = root / name
        if folder.is_dir():
            freed = _size(folder)
            shutil.rmtree(folder)
            typer.echo(f"removed {name}/ ({_human(freed)})")


@cache_app.command("gc")
@guarded
def gc(
    storyboard: Path = typer.Argument(..., help="the storyboard whose output folder to clean"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output folder (default: the storyboard's output.dir, else out/<name>)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="list what would be removed, remove nothing"),
) -> None:
    """Remove the stored takes no shot points at any more (the takes an undone edit would
    reuse). Refuses while a render holds the output folder."""
    from ovi_studio.api import collect_garbage
    found = collect_garbage(storyboard, out, dry_run)
    for take in found:
        typer.echo(f"{'would remove' if dry_run else 'removed'} {take.path} "
                   f"({take.shot or 'unknown shot'}, {_human(take.bytes)})")
    total = _human(sum(t.bytes for t in found))
    typer.echo(f"{len(found)} unreferenced take(s), {total}"
               + ("; nothing removed (--dry-run)" if dry_run else " freed"))
