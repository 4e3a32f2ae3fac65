"""Delivery-grade audio: the cut's track is stereo 48 kHz AAC at the documented bitrate, and
ffmpeg's own ebur128 meter on the delivered file reads the loudness target (report.json says
what that meter read, not the normaliser's estimate)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ovi_studio.cli import app
from ovi_studio.media import audio, probe
from ovi_studio.render.assembly import AssemblySettings

runner = CliRunner()

STORY = """\
version: 1
model: 720x720_5s
output:
  loudness: {target}
shots:
  - id: door
    prompt: "A lighthouse keeper turns toward the stairs as a knock echoes below. He calls out, <S>Who is there? Show yourself.<E> <AUDCAP>Heavy knocks on a wooden door, wind.<ENDAUDCAP>"
  - id: lamp
    scene: The keeper polishes the great brass lens while rain streams down the windows.
    dialogue:
      - Nobody should be out on a night like this.
    audio: Rain drumming on glass.
"""


@pytest.mark.slow
@pytest.mark.parametrize("target", [-16.0, -23.0])
def test_the_delivered_cut_reads_the_target_on_ffmpegs_meter_and_is_stereo(tmp_path: Path, target):
    story = tmp_path / "story.yaml"
    story.write_text(STORY.format(target=target))
    result = runner.invoke(app, ["render", str(story), "-o", str(tmp_path / "out"), "--engine", "preview"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    cut = tmp_path / "out" / report["final"]["path"]
    measured = audio.measure_loudness(cut)  # as the file has it: two channels, no dual-mono
    assert measured["integrated_lufs"] == pytest.approx(target, abs=0.5)
    assert measured["true_peak_dbtp"] <= -1.0
    recorded = report["final"]["loudness"]
    assert recorded["integrated_lufs"] == pytest.approx(measured["integrated_lufs"], abs=0.05)
    assert recorded["true_peak_dbtp"] == pytest.approx(measured["true_peak_dbtp"], abs=0.05)
    stream = probe.probe(cut).first("audio")
    assert (stream.codec, stream.channels, stream.sample_rate) == ("aac", "stereo", 48000)
    # the encoder is asked for the documented bitrate (its average on sparse audio runs lower)
    docs = (Path(__file__).resolve().parents[1] / "docs" / "render.md").read_text()
    assert AssemblySettings().audio_bitrate == "192k" and "stereo AAC 192 kb/s 48 kHz" in docs
