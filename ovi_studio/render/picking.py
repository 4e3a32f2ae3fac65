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
from pathlib import Path

from ovi_studio.render import quality

POLICIES = ("best", "first")


@dataclass(frozen=True)
class Choice:
    take: int
    reason: str

    def to_json(self) -> dict:
        return {"take": self.take, "reason": self.reason}


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


def record_pick(storyboard: Path, shot_id: str, take: int) -> None:
    """Write `pick: take` on the shot in the storyboard file, changing nothing else: the value
    of an existing `pick:` is replaced, else a `pick:` line goes under the shot's `id:` line
    (a shot written as a flow mapping `{id: …}` is re-emitted by the YAML round trip)."""
    from ovi_studio.errors import UserError, at
    from ovi_studio.files import write_text_atomic
    from ovi_studio.storyboard import load_storyboard
    loaded = load_storyboard(storyboard)
    shot = loaded.shot(shot_id)
    if shot is None:
        raise UserError(f"no shot named {shot_id}", location=at(storyboard),
                        hint="shots: " + ", ".join(s.id for s in loaded.shots))
    if not 0 <= take < shot.takes:
        raise UserError(f"shot {shot_id} has {shot.takes} take(s), numbered 0 to {shot.takes - 1}",
                        location=at(storyboard, shot.line, shot.column))
    original = storyboard.read_text(encoding="utf-8")
    node = shot.node
    if node is None:
        raise UserError(f"shot {shot_id} cannot be edited", location=at(storyboard, shot.line, shot.column))
    if node.fa.flow_style():
        text = _round_trip_with_pick(original, shot.index, take)
    else:
        lines = original.splitlines(keepends=True)
        if "pick" in node:
            row, col = node.lc.value("pick")
            line = lines[row]
            end = col + len(str(node["pick"]))
            lines[row] = line[:col] + str(take) + line[end:]
        else:
            row, col = node.lc.key("id")
            newline = "\r\n" if lines[row].endswith("\r\n") else "\n"
            lines.insert(row + 1, " " * col + f"pick: {take}" + newline)
        text = "".join(lines)
    write_text_atomic(storyboard, text)
    if load_storyboard(storyboard).shot(shot_id).pick != take:  # never leave a broken edit
        write_text_atomic(storyboard, original)
        raise UserError(f"could not write `pick: {take}` on shot {shot_id}; the file was not changed",
                        location=at(storyboard, shot.line, shot.column), hint="add it by hand")


def _round_trip_with_pick(text: str, index: int, take: int) -> str:
    import io
    from ruamel.yaml import YAML
    yaml = YAML()
    yaml.preserve_quotes = True
    data = yaml.load(text)
    data["shots"][index]["pick"] = take
    buffer = io.StringIO()
    yaml.dump(data, buffer)
    return buffer.getvalue()
