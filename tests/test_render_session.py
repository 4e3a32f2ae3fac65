"""Render sessions end to end: chains, takes, exact durations, incremental re-renders.

The model runs as the tiny checkpoint on the CPU with 2 steps; the preview engine covers what
does not need the model (20-shot drift, re-render bookkeeping)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ovi_studio.media import probe
from ovi_studio.render.assembly import SAMPLES_PER_FRAME
from ovi_studio.render.progress import RenderProgress
from ovi_studio.render.inputs import RenderOptions
from ovi_studio.render.session import RenderSession

FOUR_SHOTS = """\
version: 1
model: 720x720_5s
defaults:
  seed: 7
characters:
  ada:
    name: Ada
    look: a woman in a green coat
    voice: A calm low voice.
shots:
  - id: a
    scene: "{ada} stands on a pier at dawn."
    dialogue:
      - speaker: ada
        line: The boats are late today.
    audio: gulls and waves
  - id: b
    extends: a
    scene: "{ada} walks along the pier."
    audio: footsteps on wood
  - id: c
    extends: b
    seed_frame: sharpest
    scene: "{ada} stops at the end of the pier."
    dialogue:
      - speaker: ada
        line: There they are.
    audio: gulls and waves
  - id: d
    takes: 2
    transition: crossfade
    transition_frames: 6
    scene: A fishing boat comes into the harbour.
    audio: a boat engine
"""


def write(tmp_path: Path, text: str, name: str = "story.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def render(story: Path, out: Path, engine_factory=None, **kw):
    session = RenderSession(RenderOptions(source=story, out_dir=out, **kw), RenderProgress(quiet=True),
                            engine_factory)
    session.prepare()
    return session, session.run()


def statuses(outcome) -> dict[str, str]:
    return {f"{r.shot}/{r.take}": r.status for r in outcome.records}


def expected_frames(session, report_final) -> int:
    """Sum of the shots minus the dropped seam frames, the trims to a sharper seed frame and
    the crossfades: recomputed from the takes' meta.json."""
    out = session.out_dir
    shots = session.loaded.shots
    total = 0
    for i, shot in enumerate(shots):
        meta = json.loads((out / "shots" / shot.id / "take0" / "meta.json").read_text())
        kept = meta["size"]["frames"]
        if shot.extends and i and shots[i - 1].id == shot.extends:
            kept -= 1
        nxt = shots[i + 1] if i + 1 < len(shots) else None
        if nxt is not None and nxt.extends == shot.id:
            child = json.loads((out / "shots" / nxt.id / "take0" / "meta.json").read_text())
            kept -= meta["size"]["frames"] - 1 - child["parent"]["index"]
        if i and shot.settings.transition == "crossfade":
            kept -= shot.settings.transition_frames
        total += kept
    return total


def check_cut(session, outcome):
    final = session.out_dir / outcome.final["path"]
    frames = probe.count_video_frames(final)
    samples = probe.count_audio_samples(final)
    assert frames == outcome.final["frames"] == expected_frames(session, outcome.final)
    assert outcome.final["audio_samples_48k"] == frames * SAMPLES_PER_FRAME
    assert abs(samples / 48000 - frames / 24) <= 1 / 24
    return frames


@pytest.mark.slow
def test_four_shots_with_a_chain_and_two_takes(tmp_path):
    story = write(tmp_path, FOUR_SHOTS)
    session, outcome = render(story, tmp_path / "out", engine="preview")
    assert outcome.exit_code == 0, [r.reason for r in outcome.records]
    assert set(statuses(outcome).values()) == {"rendered"} and len(outcome.records) == 5
    frames = check_cut(session, outcome)
    assert frames < 4 * 121 - 2 - 6 + 1  # seams dropped, crossfade overlapped
    report = json.loads((session.out_dir / "report.json").read_text())
    assert [len(s["takes"]) for s in report["shots"]] == [1, 1, 1, 2]
    assert report["final"]["path"] == "final.mp4" and report["final"]["srt"] == "final.srt"
    take = report["shots"][3]["takes"][1]
    assert take["seed"] == 8 and "clip" not in take["files"]
    # viewing copies exist only where something shows them: the review page plays the take in
    # the cut from the cut itself, and the other take from its clip.mp4
    page = (session.out_dir / "report.html").read_text()
    for shot in report["shots"]:
        for take in shot["takes"]:
            clip = session.out_dir / take["dir"] / "clip.mp4"
            in_cut = take["take"] == shot["pick"]["take"]
            assert clip.is_file() != in_cut
            assert (f'src="{take["dir"]}/clip.mp4"' in page) != in_cut
    assert page.count('src="final.mp4#t=') == 4


@pytest.mark.slow
def test_four_shots_with_a_chain_and_two_takes_through_the_model(tmp_path, tiny_ckpt_short):
    """The same storyboard through the tiny model in the real checkpoint formats (a short
    variant, 17 frames per take): every take renders, the cut drops the seams, streams agree."""
    story = write(tmp_path, FOUR_SHOTS)
    session, outcome = render(story, tmp_path / "out", engine="ovi", ckpt_dir=tiny_ckpt_short,
                              device="cpu", overrides={"steps": 2})
    assert outcome.exit_code == 0, [r.reason for r in outcome.records]
    assert set(statuses(outcome).values()) == {"rendered"} and len(outcome.records) == 5
    frames = check_cut(session, outcome)
    assert frames < 4 * 17 - 2 - 6 + 1
    meta = json.loads((session.out_dir / "shots" / "c" / "take0" / "meta.json").read_text())
    assert meta["size"]["frames"] == 17 and meta["parent"]["shot"] == "b"


TWO_SHOT_CHAIN = """\
version: 1
model: 720x720_5s
shots:
  - id: a
    scene: A red kite over a green hill.
    audio: wind
  - id: b
    extends: a
    seed_frame: sharpest
    scene: The kite dives.
    audio: wind
"""


@pytest.mark.slow  # the tiny model decodes 121 frames per take on the CPU
def test_the_model_renders_a_chain_through_the_same_session(tmp_path, tiny_ckpt):
    story = write(tmp_path, TWO_SHOT_CHAIN)
    session, outcome = render(story, tmp_path / "out", engine="ovi", ckpt_dir=tiny_ckpt,
                              device="cpu", overrides={"steps": 2})
    assert outcome.exit_code == 0, [r.reason for r in outcome.records]
    check_cut(session, outcome)
    take = session.out_dir / "shots" / "b" / "take0"
    meta = json.loads((take / "meta.json").read_text())
    assert meta["engine"]["name"] == "ovi" and meta["engine"]["checkpoint"].startswith("sha256:")
    assert meta["settings"]["steps"] == 2 and meta["timings"]["denoise"] > 0
    # the plan applies the checkpoint's arch.json (video_area 128*128): planned == rendered
    assert meta["size"] == meta["planned"] == {"height": 128, "width": 128, "frames": 121}
    assert meta["parent"]["shot"] == "a" and meta["parent"]["mode"] == "sharpest"
    assert meta["color_match"]["reference_shot"] == "a"
    from safetensors.torch import load_file
    latents = load_file(take / "latents.safetensors")
    assert latents["video"].shape[:2] == (48, 31) and latents["audio"].shape == (157, 20)
    from ovi_studio.render.viewing import viewing_copy
    clip = probe.probe(viewing_copy(take))
    assert clip.first("video").pix_fmt == "yuv420p" and clip.first("audio").sample_rate == 48000
    _, again = render(story, tmp_path / "out", engine="ovi", ckpt_dir=tiny_ckpt, device="cpu",
                      overrides={"steps": 2})
    assert set(statuses(again).values()) == {"cached"}


class _OutOfMemoryOnce:
    """A preview engine whose first take runs out of memory unless the VAE is tiled."""

    def __init__(self):
        from ovi_studio.render.preview import PreviewEngine
        self.inner, self.name, self.color_drift = PreviewEngine(speech=False), "preview", False
        self.settings_seen = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def render(self, job, first_frame, on_step=None, on_phase=None):
        from ovi_studio.render.engines import OOM_ADVICE, OutOfMemory
        self.settings_seen.append(dict(job.settings))
        if not job.settings.get("tiled_vae"):
            raise OutOfMemory(OOM_ADVICE)
        return self.inner.render(job, first_frame, on_step)


@pytest.mark.parametrize("retry", [False, True])
def test_out_of_memory_gives_advice_and_retries_once_when_asked(tmp_path, retry):
    story = write(tmp_path, "version: 1\nmodel: 720x720_5s\nshots:\n  - id: one\n    scene: A cat.\n")
    engine = _OutOfMemoryOnce()
    session = RenderSession(RenderOptions(source=story, out_dir=tmp_path / "out", engine="preview",
                                          oom_retry=retry), RenderProgress(quiet=True), lambda: engine)
    session.prepare()
    outcome = session.run()
    if retry:
        assert outcome.exit_code == 0 and len(engine.settings_seen) == 2
        assert engine.settings_seen[1]["blocks_to_swap"] >= 20
    else:
        assert outcome.exit_code == 1 and len(engine.settings_seen) == 1
        assert "tiled_vae" in outcome.records[0].reason and "blocks_to_swap" in outcome.records[0].reason


@pytest.mark.slow
def test_twenty_shots_do_not_drift(tmp_path):
    shots = "\n".join(f"  - id: s{i:02d}\n    scene: Shot number {i}.\n    audio: room tone\n"
                      + ("    dialogue:\n      - speaker: Bo\n        line: One two three.\n" if i % 3 == 0 else "")
                      for i in range(20))
    story = write(tmp_path, f"version: 1\nmodel: 720x720_5s\noutput:\n  loudness: off\nshots:\n{shots}")
    session, outcome = render(story, tmp_path / "out", engine="preview")
    assert outcome.exit_code == 0
    assert check_cut(session, outcome) == 20 * 121


def run_state(path) -> bool:
    """What each run writes anew: its reports and event log (times, counts) and the tool's own state folder
    (the output-folder lock names the run holding it)."""
    return path.name in ("report.json", "report.html", "events.jsonl") or ".ovi-studio" in path.parts


@pytest.mark.slow
def test_rendering_again_renders_nothing_and_edits_cascade_to_descendants_only(tmp_path):
    story = write(tmp_path, FOUR_SHOTS)
    session, first = render(story, tmp_path / "out", engine="preview")
    assert first.exit_code == 0
    before = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file() and not run_state(p)}

    def no_engine():
        raise AssertionError("an up-to-date render must not create an engine")

    _, again = render(story, tmp_path / "out", engine_factory=no_engine, engine="preview")
    assert set(statuses(again).values()) == {"cached"} and again.final["status"] == "cached"
    after = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file() and not run_state(p)}
    assert after == before  # nothing rendered, nothing re-encoded (the cut included)

    write(tmp_path, FOUR_SHOTS.replace("walks along the pier", "runs along the pier"))
    session, edited = render(story, tmp_path / "out", engine="preview")
    assert statuses(edited) == {"a/0": "cached", "b/0": "rendered", "c/0": "rendered",
                                "d/0": "cached", "d/1": "cached"}
    a_files = [p for p in before if "/shots/a/" in p.as_posix() or "/shots/d/" in p.as_posix()]
    assert all(p.read_bytes() == before[p] for p in a_files)
    check_cut(session, edited)


@pytest.mark.slow
def test_force_only_and_takes(tmp_path):
    story = write(tmp_path, FOUR_SHOTS)
    render(story, tmp_path / "out", engine="preview")
    _, forced = render(story, tmp_path / "out", engine="preview", force=["d"])
    assert statuses(forced) == {"a/0": "cached", "b/0": "cached", "c/0": "cached",
                                "d/0": "rendered", "d/1": "rendered"}
    _, only = render(story, tmp_path / "fresh", engine="preview", only=["b"])
    assert statuses(only) == {"a/0": "rendered", "b/0": "rendered", "c/0": "not selected",
                              "d/0": "not selected", "d/1": "not selected"}
    # shots of the cut without any take: no cut, and the exit code says so (issue 16.7)
    assert only.final["status"] == "skipped" and only.final["missing"] == ["c", "d"]
    assert only.exit_code == 1
    _, three = render(story, tmp_path / "out", engine="preview", takes=3)
    rendered = sorted(k for k, v in statuses(three).items() if v == "rendered")
    assert rendered == ["a/1", "a/2", "b/1", "b/2", "c/1", "c/2", "d/2"]  # take 0 seeds the chain
