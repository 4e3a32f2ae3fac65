"""The side-by-side benchmark's CPU smoke run (tiny sizes, ours only: CI has no reference
checkout): every row renders a whole shot from a checkpoint folder, and the table says how it
compares with the resident baseline."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import bench_memory  # noqa: E402


# slow: about a minute on two shared cores (four whole renders). The fast subset keeps what it
# checks: block swapping bit-identical (tests/test_layerwise_cfg.py, tests/test_offload.py) and
# fp8 close to bf16 (tests/test_fp8_loading.py).
@pytest.mark.slow
def test_bench_memory_smoke(capsys):
    bench_memory.main(["--device", "cpu", "--no-reference", "--configs", "swap,fp8", "--steps", "2"])
    rows = {line.split("|")[1].strip(): line.split("|")[-2].strip()
            for line in capsys.readouterr().out.splitlines() if line.startswith("| ours")}
    assert rows["ours, resident bf16"] == "bit-identical"
    assert rows["ours, swap 3"] == "bit-identical"
    assert rows["ours, fp8 scaled"].startswith("rel.err frames")
