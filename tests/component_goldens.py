"""Shared by the component parity tests: reading a golden file made by
tests/golden/make_component_goldens.py, and the relative error they compare with."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from engine.testing.tiny_checkpoint import TINY_ARCH

GOLDEN_DIR = Path(__file__).parent / "golden" / "data"


def load_golden(name: str, arch: dict = TINY_ARCH) -> tuple[dict, dict[str, torch.Tensor]]:
    """(metadata, tensors) of tests/golden/data/<name>; fails clearly when the tiny arch changed
    since the goldens were made (the weights would no longer be those the reference saw)."""
    path = GOLDEN_DIR / name
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    assert json.loads(meta["arch"]) == json.loads(json.dumps(arch)), \
        f"the tiny arch changed since {name} was made: run its maker in tests/golden/"
    return meta, load_file(str(path))


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float(), b.float()
    return ((a - b).norm() / b.norm()).item()
