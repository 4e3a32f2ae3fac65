"""The per-take artifact folder, atomic writes, and the meta.json commit marker.

Layout (docs/render.md): `<out>/shots/<shot_id>/take<k>/` holds clip.mp4, frames.mkv (lossless
FFV1 RGB), audio.wav (float32 16 kHz as decoded), last_frame.png, latents.safetensors (model
engines only) and meta.json. Every file is written under a temporary name in the same folder and
renamed into place, so a killed render never leaves a half file under a final name. meta.json is
written last and records each artifact's size and SHA-256: a take is done exactly when its
meta.json exists, carries the planned cache key, and every recorded file still matches.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

META = "meta.json"
ERROR = "error.txt"
TMP_MARK = ".tmp-"
WORK_PREFIX = ".work"  # scratch folders (tempfile) inside a take folder


@dataclass(frozen=True)
class TakeLayout:
    dir: Path

    @property
    def clip(self) -> Path:
        return self.dir / "clip.mp4"

    @property
    def frames(self) -> Path:
        return self.dir / "frames.mkv"

    @property
    def audio(self) -> Path:
        return self.dir / "audio.wav"

    @property
    def last_frame(self) -> Path:
        return self.dir / "last_frame.png"

    @property
    def latents(self) -> Path:
        return self.dir / "latents.safetensors"

    @property
    def meta(self) -> Path:
        return self.dir / META


def take_dir(out_dir: str | Path, shot_id: str, take: int) -> Path:
    return Path(out_dir) / "shots" / shot_id / f"take{take}"


@contextlib.contextmanager
def atomic_target(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix, so tools infer the format); rename it
    onto `path` only when the block finishes without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}{TMP_MARK}{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_target(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def write_json_atomic(path: str | Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_record(path: Path, root: Path) -> dict:
    return {"path": path.relative_to(root).as_posix(), "bytes": path.stat().st_size,
            "sha256": sha256_file(path)}


def committed_meta(layout: TakeLayout, cache_key: str) -> dict | None:
    """The take's meta.json when the take is complete for `cache_key`, else None."""
    meta = read_json(layout.meta)
    if not meta or meta.get("cache_key") != cache_key:
        return None
    for record in meta.get("files", {}).values():
        path = layout.dir / record["path"]
        if not path.is_file() or path.stat().st_size != record["bytes"]:
            return None
    return meta


def begin_take(layout: TakeLayout) -> None:
    """Before rendering a take: withdraw its commit marker first (so no mix of old and new files
    can ever pass for done), then remove the old artifacts, a previous failure's error.txt and
    temporary files a killed run left behind."""
    layout.dir.mkdir(parents=True, exist_ok=True)
    layout.meta.unlink(missing_ok=True)
    for old in (layout.clip, layout.frames, layout.audio, layout.last_frame, layout.latents,
                layout.dir / ERROR):
        old.unlink(missing_ok=True)
    sweep_leftovers(layout.dir)


def sweep_leftovers(folder: Path) -> None:
    """Remove temporary files and scratch folders a killed run left in `folder`."""
    for leftover in folder.glob(f".*{TMP_MARK}*"):
        if leftover.is_file():
            leftover.unlink(missing_ok=True)
    for workdir in folder.glob(f"{WORK_PREFIX}*"):
        shutil.rmtree(workdir, ignore_errors=True)


def write_latents(path: Path, latents: dict) -> None:
    """Save {"video": [C,F,h,w], "audio": [L,C]} (torch tensors or numpy arrays) atomically."""
    with atomic_target(path) as tmp:
        first = next(iter(latents.values()))
        if hasattr(first, "detach"):
            from safetensors.torch import save_file
            save_file({k: v.detach().contiguous().cpu() for k, v in latents.items()}, str(tmp))
        else:
            from safetensors.numpy import save_file
            save_file({k: v for k, v in latents.items()}, str(tmp))
