"""Nightly CI: the JUnit file validates against the common JUnit schema and says which take
failed and why, which were fresh and which checks failed; --json prints the summary on stdout;
the last line sums the run up; every mp4 carries its provenance as metadata tags."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ovi_studio.media import ffmpeg
from ovi_studio.render.inputs import RenderOptions
from ovi_studio.render.junit import junit_xml
from ovi_studio.render.preview import PreviewEngine
from ovi_studio.render.progress import RenderProgress
from ovi_studio.render.report import batch_line
from ovi_studio.render.session import RenderSession
from preview_render import STORY

SCHEMA = Path(__file__).parent / "data" / "junit.xsd"


class BoatFails(PreviewEngine):
    def render(self, job, first_frame, on_step=None, on_phase=None):
        if job.shot_id == "boat":
            raise RuntimeError("the boat sank")
        return super().render(job, first_frame, on_step)


def run(story: Path, factory=None):
    session = RenderSession(RenderOptions(source=story, out_dir=story.parent / "out"),
                            RenderProgress(quiet=True), factory)
    session.prepare()
    outcome = session.run()
    return outcome, json.loads(outcome.report_path.read_text())


def cases(xml: str) -> dict[str, ET.Element]:
    return {c.get("name"): c for c in ET.fromstring(xml).iter("testcase")}


@pytest.mark.slow
def test_junit_validates_and_reports_each_take(tmp_path):
    xmlschema = pytest.importorskip("xmlschema")
    schema = xmlschema.XMLSchema(str(SCHEMA))
    story = tmp_path / "story.yaml"
    story.write_text(STORY, encoding="utf-8")
    outcome, report = run(story, lambda: BoatFails(speech=False))
    assert outcome.exit_code == 1
    xml = junit_xml([report])
    schema.validate(xml)
    found = cases(xml)
    assert set(found) == {"harbour/take0", "harbour/take1", "pier/take0", "walk/take0", "boat/take0", "final cut"}
    failure = found["boat/take0"].find("failure")
    assert failure.get("type") == "render" and "the boat sank" in failure.get("message")
    assert found["pier/take0"].find("failure") is None and found["pier/take0"].find("skipped") is None
    assert found["final cut"].find("failure").get("type") == "assembly"
    suite = ET.fromstring(xml).find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("6", "2")

    # a second run: the finished takes are fresh (skipped); a planted quality failure is a failure
    outcome, report = run(story)
    report["shots"][1]["takes"][0]["qc"][0] = {"check": "black", "status": "fail", "detail": "black: 1.00 s from 0.00 s"}
    xml = junit_xml([report])
    schema.validate(xml)
    found = cases(xml)
    assert found["harbour/take0"].find("skipped").get("message").startswith("fresh")
    assert found["boat/take0"].find("failure") is None  # rendered now
    quality = found["pier/take0"].find("failure")
    assert quality.get("type") == "quality" and "black: 1.00 s from 0.00 s" in quality.text
    both = ET.fromstring(junit_xml([report, report]))  # batch: one suite per storyboard
    schema.validate(ET.tostring(both, encoding="unicode"))
    assert len(both.findall("testsuite")) == 2 and both.get("tests") == "12"
    with pytest.raises(xmlschema.XMLSchemaValidationError):  # the schema does reject bad files
        schema.validate(xml.replace('name="final cut"', ""))


@pytest.mark.slow
def test_cli_json_summary_line_and_mp4_tags(tmp_path):
    story = tmp_path / "story.yaml"
    story.write_text(STORY, encoding="utf-8")
    junit = tmp_path / "ci" / "junit.xml"
    proc = subprocess.run([sys.executable, "-m", "ovi_studio", "render", str(story), "-o", str(tmp_path / "out"),
                           "--json", "--junit", str(junit)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)  # stdout is the summary alone
    assert summary["shots"] == {"rendered": 4, "fresh": 0, "failed": 0, "other": 0}
    assert summary["cut"] == str(tmp_path / "out" / "final.mp4") and summary["quality_failures"] == []
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "ovi-studio: 4 shot(s) rendered, 0 fresh, 0 failed; GPU time ")
    assert junit.is_file() and len(cases(junit.read_text())) == 6
    again = subprocess.run([sys.executable, "-m", "ovi_studio", "render", str(story), "-o", str(tmp_path / "out"),
                            "-q"], capture_output=True, text=True)
    assert again.stdout.strip().splitlines()[-1].startswith("ovi-studio: 0 shot(s) rendered, 4 fresh, 0 failed")

    report = json.loads((tmp_path / "out" / "report.json").read_text())
    take = report["shots"][0]["takes"][1]
    from ovi_studio.render.viewing import viewing_copy
    clip = mp4_tags(viewing_copy(tmp_path / "out/shots/harbour/take1", story))
    assert {k: clip.get(k) for k in ("storyboard", "shot", "take", "seed", "engine", "checkpoint", "cache_key")} == {
        "storyboard": str(story), "shot": "harbour", "take": "1", "seed": str(take["seed"]),
        "engine": "preview", "checkpoint": "no-checkpoint", "cache_key": take["cache_key"]}
    cut = mp4_tags(tmp_path / "out/final.mp4")
    assert cut["title"] == "The pier" and cut["takes"].startswith("harbour:")


def mp4_tags(path: Path) -> dict[str, str]:
    """The container metadata, as `ffmpeg -i` lists it."""
    banner = ffmpeg.run([ffmpeg.ffmpeg_exe(), "-hide_banner", "-i", str(path)], check=False).stderr.decode()
    section = banner.split("Metadata:", 1)[1].split("Duration:", 1)[0]
    return {m[1]: m[2].strip() for m in re.finditer(r"^\s+(\w+)\s*: (.*)$", section, re.M)}


def test_batch_line_totals_the_storyboards_and_counts_those_not_planned():
    planned = {"shots": {"rendered": 2, "fresh": 1, "failed": 0, "other": 0}, "gpu_seconds": 1.2, "cut_status": "done"}
    failing = {"shots": {"rendered": 0, "fresh": 3, "failed": 1, "other": 1}, "gpu_seconds": 0.5, "cut_status": "failed"}
    refused = {"storyboard": "bad.yaml", "status": "not planned", "error": "1 lint error(s)"}
    assert batch_line([planned, refused, failing]) == (
        "ovi-studio batch: 3 storyboard(s), 1 not planned, 2 shot(s) rendered, 4 fresh, 1 failed; "
        "GPU time 1.7 s; 1 cut(s)")
    assert batch_line([planned]) == (
        "ovi-studio batch: 1 storyboard(s), 2 shot(s) rendered, 1 fresh, 0 failed; GPU time 1.2 s; 1 cut(s)")


@pytest.mark.slow
def test_batch_json_junit_pick_and_the_last_line(tmp_path):
    (tmp_path / "a-bad.yaml").write_text("version: 1\nmodel: 720x720_5s\nshots:\n  - id: a\n    duration: 7\n"
                                         "    scene: A cat on a wall.\n", encoding="utf-8")
    (tmp_path / "b-good.yaml").write_text(STORY, encoding="utf-8")
    junit = tmp_path / "junit.xml"
    proc = subprocess.run([sys.executable, "-m", "ovi_studio", "batch", str(tmp_path), "--engine", "preview",
                           "--json", "--junit", str(junit), "--pick", "first"], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr  # the storyboard with a lint error is not rendered
    bad, good = json.loads(proc.stdout)["storyboards"]  # stdout is the JSON alone, in the table's order
    assert bad["storyboard"] == str(tmp_path / "a-bad.yaml") and bad["status"] == "not planned"
    assert "OVI403" in bad["error"]
    assert good["storyboard"] == str(tmp_path / "b-good.yaml") and good["cut_status"] == "done"
    assert good["shots"] == {"rendered": 4, "fresh": 0, "failed": 0, "other": 0}
    report = json.loads(Path(good["report"]).read_text())
    assert report["pick_policy"] == "first"
    harbour = report["shots"][0]["pick"]  # two takes, no `pick:`
    assert (harbour["take"], harbour["reason"]) == (0, "take 0 (--pick first)")
    assert re.fullmatch(r"ovi-studio batch: 2 storyboard\(s\), 1 not planned, 4 shot\(s\) rendered, 0 fresh, "
                        r"0 failed; GPU time \d+\.\d s; 1 cut\(s\)", proc.stderr.strip().splitlines()[-1])
    assert len(cases(junit.read_text())) == 6  # the good storyboard's 5 takes and its cut
