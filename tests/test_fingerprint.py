"""Whole-content fingerprints, paid once per file version through the stat cache."""
from __future__ import annotations

import os

from engine import fingerprint
from engine.fingerprint import StatCache


def test_a_change_in_the_middle_of_a_large_file_changes_its_fingerprint(tmp_path, monkeypatch):
    monkeypatch.setenv("OVI_STUDIO_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "weights.safetensors"
    data = bytearray(os.urandom(9 << 20))  # more than the 2 x 4 MiB edges a partial hash reads
    path.write_bytes(bytes(data))
    before = fingerprint.file_fingerprint(path)
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))  # same size, same head and tail
    assert fingerprint.file_fingerprint(path) != before
    assert fingerprint.file_fingerprint(tmp_path / "absent") == "missing"


def test_the_stat_cache_reads_a_file_once_per_version(tmp_path, monkeypatch):
    reads = []
    real = fingerprint.sha256_of
    monkeypatch.setattr(fingerprint, "sha256_of", lambda p: reads.append(p) or real(p))
    path = tmp_path / "a.bin"
    path.write_bytes(b"one")
    cache = StatCache(tmp_path / "stat-cache.json")
    first = cache.sha256(path)
    assert cache.sha256(path) == first and len(reads) == 1  # size, mtime, inode unchanged
    cache.save()
    assert StatCache(tmp_path / "stat-cache.json").sha256(path) == first and len(reads) == 1  # persisted
    path.write_bytes(b"two")
    assert cache.sha256(path) != first and len(reads) == 2  # changed: hashed again
    stamp = path.stat()
    path.write_bytes(b"six")  # same size; mtime put back: the fast check trusts it
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert cache.known(path) == cache.sha256(path) and len(reads) == 2
    (tmp_path / "stat-cache.json").write_text("{garbled")
    assert StatCache(tmp_path / "stat-cache.json").sha256(path)  # a broken cache only costs a re-hash
