"""Editor hand-off: the exported timelines load back with the cut's clips, in/out points,
durations, transitions and markers."""
from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from fractions import Fraction

import pytest

otio = pytest.importorskip("opentimelineio")

from ovi_studio.export import export  # noqa: E402
from preview_render import rendered_fixture  # noqa: E402

rendered = rendered_fixture("export")


@pytest.mark.slow
def test_otio_clips_durations_markers(rendered):
    out, report = rendered
    path = export(out, "otio", None, "The pier")
    assert path == out / "final.otio"
    timeline = otio.adapters.read_from_file(str(path))
    video, sound = timeline.tracks
    assert [c.name for c in video.find_clips()] == ["harbour", "pier", "walk", "boat"]
    assert [c.name for c in sound.find_clips()] == ["harbour", "pier", "walk", "boat"]
    frames = report["final"]["frames"]
    assert video.duration().to_frames() == frames == sound.duration().to_frames()
    clips = {c.name: c for c in video.find_clips()}
    # the extension drops its seam frame; the crossfade of 6 frames is split 3/3 around the cut
    assert clips["walk"].source_range.start_time.to_frames() == 1
    assert clips["boat"].source_range.start_time.to_frames() == 3
    assert clips["walk"].source_range.end_time_exclusive().to_frames() == 121 - 3
    transitions = [t for t in video if isinstance(t, otio.schema.Transition)]
    assert len(transitions) == 1 and transitions[0].in_offset.to_frames() + transitions[0].out_offset.to_frames() == 6
    assert clips["pier"].media_reference.target_url.endswith("shots/pier/take0/clip.mp4")
    names = [m.name for m in clips["pier"].markers]
    assert names == ["shot pier", "Ada: The boats are late today.", "Ada: They are always late."]
    assert all(m.marked_range.start_time.to_frames() < 121 for m in clips["pier"].markers)
    # a dialogue marker sits where the subtitles show the line: media time -> cut time
    pier = next(s for s in report["final"]["segments"] if s["shot"] == "pier")
    marker = clips["pier"].markers[1].marked_range.start_time.to_frames()
    first_cue = (out / "final.srt").read_text().split("\n")[1].split(" --> ")[0]
    h, m, rest = first_cue.split(":")
    cue_frames = round((int(h) * 3600 + int(m) * 60 + float(rest.replace(",", "."))) * 24)
    assert marker - pier["start_frame"] + pier["cut_start"] == cue_frames
    assert clips["harbour"].metadata["ovi_studio"]["take"] in (0, 1)


def test_fcpxml_parses_and_durations_match(rendered):
    out, report = rendered
    path = export(out, "fcpxml", out / "cut.fcpxml", "The pier")
    root = ET.parse(path).getroot()
    assert root.tag == "fcpxml"
    sequence = root.find(".//sequence")
    seconds = lambda text: Fraction(text.rstrip("s"))  # noqa: E731
    assert seconds(sequence.get("duration")) == Fraction(report["final"]["frames"], 24)
    spine = sequence.find("spine")
    clips = [c for c in spine if c.tag in ("clip", "asset-clip")]
    assert [c.get("name") for c in clips] == ["harbour", "pier", "walk", "boat"]
    assert sum(seconds(c.get("duration")) for c in clips) == Fraction(report["final"]["frames"], 24)
    assert any(m.get("value") == "Ada: The boats are late today." for m in spine.iter("marker"))


@pytest.mark.slow
def test_fcp7_xml_edl_and_bundle(rendered):
    out, report = rendered
    xml = ET.parse(export(out, "xml", None, "The pier")).getroot()
    assert xml.tag == "xmeml"
    assert int(xml.find(".//sequence/duration").text) == report["final"]["frames"]
    edl = otio.adapters.read_from_file(str(export(out, "edl", None, "The pier")), rate=24)
    assert [c.name for c in edl.find_clips()] == ["harbour", "pier", "walk", "boat"]
    assert edl.duration().to_frames() == report["final"]["frames"]
    bundle = export(out, "otioz", None, "The pier")
    with zipfile.ZipFile(bundle) as z:
        media = sorted(n for n in z.namelist() if n.startswith("media/"))
    take = report["shots"][0]["pick"]["take"]
    assert media == ["media/boat-take0.mp4", f"media/harbour-take{take}.mp4",
                     "media/pier-take0.mp4", "media/walk-take0.mp4"]


@pytest.mark.slow
def test_cli_errors_are_messages(rendered, tmp_path):
    out, _ = rendered
    story = out.parent / "story.yaml"
    run = lambda *a: subprocess.run([sys.executable, "-m", "ovi_studio", "export", *a],  # noqa: E731
                                    capture_output=True, text=True)
    bad = run(str(story), "--format", "mov", "--render-dir", str(out))
    assert bad.returncode == 2 and "expected one of otio" in bad.stderr
    empty = run(str(story), "--render-dir", str(tmp_path))
    assert empty.returncode == 2 and "report.json" in empty.stderr and "Traceback" not in empty.stderr
    ok = run(str(story), "-f", "otio", "-o", str(tmp_path / "x.otio"), "--render-dir", str(out))
    assert ok.returncode == 0 and (tmp_path / "x.otio").is_file()
