"""`ovi-studio doctor`: is this machine ready to render, and if not, what to do about it.

torch is imported here, inside `run_doctor`, and nowhere on the check/plan/import paths.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from engine import layout
from engine.variants import VARIANTS
from ovi_studio.checkpoints import CKPT_ENV, DEFAULT_CKPT_DIR, find_ckpt_dir

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass
class Finding:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str | None = None


def run_doctor(ckpt_dir: Path | None = None) -> list[Finding]:
    """Without --ckpt-dir, $OVI_CKPT_DIR or ./ckpts: then ./ckpts is reported missing."""
    return [check_python(), *check_torch(), check_flash_attn(), check_ffmpeg(), check_espeak(),
            *check_checkpoints(find_ckpt_dir(ckpt_dir) or DEFAULT_CKPT_DIR)]


def check_python() -> Finding:
    version = platform.python_version()
    if sys.version_info >= (3, 10):
        return Finding("python", OK, f"{version} ({sys.executable})")
    return Finding("python", FAIL, version, "install Python 3.10 or newer")


def check_torch() -> list[Finding]:
    try:
        import torch
    except Exception as exc:  # a broken install raises more than ImportError
        return [Finding("torch", FAIL, f"cannot import torch: {exc}",
                        "pip install torch (see https://pytorch.org/get-started/locally/)")]
    findings = [Finding("torch", OK, torch.__version__)]
    if not torch.cuda.is_available():
        findings.append(Finding("cuda", WARN, "no CUDA device visible; rendering needs an NVIDIA GPU",
                                "install a CUDA build of torch and check `nvidia-smi`"))
        return findings
    from engine.presets import suggest_preset
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        preset = suggest_preset(props.total_memory)
        findings.append(Finding(f"gpu {index}", OK, f"{props.name}, {props.total_memory / 2**30:.1f} GiB, "
                                f"CUDA {torch.version.cuda}; suggested memory preset: {preset.name} "
                                f"({preset.note})"))
    return findings


def check_flash_attn() -> Finding:
    if importlib.util.find_spec("flash_attn") is None:
        return Finding("flash-attn", WARN, "not installed (attention falls back to PyTorch SDPA)",
                       "pip install 'ovi-studio[cuda]' (builds flash-attn for your CUDA)")
    return Finding("flash-attn", OK, importlib.metadata.version("flash-attn"))


def check_ffmpeg() -> Finding:
    try:
        import imageio_ffmpeg
        return Finding("ffmpeg", OK, imageio_ffmpeg.get_ffmpeg_exe())
    except Exception:
        found = shutil.which("ffmpeg")
        if found:
            return Finding("ffmpeg", OK, found)
    return Finding("ffmpeg", FAIL, "no ffmpeg found", "pip install imageio-ffmpeg (or install ffmpeg on PATH)")


ESPEAK_INSTALL = "sudo apt-get install espeak-ng (macOS: brew install espeak-ng)"


def check_espeak() -> Finding:
    """The preview's guide speech: espeak-ng speaks each line; without it, a tone per line."""
    found = shutil.which("espeak-ng")
    if found:
        return Finding("espeak-ng", OK, f"{found} (the preview speaks its guide dialogue)")
    return Finding("espeak-ng", WARN, "not installed: the preview's guide track has a tone per line "
                   "instead of speech", ESPEAK_INSTALL)


def check_checkpoints(ckpt_dir: Path) -> list[Finding]:
    """Shared files (T5, tokenizer, VAEs, vocoder) must all be there; of the model variants,
    at least one. Whatever is missing, one `fetch` command gets it."""
    findings = []
    if not ckpt_dir.is_dir():
        findings.append(Finding("checkpoints", FAIL, f"{ckpt_dir} does not exist",
                                f"fetch the weights into it (below), or pass --ckpt-dir / set {CKPT_ENV}"))
    missing = {name: set(layout.missing_files(ckpt_dir, variant)) for name, variant in VARIANTS.items()}
    any_variant = next(iter(VARIANTS.values()))
    shared = [rel for rel in layout.required_files(any_variant) if rel != layout.fusion_weights(any_variant)]
    shared_missing = False
    for rel in shared:
        present = rel not in missing[any_variant.name]
        shared_missing |= not present
        findings.append(Finding(rel, OK if present else FAIL, "present" if present else "missing"))
    absent_models = []
    for name, variant in VARIANTS.items():
        rel = layout.fusion_weights(variant)
        present = rel not in missing[name]
        if not present:
            absent_models.append(name)
        findings.append(Finding(rel, OK if present else WARN, f"{'present' if present else 'missing'} (model {name})"))
    fp8 = layout.fusion_weights(VARIANTS["720x720_5s"], fp8=True)
    if (ckpt_dir / fp8).exists():
        findings.append(Finding(fp8, OK, "present (fp8: true with 720x720_5s)"))
    nothing_renders = len(absent_models) == len(VARIANTS)
    if nothing_renders:
        findings.append(Finding("models", FAIL, "no Ovi model weights: nothing can render"))
    if shared_missing or absent_models:
        # With no model at all, every variant (as the official download script); else the absent ones.
        findings.append(Finding("fetch", FAIL if shared_missing or nothing_renders else WARN,
                                "one command downloads what is missing (resumable, verified)",
                                fetch_command(ckpt_dir, () if nothing_renders else absent_models)))
    return findings


def fetch_command(ckpt_dir: Path, models=()) -> str:
    """The `ovi-studio fetch` line that completes this checkpoint folder."""
    return f"ovi-studio fetch --ckpt-dir {ckpt_dir}" + (f" --models {','.join(models)}" if models else "")


def exit_code(findings: list[Finding]) -> int:
    return 1 if any(f.status == FAIL for f in findings) else 0
