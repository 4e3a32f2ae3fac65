"""Where a golden file comes from: the reference commit, the command that made it and the
versions of the libraries it ran with. Every file in tests/golden/data carries these three
(safetensors metadata, or a "provenance" object in a JSON golden); tests/test_golden_provenance.py
fails for a file without them.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

# The reference checkout the goldens are made from (character-ai/Ovi); a checkout without its
# git folder cannot say its commit, so this is the one the makers were written against.
REFERENCE_COMMIT = "5b69b25"
FIELDS = ("reference_commit", "command", "versions")


def reference_commit(reference: str | Path) -> str:
    """The checkout's commit when it is a git work tree, else REFERENCE_COMMIT."""
    try:
        out = subprocess.run(["git", "-C", str(reference), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return REFERENCE_COMMIT


def library_versions(libraries: tuple[str, ...]) -> dict[str, str]:
    """The installed versions of `libraries` (as imported now: a --target folder first on
    sys.path counts), plus Python's."""
    versions = {"python": platform.python_version()}
    for name in libraries:
        module = sys.modules.get(name)
        version = getattr(module, "__version__", None)
        if version is None:
            try:
                version = metadata.version(name)
            except metadata.PackageNotFoundError:
                version = "not installed"
        versions[name] = str(version)
    return versions


def provenance(reference: str | Path, libraries: tuple[str, ...], argv: list[str] | None = None) -> dict[str, str]:
    """The three provenance fields, as strings (safetensors metadata holds only strings)."""
    argv = sys.argv if argv is None else argv
    script = Path(argv[0])
    try:
        script = script.resolve().relative_to(Path(__file__).resolve().parents[2])
    except ValueError:
        pass
    env = [f"PYTHONPATH={os.environ['PYTHONPATH']}"] if os.environ.get("PYTHONPATH") else []
    return {"reference_commit": reference_commit(reference),
            "command": " ".join([*env, ".venv/bin/python", str(script), *argv[1:]]),
            "versions": json.dumps(library_versions(libraries), sort_keys=True)}


def read_provenance(path: Path) -> dict[str, str]:
    """The provenance fields a golden file records ({} when it records none): top-level
    safetensors metadata, or a "provenance" object (JSON goldens, or a JSON string in the
    metadata); versions as a JSON string either way."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
        if "provenance" in meta:
            meta = json.loads(meta["provenance"])
    else:
        meta = json.loads(path.read_text(encoding="utf-8")).get("provenance", {})
    found = {k: meta[k] for k in FIELDS if k in meta}
    if isinstance(found.get("versions"), dict):
        found["versions"] = json.dumps(found["versions"], sort_keys=True)
    return found
