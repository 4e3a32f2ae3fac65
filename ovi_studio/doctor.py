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


def run_doctor(ckpt_dir: Path | None = None, deep: bool = False) -> list[Finding]:
    """Without --ckpt-dir, $OVI_CKPT_DIR or ./ckpts: then ./ckpts is reported missing. `deep`
    also opens every checkpoint file that is present (check_checkpoint_contents)."""
    folder = find_ckpt_dir(ckpt_dir) or DEFAULT_CKPT_DIR
    return [check_python(), *check_torch(), check_flash_attn(), check_ffmpeg(), check_espeak(),
            *check_checkpoints(folder), *(check_checkpoint_contents(folder) if deep else [])]


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


def check_checkpoint_contents(ckpt_dir: Path) -> list[Finding]:
    """Open every checkpoint file that is present, as the render would, without loading the
    weights: arch.json parses; each fusion .safetensors header is readable and holds exactly the
    keys and shapes the model (at arch.json's sizes) has; each .pth file's archive and tensor
    table are readable. A broken file is named with what is wrong and where to get it again."""
    if not ckpt_dir.is_dir():
        return []
    import torch
    from engine.arch import ArchError, load_arch
    from engine.model import FusionModel

    try:
        arch = load_arch(ckpt_dir)
    except ArchError as exc:
        return [Finding("arch.json", FAIL, str(exc), "fix or remove arch.json (published checkpoints have none)")]
    with torch.device("meta"):
        model = FusionModel(arch.video_dit, arch.audio_dit)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    fusion = {layout.fusion_weights(v) for v in VARIANTS.values()}
    fp8_file = layout.fusion_weights(VARIANTS["720x720_5s"], fp8=True)
    pth_files = [rel for rel in layout.required_files(next(iter(VARIANTS.values())))
                 if rel.endswith((".pth", ".pt"))]
    findings = []
    for rel in sorted(fusion) + [fp8_file] + pth_files:
        if not (ckpt_dir / rel).is_file():
            continue  # check_checkpoints reports missing files
        if rel.endswith(".safetensors"):
            problem = _safetensors_problem(ckpt_dir / rel, None if rel == fp8_file else expected)
        else:
            problem = _pth_problem(ckpt_dir, rel)
        fine = "readable, keys and shapes as expected" if rel in fusion else "readable"
        findings.append(Finding(f"{rel} (contents)", FAIL if problem else OK, problem or fine,
                                f"remove {ckpt_dir / rel} and run `{fetch_command(ckpt_dir)}`" if problem else None))
    return findings


def _safetensors_problem(path: Path, expected: dict[str, tuple[int, ...]] | None) -> str | None:
    from safetensors import SafetensorError, safe_open
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            shapes = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        return f"unreadable header ({exc})"
    if expected is None:
        return None
    missing, extra = sorted(expected.keys() - shapes.keys()), sorted(shapes.keys() - expected.keys())
    wrong = [k for k in sorted(expected.keys() & shapes.keys()) if shapes[k] != expected[k]]
    problems = [f"{len(keys)} {label} (e.g. {keys[0]})" for label, keys in
                (("missing key(s)", missing), ("unexpected key(s)", extra),
                 ("tensor(s) of the wrong shape", wrong)) if keys]
    return "does not match the model's sizes: " + "; ".join(problems) if problems else None


def _pth_problem(ckpt_dir: Path, rel: str) -> str | None:
    from engine.errors import CheckpointError
    from engine.pth_weights import read_pth
    try:
        state = read_pth(ckpt_dir, rel)  # memory-mapped: reads the archive's table, not the weights
    except CheckpointError as exc:
        return exc.problem
    if not isinstance(state, dict) or not state:
        return "holds no weights"
    return None


def fetch_command(ckpt_dir: Path, models=()) -> str:
    """The `ovi-studio fetch` line that completes this checkpoint folder."""
    return f"ovi-studio fetch --ckpt-dir {ckpt_dir}" + (f" --models {','.join(models)}" if models else "")


def exit_code(findings: list[Finding]) -> int:
    return 1 if any(f.status == FAIL for f in findings) else 0
