"""Writing a file so that a crash never leaves half of it: the one atomic-write helper.

Everything ovi-studio writes (takes, reports, the cut, a storyboard rewritten by `check --fix`,
the timing cache) is written under a temporary name and renamed onto its own name only when
complete. Inside an output folder a render holds, the temporary name lives in the run's own
folder (render/outdir.py passes it as `tmp`); elsewhere it sits beside the target.
"""
from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

TMP_MARK = ".tmp-"  # in the names of temporary files beside their targets, so leftovers are found


@contextlib.contextmanager
def atomic_target(path: str | Path, tmp: Path | None = None) -> Iterator[Path]:
    """Yield a temporary path (same suffix, so tools infer the format) and rename it onto
    `path` only when the block finishes without error. An existing file keeps its permission
    bits."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp or path.with_name(f".{path.stem}{TMP_MARK}{os.getpid()}{path.suffix}")
    try:
        yield tmp
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | Path, text: str, tmp: Path | None = None) -> None:
    """Write `text` exactly as given (no newline translation), durably."""
    with atomic_target(path, tmp) as target:
        with open(target, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def to_json_text(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n"
