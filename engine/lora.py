"""LoRA files: reading the common formats, mapping their keys onto the fusion model, merging.

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

Merging is exact arithmetic in fp32, rounded once to the weight's dtype:
W' = W + sum over LoRAs of scale * alpha / rank * (up @ down). A LoRA at scale 0 leaves the
weights bit-identical.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

TOWERS = ("video", "audio", "both")
TOWER_PREFIXES = {"video": ("video_model.",), "audio": ("audio_model.",),
                  "both": ("video_model.", "audio_model.")}
_LISTED = 5  # keys named in an error message

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
    """The tensors a LoRA file holds for one module, under the module's path in the file."""
    key: str  # the file's own spelling of the module (for messages)
    path: str  # module path in the fusion model's names, tower-relative or absolute
    down: torch.Tensor | None = None
    up: torch.Tensor | None = None
    alpha: float | None = None
    diff: torch.Tensor | None = None
    diff_b: torch.Tensor | None = None

    @property
    def rank(self) -> int:
        return self.down.shape[0]


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


def lora_fingerprint(path: str | Path) -> str:
    """`sha256:<hex>` of the whole file: LoRAs are small, and two LoRAs differing anywhere must
    key different takes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()[:32]


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


def read_lora(path: str | Path, module_paths: list[str]) -> LoraFile:
    """Read a LoRA file. `module_paths`: every module path (tower-relative and absolute) the
    model has; kohya names (dots flattened to underscores) are resolved against them."""
    path = Path(path)
    if not path.is_file():
        raise LoraError(path, "LoRA file not found", "check the `loras:` path (relative paths "
                        "are relative to the storyboard)")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as exc:
        raise LoraError(path, f"not a readable safetensors file ({exc})",
                        "LoRAs are read from .safetensors files") from None
    keys = sorted(tensors)
    fmt = _format_of(keys)
    kohya_names = {p.replace(".", "_"): p for p in module_paths}
    parts: dict[str, dict] = {}
    unknown = []
    for key in keys:
        split = _split(key)
        if split is None:
            unknown.append(key)
            continue
        raw, role = split
        parts.setdefault(raw, {})[role] = tensors[key]
    modules = []
    for raw, found in sorted(parts.items()):
        module = _module_path(raw, fmt, kohya_names)
        if module is None or ("down" in found) != ("up" in found):
            unknown.append(raw)
            continue
        alpha = found.get("alpha")
        modules.append(LoraModule(raw, module, found.get("down"), found.get("up"),
                                  None if alpha is None else float(alpha), found.get("diff"),
                                  found.get("diff_b")))
    if unknown:
        raise LoraError(path, f"{len(unknown)} key(s) that are not LoRA tensors of a known "
                        f"module: {_some(unknown)}",
                        "ovi-studio reads kohya/musubi, ComfyUI and PEFT/diffusers LoRAs for "
                        "Wan2.2-TI2V-5B and Ovi")
    if not modules:
        raise LoraError(path, "no LoRA tensors in the file", "is this a LoRA?")
    return LoraFile(path, fmt, tuple(modules))


def _some(keys: list[str]) -> str:
    more = f" and {len(keys) - _LISTED} more" if len(keys) > _LISTED else ""
    return ", ".join(keys[:_LISTED]) + more


# --- mapping onto the model -----------------------------------------------------------------------

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
                        f"{_some(unmatched)}",
                        "this LoRA is for another model (ovi-studio takes Wan2.2-TI2V-5B and Ovi LoRAs)")
    if wrong_shape:
        raise LoraError(lora.path, f"{len(wrong_shape)} module(s) of the wrong size for this model: "
                        f"{_some(wrong_shape)}",
                        "this LoRA is for another model size (Wan2.2 14B LoRAs do not fit the 5B towers)")
    if not targets:
        kind = "an Ovi LoRA" if lora.is_ovi else "a Wan2.2-TI2V-5B LoRA"
        raise LoraError(lora.path, f"nothing to apply to the {tower} tower(s): it is {kind} for "
                        f"the {lora.default_tower()} tower(s)", f"set `tower: {lora.default_tower()}`")
    return targets


def _shape_problem(module: LoraModule, target: str, shapes: dict[str, tuple[int, ...]]) -> str:
    weight, bias = shapes.get(target + ".weight"), shapes.get(target + ".bias")
    if module.down is not None:
        if weight is None or len(weight) != 2:
            return "not a Linear layer"
        made = (module.up.shape[0], module.down.shape[1])
        if module.up.shape[1] != module.down.shape[0] or made != tuple(weight):
            return f"gives {list(made)}, the weight is {list(weight)}"
    if module.diff is not None and (weight is None or tuple(module.diff.shape) != tuple(weight)):
        return f"diff is {list(module.diff.shape)}, the weight is {list(weight or ())}"
    if module.diff_b is not None and (bias is None or tuple(module.diff_b.shape) != tuple(bias)):
        return f"bias diff is {list(module.diff_b.shape)}, the bias is {list(bias or ())}"
    return ""


# --- merging ------------------------------------------------------------------------------------

def lora_weight_delta(module: LoraModule, scale: float) -> torch.Tensor | None:
    """fp32 difference this module adds to its weight at `scale` (None: it has none)."""
    delta = None
    if module.down is not None:
        alpha = module.rank if module.alpha is None else module.alpha
        delta = (scale * alpha / module.rank) * (module.up.float() @ module.down.float())
    if module.diff is not None:
        delta = scale * module.diff.float() if delta is None else delta + scale * module.diff.float()
    return delta


def merge_loras(state: dict[str, torch.Tensor], loras: list[tuple[LoraSpec, LoraFile]]) -> list[str]:
    """Add every LoRA to the bf16/fp32 tensors of `state` (fusion-model keys) in place, each
    weight rounded once; returns the keys changed. LoRAs at scale 0 are skipped (bit-identical)."""
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    deltas: dict[str, torch.Tensor] = {}
    for spec, lora in loras:
        if spec.scale == 0:
            continue
        for target, module in lora_targets(lora, spec.tower, shapes).items():
            weight_delta = lora_weight_delta(module, spec.scale)
            for key, delta in ((target + ".weight", weight_delta),
                               (target + ".bias", None if module.diff_b is None
                                else spec.scale * module.diff_b.float())):
                if delta is not None:
                    deltas[key] = delta if key not in deltas else deltas[key] + delta
    for key, delta in deltas.items():
        state[key] = (state[key].float() + delta.to(state[key].device)).to(state[key].dtype)
    return sorted(deltas)


def load_loras(specs: list[LoraSpec], param_shapes: dict[str, tuple[int, ...]]
               ) -> list[tuple[LoraSpec, LoraFile]]:
    """Read every LoRA and check it against the model (raises LoraError on the first bad one)."""
    paths = model_module_paths(param_shapes)
    loaded = []
    for spec in specs:
        lora = read_lora(spec.path, paths)
        lora_targets(lora, spec.tower, param_shapes)
        loaded.append((spec, lora))
    return loaded
