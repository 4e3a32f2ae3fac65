"""Every golden file says where it comes from: the reference commit, the command that made it
and the library versions it ran with (tests/golden/provenance.py)."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"
sys.path.insert(0, str(GOLDEN))

from provenance import FIELDS, read_provenance  # noqa: E402

FILES = sorted(p for p in (GOLDEN / "data").iterdir() if p.is_file())


def check(path: Path) -> list[str]:
    """What the file's provenance lacks (empty when complete)."""
    found = read_provenance(path)
    problems = [f"no {field}" for field in FIELDS if not found.get(field)]
    if found.get("reference_commit") and not re.fullmatch(r"[0-9a-f]{7,40}", found["reference_commit"].split()[0]):
        problems.append(f"reference_commit {found['reference_commit']!r} is not a commit")
    command = found.get("command", "")
    maker = re.search(r"tests/golden/(make_\w+\.py)", command)
    if command and not (maker and (GOLDEN / maker.group(1)).is_file()):
        problems.append(f"command {command!r} does not run a maker in tests/golden")
    if found.get("versions") and "torch" not in json.loads(found["versions"]) \
            and "transformers" not in json.loads(found["versions"]):
        problems.append("versions name neither torch nor transformers")
    return problems


def test_there_are_goldens():
    assert len(FILES) >= 9


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_golden_records_its_provenance(path):
    assert check(path) == []


def test_a_golden_without_provenance_fails(tmp_path):
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"cases": []}))
    assert check(bare) == ["no reference_commit", "no command", "no versions"]
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"provenance": {"reference_commit": "main", "command": "make it",
                                                "versions": "{}"}}))
    assert len(check(wrong)) == 3
