"""bench/gpu_check.py at tiny sizes on the CPU (the CI smoke run of the GPU check): rows run and
the table says how each compares with ours resident."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import gpu_check  # noqa: E402


@pytest.mark.slow
def test_gpu_check_smoke(capsys):
    results = gpu_check.main(["--device", "cpu", "--no-reference", "--steps", "2",
                              "--only", "swap,fp8-matmul,flash3,draft"])
    table = {line.split("|")[1].strip(): line.split("|")[-2].strip()
             for line in capsys.readouterr().out.splitlines() if line.startswith("| ours")}
    assert table["ours, resident bf16 (SDPA)"] == "bit-identical"
    assert table["ours, swap 3"] == "bit-identical"  # streaming never changes the bits
    assert table["ours, fp8 matmul (row scales)"].startswith("rel.err video")
    assert table["ours, resident bf16 (FA3)"] == "skipped: flash3 not installed here"
    assert table["ours, draft (4 steps, guidance-free)"] == "draft tier"
    assert all(r.step_s and r.step_s > 0 for r in results if not r.note.startswith("skipped"))
