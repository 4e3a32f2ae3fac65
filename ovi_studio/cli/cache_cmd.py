"""`ovi-studio cache info|clear`: the on-disk cache (text embeddings, fp8 conversions)."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

import typer

from ovi_studio.cli.app import app, guarded

cache_app = typer.Typer(help="Inspect or empty the cache (text embeddings, fp8 conversions).",
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
