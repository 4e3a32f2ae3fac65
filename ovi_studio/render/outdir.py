"""The output folder as a render holds it: one render at a time, temporary files of its own,
writes that stay inside, broken state set aside.

    <out>/.ovi-studio/lock               flock()ed by the render holding the folder; it records
                                         the holder (pid, host, token, storyboard, start time)
    <out>/.ovi-studio/tmp/<token>/       this run's temporary files (atomic writes, work folders)
    <out>/.ovi-studio/set-aside/         state files that could not be read, kept for a look
    <out>/.ovi-studio/cut-pieces/        the cut's encoded pieces, reused by the next assembly

The lock is an advisory `flock` on an open file: the kernel drops it when its process dies,
however it dies, so a lock file left by a killed run never blocks the next one. Whoever holds
the lock owns every temporary folder: the others belong to runs that are gone (the lock file
names the last of them) and are removed. Nothing outside `.ovi-studio/` is ever swept: the
user's own dot-files and `*.tmp` files in the output folder are not the tool's to delete.

Every write under a held folder goes through `OutputFolder.check_target` (artifacts.py calls
it for each atomic write): the path must lie inside the folder and no folder on the way may be
a symlink leading out of it. A symlink in place of a file is replaced by the file (the write
renames over the link, never through it) and the log says so.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ovi_studio.errors import UserError, at
from ovi_studio.output_names import STATE
from ovi_studio.textfile import not_a_regular_file

LOCK = "lock"
TMP = "tmp"
SET_ASIDE = "set-aside"
WAIT_NOTICE_SECONDS = 30.0  # how often a waiting render repeats who it waits for

Log = Callable[[str], None]


class UnsafeWrite(UserError):
    """A write that would land outside the output folder."""


@dataclass
class OutputFolder:
    """A held output folder. Made by `hold`; released when the `with` block ends."""
    root: Path  # absolute, as given (symlinks in it are the user's business)
    token: str
    log: Log
    _lock_file: object = field(default=None, repr=False)
    _serial: int = 0

    @property
    def state(self) -> Path:
        return self.root / STATE

    @property
    def scratch(self) -> Path:
        """This run's temporary folder."""
        return self.state / TMP / self.token

    def temp_path(self, target: Path) -> Path:
        """A fresh temporary path for an atomic write of `target` (same suffix, so tools infer
        the format); on the output folder's file system, so the final rename is atomic."""
        self._serial += 1
        return self.scratch / f"{self._serial:06d}-{target.name}"

    @contextlib.contextmanager
    def workdir(self) -> Iterator[Path]:
        """A scratch folder for one job (an assembly's intermediate files), removed after."""
        with tempfile.TemporaryDirectory(dir=self.scratch, prefix="work-") as work:
            yield Path(work)

    def contains(self, path: Path) -> bool:
        return _inside(_absolute(path), self.root)

    def check_target(self, path: Path, is_link: bool = False) -> None:
        """Refuse a write to `path` unless it lands inside the output folder: lexically inside,
        and no existing folder on the way a symlink out of it. A symlink at `path` itself is
        announced (the write replaces the link), unless `is_link`: the write is a link."""
        target = _absolute(path)
        if not _inside(target, self.root):
            raise UnsafeWrite(f"refusing to write {target}: it is outside the output folder "
                              f"{self.root}")
        real_root = self.root.resolve()
        folder = self.root
        for part in target.relative_to(self.root).parts[:-1]:
            folder = folder / part
            if folder.is_symlink() and not _inside(folder.resolve(), real_root):
                raise UnsafeWrite(f"refusing to write through the symlink {folder} -> "
                                  f"{os.readlink(folder)}: it leads out of the output folder",
                                  location=at(folder), hint="remove the link (or point --out at "
                                  "the folder it leads to)")
        if target.is_symlink() and not is_link:
            self.log(f"{target} was a symlink (-> {os.readlink(target)}); replacing the link "
                     "with the file, never writing through it")

    def set_aside(self, path: Path, why: str) -> Path | None:
        """Move a broken state file (or a folder where a file belongs) out of the way, say so
        once, and let the render go on without it. None when it could not be moved."""
        aside = self.state / SET_ASIDE
        name = "__".join(_absolute(path).relative_to(self.root).parts)
        destination = aside / f"{time.strftime('%Y%m%d-%H%M%S')}-{self.token}-{name}"
        try:
            aside.mkdir(parents=True, exist_ok=True)
            os.replace(path, destination)
        except OSError as exc:
            self.log(f"{path}: {why}; it could not be moved aside ({exc.strerror}): ignoring it")
            return None
        self.log(f"{path}: {why}; moved to {destination} and going on without it")
        return destination

    def remove_for_rewrite(self, path: Path) -> None:
        """Make room for a file the render is about to write: unlink the old one, or set aside
        a folder standing where the file belongs."""
        if path.is_dir() and not path.is_symlink():
            self.set_aside(path, "is a folder where ovi-studio keeps a file")
        else:
            path.unlink(missing_ok=True)


# -- holding a folder -------------------------------------------------------------------------

_HELD: list[OutputFolder] = []  # folders this process holds, innermost last


def held_folder_of(path: Path) -> OutputFolder | None:
    """The held output folder `path` lies in, if any."""
    target = _absolute(path)
    return next((f for f in reversed(_HELD) if _inside(target, f.root)), None)


def folder_for_write(path: Path) -> OutputFolder | None:
    """The held output folder a write to `path` goes through (its target checked), None when
    no render holds a folder; while one does, a write anywhere else is refused."""
    folder = held_folder_of(path)
    if folder is None and _HELD:
        raise UnsafeWrite(f"refusing to write {_absolute(path)}: it is outside the output folder "
                          f"{_HELD[-1].root}")
    if folder is not None:
        folder.check_target(path)
    return folder


@contextlib.contextmanager
def hold(root: Path, *, storyboard: Path | str, wait: bool = True,
         log: Log = lambda message: None) -> Iterator[OutputFolder]:
    """Hold the output folder for one render: wait for (or, with wait=False, refuse) another
    render holding it, then sweep the temporary folders of dead runs."""
    root = _absolute(root)
    prepare_folder(root)
    state = root / STATE
    try:
        (state / TMP).mkdir(parents=True, exist_ok=True)
        lock_file = open(state / LOCK, "a+", encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write in the output folder: {exc.strerror}", location=at(root),
                        hint="choose another --out") from None
    try:
        _lock(lock_file, root, wait, log)
        previous = _holder(lock_file)
        folder = OutputFolder(root, f"{os.getpid()}-{secrets.token_hex(4)}", log, lock_file)
        _record_holder(lock_file, folder, storyboard)
        _sweep_dead_runs(state / TMP, previous, log)
        folder.scratch.mkdir(parents=True)
        _HELD.append(folder)
        try:
            yield folder
        finally:
            _HELD.remove(folder)
            shutil.rmtree(folder.scratch, ignore_errors=True)
    finally:
        lock_file.close()  # releases the flock


def prepare_folder(root: Path) -> None:
    """Create the output folder; a clear error for one that cannot be (a file, a device,
    read-only, under a file)."""
    kind = not_a_regular_file(root)
    if kind not in ("missing", "a folder"):
        what = "a file" if kind is None else kind
        raise UserError(f"the output folder is {what}, not a folder", location=at(root),
                        hint="choose another --out (or output.dir)")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the output folder: {exc.strerror}", location=at(root),
                        hint="choose another --out (or output.dir)") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise UserError("the output folder is not writable", location=at(root),
                        hint="choose another --out, or make it writable")


def _lock(lock_file, root: Path, wait: bool, log: Log) -> None:
    while True:
        try:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise UserError(f"cannot lock the output folder: {exc.strerror}",
                                location=at(root)) from None
        holder = _describe(_holder(lock_file))
        if not wait:
            raise UserError(f"the output folder is in use by {holder}", location=at(root),
                            hint="wait for it to finish, or render into another --out")
        log(f"the output folder {root} is in use by {holder}; waiting for it to finish")
        deadline = time.monotonic() + WAIT_NOTICE_SECONDS
        while time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError:
                continue


def _holder(lock_file) -> dict:
    lock_file.seek(0)
    try:
        data = json.loads(lock_file.read() or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _describe(holder: dict) -> str:
    if not holder:
        return "another render"
    return (f"render pid {holder.get('pid')} on {holder.get('host')} "
            f"(storyboard {holder.get('storyboard')}, started {holder.get('started')})")


def _record_holder(lock_file, folder: OutputFolder, storyboard) -> None:
    lock_file.seek(0)
    lock_file.truncate()
    lock_file.write(json.dumps({
        "pid": os.getpid(), "host": socket.gethostname(), "token": folder.token,
        "storyboard": str(storyboard), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }) + "\n")
    lock_file.flush()


def _sweep_dead_runs(tmp: Path, previous: dict, log: Log) -> None:
    """Remove the temporary folders of runs that are gone: with the lock held, every token
    folder there belongs to a run that no longer holds it."""
    stale = [p for p in tmp.iterdir() if p.is_dir() and not p.is_symlink()] if tmp.is_dir() else []
    for folder in stale:
        shutil.rmtree(folder, ignore_errors=True)
    if stale:
        last = previous.get("token")
        log(f"removed the temporary files of {len(stale)} interrupted run(s)"
            + (f" (last: {last})" if last else ""))


# -- paths ------------------------------------------------------------------------------------

def _absolute(path: Path) -> Path:
    """Absolute and normalised (`..` folded) without following symlinks."""
    return Path(os.path.abspath(path))


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents
