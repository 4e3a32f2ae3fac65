"""The docs are self-contained and current: the README's CLI reference is the commands' own
help, and no comment or doc points outside the repository."""
from __future__ import annotations

import re
from pathlib import Path

from ovi_studio.cli.reference import with_reference

REPO = Path(__file__).resolve().parents[1]


def test_the_readme_cli_reference_is_current():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert with_reference(readme) == readme, \
        "the CLI reference is stale: run `python -m ovi_studio.cli.reference README.md`"


def test_nothing_points_outside_the_repository():
    outside = re.compile(r"spec §|product-anchors|performance-anchors|shared/reference|\.\./shared/")
    files = [p for pattern in ("ovi_studio/**/*.py", "engine/**/*.py", "bench/**/*.py", "tests/**/*.py",
                               "docs/*.md", "README.md")
             for p in REPO.glob(pattern) if p.resolve() != Path(__file__).resolve()]
    found = [f"{p.relative_to(REPO)}:{n}" for p in files
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if outside.search(line)]
    assert not found, found
