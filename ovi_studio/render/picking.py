"""Which take of a shot is chosen: the one that goes in the cut and that extensions start from.

One rule, used by the plan (an extension's parent take), the render session and `pick`:

1. `pick: N` in the storyboard (what `ovi-studio pick` writes) always wins;
2. a shot that other shots extend uses take 0 unless picked: its extensions were planned from
   one take before any take was rendered, and the cut must continue from that very take;
3. otherwise the best take by the quality checks (the highest share of passed checks, the
   earlier take on ties) — or take 0 with `--pick first`.
"""
from __future__ import annotations

from dataclasses import dataclass

from ovi_studio.render import quality

POLICIES = ("best", "first")


@dataclass(frozen=True)
class Choice:
    take: int
    reason: str

    def to_json(self) -> dict:
        return {"take": self.take, "reason": self.reason}


def parent_take(shot) -> int:
    """The take of `shot` that its extensions start from (known before anything renders)."""
    return shot.pick if shot.pick is not None else 0


def choose(shot, extended: bool, checks: dict[int, list[quality.Check]], policy: str = "best") -> Choice:
    """`checks`: the quality checks of each take that rendered (a take missing from it failed)."""
    if shot.pick is not None:
        return Choice(shot.pick, f"picked: `pick: {shot.pick}` in the storyboard")
    if shot.takes == 1:
        return Choice(0, "the only take")
    if extended:
        return Choice(0, "take 0: shots extend this one, and extensions start from take 0 until "
                         "another take is picked")
    if policy == "first" or not checks:
        return Choice(0, "take 0 (--pick first)" if policy == "first" else "take 0: no take rendered")
    scores = {take: quality.score(found) for take, found in checks.items()}
    best = max(sorted(scores), key=lambda take: scores[take])
    failing = {take: ", ".join(c.name for c in quality.failures(found)) for take, found in checks.items()}
    others = "; ".join(f"take {t}: {scores[t]:.0%}" + (f" (failed {failing[t]})" if failing[t] else "")
                       for t in sorted(scores) if t != best)
    return Choice(best, f"best by quality checks: take {best} passed {scores[best]:.0%}"
                        + (f"; {others}" if others else ""))
