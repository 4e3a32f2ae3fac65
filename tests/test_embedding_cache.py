"""The text-embedding cache: each distinct text encoded once, LRU eviction, damaged entries,
several processes, and the `cache` commands."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import diskcache
import pytest
import torch
from typer.testing import CliRunner

from engine import text as text_module
from engine.arch import load_arch
from engine.embedding_cache import CACHE_ENV, EMBEDDINGS_DIR, EmbeddingCache, cache_root
from engine.text import PromptEmbeddings

SHOTS = [  # (prompt, video negative, audio negative) of three shots
    ("A dog runs on the beach. Audio: waves", "blur, jitter", "robotic voice"),
    ("A cat sleeps.  <S>Quiet.<E>", "blur, jitter", "robotic voice"),
    ("A dog runs on the beach.\n Audio:   waves", "blur, jitter", "robotic voice"),  # same after cleaning
]
DISTINCT = 4


@pytest.fixture
def counted(monkeypatch):
    """Count encoder constructions and the texts that go through the encoder."""
    calls = {"loads": 0, "texts": 0}
    init, encode = text_module.TextEncoder.__init__, text_module.TextEncoder.encode

    def counting_init(self, *args, **kwargs):
        calls["loads"] += 1
        init(self, *args, **kwargs)

    def counting_encode(self, texts):
        calls["texts"] += len(texts)
        return encode(self, texts)

    monkeypatch.setattr(text_module.TextEncoder, "__init__", counting_init)
    monkeypatch.setattr(text_module.TextEncoder, "encode", counting_encode)
    return calls


def embeddings(ckpt, cache_dir) -> PromptEmbeddings:
    return PromptEmbeddings(ckpt, load_arch(ckpt).t5, EmbeddingCache(cache_dir))


def test_each_distinct_text_is_encoded_once_then_never_again(tiny_ckpt, tmp_path, counted):
    all_texts = [t for shot in SHOTS for t in shot]
    first = embeddings(tiny_ckpt, tmp_path)
    first.ensure(all_texts)
    assert counted == {"loads": 1, "texts": DISTINCT}
    vectors = [first.get(t) for t in all_texts]
    first.release()

    second = embeddings(tiny_ckpt, tmp_path)  # a later render: everything comes from disk
    second.ensure(all_texts)
    assert counted == {"loads": 1, "texts": DISTINCT}
    for text, vector in zip(all_texts, vectors):
        assert torch.equal(second.get(text), vector)
    assert len(second.cache) == DISTINCT


def test_cached_embedding_equals_a_fresh_encoding(tiny_ckpt, tmp_path):
    cached = embeddings(tiny_ckpt, tmp_path)
    cached.ensure([SHOTS[1][0]])
    fresh = text_module.TextEncoder(tiny_ckpt, load_arch(tiny_ckpt).t5).encode([SHOTS[1][0]])[0]
    assert torch.equal(embeddings(tiny_ckpt, tmp_path).get(SHOTS[1][0]), fresh)


def test_a_damaged_entry_is_dropped_and_recomputed(tiny_ckpt, tmp_path, counted):
    store = embeddings(tiny_ckpt, tmp_path)
    store.ensure([SHOTS[0][0]])
    key = store.key(SHOTS[0][0])
    good = store.get(SHOTS[0][0])
    store.cache._store.set(key, b"\x00garbage, not safetensors")
    again = embeddings(tiny_ckpt, tmp_path)
    with pytest.warns(UserWarning, match="unreadable"):
        again.ensure([SHOTS[0][0]])
    assert counted["texts"] == 2 and torch.equal(again.get(SHOTS[0][0]), good)
    assert again.cache.get(key) is not None  # repaired on disk


def test_a_pickled_value_is_never_unpickled(tmp_path):
    cache = EmbeddingCache(tmp_path)
    cache._store.set("k", {"not": "bytes"})  # diskcache would pickle this
    with pytest.warns(UserWarning, match=r"\(ValueError: refusing a pickled value\)"):
        assert cache.get("k") is None
    assert "k" not in cache


def test_least_recently_used_entries_are_evicted(tmp_path):
    entry = torch.zeros(320, 64, dtype=torch.bfloat16)  # 40 KiB: stored as a file
    limit = 1 << 20
    cache = EmbeddingCache(tmp_path, size_limit=limit)
    for i in range(40):
        cache.put(f"k{i}", entry + i)
        assert cache.get("k0") is not None  # keep k0 recently used
    assert len(cache) < 40
    assert cache.info().size_bytes <= limit + 10 * 41 * 1024  # at most one eviction batch over
    assert torch.equal(cache.get("k0"), entry)
    assert cache.get("k1") is None and cache.get("k39") is not None  # the oldest untouched went first


def test_two_processes_share_the_cache(tmp_path):
    script = textwrap.dedent("""
        import sys, torch
        from engine.embedding_cache import EmbeddingCache
        worker, root = int(sys.argv[1]), sys.argv[2]
        cache = EmbeddingCache(root)
        for i in range(30):
            key = f"k{(i + worker * 7) % 40}"
            value = cache.get(key)
            if value is None:
                cache.put(key, torch.full((64, 64), float(key[1:]), dtype=torch.bfloat16))
            else:
                assert value[0, 0].item() == float(key[1:])
        cache.close()
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(w), str(tmp_path)], env=env,
                              cwd=Path(__file__).parents[1], stderr=subprocess.PIPE) for w in (0, 1)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    cache = EmbeddingCache(tmp_path)
    keys = {f"k{(i + w * 7) % 40}" for w in (0, 1) for i in range(30)}
    assert len(cache) == len(keys)
    for key in keys:
        assert cache.get(key)[0, 0].item() == float(key[1:])


def test_cache_folder_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    assert cache_root() == Path(__file__).resolve().parents[1] / "cache"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "flag") == tmp_path / "flag"


def test_cache_commands(tmp_path):
    from ovi_studio.cli import app

    with EmbeddingCache(tmp_path) as cache:
        for i in range(3):
            cache.put(f"k{i}", torch.ones(8, 4, dtype=torch.bfloat16))
    (tmp_path / "fp8").mkdir()
    (tmp_path / "fp8" / "model.safetensors").write_bytes(b"x" * 2048)
    runner = CliRunner()
    result = runner.invoke(app, ["cache", "info", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "text embeddings: 3 entries" in result.output and "fp8: 1 files, 2.0 KiB" in result.output
    result = runner.invoke(app, ["cache", "clear", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "removed 3 text embeddings" in result.output
    assert not (tmp_path / "fp8").exists() and (tmp_path / EMBEDDINGS_DIR).is_dir()
    assert len(diskcache.Cache(str(tmp_path / EMBEDDINGS_DIR))) == 0


def test_the_key_is_the_sha256_of_the_documented_json():
    """[key version 1, cleaned text, encoder identity, dtype] as JSON with the text's own
    characters (not \\u escapes), hashed with SHA-256: changing this layout must bump the version."""
    import hashlib

    from engine.embedding_cache import embedding_key

    expected = hashlib.sha256('[1, "café", "sha256:ab|tok:cd", "bfloat16"]'.encode("utf-8")).hexdigest()
    assert embedding_key("café", "sha256:ab|tok:cd", "bfloat16") == expected
    keys = {embedding_key(*parts) for parts in [("a", "e", "bf16"), ("b", "e", "bf16"),
                                                ("a", "f", "bf16"), ("a", "e", "fp32")]}
    assert len(keys) == 4


def test_the_user_cache_folder_of_each_platform(tmp_path, monkeypatch):
    from engine import embedding_cache as ec

    monkeypatch.setattr(Path, "home", lambda: tmp_path / "home")
    monkeypatch.setattr(ec.sys, "platform", "linux")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert ec.user_cache_dir() == tmp_path / "home" / ".cache" / "ovi-studio"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ec.user_cache_dir() == tmp_path / "xdg" / "ovi-studio"
    monkeypatch.setattr(ec.sys, "platform", "darwin")
    assert ec.user_cache_dir() == tmp_path / "home" / "Library" / "Caches" / "ovi-studio"
    monkeypatch.setattr(ec.sys, "platform", "win32")
    monkeypatch.delenv("LOCALAPPDATA", raising=False)
    assert ec.user_cache_dir() == tmp_path / "home" / "AppData" / "Local" / "ovi-studio" / "Cache"
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "local"))
    assert ec.user_cache_dir() == tmp_path / "local" / "ovi-studio" / "Cache"


def test_an_unwritable_checkout_falls_back_to_the_user_cache(tmp_path, monkeypatch):
    from engine import embedding_cache as ec

    monkeypatch.setenv(CACHE_ENV, "")  # set but empty: not an override
    monkeypatch.setattr(ec, "_writable", lambda folder: False)
    monkeypatch.setattr(ec, "user_cache_dir", lambda: tmp_path / "user")
    assert cache_root() == tmp_path / "user"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root("~/x") == tmp_path / "home" / "x"
    monkeypatch.setenv(CACHE_ENV, "~/env")
    assert cache_root() == tmp_path / "home" / "env"


def test_writable_means_the_folder_exists_or_was_made_and_accepts_files(tmp_path):
    from engine.embedding_cache import _writable

    assert _writable(tmp_path / "a" / "b") and (tmp_path / "a" / "b").is_dir()
    (tmp_path / "file").write_text("x")
    assert not _writable(tmp_path / "file" / "sub")  # cannot be made


def test_a_damaged_store_is_set_aside_once_and_cleared_later(tmp_path):
    store = tmp_path / EMBEDDINGS_DIR
    store.mkdir()
    (store / "cache.db").write_bytes(b"this is not an sqlite database" * 100)
    with pytest.warns(UserWarning, match=r"text-embedding cache .* is damaged \(DatabaseError: .*\); "
                                         r"moved to .*text-embeddings.broken-.*starting an empty one"):
        cache = EmbeddingCache(tmp_path)
    aside = list(tmp_path.glob(EMBEDDINGS_DIR + ".broken-*"))
    assert len(aside) == 1 and (aside[0] / "cache.db").exists()
    assert re.fullmatch(r"text-embeddings\.broken-\d{8}-\d{6}", aside[0].name)  # when, to the second
    assert len(cache) == 0 and cache.get("anything") is None
    cache.put("k", torch.ones(2, dtype=torch.bfloat16))
    assert cache.clear() == 1 and len(cache) == 0
    assert not list(tmp_path.glob(EMBEDDINGS_DIR + ".broken-*"))
    (tmp_path / (EMBEDDINGS_DIR + ".broken-x")).write_text("not a folder")  # cannot be removed
    assert cache.clear() == 0  # as a tree: left, and clearing still works


def test_an_unreadable_entry_is_named_by_the_first_12_characters_of_its_key(tmp_path):
    cache = EmbeddingCache(tmp_path)
    cache._store.set("0123456789abcdef", b"not safetensors")
    with pytest.warns(UserWarning, match=r"entry 0123456789ab in .* is unreadable"):
        assert cache.get("0123456789abcdef") is None
    assert "0123456789abcdef" not in cache


def test_a_store_that_cannot_be_written_is_a_warning_not_a_failure(tmp_path, monkeypatch):
    cache = EmbeddingCache(tmp_path)

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache._store, "set", full)
    with pytest.warns(UserWarning, match="cannot store a text embedding .*OSError.*encoded again"):
        cache.put("k", torch.ones(2))
    assert "k" not in cache


def test_info_reports_the_folder_entries_and_the_2_gib_default_limit(tmp_path):
    with EmbeddingCache(tmp_path) as cache:
        cache.put("k", torch.ones(3, 4, dtype=torch.bfloat16))
        assert "k" in cache and len(cache) == 1
        info = cache.info()
    assert info.directory == tmp_path / "text-embeddings"
    assert info.entries == 1 and info.size_bytes > 24 and info.size_limit == 2 * 1024 ** 3
