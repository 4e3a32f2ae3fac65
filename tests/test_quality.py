"""Quality checks: a clean preview cut passes; planted defects (a black stretch, a loudness
error, an A/V offset, a seam jump, silence under dialogue, clipping) each fail their check."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ovi_studio.media import audio, ffmpeg
from ovi_studio.render import quality
from ovi_studio.render.inputs import RenderOptions
from ovi_studio.render.progress import RenderProgress
from ovi_studio.render.session import RenderSession
from ovi_studio.storyboard import QcThresholds

STORY = """\
version: 1
model: 720x720_5s
engine: preview
characters:
  ada: {name: Ada, look: a woman in a green coat, voice: A calm low voice.}
shots:
  - id: a
    scene: "{ada} stands on a pier at dawn."
    dialogue: [{speaker: ada, line: The boats are late today.}]
    audio: gulls and waves
  - id: b
    extends: a
    scene: "{ada} walks along the pier."
    audio: footsteps on wood
"""


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    root = tmp_path_factory.mktemp("qc")
    story = root / "story.yaml"
    story.write_text(STORY, encoding="utf-8")
    session = RenderSession(RenderOptions(source=story, out_dir=root / "out"), RenderProgress(quiet=True))
    session.prepare()
    outcome = session.run()
    assert outcome.exit_code == 0
    return session, json.loads((root / "out" / "report.json").read_text())


def cut_facts(session, report, path: Path) -> quality.CutFacts:
    final = report["final"]
    meta = json.loads((session.out_dir / "shots/a/take0/meta.json").read_text())
    return quality.CutFacts(path, meta["size"]["width"], meta["size"]["height"], final["frames"],
                            [("b", final["segment_starts"][1])], -16.0, still_frames=True)


def planted(session, name: str, *args: str) -> Path:
    out = session.out_dir / name
    ffmpeg.run(ffmpeg.command("-i", session.out_dir / "final.mp4", *args, out))
    return out


def statuses(checks) -> dict[str, str]:
    return {c.name: c.status for c in checks}


def failed(checks) -> set[str]:
    return {c.name for c in quality.failures(checks)}


def test_clean_cut_passes_and_report_has_it(rendered):
    session, report = rendered
    checks = quality.check_cut(cut_facts(session, report, session.out_dir / "final.mp4"), QcThresholds())
    assert failed(checks) == set()
    assert statuses(checks)["seam"] == "pass" and statuses(checks)["loudness"] == "pass"
    assert {c["check"] for c in report["final"]["qc"]} >= {"loudness", "true_peak", "av_sync", "black"}
    take = report["shots"][0]["takes"][0]
    assert take["qc_score"] == 1.0 and statuses(map(quality.Check.from_json, take["qc"]))["speech"] == "pass"


def test_planted_black_stretch(rendered):
    session, report = rendered
    path = planted(session, "black.mp4", "-vf", "drawbox=color=black:t=fill:enable='between(t,2,3.2)'",
                   "-c:a", "copy")
    checks = quality.check_cut(cut_facts(session, report, path), QcThresholds())
    assert failed(checks) == {"black"}
    black = next(c for c in checks if c.name == "black")
    assert 1.0 <= black.value <= 1.4 and "from 2.0" in black.detail


def test_planted_loudness_error(rendered):
    session, report = rendered
    path = planted(session, "quiet.mp4", "-c:v", "copy", "-af", "volume=-9dB", "-c:a", "aac")
    checks = quality.check_cut(cut_facts(session, report, path), QcThresholds())
    assert failed(checks) == {"loudness"}
    assert next(c for c in checks if c.name == "loudness").value == pytest.approx(-25.0, abs=0.6)
    # the threshold comes from the storyboard's qc: section
    assert not failed(quality.check_cut(cut_facts(session, report, path),
                                        QcThresholds(loudness_tolerance_lu=10.0)))


def test_planted_av_offset(rendered):
    session, report = rendered
    out = session.out_dir / "offset.mp4"
    final = session.out_dir / "final.mp4"
    ffmpeg.run(ffmpeg.command("-i", final, "-itsoffset", "0.25", "-i", final, "-map", "0:v",
                              "-map", "1:a", "-c", "copy", out))
    checks = quality.check_cut(cut_facts(session, report, out), QcThresholds())
    assert "av_sync" in failed(checks)
    assert next(c for c in checks if c.name == "av_sync").value == pytest.approx(250, abs=30)


def test_planted_seam_jump(rendered):
    session, report = rendered
    seam = report["final"]["segment_starts"][1]
    path = planted(session, "seam.mp4", "-vf", f"eq=brightness=0.25:enable='gte(n,{seam})'", "-c:a", "copy")
    checks = quality.check_cut(cut_facts(session, report, path), QcThresholds())
    assert failed(checks) == {"seam"}
    assert f"frame {seam}" in next(c for c in checks if c.name == "seam").detail


def test_take_checks_silence_and_clipping(rendered, tmp_path):
    session, _ = rendered
    take = session.out_dir / "shots/a/take0"
    samples, rate = audio.read_wav(take / "audio.wav")
    facts = quality.TakeFacts(take / "frames.mkv", tmp_path / "a.wav", 121, ["The boats are late today."], True)
    audio.write_wav(facts.audio_path, np.zeros_like(samples), rate)
    assert failed(quality.check_take(facts, QcThresholds())) == {"speech"}
    audio.write_wav(facts.audio_path, np.clip(samples * 50, -1, 1), rate)
    assert "clipping" in failed(quality.check_take(facts, QcThresholds()))
    audio.write_wav(facts.audio_path, samples[: rate * 4], rate)  # a second short of the video
    assert "av_sync" in failed(quality.check_take(facts, QcThresholds()))
    # no dialogue asked: silence is fine
    audio.write_wav(facts.audio_path, np.zeros_like(samples), rate)
    silent = quality.TakeFacts(facts.frames_path, facts.audio_path, 121, [], True)
    assert statuses(quality.check_take(silent, QcThresholds()))["speech"] == "skip"


def test_fail_on_names():
    assert quality.parse_fail_on("black, loudness") == {"black", "loudness"}
    assert quality.parse_fail_on("all") == set(quality.CHECKS)
    from ovi_studio.errors import UserError
    with pytest.raises(UserError, match="blak"):
        quality.parse_fail_on("blak")
