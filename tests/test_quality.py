"""Quality checks: a clean preview cut passes; planted defects (a black stretch, a loudness
error, an A/V offset, a seam jump, silence under dialogue, clipping) each fail their check."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ovi_studio.media import audio, ffmpeg
from ovi_studio import take_choice
from ovi_studio.render import quality
from ovi_studio.storyboard import QcThresholds
from preview_render import rendered_fixture

rendered = rendered_fixture("qc")


def seam(report) -> int:
    """Where the extension `walk` starts in the cut."""
    return next(s["cut_start"] for s in report["final"]["segments"] if s["shot"] == "walk")


def cut_facts(out: Path, report, path: Path) -> quality.CutFacts:
    meta = json.loads((out / "shots/pier/take0/meta.json").read_text())
    return quality.CutFacts(path, meta["size"]["width"], meta["size"]["height"], report["final"]["frames"],
                            [("walk", seam(report))], -16.0, still_frames=True)


def planted(out: Path, name: str, *args: str) -> Path:
    target = out / name
    ffmpeg.run(ffmpeg.command("-i", out / "final.mp4", *args, target))
    return target


def statuses(checks) -> dict[str, str]:
    return {c.name: c.status for c in checks}


def failed(checks) -> set[str]:
    return {c.name for c in take_choice.failures(checks)}


@pytest.mark.slow
def test_clean_cut_passes_and_report_has_it(rendered):
    out, report = rendered
    checks = quality.check_cut(cut_facts(out, report, out / "final.mp4"), QcThresholds())
    assert failed(checks) == set()
    assert statuses(checks)["seam"] == "pass" and statuses(checks)["loudness"] == "pass"
    assert {c["check"] for c in report["final"]["qc"]} >= {"loudness", "true_peak", "av_sync", "black"}
    take = report["shots"][1]["takes"][0]
    assert take["qc_score"] == 1.0 and statuses(map(quality.Check.from_json, take["qc"]))["speech"] == "pass"


def test_planted_black_stretch(rendered):
    out, report = rendered
    path = planted(out, "black.mp4", "-vf", "drawbox=color=black:t=fill:enable='between(t,2,3.2)'",
                   "-c:a", "copy")
    checks = quality.check_cut(cut_facts(out, report, path), QcThresholds())
    assert failed(checks) == {"black"}
    black = next(c for c in checks if c.name == "black")
    assert 1.0 <= black.value <= 1.4 and "from 2.0" in black.detail


def test_planted_loudness_error(rendered):
    out, report = rendered
    path = planted(out, "quiet.mp4", "-c:v", "copy", "-af", "volume=-9dB", "-c:a", "aac")
    checks = quality.check_cut(cut_facts(out, report, path), QcThresholds())
    assert failed(checks) == {"loudness"}
    assert next(c for c in checks if c.name == "loudness").value == pytest.approx(-25.0, abs=0.6)
    # the threshold comes from the storyboard's qc: section
    assert not failed(quality.check_cut(cut_facts(out, report, path),
                                        QcThresholds(loudness_tolerance_lu=10.0)))


def test_planted_av_offset(rendered):
    out, report = rendered
    shifted, final = out / "offset.mp4", out / "final.mp4"
    ffmpeg.run(ffmpeg.command("-i", final, "-itsoffset", "0.25", "-i", final, "-map", "0:v",
                              "-map", "1:a", "-c", "copy", shifted))
    checks = quality.check_cut(cut_facts(out, report, shifted), QcThresholds())
    assert "av_sync" in failed(checks)
    assert next(c for c in checks if c.name == "av_sync").value == pytest.approx(250, abs=30)


def test_planted_seam_jump(rendered):
    out, report = rendered
    at = seam(report)
    path = planted(out, "seam.mp4", "-vf", f"eq=brightness=0.25:enable='gte(n,{at})'", "-c:a", "copy")
    checks = quality.check_cut(cut_facts(out, report, path), QcThresholds())
    assert failed(checks) == {"seam"}
    assert f"frame {at}" in next(c for c in checks if c.name == "seam").detail


def test_take_checks_silence_and_clipping(rendered, tmp_path):
    out, _ = rendered
    take = out / "shots/pier/take0"
    samples, rate = audio.read_wav(take / "audio.wav")
    facts = quality.TakeFacts(take / "frames.mkv", tmp_path / "a.wav", 121, ["The boats are late today.", "They are always late."], True)
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
