"""report.json at the root of the output folder: every shot and take with its status, seed and
artifact paths, and the final cut. Paths are relative to the output folder."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ovi_studio import __version__
from ovi_studio.output_names import REPORT
from ovi_studio.render.artifacts import read_json, write_json_atomic

SCHEMA = 1


# final["status"] of a cut that exists: assembled by this run, or an earlier run's still valid
CUT_MADE = ("done", "cached")


@dataclass
class TakeRecord:
    shot: str
    take: int
    seed: int
    mode: str
    dir: Path
    cache_key: str
    status: str = "pending"  # rendered | cached | outdated | failed | skipped | not selected | interrupted
    reason: str | None = None
    seconds: float | None = None
    files: dict[str, str] = field(default_factory=dict)
    qc: list | None = None  # take_choice.Check of the take (None: not checked)
    draft: bool = False  # rendered in the draft tier (fewer steps; not a final)
    extends: dict | None = None  # an extension: the parent take it started from and why

    @property
    def ok(self) -> bool:
        """A take the cut can use (an outdated one only where --only left it so)."""
        return self.status in ("rendered", "cached", "outdated")


def take_json(record: TakeRecord, out_dir: Path) -> dict:
    data = {"take": record.take, "status": record.status, "seed": record.seed,
            "mode": record.mode, "dir": _rel(record.dir, out_dir), "cache_key": record.cache_key,
            "files": {name: _rel(record.dir / path, out_dir) for name, path in record.files.items()}}
    if record.draft:
        data["draft"] = True
    if record.extends is not None:
        data["extends"] = record.extends
    if record.reason:
        data["reason"] = record.reason
    if record.seconds is not None:
        data["seconds"] = round(record.seconds, 2)
    if record.qc is not None:
        from ovi_studio.take_choice import score
        data["qc"] = [c.to_json() for c in record.qc]
        data["qc_score"] = round(score(record.qc), 3)
    return data


def build_report(*, storyboard: Path, out_dir: Path, engine: dict, status: str,
                 records: list[TakeRecord], shot_order: list[str], final: dict,
                 started: float, picks: dict[str, dict] | None = None,
                 lint: dict | None = None, pick_policy: str | None = None) -> dict:
    shots = []
    for shot_id in shot_order:
        takes = [take_json(r, out_dir) for r in records if r.shot == shot_id]
        shots.append({"id": shot_id, "takes": takes, "pick": (picks or {}).get(shot_id)})
    failed = sorted({r.shot for r in records if r.status == "failed"})
    return {
        "schema": SCHEMA, "ovi_studio": __version__, "storyboard": str(storyboard),
        "out_dir": str(out_dir), "engine": engine, "status": status, "lint": lint,
        "started": _iso(started), "finished": _iso(time.time()),
        "seconds": round(time.time() - started, 2),
        "failed_shots": failed, "shots": shots, "final": final,
        "pick_policy": pick_policy,  # --pick: how shots without `pick:` were chosen
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


def cut_cues(final: dict) -> list:
    """The dialogue cues of the cut in `final` (report.json), timed as its subtitles are, whether
    or not subtitles were written."""
    from ovi_studio.render.assembly import Segment, timeline_cues
    segments = [Segment(s["shot"], Path(s["take_dir"]), Path(s["take_dir"]), 0, 0, s["frames"],
                        s["start_frame"], s["end_frame"], s["transition_frames"],
                        tuple(tuple(line) for line in s["dialogue"]))
                for s in final.get("segments") or []]
    return timeline_cues(segments, [s["cut_start"] for s in final["segments"]], final["frames"]) if segments else []


def run_summary(report: dict, report_path: Path | None = None) -> dict:
    """What a nightly job wants at a glance (`render --json`): shots rendered / fresh / failed,
    GPU time, the cut and its failed checks."""
    shots = {"rendered": 0, "fresh": 0, "failed": 0, "other": 0}
    for shot in report["shots"]:
        states = {t["status"] for t in shot["takes"]}
        kind = ("failed" if "failed" in states else "rendered" if "rendered" in states
                else "fresh" if states == {"cached"} else "other")
        shots[kind] += 1
    final = report.get("final") or {}
    out = Path(report["out_dir"])
    return {
        "storyboard": report["storyboard"], "status": report["status"], "shots": shots,
        "gpu_seconds": round(sum(t.get("seconds") or 0.0 for s in report["shots"] for t in s["takes"]
                                 if t["status"] == "rendered"), 2),
        "failed_shots": report["failed_shots"],
        "cut": str(out / final["path"]) if final.get("path") else None,
        "cut_status": final.get("status"),
        "quality_failures": [f"{s['id']}/take{t['take']}: {c['check']}" for s in report["shots"]
                             for t in s["takes"] for c in t.get("qc", []) if c["status"] == "fail"]
                            + [f"final: {c['check']}" for c in final.get("qc", []) if c["status"] == "fail"],
        "report": str(report_path) if report_path else None,
        "lint": report.get("lint"),
    }


def summary_line(summary: dict) -> str:
    shots = summary["shots"]
    cut = summary["cut"] if summary["cut_status"] in CUT_MADE else f"no cut ({summary['cut_status']})"
    return f"ovi-studio: {_shot_counts(shots, summary['gpu_seconds'])}; cut: {cut}"


def batch_line(entries: list[dict]) -> str:
    """`batch`'s last line: the totals of its storyboards' summaries (`run_summary`, or a
    storyboard that was not planned)."""
    summaries = [entry for entry in entries if "shots" in entry]
    not_planned = len(entries) - len(summaries)
    totals = {kind: sum(s["shots"][kind] for s in summaries) for kind in ("rendered", "fresh", "failed")}
    cuts = sum(1 for s in summaries if s["cut_status"] in CUT_MADE)
    skipped = f", {not_planned} not planned" if not_planned else ""
    return (f"ovi-studio batch: {len(entries)} storyboard(s){skipped}, "
            f"{_shot_counts(totals, sum(s['gpu_seconds'] for s in summaries))}; {cuts} cut(s)")


def _shot_counts(shots: dict, gpu_seconds: float) -> str:
    return (f"{shots['rendered']} shot(s) rendered, {shots['fresh']} fresh, "
            f"{shots['failed']} failed; GPU time {gpu_seconds:.1f} s")
