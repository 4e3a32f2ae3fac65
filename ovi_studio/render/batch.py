"""A batch: many storyboards rendered as one job (the nightly case) — their takes in one DAG for
the scheduler, so independent chains of every storyboard spread over all workers — and one
summary row per storyboard."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ovi_studio.errors import UserError
from ovi_studio.render.inputs import RenderOptions
from ovi_studio.render.progress import RenderProgress
from ovi_studio.render.report import CUT_MADE
from ovi_studio.render.session import RenderOutcome, RenderSession, render_sessions

STORYBOARD_SUFFIXES = (".yaml", ".yml")


@dataclass
class BatchRow:
    storyboard: Path
    outcome: RenderOutcome | None = None
    error: str | None = None  # the storyboard could not be planned (nothing of it rendered)

    def count(self, *statuses: str) -> int:
        return sum(1 for r in self.outcome.records if r.status in statuses) if self.outcome else 0

    @property
    def gpu_seconds(self) -> float:
        """Seconds the workers spent rendering this storyboard's takes."""
        return sum(r.seconds or 0.0 for r in self.outcome.records if r.status == "rendered") if self.outcome else 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and self.outcome is not None and self.outcome.exit_code == 0

    @property
    def cut(self) -> Path | None:
        final = self.outcome.final if self.outcome else {}
        if final.get("status") in CUT_MADE and self.outcome.report_path:
            return self.outcome.report_path.parent / final["path"]
        return None


def storyboard_files(paths: list[Path]) -> list[Path]:
    """The storyboards named, and those directly inside the folders named, each once."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix in STORYBOARD_SUFFIXES and p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            raise UserError(f"{path} does not exist", hint="pass storyboard files or folders of them")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise UserError("no storyboards found in " + ", ".join(map(str, paths)),
                        hint=f"storyboards end in {' or '.join(STORYBOARD_SUFFIXES)}")
    return unique


def render_batch(paths: list[Path], options_for: Callable[[Path], RenderOptions],
                 progress: RenderProgress, backend=None) -> list[BatchRow]:
    """Plan every storyboard (one that cannot be planned is a failed row, the others render),
    then render them all as one job."""
    rows, sessions = [], []
    for path in storyboard_files(paths):
        row = BatchRow(path)
        rows.append(row)
        session = RenderSession(options_for(path), progress)
        try:
            session.prepare()
        except UserError as exc:
            row.error = str(exc)
            progress.log(f"{path}: not rendered: {exc}", important=True)
            continue
        sessions.append((row, session))
    if sessions:
        for (row, _), outcome in zip(sessions, render_sessions([s for _, s in sessions], backend)):
            row.outcome = outcome
    return rows
