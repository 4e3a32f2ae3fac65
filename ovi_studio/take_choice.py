"""Which take of a shot is chosen: the one that goes in the cut and that the shots extending it
start from. One rule, asked by the plan (an extension's parent take), by the render session when
an extension is dispatched and when the cut is assembled, and by `pick`:

1. `pick: N` in the storyboard (what `ovi-studio pick` writes) always wins;
2. a shot of one take has nothing to choose;
3. `--pick first`: take 0;
4. `--pick best` (the default): the take with the highest share of passed quality checks, the
   earlier take on ties.

The quality checks themselves run in the render (render/quality.py) and are kept in `qc.json`
beside each take, keyed by what they measured; this module reads them back, so the plan can
choose the best take of a shot whose takes are all rendered and checked already (a re-run),
and otherwise leaves the choice to the moment the takes are checked.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ovi_studio.errors import UserError

POLICIES = ("best", "first")
PASS, FAIL, SKIP = "pass", "fail", "skip"
QC_FILE = "qc.json"
QC_VERSION = 2


@dataclass(frozen=True)
class Check:
    """One quality check of a take or of the cut: passed, failed (the measured value, the limit
    and a sentence saying what is wrong where) or skipped (with the reason)."""
    name: str
    status: str  # pass | fail | skip
    detail: str
    value: float | None = None
    limit: float | None = None

    def to_json(self) -> dict:
        data = {"check": self.name, "status": self.status, "detail": self.detail}
        if self.value is not None:
            data["value"] = round(float(self.value), 4)
        if self.limit is not None:
            data["limit"] = float(self.limit)
        return data

    @classmethod
    def from_json(cls, data: dict) -> "Check":
        return cls(data["check"], data["status"], data["detail"], data.get("value"), data.get("limit"))


def failures(checks: list[Check], names: set[str] | None = None) -> list[Check]:
    return [c for c in checks if c.status == FAIL and (names is None or c.name in names)]


def score(checks: list[Check]) -> float:
    """Share of the checks that ran which passed (1.0 when none could run)."""
    ran = [c for c in checks if c.status != SKIP]
    return sum(c.status == PASS for c in ran) / len(ran) if ran else 1.0


# -- the checks kept beside a take ---------------------------------------------------------

def qc_key(meta: dict, shot, thresholds) -> str:
    """What a take's checks depend on: its files' hashes, the frame it was seeded from, the
    thresholds, the lines its prompt speaks and whether its engine draws still cards."""
    from ovi_studio.prompt import spoken_lines
    return hashlib.sha256(json.dumps(
        [QC_VERSION, {k: v.get("sha256") for k, v in meta.get("files", {}).items()}, meta.get("parent"),
         thresholds.model_dump(), spoken_lines(shot.prompt), draws_stills(meta)],
        sort_keys=True, default=str).encode()).hexdigest()


def draws_stills(meta: dict) -> bool:
    """The preview engine renders still cards by design (no freeze check)."""
    return (meta.get("engine") or {}).get("name") == "preview"


def stored_checks(take_dir: Path, meta: dict, shot, thresholds) -> list[Check] | None:
    """The checks kept in `qc.json` beside a take with this meta.json, or None when there are
    none for the take as it is now (never checked, or checked with other files or thresholds)."""
    try:
        kept = json.loads((Path(take_dir) / QC_FILE).read_text(encoding="utf-8"))
        if kept.get("key") == qc_key(meta, shot, thresholds):
            return [Check.from_json(c) for c in kept["checks"]]
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        pass
    return None


# -- the choice ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Choice:
    take: int
    reason: str
    scores: dict[int, float] | None = None  # take -> quality score, when chosen by them

    def to_json(self) -> dict:
        data = {"take": self.take, "reason": self.reason}
        if self.scores is not None:
            data["scores"] = {str(take): round(value, 3) for take, value in self.scores.items()}
        return data


def check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise UserError(f"--pick {policy}: expected {' or '.join(POLICIES)}")


def fixed_choice(shot, policy: str) -> Choice | None:
    """The choice when it needs no quality checks (rules 1-3), else None."""
    if shot.pick is not None:
        return Choice(shot.pick, f"picked: `pick: {shot.pick}` in the storyboard")
    if shot.takes == 1:
        return Choice(0, "the only take")
    if policy == "first":
        return Choice(0, "take 0 (--pick first)")
    return None


def choose(shot, checks: dict[int, list[Check]], policy: str = "best") -> Choice:
    """`checks`: the quality checks of each of the shot's takes that can be used (a take missing
    from it failed or is not rendered)."""
    fixed = fixed_choice(shot, policy)
    if fixed is not None:
        return fixed
    if not checks:
        return Choice(0, "take 0: no take rendered")
    scores = {take: score(found) for take, found in sorted(checks.items())}
    best = max(scores, key=lambda take: scores[take])  # the first of equal scores
    failing = {take: ", ".join(c.name for c in failures(found)) for take, found in checks.items()}
    others = "; ".join(f"take {t}: {scores[t]:.0%}" + (f" (failed {failing[t]})" if failing[t] else "")
                       for t in scores if t != best)
    return Choice(best, f"best by quality checks: take {best} passed {scores[best]:.0%}"
                        + (f"; {others}" if others else ""), scores)
