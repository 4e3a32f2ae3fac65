"""The scaled-fp8 files of other tools, by their key names alone (no torch: `check` reads only
the header).

musubi-tuner's `fp8_scaled` keeps the model's own key names with a `<layer>.scale_weight`
beside each fp8 weight (and, in newer files, a tensor-wide `<layer>.scale_weight_tensor`);
ComfyUI / kijai's `fp8_scaled` prefixes the keys (`model.diffusion_model.`) and adds a
`scaled_fp8` marker key. engine.fp8 reads their values and scales.
"""
from __future__ import annotations

from pathlib import Path

from engine.arch import Arch
from engine.errors import CheckpointError
from engine.lora_keys import LoraError, fusion_param_shapes, listed_keys, safetensors_shapes

SCALE_SUFFIX = ".fp8_scale"  # ovi-studio's own scaled files (engine.fp8)
COMFY_MARKER = "scaled_fp8"
TOOL_SCALE = ".scale_weight"
TOOL_TENSOR_SCALE = ".scale_weight_tensor"
_TOOL_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "model.")
TOOL_FP8_HINT = "pass a musubi-tuner or ComfyUI/kijai fp8_scaled file of an Ovi fusion model"


def scaled_file_format(keys) -> str | None:
    """"ovi-studio", "comfyui" (kijai), "musubi", or None for a file without fp8 scales."""
    keys = set(keys)
    if COMFY_MARKER in keys:
        return "comfyui"
    if any(k.endswith(".weight" + SCALE_SUFFIX) for k in keys):
        return "ovi-studio"
    if any(k.endswith(TOOL_SCALE) for k in keys):
        return "musubi"
    return None


def model_key(key: str) -> str:
    """A scaled-fp8 file's key under the fusion model's name for it (the tool's prefix dropped)."""
    for prefix in _TOOL_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def is_weight_key(key: str) -> bool:
    """Whether a scaled-fp8 file's key is a tensor of the model (not a marker or a scale)."""
    return key != COMFY_MARKER and not key.endswith((TOOL_SCALE, TOOL_TENSOR_SCALE, ".scale_input",
                                                     SCALE_SUFFIX))


def check_scaled_keys(path: Path, keys, expected, extra_allowed: bool = False) -> None:
    """Raise CheckpointError unless the file's `keys` carry fp8 scales and hold every key of
    `expected` under the model's names (and no others, unless `extra_allowed`: `expected` is
    then a part of the model)."""
    if scaled_file_format(keys) is None:
        raise CheckpointError(path, "no fp8 scales in this file (no `scale_weight` keys)", TOOL_FP8_HINT)
    held = {model_key(key) for key in keys if is_weight_key(key)}
    missing = sorted(expected - held)
    extra = [] if extra_allowed else sorted(held - expected)
    if missing or extra:
        parts = ([f"{len(missing)} missing key(s): {listed_keys(missing)}"] if missing else []) + (
            [f"{len(extra)} unexpected key(s): {listed_keys(extra)}"] if extra else [])
        raise CheckpointError(path, "not an Ovi fusion model: " + "; ".join(parts), TOOL_FP8_HINT)


def check_fp8_file(path: str | Path, arch: Arch) -> None:
    """Raise CheckpointError unless `path` is a scaled-fp8 file holding every Linear of `arch`'s
    fusion model at its size (what `check` asks of an `fp8_file:`); reads the header only."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such file", "fix the path; it is relative to the storyboard")
    try:
        shapes = safetensors_shapes(path)
    except LoraError as exc:
        raise CheckpointError(path, exc.problem, TOOL_FP8_HINT) from None
    linears = fusion_param_shapes(arch)
    check_scaled_keys(path, shapes.keys(), linears.keys(), extra_allowed=True)
    held = {model_key(key): shape for key, shape in shapes.items()}
    wrong = sorted(key for key, shape in linears.items() if held[key] != shape)
    if wrong:
        raise CheckpointError(path, f"not this model's sizes: {len(wrong)} layer(s) of another "
                              f"shape: {listed_keys(wrong)}", TOOL_FP8_HINT)
