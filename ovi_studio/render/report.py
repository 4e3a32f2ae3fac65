"""report.json at the root of the output folder: every shot and take with its status, seed and
artifact paths, and the final cut. Paths are relative to the output folder."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ovi_studio import __version__
from ovi_studio.render.artifacts import read_json, write_json_atomic

REPORT = "report.json"
SCHEMA = 1


@dataclass
class TakeRecord:
    shot: str
    take: int
    seed: int
    mode: str
    dir: Path
    cache_key: str
    status: str = "pending"  # rendered | cached | failed | skipped | not selected | interrupted
    reason: str | None = None
    seconds: float | None = None
    files: dict[str, str] = field(default_factory=dict)
    qc: list | None = None  # quality.Check of the take (None: not checked)

    @property
    def ok(self) -> bool:
        return self.status in ("rendered", "cached")


def take_json(record: TakeRecord, out_dir: Path) -> dict:
    data = {"take": record.take, "status": record.status, "seed": record.seed,
            "mode": record.mode, "dir": _rel(record.dir, out_dir), "cache_key": record.cache_key,
            "files": {name: _rel(record.dir / path, out_dir) for name, path in record.files.items()}}
    if record.reason:
        data["reason"] = record.reason
    if record.seconds is not None:
        data["seconds"] = round(record.seconds, 2)
    if record.qc is not None:
        from ovi_studio.render.quality import score
        data["qc"] = [c.to_json() for c in record.qc]
        data["qc_score"] = round(score(record.qc), 3)
    return data


def build_report(*, storyboard: Path, out_dir: Path, engine: dict, status: str,
                 records: list[TakeRecord], shot_order: list[str], final: dict,
                 started: float, picks: dict[str, dict] | None = None) -> dict:
    shots = []
    for shot_id in shot_order:
        takes = [take_json(r, out_dir) for r in records if r.shot == shot_id]
        shots.append({"id": shot_id, "takes": takes, "pick": (picks or {}).get(shot_id)})
    failed = sorted({r.shot for r in records if r.status == "failed"})
    return {
        "schema": SCHEMA, "ovi_studio": __version__, "storyboard": str(storyboard),
        "out_dir": str(out_dir), "engine": engine, "status": status,
        "started": _iso(started), "finished": _iso(time.time()),
        "seconds": round(time.time() - started, 2),
        "failed_shots": failed, "shots": shots, "final": final,
    }


def write_report(out_dir: Path, report: dict) -> Path:
    path = out_dir / REPORT
    write_json_atomic(path, report)
    return path


def previous_report(out_dir: Path) -> dict | None:
    return read_json(out_dir / REPORT)


def _rel(path: Path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
