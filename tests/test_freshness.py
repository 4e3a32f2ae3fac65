"""One freshness decision: `plan`, `render --dry-run` and `render` agree on what renders and
why, whatever happened to the output folder; a take is reused only while its files verify; an
undone edit re-links a stored take instead of rendering; `cache gc` removes only what no shot
points at."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ovi_studio.cli import app

runner = CliRunner()

STORY = """\
version: 1
model: 720x720_5s
engine: preview
defaults: {seed: 7, aspect: "1:1"}
shots:
  - id: a
    prompt: "A lamp glows. Audio: hum."
  - id: b
    extends: a
    prompt: "The lamp flickers. Audio: buzz."
  - id: c
    prompt: "Rain on glass. Audio: rain."
"""


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    assert "Traceback" not in result.output, result.output
    return result


def planned(story, out, *extra) -> dict[str, str]:
    """take -> action, from `plan --json`."""
    result = invoke("plan", story, "-o", out, "--json", *extra)
    assert result.exit_code == 0, result.output
    return {f"{t['shot']}/take{t['take']}": t["action"] for t in json.loads(result.output)["takes"]}


def dry_run(story, out, *extra) -> set[str]:
    result = invoke("render", story, "-o", out, "--dry-run", *extra)
    assert result.exit_code == 0, result.output
    return {line.split()[0] for line in result.output.splitlines()
            if line.startswith("  ") and "  render" in line}


def rendered(story, out, *extra) -> set[str]:
    result = invoke("render", story, "-o", out, "-q", *extra)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    return {f"{s['id']}/take{t['take']}" for s in report["shots"] for t in s["takes"]
            if t["status"] == "rendered"}


def agree(story, out, *extra) -> set[str]:
    """What plan, dry-run and render each say renders; asserts they are one answer."""
    plan = {take for take, action in planned(story, out, *extra).items() if action == "render"}
    assert dry_run(story, out, *extra) == plan
    assert rendered(story, out, *extra) == plan
    return plan


def corrupt(path: Path) -> None:
    """Flip one byte in the middle: same size, new mtime."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.fixture(scope="module")
def first_render(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fresh")
    story = folder / "story.yaml"
    story.write_text(STORY)
    out = folder / "out"
    assert agree(story, out) == {"a/take0", "b/take0", "c/take0"}
    assert agree(story, out) == set()
    return story, out


@pytest.fixture
def rendered_story(first_render):
    """The storyboard as first written, every take up to date (whatever an earlier test did)."""
    story, out = first_render
    story.write_text(STORY)
    rendered(story, out)
    assert set(planned(story, out).values()) == {"up to date"}
    return story, out


@pytest.mark.parametrize("name, damage", [
    ("frames.mkv", corrupt), ("frames.mkv", Path.unlink), ("audio.wav", truncate),
    ("last_frame.png", corrupt), ("plate.png", Path.unlink), ("meta.json", Path.unlink),
    ("meta.json", truncate),
])
@pytest.mark.slow
def test_plan_dry_run_and_render_agree_after_damage(rendered_story, name, damage):
    story, out = rendered_story
    damage(out / "shots" / "a" / "take0" / name)
    plan = planned(story, out)
    assert plan == {"a/take0": "render", "b/take0": "render", "c/take0": "up to date"}
    assert agree(story, out) == {"a/take0", "b/take0"}
    assert agree(story, out) == set()


def test_a_changed_file_is_named_as_the_reason(rendered_story):
    story, out = rendered_story
    corrupt(out / "shots" / "c" / "take0" / "audio.wav")
    take = json.loads(invoke("plan", story, "-o", out, "--json").output)["takes"][2]
    assert take["reasons"] == ["file changed since render (audio.wav)"]
    assert agree(story, out) == {"c/take0"}


@pytest.mark.slow
def test_a_parent_rendered_again_makes_its_extension_stale(rendered_story):
    story, out = rendered_story
    assert agree(story, out, "--force", "a") == {"a/take0", "b/take0"}
    plan = json.loads(invoke("plan", story, "-o", out, "--json", "--force", "a").output)["takes"]
    assert plan[0]["reasons"] == ["forced (--force)"]
    assert plan[1]["reasons"] == ["upstream shot a renders"]


@pytest.mark.slow
def test_selection_and_settings_plan_as_they_render(rendered_story):
    story, out = rendered_story
    actions = planned(story, out, "--set", "steps=7", "--only", "b")
    assert actions == {"a/take0": "render", "b/take0": "render", "c/take0": "not selected"}
    assert agree(story, out, "--set", "steps=7", "--only", "b") == {"a/take0", "b/take0"}


@pytest.mark.slow
def test_undoing_an_edit_relinks_the_stored_take_without_rendering(rendered_story):
    story, out = rendered_story
    link = out / "shots" / "c" / "take0"
    first = os.readlink(link)
    assert first.startswith("../../.takes/")
    story.write_text(STORY.replace("Rain on glass", "Snow on glass"))
    assert agree(story, out) == {"c/take0"}
    assert os.readlink(link) != first
    story.write_text(STORY)
    take = json.loads(invoke("plan", story, "-o", out, "--json").output)["takes"][2]
    assert take["action"] == "reuse"
    assert take["reasons"] == ["prompt changed", "a stored take matches: re-linked, no render"]
    assert dry_run(story, out) == set()
    assert rendered(story, out) == set()  # nothing rendered
    assert os.readlink(link) == first
    assert set(planned(story, out).values()) == {"up to date"}


@pytest.mark.slow
def test_cache_gc_removes_only_takes_no_shot_points_at(rendered_story):
    story, out = rendered_story
    story.write_text(STORY.replace("Rain on glass", "Hail on glass"))
    rendered(story, out)
    hail = (out / "shots" / "c" / "take0").resolve()
    story.write_text(STORY)
    rendered(story, out)  # back to the rain take: the hail take is stored, unreferenced
    listing = invoke("cache", "gc", story, "-o", out, "--dry-run")
    assert listing.exit_code == 0 and f"would remove {hail}" in listing.output
    assert "nothing removed" in listing.output and hail.is_dir()
    removed = invoke("cache", "gc", story, "-o", out)
    assert removed.exit_code == 0 and f"removed {hail}" in removed.output
    assert not hail.exists()
    assert set(planned(story, out).values()) == {"up to date"}
    assert "0 unreferenced" in invoke("cache", "gc", story, "-o", out).output


@pytest.mark.slow
def test_a_take_folder_from_before_the_store_is_read_then_moved_into_it(tmp_path):
    story = tmp_path / "story.yaml"
    story.write_text(STORY)
    out = tmp_path / "out"
    rendered(story, out)
    for shot in ("a", "b", "c"):  # the layout older renders left: real folders, no store
        link = out / "shots" / shot / "take0"
        stored = link.resolve()
        link.unlink()
        shutil.move(stored, link)
    shutil.rmtree(out / ".takes")
    assert set(planned(story, out).values()) == {"up to date"}
    story.write_text(STORY.replace("Rain on glass", "Snow on glass"))
    assert agree(story, out) == {"c/take0"}
    link = out / "shots" / "c" / "take0"
    assert link.is_symlink() and (out / "shots" / "a" / "take0").is_dir()
    story.write_text(STORY)  # the old folder was kept, in the store, under its own key
    assert planned(story, out)["c/take0"] == "reuse"
    assert rendered(story, out) == set()


@pytest.mark.slow
def test_without_symbolic_links_the_take_in_use_is_a_folder_and_undo_still_reuses(tmp_path, monkeypatch):
    import ovi_studio
    from ovi_studio.render.progress import RenderProgress

    def no_links(*args, **kwargs):
        raise OSError(1, "Operation not permitted")
    monkeypatch.setattr(os, "symlink", no_links)
    story = tmp_path / "story.yaml"
    story.write_text(STORY)
    options = ovi_studio.RenderOptions(out_dir=tmp_path / "out")

    def render_it():
        outcome = ovi_studio.render(story, options, progress=RenderProgress(quiet=True))
        assert outcome.exit_code == 0
        return {r.shot: r.status for r in outcome.records}
    assert render_it() == {"a": "rendered", "b": "rendered", "c": "rendered"}
    take = tmp_path / "out" / "shots" / "c" / "take0"
    assert take.is_dir() and not take.is_symlink() and (take / "meta.json").is_file()
    story.write_text(STORY.replace("Rain on glass", "Snow on glass"))
    assert render_it()["c"] == "rendered"
    story.write_text(STORY)
    assert [t.action for t in ovi_studio.build_plan(story, options).steps] == ["up to date", "up to date", "reuse"]
    assert render_it() == {"a": "cached", "b": "cached", "c": "cached"}
    assert json.loads((take / "meta.json").read_text())["prompt"].startswith("Rain on glass")
