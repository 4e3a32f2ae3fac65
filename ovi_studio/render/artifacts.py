"""The per-take artifact folder and its meta.json commit marker, written atomically.

Layout (docs/render.md): a take's folder, `<out>/.takes/<kk>/<key>/` in the take store
(ovi_studio/store.py) that `<out>/shots/<shot_id>/take<k>` links to, holds clip.mp4,
frames.mkv (lossless FFV1 RGB), audio.wav (float32 16 kHz as decoded), last_frame.png,
latents.safetensors (model engines only) and meta.json. Every file is written under a
temporary name and renamed into place, so a killed render never leaves a half file under a
final name (the temporary names live in the run's own folder, outdir.py). meta.json is
written last and records each artifact's size and SHA-256: a take is done exactly when its
meta.json exists, carries the planned cache key, and every recorded file still matches.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.fingerprint import stat_cache
from ovi_studio import files
from ovi_studio.store import link_text, stored_dir, take_dir
from ovi_studio.render.outdir import folder_for_write, held_folder_of

META = "meta.json"
ERROR = "error.txt"


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
    def plate(self) -> Path:
        """The caption-free picture of a preview take (what extensions of it start from)."""
        return self.dir / "plate.png"

    @property
    def latents(self) -> Path:
        return self.dir / "latents.safetensors"

    @property
    def meta(self) -> Path:
        return self.dir / META


def atomic_target(path: str | Path):
    """files.atomic_target for a take's or a report's file: inside a held output folder the
    temporary file lives in this run's own temporary folder and the target is checked to stay
    inside (outdir.py); when no render holds a folder it sits beside the target."""
    return files.atomic_target(path, _temp_for(Path(path)))


def _temp_for(path: Path) -> Path | None:
    folder = folder_for_write(path)
    if folder is None:
        return None
    if path.is_dir() and not path.is_symlink():
        folder.set_aside(path, "is a folder where ovi-studio writes a file")
    return folder.temp_path(path)


@contextlib.contextmanager
def work_folder(near: Path) -> Iterator[Path]:
    """A scratch folder for intermediate files of a job writing under `near`: in the held
    output folder's temporary folder, else the system's."""
    folder = held_folder_of(near)
    if folder is not None:
        with folder.workdir() as work:
            yield work
    else:
        with tempfile.TemporaryDirectory(prefix="ovi-studio-") as work:
            yield Path(work)


def write_text_atomic(path: str | Path, text: str) -> None:
    files.write_text_atomic(path, text, _temp_for(Path(path)))


def write_json_atomic(path: str | Path, obj) -> None:
    write_text_atomic(path, files.to_json_text(obj))


def read_json(path: str | Path) -> dict | None:
    """The JSON object in `path`, or None when there is none. A file that is there but is not
    a readable JSON object (garbled, truncated, a folder, a list) is broken state: inside a held
    output folder it is set aside with one message, so it is reported once."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except IsADirectoryError:
        return _broken(path, "is a folder, not a JSON file")
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or not UTF-8
        return _broken(path, f"is not readable JSON ({type(exc).__name__})")
    if not isinstance(data, dict):
        return _broken(path, f"holds a JSON {type(data).__name__}, not an object")
    return data


def read_meta(path: str | Path) -> dict | None:
    """A take's meta.json when it has the shape the session relies on, else None (set aside
    like any broken state file)."""
    meta = read_json(path)
    if meta is None:
        return None
    problem = _meta_problem(meta)
    return _broken(Path(path), problem) if problem else meta


def _meta_problem(meta: dict) -> str | None:
    if not isinstance(meta.get("cache_key"), str) or not isinstance(meta.get("shot"), str):
        return "has no cache_key or shot"
    if not all(isinstance(meta.get(k), int) for k in ("take", "seed")):
        return "has no whole-number take and seed"
    files = meta.get("files")
    if not isinstance(files, dict) or not all(
            isinstance(r, dict) and isinstance(r.get("path"), str) and "/" not in r["path"]
            and r["path"] not in ("", ".", "..") and isinstance(r.get("bytes"), int)
            and isinstance(r.get("sha256"), str) for r in files.values()):
        return "has a malformed `files` record"
    size = meta.get("size")
    if not isinstance(size, dict) or not all(isinstance(size.get(k), int) and size[k] > 0
                                             for k in ("width", "height", "frames")):
        return "has a malformed `size`"
    parent = meta.get("parent")
    if parent is not None and not (isinstance(parent, dict) and isinstance(parent.get("index"), int)):
        return "has a malformed `parent`"
    return None


def _broken(path: Path, why: str) -> None:
    folder = held_folder_of(path)
    if folder is not None:
        folder.set_aside(path, why)
    return None


def file_record(path: Path, root: Path) -> dict:
    """What meta.json records of a take's file at commit; hashing it also records the file's
    version in the stat cache, so later runs verify it with one stat."""
    return {"path": path.relative_to(root).as_posix(), "bytes": path.stat().st_size,
            "sha256": stat_cache().sha256(path)}


def begin_take(layout: TakeLayout) -> None:
    """Before rendering a take: withdraw its commit marker first (so no mix of old and new files
    can ever pass for done), then remove the old artifacts and a previous failure's error.txt.
    Only these names are touched: anything else in the folder is left as it is."""
    folder = held_folder_of(layout.dir)
    if folder is not None:
        folder.check_target(layout.meta)
    layout.dir.mkdir(parents=True, exist_ok=True)
    for old in (layout.meta, layout.clip, layout.frames, layout.audio, layout.last_frame,
                layout.plate, layout.latents, layout.dir / ERROR):
        if folder is not None:
            folder.remove_for_rewrite(old)
        else:
            old.unlink(missing_ok=True)


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


def link_take(out_dir: Path, shot_id: str, take: int, cache_key: str) -> None:
    """Point the shot's take at the stored take for `cache_key` (store.py), atomically: the
    new link is made beside the old one and renamed over it. A take folder standing where the
    link goes (an output folder written before the store, or a file system without links) is
    first moved into the store under its own key."""
    link = take_dir(out_dir, shot_id, take)
    folder = held_folder_of(link)
    if folder is not None:
        folder.check_target(link, is_link=True)
    if link.is_dir() and not link.is_symlink():
        _adopt(out_dir, link)
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}{files.TMP_MARK}{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(link_text(out_dir, shot_id, take, cache_key), tmp, target_is_directory=True)
    except OSError:
        # A file system without symbolic links: the take folder itself moves to the shot, and
        # back into the store (under its key) when another take replaces it, so an undo still
        # re-links instead of rendering.
        if link.is_symlink() or link.is_file():
            link.unlink()
        os.replace(stored_dir(out_dir, cache_key), link)
        return
    os.replace(tmp, link)


def _adopt(out_dir: Path, folder: Path) -> None:
    """Move an older output folder's take folder into the store under the key its meta.json
    names; one without a readable key is set aside like any broken state."""
    meta = read_json(folder / META) or {}
    key = meta.get("cache_key")
    home = stored_dir(out_dir, key) if isinstance(key, str) and key.isalnum() else None
    if home is not None and not home.exists():
        home.parent.mkdir(parents=True, exist_ok=True)
        os.replace(folder, home)
        return
    held = held_folder_of(folder)
    if held is None or held.set_aside(folder, "is a take folder the store replaces") is None:
        shutil.rmtree(folder)
