"""A render as JUnit XML for CI dashboards (`render --junit FILE`), in the common format CI
systems read (Jenkins, GitLab, GitHub test reporters): one <testsuite> per storyboard, one
<testcase> per take and one for the final cut.

A take that failed to render is a <failure> with the reason; a take that was already up to
date is <skipped> ("fresh"), as is one that was not rendered (its reason); a failed quality check
is a <failure> too, whatever the take's status. GitLab shows `classname` as the suite and
`name` as the test, so the shot and take are in `name` and every message is in the body.
"""
from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from pathlib import Path

from ovi_studio.render.artifacts import write_text_atomic
from ovi_studio.render.report import CUT_MADE

SKIPPED = {"cached": "fresh: up to date, not rendered again"}


def _quality_failures(checks: list[dict] | None) -> list[dict]:
    return [c for c in checks or [] if c["status"] == "fail"]


def _case(suite: ET.Element, classname: str, name: str, seconds: float | None) -> ET.Element:
    return ET.SubElement(suite, "testcase", classname=classname, name=name,
                         time=f"{seconds or 0.0:.3f}")


def _fail(case: ET.Element, kind: str, message: str, body: str) -> None:
    ET.SubElement(case, "failure", message=message[:500], type=kind).text = body


def junit_xml(reports: list[dict]) -> str:
    """One <testsuite> per report (a storyboard's render), in one <testsuites>."""
    root = ET.Element("testsuites", name="ovi-studio")
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    for report in reports:
        for key, value in _suite(root, report).items():
            totals[key] += value
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", f"{sum(r.get('seconds', 0.0) for r in reports):.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _suite(root: ET.Element, report: dict) -> dict[str, int]:
    classname = Path(report["storyboard"]).stem
    suite = ET.SubElement(root, "testsuite", name=classname, timestamp=report.get("started", ""),
                          hostname=socket.gethostname())
    for shot in report["shots"]:
        for take in shot["takes"]:
            case = _case(suite, classname, f"{shot['id']}/take{take['take']}", take.get("seconds"))
            status, reason = take["status"], take.get("reason") or take["status"]
            quality = _quality_failures(take.get("qc"))
            if status == "failed":
                _fail(case, "render", reason, reason)
            elif quality:
                _fail(case, "quality", "quality: " + ", ".join(c["check"] for c in quality),
                      "\n".join(f"{c['check']}: {c['detail']}" for c in quality))
            elif status != "rendered":
                ET.SubElement(case, "skipped", message=SKIPPED.get(status, f"{status}: {reason}"))
            ET.SubElement(case, "system-out").text = (
                f"seed {take['seed']}, {take['mode']}, cache key {take['cache_key']}, {take['dir']}")
    final = report.get("final") or {}
    case = _case(suite, classname, "final cut", final.get("seconds"))
    quality = _quality_failures(final.get("qc"))
    if final.get("status") not in CUT_MADE:
        reason = final.get("reason") or final.get("status", "not assembled")
        _fail(case, "assembly", reason, reason)
    elif quality:
        _fail(case, "quality", "quality: " + ", ".join(c["check"] for c in quality),
              "\n".join(f"{c['check']}: {c['detail']}" for c in quality))
    cases = suite.findall("testcase")
    counts = {"tests": len(cases), "failures": sum(c.find("failure") is not None for c in cases),
              "errors": 0, "skipped": sum(c.find("skipped") is not None for c in cases)}
    for key, value in counts.items():
        suite.set(key, str(value))
    suite.set("time", f"{report.get('seconds', 0.0):.3f}")
    return counts


def write_junit(path: Path, reports: list[dict]) -> Path:
    write_text_atomic(path, junit_xml(reports))
    return path
