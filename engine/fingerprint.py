"""Cheap, stable identities of checkpoint files (pure Python, no torch).

Hashing 20+ GB of weights on every `plan` would take minutes, so a file's identity is its size
plus the SHA-256 of its first and last 4 MiB. Safetensors files start with a header listing every
tensor's name, dtype, shape and offsets, and any re-export or truncation changes the size or the
tail, so this tells different checkpoints apart in practice.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

_EDGE = 4 << 20


def file_fingerprint(path: str | Path) -> str:
    """`sha256:<hex>` over the size, head and tail of a file; `missing` when absent."""
    path = Path(path)
    try:
        size = path.stat().st_size
        digest = hashlib.sha256(str(size).encode())
        with path.open("rb") as f:
            digest.update(f.read(_EDGE))
            if size > _EDGE:
                f.seek(max(_EDGE, size - _EDGE))
                digest.update(f.read(_EDGE))
    except FileNotFoundError:
        return "missing"
    return "sha256:" + digest.hexdigest()[:32]


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
