"""Shared fixtures: a tiny checkpoint folder in the real layout, and GPU skipping."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")


def pytest_collection_modifyitems(config, items):
    try:
        import torch
        has_cuda = torch.cuda.is_available()
    except Exception:  # torch missing entirely: GPU tests cannot run either
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (CI has none)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    """A complete tiny checkpoint folder (all five files + tokenizer + arch.json), written once."""
    from engine.testing.tiny_checkpoint import write_tiny_checkpoint
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "ckpts", seed=0)


@pytest.fixture(scope="session")
def tiny_ckpt_short(tmp_path_factory):
    """The tiny checkpoint with a short, small variant (arch.json `variant`): 17 frames of 64x64
    and 25 audio latents per take, so multi-shot renders through the model stay fast on CPU."""
    from engine.testing.tiny_checkpoint import TINY_SHORT_ARCH, write_tiny_checkpoint
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "short", seed=0,
                                 arch_json=TINY_SHORT_ARCH)


@pytest.fixture(scope="module")
def tiny_fusion_folder(tmp_path_factory):
    """A folder with only arch.json and the tiny 720x720_5s fusion file (what the fusion model
    loads), written once per test module."""
    import json

    from engine.arch import parse_arch
    from engine.testing.tiny_checkpoint import TINY_ARCH
    from engine.testing.tiny_fusion import write_fusion
    root = tmp_path_factory.mktemp("fusion")
    (root / "arch.json").write_text(json.dumps(TINY_ARCH))
    write_fusion(root, parse_arch(TINY_ARCH), "720x720_5s", seed=5)
    return root
