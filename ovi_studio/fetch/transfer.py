"""Bringing hub files into a checkpoint folder so that a file at its place is always complete
and verified.

Each download grows a partial file under huggingface_hub's home folder (HF_HOME), named by the
file's hash, so an interrupted fetch resumes with a ranged request and the checkpoint folder
never holds a partial file. A complete partial file is checked against the size and hash the
hub records and only then moved to its place (a rename on one disk; across disks a copy to a
hidden name beside the target, then a rename). Files already in place are hashed once and
remembered by size and modification time in `RECORDS_NAME`, so a re-run reads no file twice.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from ovi_studio.errors import UserError
from ovi_studio.fetch.remote import RemoteFile, file_url, hub_errors, list_remote_files

RECORDS_NAME = ".fetch-verified.json"  # in the checkpoint folder: rel -> size, mtime, hash
HASH_CHUNK = 16 * 2**20


def default_partial_dir() -> Path:
    from huggingface_hub import constants
    return Path(constants.HF_HOME) / "ovi-studio" / "partial"


@dataclass(frozen=True)
class Item:
    file: RemoteFile
    present: bool  # in place, complete and verified
    partial_bytes: int  # already downloaded towards it (resumed)

    @property
    def remaining(self) -> int:
        return 0 if self.present else self.file.size - self.partial_bytes


@dataclass(frozen=True)
class FetchPlan:
    ckpt_dir: Path
    items: tuple[Item, ...]
    partial_dir: Path
    endpoint: str  # the hub's address (HF_ENDPOINT, else huggingface.co)

    @property
    def to_download(self) -> list[Item]:
        return [item for item in self.items if not item.present]

    @property
    def total_size(self) -> int:
        return sum(item.file.size for item in self.items)

    @property
    def download_size(self) -> int:
        return sum(item.remaining for item in self.to_download)

    def partial_path(self, file: RemoteFile) -> Path:
        return self.partial_dir / f"{file.expected_hash}.part"


def plan_fetch(ckpt_dir: str | Path, models: tuple[str, ...], fp8: bool = False, *,
               endpoint: str | None = None, token: str | None = None,
               partial_dir: Path | None = None) -> FetchPlan:
    """What a fetch of these variants into `ckpt_dir` downloads: every file with its state."""
    from huggingface_hub import constants

    ckpt_dir = Path(ckpt_dir)
    endpoint = endpoint or constants.ENDPOINT
    partial_dir = partial_dir or default_partial_dir()
    files = list_remote_files(models, fp8, endpoint=endpoint, token=token)
    records = _read_records(ckpt_dir)
    items = []
    for file in files:
        present = _in_place(ckpt_dir, file, records)
        partial = partial_dir / f"{file.expected_hash}.part"
        have = partial.stat().st_size if not present and partial.is_file() else 0
        items.append(Item(file, present, have if have <= file.size else 0))
    _write_records(ckpt_dir, records)
    return FetchPlan(ckpt_dir, tuple(items), partial_dir, endpoint)


def run_fetch(plan: FetchPlan, *, token: str | None = None, progress: bool = True) -> list[RemoteFile]:
    """Download, verify and place every file the plan lacks; return those fetched. A failure
    raises a UserError and leaves the checkpoint folder as it was, less nothing."""
    from huggingface_hub.utils import build_hf_headers, tqdm

    todo = plan.to_download
    if not todo:
        return []
    _check_writable(plan.ckpt_dir)
    _check_writable(plan.partial_dir)
    _check_free_space(plan)
    headers = build_hf_headers(token=token)
    records = _read_records(plan.ckpt_dir)
    with tqdm(total=plan.download_size, unit="B", unit_scale=True, unit_divisor=1024,
              desc=f"fetching {len(todo)} file{'s' if len(todo) > 1 else ''}",
              disable=None if progress else True, name="ovi_studio.fetch") as bar:
        for item in todo:
            _download(plan, item, headers, bar)
            _place(plan.partial_path(item.file), plan.ckpt_dir / item.file.dest)
            _remember(records, plan.ckpt_dir, item.file)
            _write_records(plan.ckpt_dir, records)
    return [item.file for item in todo]


def _download(plan: FetchPlan, item: Item, headers: dict, bar) -> None:
    """Grow the partial file to the full size (resuming where it stopped), then check it."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.file_download import http_get

    file, part = item.file, plan.partial_path(item.file)
    have = part.stat().st_size if part.is_file() else 0
    if have > file.size:  # not this file after all
        part.unlink()
        have = 0
    with hub_errors(plan.endpoint, file.repo, file.path):
        cached = try_to_load_from_cache(file.repo, file.path, revision=file.revision)
        if isinstance(cached, str) and have == 0:  # already in huggingface_hub's own cache
            shutil.copyfile(cached, part)
            bar.update(file.size)
        elif have < file.size:
            with part.open("ab") as out:
                try:
                    http_get(file_url(file, plan.endpoint), out, resume_size=have, headers=dict(headers),
                             expected_size=file.size, displayed_filename=file.path,
                             tqdm_class=_forwarding_to(bar))
                except OSError as exc:
                    if exc.errno is not None:
                        raise
                    part.unlink(missing_ok=True)  # the server sent more or less than the hub records
                    raise UserError(f"{file.repo}/{file.path}: {exc}".splitlines()[0],
                                    hint="run the same command again; if it repeats, the server at "
                                         "HF_ENDPOINT serves a different file than it lists") from None
    actual = file_hash(part, file.hash_kind)
    if actual != file.expected_hash:
        part.unlink()
        raise UserError(f"{file.repo}/{file.path}: the downloaded bytes do not match the hub's "
                        f"{file.hash_kind} (expected {file.expected_hash}, got {actual}); the download was discarded",
                        hint="run the same command again; if it repeats, the server at HF_ENDPOINT "
                             "serves a different file than it lists")


def _forwarding_to(bar):
    """A progress-bar class for huggingface_hub's per-file download that adds to our one bar."""
    class Forward:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> bool:
            return False

        def update(self, n: int = 1) -> None:
            bar.update(n)
    return Forward


def _place(part: Path, dest: Path) -> None:
    """Move a verified file to its place in one step: nobody ever sees it half there."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(part, dest)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    hidden = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.fetching")
    try:
        shutil.copyfile(part, hidden)
        os.replace(hidden, dest)
    finally:
        hidden.unlink(missing_ok=True)
    part.unlink()


def file_hash(path: Path, kind: str) -> str:
    """sha256 of the content (what the hub records for LFS files), or the git blob id."""
    digest = hashlib.sha256() if kind == "sha256" else hashlib.sha1()
    if kind != "sha256":
        digest.update(b"blob %d\0" % path.stat().st_size)
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _in_place(ckpt_dir: Path, file: RemoteFile, records: dict) -> bool:
    """The file is at its place with the hub's size and hash (hashed once, then remembered)."""
    path = ckpt_dir / file.dest
    if not path.is_file() or path.stat().st_size != file.size:
        return False
    record = records.get(file.dest)
    if record == _record(path, file):
        return True
    if file_hash(path, file.hash_kind) != file.expected_hash:
        return False
    _remember(records, ckpt_dir, file)
    return True


def _record(path: Path, file: RemoteFile) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, file.hash_kind: file.expected_hash}


def _remember(records: dict, ckpt_dir: Path, file: RemoteFile) -> None:
    records[file.dest] = _record(ckpt_dir / file.dest, file)


def _read_records(ckpt_dir: Path) -> dict:
    try:
        return json.loads((ckpt_dir / RECORDS_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_records(ckpt_dir: Path, records: dict) -> None:
    """Best effort: the records only save re-hashing (a read-only folder keeps none)."""
    if not records or not ckpt_dir.is_dir():
        return
    try:
        fd, tmp = tempfile.mkstemp(dir=ckpt_dir, prefix=RECORDS_NAME, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(records, f, indent=1, sort_keys=True)
        os.replace(tmp, ckpt_dir / RECORDS_NAME)
    except OSError:
        pass


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"cannot write to {folder}: {exc.strerror or exc}",
                        hint="choose a writable --ckpt-dir (or HF_HOME for the partial downloads), "
                             "or fix the folder's permissions") from None


def _check_free_space(plan: FetchPlan) -> None:
    """Each disk must hold what lands on it: the partial files, and the placed files where the
    checkpoint folder is on another disk."""
    need: dict[int, list] = {}

    def add(folder: Path, size: int) -> None:
        need.setdefault(folder.stat().st_dev, [folder, 0])[1] += size

    same_disk = plan.ckpt_dir.stat().st_dev == plan.partial_dir.stat().st_dev
    for item in plan.to_download:
        add(plan.partial_dir, item.remaining)
        if not same_disk:
            add(plan.ckpt_dir, item.file.size)
    for folder, size in need.values():
        free = shutil.disk_usage(folder).free
        if free < size:
            raise UserError(f"not enough free space in {folder}: the fetch needs {format_size(size)}, "
                            f"{format_size(free)} is free; nothing was downloaded",
                            hint="free space, or choose a --ckpt-dir on a larger disk (HF_HOME holds "
                                 "the partial downloads)")


def format_size(size: float) -> str:
    if size < 1024:
        return f"{size:.0f} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}"
