"""Data flows one way: storyboard -> plan -> render -> engine. No module imports a layer above
its own (any import, at the top or inside a function)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

STORYBOARD_LAYER = ("ovi_studio.storyboard", "ovi_studio.source", "ovi_studio.textfile",
                    "ovi_studio.errors", "ovi_studio.diagnostics", "ovi_studio.compile",
                    "ovi_studio.prompt", "ovi_studio.templates", "ovi_studio.lint",
                    "ovi_studio.importer", "ovi_studio.csvprompts", "ovi_studio.scaffold",
                    "ovi_studio.files")
PLAN_LAYER = ("ovi_studio.plan", "ovi_studio.cost", "ovi_studio.store")
ABOVE_PLAN = ("ovi_studio.render", "ovi_studio.cli", "ovi_studio.api", "ovi_studio.export")
# The model's facts (variant table, file layout, arch.json sizes, LoRA and fp8-file headers and
# their errors, where the checkpoint folder is): pure Python, no torch, what a storyboard is
# checked against. Nothing else of engine/ is visible to the storyboard layer.
MODEL_FACTS = ("engine.variants", "engine.layout", "engine.arch", "engine.lora_keys",
               "engine.fp8_files", "engine.errors", "ovi_studio.checkpoints")


def modules():
    for path in sorted([*REPO.glob("ovi_studio/**/*.py"), *REPO.glob("engine/**/*.py")]):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def under(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def forbidden(module: str) -> tuple[str, ...]:
    if under(module, ("engine",)):
        return ("ovi_studio",)
    if under(module, STORYBOARD_LAYER):
        return (*PLAN_LAYER, *ABOVE_PLAN, "engine")
    if under(module, PLAN_LAYER):
        return ABOVE_PLAN
    if under(module, ("ovi_studio.render",)) and module != "ovi_studio.render":
        return ("ovi_studio.cli", "ovi_studio.api")  # the package itself is callable as api.render
    if module.startswith("ovi_studio") and not under(module, ("ovi_studio.cli", "ovi_studio.__main__")):
        return ("ovi_studio.cli",)
    return ()


@pytest.mark.parametrize("module, path", list(modules()), ids=lambda v: v if isinstance(v, str) else "")
def test_no_module_imports_upward(module, path):
    bad = sorted(name for name in imports(path) if under(name, forbidden(module))
                 and not (under(module, STORYBOARD_LAYER) and under(name, MODEL_FACTS)))
    assert not bad, f"{module} imports {bad}: a layer above its own"
