"""Recording a choice of take in the storyboard (`ovi-studio pick`): the shot's `pick:` line is
written and nothing else changes. Which take is chosen, picked or not, is ovi_studio.take_choice's
to say."""
from __future__ import annotations

from pathlib import Path


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
