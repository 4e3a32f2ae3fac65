"""A take is reused only while its files are the ones it committed: a file corrupted in place,
even at the same size, makes the take stale ("file changed since render") in `plan`, and `render`
renders it again instead of cutting the corrupted file into the film."""
from __future__ import annotations

import hashlib
import json

from typer.testing import CliRunner

from ovi_studio.cli import app

runner = CliRunner()
STORY = """\
version: 1
model: 720x720_5s
output:
  loudness: off
shots:
  - id: a
    scene: A paper boat on a stream.
    audio: water
  - id: b
    scene: A heron by the reeds.
    audio: wind
"""


def statuses(out) -> dict[str, str]:
    report = json.loads((out / "report.json").read_text())
    return {s["id"]: s["takes"][0]["status"] for s in report["shots"]}


def corrupt_in_place(path) -> None:
    """Same size, other bytes in the middle (what a bad disk or a careless tool leaves)."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(255 - b for b in data[middle:middle + 16])
    path.write_bytes(bytes(data))


def test_a_take_corrupted_at_the_same_size_is_stale_and_rendered_again(tmp_path):
    story, out = tmp_path / "story.yaml", tmp_path / "out"
    story.write_text(STORY)
    first = runner.invoke(app, ["render", str(story), "-o", str(out), "--engine", "preview", "-q"])
    assert first.exit_code == 0, first.output
    take = out / "shots" / "a" / "take0"
    meta = json.loads((take / "meta.json").read_text())
    frames = take / meta["files"]["frames"]["path"]
    size = frames.stat().st_size
    corrupt_in_place(frames)
    assert frames.stat().st_size == size

    plan = runner.invoke(app, ["plan", str(story), "--out", str(out), "--engine", "preview", "--json"])
    reasons = {t["shot"]: (t["status"], t["reasons"]) for t in json.loads(plan.output)["takes"]}
    assert reasons == {"a": ("stale", ["file changed since render (frames.mkv)"]), "b": ("fresh", [])}

    again = runner.invoke(app, ["render", str(story), "-o", str(out), "--engine", "preview", "-q"])
    assert again.exit_code == 0, again.output
    assert statuses(out) == {"a": "rendered", "b": "cached"}
    recorded = json.loads((take / "meta.json").read_text())["files"]["frames"]["sha256"]
    assert hashlib.sha256(frames.read_bytes()).hexdigest() == recorded
