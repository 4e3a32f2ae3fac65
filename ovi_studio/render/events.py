"""events.jsonl beside report.json: one JSON line per scheduler event (a take dispatched to a
worker, finished, failed, retried, skipped) and per sampling step, with a wall-clock time, so a
render's concurrency, retries and progress can be read back afterwards."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

EVENTS_NAME = "events.jsonl"


class EventLog:
    """One render's events (the file starts empty, as report.json is rewritten); safe to call
    from the driver's threads."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("", encoding="utf-8")

    def write(self, event: str, *, t: float | None = None, **fields) -> None:
        line = {"t": round(t if t is not None else time.time(), 4), "event": event,
                **{k: v for k, v in fields.items() if v is not None}}
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(line, default=str) + "\n")


def read_events(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
