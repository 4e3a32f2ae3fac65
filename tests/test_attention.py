"""Attention backends: `auto` picks FlashAttention 3 > 2 > cuDNN SDPA > SDPA and never the
approximate SageAttention; the entry script installs FlashAttention 3 on Hopper where a wheel is
given and says so where there is none."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

import engine.attention as attn
from engine.attention import attention, available_attention_backends, resolve_attention_backend

ROOT = Path(__file__).resolve().parents[1]
CUDA = torch.device("cuda")


@pytest.fixture
def installed(monkeypatch):
    """Pretend a CUDA device with the given kernels installed."""
    def install(*names):
        modules = {"flash3": "flash_attn_interface", "flash2": "flash_attn", "sage": "sageattention"}
        present = {modules[n] for n in names if n in modules}
        monkeypatch.setattr(attn, "_importable", lambda module: module in present)
        monkeypatch.setattr(attn, "_cudnn_usable", lambda device: "cudnn" in names)
    return install


@pytest.mark.parametrize("kernels, expected", [
    (("flash3", "flash2", "cudnn", "sage"), "flash3"),
    (("flash2", "cudnn", "sage"), "flash2"),
    (("cudnn", "sage"), "cudnn"),
    (("sage",), "sdpa"),
    ((), "sdpa"),
])
def test_auto_prefers_fa3_then_fa2_then_cudnn_then_sdpa_and_never_sage(installed, kernels, expected):
    installed(*kernels)
    assert resolve_attention_backend("auto", CUDA) == expected


def test_explicit_choices_need_the_kernel(installed):
    installed("cudnn", "sage")
    assert available_attention_backends(CUDA) == ["cudnn", "sdpa", "sage"]
    assert resolve_attention_backend("sage", CUDA) == "sage"
    assert resolve_attention_backend("cudnn", CUDA) == "cudnn"
    with pytest.raises(ValueError, match=r"'flash3' is not available on cuda \(available: cudnn, sdpa, sage\)"):
        resolve_attention_backend("flash3", CUDA)
    assert available_attention_backends(torch.device("cpu")) == ["sdpa"]


@pytest.mark.gpu
def test_cudnn_and_sage_agree_with_sdpa_on_the_gpu():
    g = torch.Generator("cuda").manual_seed(0)
    q, k, v = (torch.randn(1, 512, 4, 128, device="cuda", generator=g).bfloat16() for _ in range(3))
    exact = attention(q, k, v, "sdpa").float()
    for backend in available_attention_backends(CUDA):
        out = attention(q, k, v, backend).float()
        bound = 0.05 if backend == "sage" else 0.01
        assert (out - exact).norm() / exact.norm() < bound, backend


def _entry_script(tmp_path, compute_cap: str, wheels: str | None):
    """Run the entry script's environment setup with stand-ins for nvidia-smi and the venv's
    python (which records its calls, and imports flash_attn_interface once pip installed it)."""
    venv, bin_dir = tmp_path / "venv", tmp_path / "bin"
    (venv / "bin").mkdir(parents=True)
    bin_dir.mkdir()
    log, fa3 = tmp_path / "calls.log", tmp_path / "fa3-installed"
    (bin_dir / "nvidia-smi").write_text(f"#!/bin/sh\n[ \"$1\" = -L ] && echo 'GPU 0' || echo '{compute_cap}'\n")
    (venv / "bin" / "python").write_text(
        "#!/bin/sh\n"
        f"echo \"$*\" >> {log}\n"
        "case \"$*\" in\n"
        f"  *'import flash_attn_interface'*) [ -f {fa3} ] ;;\n"
        f"  *flash_attn_3*) touch {fa3} ;;\n"
        "esac\n")
    for script in (bin_dir / "nvidia-smi", venv / "bin" / "python"):
        script.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "OVI_STUDIO_VENV": str(venv),
           "OVI_STUDIO_EXTRAS": "cuda", "OVI_STUDIO_TORCH": "torch"}
    env.pop("OVI_STUDIO_FA3_WHEELS", None)
    if wheels is not None:
        env["OVI_STUDIO_FA3_WHEELS"] = wheels
    done = subprocess.run([str(ROOT / "ovi-studio"), "--setup-only"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stderr, log.read_text(), fa3.exists()


def test_entry_script_installs_fa3_on_hopper_from_the_given_wheels(tmp_path):
    stderr, calls, installed = _entry_script(tmp_path, "9.0", str(tmp_path / "wheels"))
    assert installed and f"--find-links {tmp_path / 'wheels'} flash_attn_3" in calls
    assert "FlashAttention 3 installed" in stderr


def test_entry_script_says_when_there_is_no_fa3_wheel(tmp_path):
    stderr, calls, installed = _entry_script(tmp_path, "9.0", None)
    assert not installed and "flash_attn_3" not in calls
    assert "no FlashAttention 3 wheel for this machine (sm_90)" in stderr


def test_entry_script_leaves_fa3_alone_off_hopper(tmp_path):
    stderr, calls, installed = _entry_script(tmp_path, "8.0", str(tmp_path / "wheels"))
    assert not installed and "flash_attn_interface" not in calls and "FlashAttention 3" not in stderr
