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


def test_the_readme_layout_names_every_module():
    """The README's Layout table gives each module its one job: a new module goes there too."""
    root = REPO
    layout = (root / "README.md").read_text(encoding="utf-8").split("## Layout", 1)[1].split("\n## ", 1)[0]
    missing = []
    for path in [*root.glob("ovi_studio/**/*.py"), *root.glob("engine/*.py")]:
        if path.name in ("__init__.py", "__main__.py") or "testing" in path.parts:
            continue
        package = path.parent.relative_to(root).as_posix()
        named = f"`{path.name}`" in layout or f"`{path.parent.name}/`" in layout and package.count("/") == 1
        if not named:
            missing.append(path.relative_to(root).as_posix())
    assert not missing, f"add these to the README's Layout table: {missing}"
