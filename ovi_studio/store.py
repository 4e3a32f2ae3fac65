"""The take store: every take lives once, by its cache key, and a shot's take points at one.

    <out>/.takes/<key[:2]>/<key>/     the take's files and meta.json (its commit marker)
    <out>/shots/<id>/take<k>          a relative symlink to the take that shot uses now

A take is written into its store folder with meta.json last, so a folder without a matching
meta.json is never taken for a complete take. Editing a shot renders a take under a new key
and moves the link; undoing the edit finds the old key's take still stored and moves the link
back, rendering nothing. Takes no link points at any more stay until `cache gc` removes them.
An output folder written before the store (a take folder in place of the link) still reads as
it is; rendering over it moves that folder into the store under its own key. On a file system
without symbolic links the take in use is a folder in the shot's place, moved back into the
store when another take replaces it (render/artifacts.py link_take).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ovi_studio.output_names import SHOTS
from ovi_studio.output_names import TAKES as STORE


def take_dir(out_dir: str | Path, shot_id: str, take: int) -> Path:
    """Where a shot's take is read: the link into the store (or an older output folder's own
    take folder)."""
    return Path(out_dir) / SHOTS / shot_id / f"take{take}"


def stored_dir(out_dir: str | Path, cache_key: str) -> Path:
    return Path(out_dir) / STORE / cache_key[:2] / cache_key


def link_text(out_dir: str | Path, shot_id: str, take: int, cache_key: str) -> str:
    """The link's target, relative to the link, so the output folder can be moved whole."""
    link = take_dir(out_dir, shot_id, take)
    return os.path.relpath(stored_dir(out_dir, cache_key), link.parent)


def stored_takes(out_dir: str | Path) -> list[Path]:
    root = Path(out_dir) / STORE
    if not root.is_dir():
        return []
    return sorted(take for prefix in root.iterdir() if prefix.is_dir() and not prefix.is_symlink()
                  for take in prefix.iterdir() if take.is_dir() and not take.is_symlink())


def linked_takes(out_dir: str | Path) -> set[Path]:
    """The store folders some shot's take points at now."""
    shots = Path(out_dir) / SHOTS
    if not shots.is_dir():
        return set()
    return {Path(os.path.realpath(link)) for shot in shots.iterdir() if shot.is_dir()
            for link in shot.glob("take*") if link.is_symlink()}


@dataclass(frozen=True)
class StoredTake:
    """A take of the store that no shot points at: what `cache gc` removes."""
    path: Path
    bytes: int
    shot: str | None  # the shot it was rendered for, from its meta.json

    def to_json(self) -> dict:
        return {"path": str(self.path), "bytes": self.bytes, "shot": self.shot}


def unreferenced(out_dir: str | Path) -> list[StoredTake]:
    linked = linked_takes(out_dir)
    found = []
    for folder in stored_takes(out_dir):
        if Path(os.path.realpath(folder)) in linked:
            continue
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())
        try:
            shot = json.loads((folder / "meta.json").read_text(encoding="utf-8")).get("shot")
        except (OSError, ValueError, AttributeError):
            shot = None
        found.append(StoredTake(folder, size, shot if isinstance(shot, str) else None))
    return found
