"""LoRA files without torch: their formats, their key names mapped onto the fusion model, and
whether they fit it (for `check` and `plan`, which never import torch). engine.lora merges them.

A LoRA adds scale * alpha / rank * up @ down to a Linear weight (up [out, r], down [r, in]); some
files also carry full-size differences (`.diff` for a weight, `.diff_b` for a bias) that are
added times the scale. Three on-disk naming schemes are read:
- kohya / musubi-tuner: `lora_unet_<module path with "_" for ".">.lora_down.weight`,
  `.lora_up.weight`, `.alpha`;
- ComfyUI: `diffusion_model.<module>.lora_down.weight` / `.lora_up.weight` / `.alpha` (also with
  `lora_A` / `lora_B`);
- PEFT / diffusers: `<prefix>.<module>.lora_A.weight` / `.lora_B.weight` (alpha = rank unless the
  file has `.alpha`), module paths in the original Wan names or in diffusers' Wan names
  (`attn1.to_q`, `ffn.net.0.proj`, `proj_out`...).

Module paths name either one tower of the fusion model (`blocks.3.self_attn.q`: a Wan2.2-TI2V-5B
LoRA, which goes onto the video tower by default) or the fusion model itself
(`video_model.blocks.3.self_attn.q`: an Ovi LoRA, both towers by default). `tower` narrows or
redirects that. A key that maps onto no weight of the model, or onto one of another shape, is an
error naming the file and the first such keys: silently dropping part of a LoRA would render
something that is neither the base model nor the LoRA.
"""
from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from engine.arch import Arch, DiTParams

TOWERS = ("video", "audio", "both")
TOWER_PREFIXES = {"video": ("video_model.",), "audio": ("audio_model.",),
                  "both": ("video_model.", "audio_model.")}
_LISTED = 5  # keys named in an error message
_MAX_HEADER = 100 << 20  # a safetensors header larger than this is not a LoRA's

# Leading parts of a key that only say which program wrote the file.
_FILE_PREFIXES = ("base_model.model.", "model.diffusion_model.", "diffusion_model.", "transformer.",
                  "model.", "unet.")
_KOHYA_PREFIX = "lora_unet_"
# What follows the module path in a key, and what it is: (suffix, role)
_SUFFIXES = (
    (".lora_down.weight", "down"), (".lora_up.weight", "up"),
    (".lora_A.default.weight", "down"), (".lora_B.default.weight", "up"),
    (".lora_A.weight", "down"), (".lora_B.weight", "up"),
    (".alpha", "alpha"), (".diff_b", "diff_b"), (".diff", "diff"),
)
# diffusers' names of Wan modules -> the original names (which the fusion model keeps)
_DIFFUSERS_NAMES = (
    (r"\.attn1\.to_q$", ".self_attn.q"), (r"\.attn1\.to_k$", ".self_attn.k"),
    (r"\.attn1\.to_v$", ".self_attn.v"), (r"\.attn1\.to_out\.0$", ".self_attn.o"),
    (r"\.attn2\.to_q$", ".cross_attn.q"), (r"\.attn2\.to_k$", ".cross_attn.k"),
    (r"\.attn2\.to_v$", ".cross_attn.v"), (r"\.attn2\.to_out\.0$", ".cross_attn.o"),
    (r"\.ffn\.net\.0\.proj$", ".ffn.0"), (r"\.ffn\.net\.2$", ".ffn.2"),
    (r"^condition_embedder\.text_embedder\.linear_1$", "text_embedding.0"),
    (r"^condition_embedder\.text_embedder\.linear_2$", "text_embedding.2"),
    (r"^condition_embedder\.time_embedder\.linear_1$", "time_embedding.0"),
    (r"^condition_embedder\.time_embedder\.linear_2$", "time_embedding.2"),
    (r"^condition_embedder\.time_proj$", "time_projection.1"),
    (r"^proj_out$", "head.head"),
)


class LoraError(ValueError):
    """A LoRA file that cannot be read or applied; `path` names it, the message says why."""

    def __init__(self, path: str | Path, problem: str, hint: str = ""):
        self.path, self.problem, self.hint = Path(path), problem, hint
        super().__init__(f"{self.path}: {problem}" + (f"\n  hint: {hint}" if hint else ""))


@dataclass(frozen=True)
class LoraSpec:
    """One LoRA to apply: its file, its strength, and the towers it goes onto (None: decided
    by its key names — a Wan2.2-5B LoRA onto the video tower, an Ovi LoRA onto both)."""
    path: Path
    scale: float = 1.0
    tower: str | None = None

    def __post_init__(self):
        if self.tower not in (None, *TOWERS):
            raise ValueError(f"LoRA tower must be one of {', '.join(TOWERS)}, got {self.tower!r}")


@dataclass(frozen=True)
class LoraModule:
    """What a LoRA file holds for one module: the file's key of each tensor by its role
    ("down", "up", "alpha", "diff", "diff_b") and the tensors' shapes."""
    key: str  # the file's own spelling of the module (for messages)
    path: str  # module path in the fusion model's names, tower-relative or absolute
    keys: dict[str, str]
    shapes: dict[str, tuple[int, ...]]


@dataclass(frozen=True)
class LoraFile:
    path: Path
    format: str  # "kohya", "comfyui" or "peft"
    modules: tuple[LoraModule, ...]

    @property
    def is_ovi(self) -> bool:
        """Its module paths name the fusion model's towers (an Ovi LoRA)."""
        return any(m.path.startswith(("video_model.", "audio_model.")) for m in self.modules)

    def default_tower(self) -> str:
        return "both" if self.is_ovi else "video"


# --- reading ------------------------------------------------------------------------------------

def _split(key: str) -> tuple[str, str] | None:
    for suffix, role in _SUFFIXES:
        if key.endswith(suffix):
            return key[: -len(suffix)], role
    return None


def _format_of(keys: list[str]) -> str:
    if any(k.startswith(_KOHYA_PREFIX) for k in keys):
        return "kohya"
    if any(".lora_A." in k or ".lora_B." in k for k in keys) and not any(
            k.startswith("diffusion_model.") for k in keys):
        return "peft"
    return "comfyui"


def _module_path(raw: str, fmt: str, kohya_names: dict[str, str]) -> str | None:
    """The fusion model's path of a module as the file spells it; None when unknown."""
    if fmt == "kohya":
        return kohya_names.get(raw.removeprefix(_KOHYA_PREFIX))
    for prefix in _FILE_PREFIXES:
        if raw.startswith(prefix):
            raw = raw[len(prefix):]
            break
    for pattern, name in _DIFFUSERS_NAMES:
        raw = re.sub(pattern, name, raw)
    return raw


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors file's header (8-byte length, then JSON)."""
    try:
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > _MAX_HEADER:
                raise ValueError("header too large")
            header = json.loads(f.read(length))
        return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    except (OSError, ValueError, struct.error, KeyError, TypeError, AttributeError) as exc:
        raise LoraError(path, f"not a readable safetensors file ({exc})",
                        "LoRAs are read from .safetensors files") from None


def read_lora(path: str | Path, module_paths: list[str]) -> LoraFile:
    """Read a LoRA file's keys. `module_paths`: every module path (tower-relative and
    absolute) the model has; kohya names (dots flattened to underscores) are resolved
    against them."""
    path = Path(path)
    if not path.is_file():
        raise LoraError(path, "LoRA file not found", "check the `loras:` path; relative paths "
                        "are relative to the storyboard")
    shapes = safetensors_shapes(path)
    keys = sorted(shapes)
    fmt = _format_of(keys)
    kohya_names = {p.replace(".", "_"): p for p in module_paths}
    parts: dict[str, dict[str, str]] = {}
    unknown = []
    for key in keys:
        split = _split(key)
        if split is None:
            unknown.append(key)
            continue
        raw, role = split
        parts.setdefault(raw, {})[role] = key
    modules = []
    for raw, found in sorted(parts.items()):
        module = _module_path(raw, fmt, kohya_names)
        if module is None or ("down" in found) != ("up" in found):
            unknown.append(raw)
            continue
        modules.append(LoraModule(raw, module, found, {role: shapes[k] for role, k in found.items()}))
    if unknown:
        raise LoraError(path, f"{len(unknown)} key(s) that are not LoRA tensors of a known "
                        f"module: {listed_keys(unknown)}",
                        "ovi-studio reads kohya/musubi, ComfyUI and PEFT/diffusers LoRAs for "
                        "Wan2.2-TI2V-5B and Ovi")
    if not modules:
        raise LoraError(path, "no LoRA tensors in the file", "is this a LoRA?")
    return LoraFile(path, fmt, tuple(modules))


def listed_keys(keys: list[str]) -> str:
    more = f" and {len(keys) - _LISTED} more" if len(keys) > _LISTED else ""
    return ", ".join(keys[:_LISTED]) + more


# --- mapping onto the model -----------------------------------------------------------------------

def fusion_param_shapes(arch: Arch) -> dict[str, tuple[int, ...]]:
    """Shapes of the weights and biases a LoRA can touch (the Linears of both towers), from the
    sizes alone: what `check` compares a LoRA with (tests hold it to the built model)."""
    shapes = {}
    for tower, p in (("video_model", arch.video_dit), ("audio_model", arch.audio_dit)):
        for module, shape in _tower_linears(p).items():
            shapes[f"{tower}.{module}.weight"] = shape
            shapes[f"{tower}.{module}.bias"] = shape[:1]
    return shapes


def _tower_linears(p: DiTParams) -> dict[str, tuple[int, int]]:
    d = p.dim
    linears = {"text_embedding.0": (d, p.text_dim), "text_embedding.2": (d, d),
               "time_embedding.0": (d, p.freq_dim), "time_embedding.2": (d, d),
               "time_projection.1": (6 * d, d), "head.head": (math.prod(p.patch_size) * p.out_dim, d)}
    for i in range(p.num_layers):
        for name in ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o", "cross_attn.q",
                     "cross_attn.k", "cross_attn.v", "cross_attn.o", "cross_attn.k_fusion",
                     "cross_attn.v_fusion"):
            linears[f"blocks.{i}.{name}"] = (d, d)
        linears[f"blocks.{i}.ffn.0"] = (p.ffn_dim, d)
        linears[f"blocks.{i}.ffn.2"] = (d, p.ffn_dim)
    return linears


def model_module_paths(param_shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """Module paths of the fusion model, absolute (`video_model.blocks.0.ffn.0`) and
    tower-relative (`blocks.0.ffn.0`), from its parameter names."""
    paths = set()
    for key in param_shapes:
        module = key.rsplit(".", 1)[0]
        paths.add(module)
        paths.add(module.split(".", 1)[1])
    return sorted(paths)


def lora_targets(lora: LoraFile, tower: str | None,
                 param_shapes: dict[str, tuple[int, ...]]) -> dict[str, LoraModule]:
    """Parameter-module path of the model (absolute) -> the LoRA module merged into it.

    Raises LoraError when a module maps onto no weight of the model, onto a weight of another
    shape (a LoRA for another model), or when nothing is left for the chosen towers."""
    tower = tower or lora.default_tower()
    prefixes = TOWER_PREFIXES[tower]
    targets: dict[str, LoraModule] = {}
    unmatched, wrong_shape = [], []
    for module in lora.modules:
        if module.path.startswith(("video_model.", "audio_model.")):
            candidates = [module.path] if module.path.startswith(prefixes) else []
            known = module.path + ".weight" in param_shapes or module.path + ".bias" in param_shapes
        else:
            candidates = [p + module.path for p in prefixes]
            known = any(p + module.path + suffix in param_shapes
                        for p in ("video_model.", "audio_model.") for suffix in (".weight", ".bias"))
        if not known:
            unmatched.append(module.key)
            continue
        for target in candidates:
            problem = _shape_problem(module, target, param_shapes)
            if problem:
                wrong_shape.append(f"{module.key} ({problem})")
            else:
                targets[target] = module
    if unmatched:
        raise LoraError(lora.path, f"{len(unmatched)} module(s) the model does not have: "
                        f"{listed_keys(unmatched)}",
                        "this LoRA is for another model (ovi-studio takes Wan2.2-TI2V-5B and Ovi LoRAs)")
    if wrong_shape:
        raise LoraError(lora.path, f"{len(wrong_shape)} module(s) of the wrong size for this model: "
                        f"{listed_keys(wrong_shape)}",
                        "this LoRA is for another model size (Wan2.2 14B LoRAs do not fit the 5B towers)")
    if not targets:
        kind = "an Ovi LoRA" if lora.is_ovi else "a Wan2.2-TI2V-5B LoRA"
        raise LoraError(lora.path, f"nothing to apply to the {tower} tower(s): it is {kind} for "
                        f"the {lora.default_tower()} tower(s)", f"set `tower: {lora.default_tower()}`")
    return targets


def _shape_problem(module: LoraModule, target: str, shapes: dict[str, tuple[int, ...]]) -> str:
    weight, bias = shapes.get(target + ".weight"), shapes.get(target + ".bias")
    has = module.shapes
    if "down" in has:
        if weight is None or len(weight) != 2:
            return "not a Linear layer"
        made = (has["up"][0], has["down"][1])
        if has["up"][1] != has["down"][0] or made != tuple(weight):
            return f"gives {list(made)}, the weight is {list(weight)}"
    if "diff" in has and (weight is None or has["diff"] != tuple(weight)):
        return f"diff is {list(has['diff'])}, the weight is {list(weight or ())}"
    if "diff_b" in has and (bias is None or has["diff_b"] != tuple(bias)):
        return f"bias diff is {list(has['diff_b'])}, the bias is {list(bias or ())}"
    return ""


def check_lora(spec: LoraSpec, arch: Arch) -> None:
    """Raise LoraError when the LoRA is missing, unreadable, or does not fit `arch`'s towers
    as `spec.tower` asks (reads the file's header only)."""
    shapes = fusion_param_shapes(arch)
    lora_targets(read_lora(spec.path, model_module_paths(shapes)), spec.tower, shapes)


