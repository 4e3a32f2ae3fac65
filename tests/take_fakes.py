"""Stand-in takes for plan tests: what a render commits (the frames file, meta.json recording
it with its hash, an extension's seed-frame provenance), without running an engine."""
from __future__ import annotations

import hashlib
import json


def commit_plan(plan) -> None:
    """Commit every take of `plan` as rendered."""
    frames_of = {}
    for step in plan.steps:
        step.artifact_dir.mkdir(parents=True, exist_ok=True)
        frames = step.artifact_dir / "frames.mkv"
        frames.write_bytes(f"{step.cache_key} frames".encode())
        record = {"path": frames.name, "bytes": frames.stat().st_size,
                  "sha256": hashlib.sha256(frames.read_bytes()).hexdigest()}
        parent = {"frames_sha256": frames_of[step.parent, step.parent_take], "index": 120} if step.parent else None
        (step.artifact_dir / "meta.json").write_text(json.dumps(
            {"cache_key": step.cache_key, "key_inputs": step.key_inputs, "files": {"frames": record},
             "parent": parent}))
        frames_of[step.shot.id, step.take] = record["sha256"]
