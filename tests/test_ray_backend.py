"""`--backend ray` on a local Ray cluster started here (fractional CPUs, two fake GPUs, the
model resource for 720x720_5s): the same takes as the local backend, spread over two actors,
crash retries, failures confined to their descendants, and batches."""
from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from ovi_studio.render.events import read_events  # noqa: E402
from ovi_studio.render.inputs import RenderOptions  # noqa: E402
from ovi_studio.render.progress import RenderProgress  # noqa: E402
from ovi_studio.render.ray_backend import RayBackend  # noqa: E402
from ovi_studio.render.session import RenderSession  # noqa: E402

import ray_engines  # noqa: E402

pytestmark = pytest.mark.slow
TESTS = Path(__file__).resolve().parent
STORY = """\
version: 1
model: 720x720_5s
shots:
  - id: a
    scene: A beach at dawn.
    audio: waves
  - id: a2
    extends: a
    scene: The beach, later.
    audio: waves
  - id: b
    scene: A pine forest.
    audio: birds
"""


@pytest.fixture(scope="module", autouse=True)
def cluster():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a loopback-only test cluster
    path = os.pathsep.join([str(TESTS.parent), str(TESTS), os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=2, num_gpus=2, resources={"ovi_720x720_5s": 2}, include_dashboard=False,
             log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}})
    yield
    ray.shutdown()


def story(folder: Path, name: str = "story") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(STORY)
    return path


def render(source: Path, out: Path, backend=None, **options):
    session = RenderSession(RenderOptions(source=source, out_dir=out, **options), RenderProgress(quiet=True))
    session.prepare()
    return session.run(backend), session


def statuses(out: Path) -> dict[str, str]:
    report = json.loads((out / "report.json").read_text())
    return {shot["id"]: shot["takes"][0]["status"] for shot in report["shots"]}


def take_files(out: Path, shot: str) -> dict[str, bytes]:
    """A take's outputs: files byte for byte, and the frames as decoded (the mkv container
    carries a random segment id)."""
    from ovi_studio.media.video import read_frames
    folder = out / "shots" / shot / "take0"
    size = json.loads((folder / "meta.json").read_text())["size"]
    files = {p.name: p.read_bytes() for p in folder.iterdir()
             if p.name in ("audio.wav", "latents.safetensors", "last_frame.png")}
    return {**files, "frames": read_frames(folder / "frames.mkv", size["width"], size["height"]).tobytes()}


def spans(out: Path) -> dict[str, tuple[float, float, str]]:
    """shot -> (dispatched, finished, worker) from events.jsonl."""
    found: dict = {}
    for event in read_events(out / "events.jsonl"):
        if event["event"] == "dispatched":
            found[event["shot"]] = (event["t"], None, event["worker"])
        elif event["event"] in ("done", "failed"):
            start, _, worker = found[event["shot"]]
            found[event["shot"]] = (start, event["t"], worker)
    return found


def test_two_chains_on_two_actors_match_the_local_backend_byte_for_byte(tmp_path, tiny_ckpt_short):
    source = story(tmp_path)
    common = dict(engine="ovi", ckpt_dir=tiny_ckpt_short, device="cpu", overrides={"steps": 1})
    local, _ = render(source, tmp_path / "local", **common)
    distributed, _ = render(source, tmp_path / "ray", RayBackend(), **common)
    assert local.exit_code == 0 and distributed.exit_code == 0, [r.reason for r in distributed.records]
    for shot in ("a", "a2", "b"):
        files = take_files(tmp_path / "ray", shot)
        assert set(files) == {"frames", "audio.wav", "latents.safetensors", "last_frame.png"}
        assert files == take_files(tmp_path / "local", shot), shot
    timeline = spans(tmp_path / "ray")
    assert timeline["b"][0] < timeline["a"][1] and timeline["a"][0] < timeline["b"][1]  # overlapping
    assert timeline["a"][2] != timeline["b"][2]  # on two actors
    assert timeline["a2"][0] >= timeline["a"][1]  # only after its parent's last frame exists
    steps = [e for e in read_events(tmp_path / "ray" / "events.jsonl") if e["event"] == "step"]
    assert {e["shot"] for e in steps} == {"a", "a2", "b"} and all("@" in e["worker"] for e in steps)


def test_a_batch_renders_three_storyboards_and_a_rerun_renders_nothing(tmp_path):
    from typer.testing import CliRunner
    from ovi_studio.cli import app
    for name in ("one", "two", "three"):
        story(tmp_path / "boards", name)
    args = ["batch", str(tmp_path / "boards"), "--engine", "preview", "--backend", "ray", "--workers", "2", "-q"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    for name in ("one", "two", "three"):
        assert set(statuses(tmp_path / "boards" / "out" / name).values()) == {"rendered"}
        assert (tmp_path / "boards" / "out" / name / "final.mp4").is_file()
    rows = [line for line in first.output.splitlines() if re.search(r"│\s+3\s+│\s+0\s+│\s+0\s+│", line)]
    assert len(rows) == 3 and "GPU s" in first.output  # the summary table: 3 rendered, 0 fresh, 0 failed
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    for name in ("one", "two", "three"):
        assert set(statuses(tmp_path / "boards" / "out" / name).values()) == {"cached"}


def test_a_killed_actor_is_restarted_and_its_take_retried_once(tmp_path):
    marker = tmp_path / "killed"
    dies = functools.partial(ray_engines.DiesOnce, "a2", str(marker))
    outcome, _ = render(story(tmp_path), tmp_path / "out", RayBackend(engine_factory=dies), engine="preview")
    assert marker.exists() and outcome.exit_code == 0, [r.reason for r in outcome.records]
    assert statuses(tmp_path / "out") == {"a": "rendered", "a2": "rendered", "b": "rendered"}
    events = read_events(tmp_path / "out" / "events.jsonl")
    assert [(e["shot"], e["attempt"]) for e in events if e["event"] == "retry"] == [("a2", 1)]
    assert [e["attempt"] for e in events if e["event"] == "done" and e["shot"] == "a2"] == [2]
    folder = tmp_path / "out" / "shots" / "a2" / "take0"
    assert not [p for p in folder.rglob("*") if ".tmp-" in p.name or p.name.startswith(".work")]
    assert sorted(p.name for p in folder.glob("frames*")) == ["frames.mkv"]


def test_a_shot_that_always_fails_blocks_its_descendants_only(tmp_path):
    fails = functools.partial(ray_engines.AlwaysFails, "a")
    outcome, _ = render(story(tmp_path), tmp_path / "out", RayBackend(engine_factory=fails), engine="preview")
    assert outcome.exit_code == 1
    assert statuses(tmp_path / "out") == {"a": "failed", "a2": "skipped", "b": "rendered"}
    reasons = {r.shot: r.reason for r in outcome.records}
    assert "a cannot render" in reasons["a"] and reasons["a2"] == "extends a, which failed"
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["failed_shots"] == ["a"]


def test_an_extension_of_the_best_take_is_keyed_by_the_driver_and_the_worker_alike(tmp_path):
    """a has two takes and no pick: a2 waits for both, the driver chooses and sends the choice;
    the worker keys a2 from it as the driver does (a local re-run finds everything current)."""
    source = story(tmp_path)
    source.write_text(STORY.replace("audio: waves\n  - id: a2", "audio: waves\n    takes: 2\n  - id: a2", 1))
    outcome, _ = render(source, tmp_path / "out", RayBackend(), engine="preview")
    assert outcome.exit_code == 0, [r.reason for r in outcome.records]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    extends = report["shots"][1]["takes"][0]["extends"]
    assert extends["take"] == 0 and extends["reason"].startswith("best by quality checks")
    when = {(e["event"], e["shot"], e["take"]): e["t"] for e in read_events(tmp_path / "out" / "events.jsonl")}
    assert when["dispatched", "a2", 0] >= max(when["done", "a", 0], when["done", "a", 1])
    again, _ = render(source, tmp_path / "out", engine="preview")
    assert {r.status for r in again.records} == {"cached"}
