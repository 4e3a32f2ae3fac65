"""On-disk cache of text embeddings, so that a prompt is encoded by the 11 GB T5 at most once.

Where: the checkout's `cache/` folder when ovi-studio runs from a checkout (and it is
writable), else the platform's user cache folder (`$XDG_CACHE_HOME/ovi-studio` or
`~/.cache/ovi-studio`, `~/Library/Caches/ovi-studio`, `%LOCALAPPDATA%/ovi-studio/Cache`);
`OVI_STUDIO_CACHE` or an explicit folder overrides both. Embeddings live in the
`text-embeddings/` subfolder, a diskcache store (SQLite index, safe for several processes).

Key: SHA-256 of the cleaned text, the encoder's identity (checkpoint and tokenizer fingerprints)
and the dtype. Value: the embedding as safetensors bytes (never a pickle). Size-limited with
least-recently-used eviction. An unreadable entry is dropped with a warning and recomputed; a
store whose database is damaged is set aside (renamed `text-embeddings.broken-<time>`, which
`cache clear` removes) with one warning and rebuilt empty. The cache only ever saves work: a
store that fails while rendering is a warning, never a failed shot.

Pure Python at import time (torch and safetensors are imported when a tensor is stored or read),
so `ovi-studio cache info` stays light.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import shutil
import sqlite3
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import diskcache

CACHE_ENV = "OVI_STUDIO_CACHE"
EMBEDDINGS_DIR = "text-embeddings"
BROKEN_SUFFIX = ".broken-"  # a damaged store, set aside: <EMBEDDINGS_DIR>.broken-<time>
STORE_ERRORS = (sqlite3.Error, OSError)  # a damaged or unwritable store
DEFAULT_SIZE_LIMIT = 2 << 30  # 2 GiB: ~2,500 typical prompts at 4096 x bf16 (a full 512-token one is 4 MiB)
KEY_VERSION = 1  # bump when the meaning of a stored embedding changes


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def cache_root(explicit: str | os.PathLike | None = None) -> Path:
    """The cache folder: `explicit`, else $OVI_STUDIO_CACHE, else the checkout's cache/, else
    the user cache folder."""
    if explicit is not None:
        return Path(explicit).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    checkout = Path(__file__).resolve().parents[1]
    project = checkout / "cache"
    if (checkout / "pyproject.toml").is_file() and _writable(project):  # a checkout, not site-packages
        return project
    return user_cache_dir()


def user_cache_dir() -> Path:
    """The platform's per-user cache folder for ovi-studio."""
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "ovi-studio" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "ovi-studio"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ovi-studio"


def embedding_key(cleaned_text: str, encoder_identity: str, dtype: str) -> str:
    payload = json.dumps([KEY_VERSION, cleaned_text, encoder_identity, dtype], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class _BytesOnlyDisk(diskcache.Disk):
    """diskcache unpickles non-bytes values on read; this store never holds any, so refuse them."""

    def fetch(self, mode, filename, value, read):
        if mode == diskcache.core.MODE_PICKLE:
            raise ValueError("refusing a pickled value")
        return super().fetch(mode, filename, value, read)


@dataclass(frozen=True)
class CacheInfo:
    directory: Path
    entries: int
    size_bytes: int
    size_limit: int


class EmbeddingCache:
    """{key: tensor} on disk. Use as a context manager or call `close()`."""

    def __init__(self, root: str | os.PathLike | None = None, *, size_limit: int = DEFAULT_SIZE_LIMIT):
        self.directory = cache_root(root) / EMBEDDINGS_DIR
        try:
            self._store = self._open(size_limit)
        except STORE_ERRORS as exc:
            aside = self.directory.with_name(f"{EMBEDDINGS_DIR}{BROKEN_SUFFIX}{time.strftime('%Y%m%d-%H%M%S')}")
            warnings.warn(f"the text-embedding cache {self.directory} is damaged "
                          f"({type(exc).__name__}: {exc}); moved to {aside} and starting an empty one",
                          stacklevel=2)
            os.replace(self.directory, aside)
            self._store = self._open(size_limit)

    def _open(self, size_limit: int) -> diskcache.Cache:
        # on overflow diskcache evicts the 10 least recently used entries per write
        return diskcache.Cache(str(self.directory), size_limit=size_limit,
                               eviction_policy="least-recently-used", disk=_BytesOnlyDisk)

    def get(self, key: str):
        """The stored tensor, or None when absent or unreadable (then the entry is dropped)."""
        from safetensors.torch import load

        data = None
        try:
            data = self._store.get(key)
            if data is None:
                return None
            return load(data)["embedding"]
        except Exception as exc:  # a damaged file, a truncated value, a foreign entry
            warnings.warn(f"text-embedding cache entry {key[:12]} in {self.directory} is unreadable "
                          f"({type(exc).__name__}: {exc}); dropping it and encoding the text again",
                          stacklevel=2)
            with contextlib.suppress(*STORE_ERRORS):
                self._store.delete(key)
            return None

    def put(self, key: str, tensor) -> None:
        from safetensors.torch import save

        try:
            self._store.set(key, save({"embedding": tensor.detach().cpu().contiguous()}))
        except STORE_ERRORS as exc:
            warnings.warn(f"cannot store a text embedding in {self.directory} ({type(exc).__name__}: "
                          f"{exc}); it will be encoded again next time", stacklevel=2)

    def __contains__(self, key: str) -> bool:
        return key in self._store

    def __len__(self) -> int:
        return len(self._store)

    def info(self) -> CacheInfo:
        return CacheInfo(self.directory, len(self._store), self._store.volume(),
                         self._store.size_limit)

    def clear(self) -> int:
        """Remove every entry and any damaged store set aside earlier; returns how many entries
        there were."""
        for broken in self.directory.parent.glob(f"{EMBEDDINGS_DIR}{BROKEN_SUFFIX}*"):
            shutil.rmtree(broken, ignore_errors=True)
        return self._store.clear()

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> "EmbeddingCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
