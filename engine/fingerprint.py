"""Identities of files by their whole content, paid once per file version (pure Python, no torch).

A file's identity is the SHA-256 of all its bytes: a fine-tuned checkpoint or a LoRA of the same
size that differs only in the middle is a different file. Hashing 20+ GB of weights takes a
while, so a stat cache remembers (path, size, mtime, inode) -> hash: while none of these
changes, the file is not read again. The cache is a small JSON file in the cache folder
(`stat-cache.json`), replaced atomically; losing it only costs re-hashing.
"""
from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import threading
from pathlib import Path

STAT_CACHE_FILE = "stat-cache.json"
_BLOCK = 1 << 20


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of the whole file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _stamp(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino]


class StatCache:
    """{absolute path: (size, mtime_ns, inode, sha256)}, persisted in `file` (None: in memory)."""

    def __init__(self, file: str | Path | None):
        self.file = Path(file) if file is not None else None
        self._entries: dict[str, list] | None = None
        self._dirty = False
        self._lock = threading.Lock()

    def _load(self) -> dict[str, list]:
        if self._entries is None:
            self._entries = {}
            if self.file is not None:
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    loaded = json.loads(self.file.read_text(encoding="utf-8"))
                    self._entries = {k: v for k, v in loaded.items()
                                     if isinstance(v, list) and len(v) == 4}
        return self._entries

    def known(self, path: str | Path) -> str | None:
        """The recorded hash of `path` when its size, mtime and inode are unchanged, else None
        (the fast check: one stat, no read)."""
        path = Path(path).absolute()
        try:
            st = path.stat()
        except OSError:
            return None
        with self._lock:
            entry = self._load().get(str(path))
        return entry[3] if entry is not None and entry[:3] == _stamp(st) else None

    def sha256(self, path: str | Path) -> str:
        """Hex SHA-256 of the file's content; read only when it changed since last hashed."""
        path = Path(path).absolute()
        known = self.known(path)
        if known is not None:
            return known
        before = path.stat()
        digest = sha256_of(path)
        if _stamp(path.stat()) == _stamp(before):  # not being written while we read it
            with self._lock:
                self._load()[str(path)] = [*_stamp(before), digest]
                self._dirty = True
        return digest

    def record(self, path: str | Path, digest: str) -> None:
        """Remember `digest` for the file as it is now (the caller knows its content)."""
        path = Path(path).absolute()
        st = path.stat()
        with self._lock:
            self._load()[str(path)] = [*_stamp(st), digest]
            self._dirty = True

    def save(self) -> None:
        """Write the cache (atomically; a failure only loses the cache)."""
        if self.file is None or not self._dirty:
            return
        with self._lock:
            entries = {k: v for k, v in self._load().items() if os.path.exists(k)}
            tmp = self.file.with_name(f".{self.file.name}.tmp-{os.getpid()}")
            try:
                self.file.parent.mkdir(parents=True, exist_ok=True)
                tmp.write_text(json.dumps(entries), encoding="utf-8")
                os.replace(tmp, self.file)
                self._dirty = False
            except OSError:
                tmp.unlink(missing_ok=True)


_DEFAULT: dict[str, StatCache] = {}


def stat_cache() -> StatCache:
    """The process's stat cache, in the cache folder (engine.embedding_cache.cache_root); saved
    when the process exits."""
    from engine.embedding_cache import cache_root
    file = str(cache_root() / STAT_CACHE_FILE)
    if file not in _DEFAULT:
        _DEFAULT[file] = StatCache(file)
        atexit.register(_DEFAULT[file].save)
    return _DEFAULT[file]


def file_fingerprint(path: str | Path) -> str:
    """`sha256:<hex>` of the whole file; `missing` when absent."""
    try:
        return "sha256:" + stat_cache().sha256(path)[:32]
    except FileNotFoundError:
        return "missing"


def folder_fingerprint(root: str | Path, relative_paths: list[str]) -> str:
    """One identity for several files of a checkpoint folder (order-independent)."""
    root = Path(root)
    digest = hashlib.sha256()
    for rel in sorted(relative_paths):
        target = root / rel
        if target.is_dir():
            parts = sorted(p for p in target.rglob("*") if p.is_file())
            ident = ",".join(f"{p.relative_to(root)}={file_fingerprint(p)}" for p in parts)
        else:
            ident = file_fingerprint(target)
        digest.update(f"{rel}={ident};".encode())
    return "sha256:" + digest.hexdigest()[:32]
