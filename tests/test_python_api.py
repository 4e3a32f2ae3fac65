"""docs/python-api.md: every `python` block runs, in order, in an empty folder."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"


@pytest.mark.slow
def test_the_python_api_examples_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{DOC.name} block {number}", "exec"), namespace)


def test_the_api_is_what_the_package_exports():
    import ovi_studio
    for name in ("load_storyboard", "check", "build_plan", "render", "pick", "batch", "collect_garbage", "RenderOptions"):
        assert callable(getattr(ovi_studio, name)), name
