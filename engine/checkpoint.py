"""Load the fusion DiT from a checkpoint folder laid out as the reference lays it out.

The model is built on the meta device and each tensor is read from the memory-mapped
safetensors file straight onto the target device, then assigned (not copied) into the model, so
the weights are never held twice. Keys and shapes are checked strictly before anything is read;
every problem with the file raises one `CheckpointError` naming the file and where it comes from.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from engine import fp8 as fp8_format
from engine.arch import Arch, load_arch
from engine.attention import resolve_attention_backend
from engine.embedding_cache import cache_root
from engine.errors import CheckpointError
from engine.layout import fusion_weights, source_of
from engine.fingerprint import file_fingerprint
from engine.fp8_files import TOOL_FP8_HINT, check_scaled_keys
from engine.lora import load_loras, merge_loras
from engine.lora_keys import LoraSpec
from engine.model import FusionModel
from engine.variants import FP8_VARIANTS, Variant, get_variant

_LISTED = 5  # keys named in a mismatch message


def load_fusion_model(ckpt_dir: str | Path, variant_name: str, *, device: torch.device,
                      dtype: torch.dtype = torch.bfloat16, fp8: bool | str = False,
                      attention: str = "auto", read_device: torch.device | None = None,
                      cache_dir: str | Path | None = None, loras: tuple[LoraSpec, ...] = (),
                      fp8_matmul: bool = False,
                      fp8_file: str | Path | None = None) -> tuple[FusionModel, Variant]:
    """The fusion model of `variant_name` for `device`, and the variant (with arch.json overrides).

    dtype: storage dtype of the weights (computation is bf16 regardless). fp8: True loads the
    published fp8 file (720x720_5s only) and keeps its dtypes, as the reference does; "scaled"
    converts the variant's bf16 file to fp8 e4m3 with per-block scales (engine.fp8), once: the
    conversion is cached under `<cache root>/fp8` (cache_dir, else the default cache root).
    attention: "auto", "sdpa", "flash2" or "flash3", resolved for `device` (see
    `model.attention_backend`). read_device: where the weights are put (default `device`);
    "cpu" when block swapping places the model afterwards (engine.offload.stream_model).
    loras: merged into the weights as they are read (engine.lora), before any fp8 quantisation.
    fp8_matmul (with fp8="scaled"): quantise with one scale per output row and multiply in fp8
    (engine.fp8; GPUs with fp8 tensor cores). fp8_file (with fp8="scaled"): a scaled-fp8 file
    made by another tool (musubi-tuner, ComfyUI/kijai) read instead of the folder's weights.
    """
    root = Path(ckpt_dir)
    device = torch.device(device)
    read_device = device if read_device is None else torch.device(read_device)
    if fp8 not in (False, True, "scaled"):
        raise ValueError(f"fp8 must be False, True (the published fp8 file) or 'scaled', got {fp8!r}")
    if (fp8_matmul or fp8_file is not None) and fp8 != "scaled":
        raise ValueError("fp8_matmul and fp8_file go with fp8='scaled'")
    if fp8 is True and variant_name not in FP8_VARIANTS:
        raise ValueError(f"fp8 weights exist only for {', '.join(FP8_VARIANTS)}, not {variant_name}; "
                         "fp8='scaled' converts any variant")
    arch = load_arch(root)
    variant = arch.variant.apply(get_variant(variant_name))
    backend = resolve_attention_backend(attention, device)
    with torch.device("meta"):
        model = FusionModel(arch.video_dit, arch.audio_dit, backend)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    loaded_loras = load_loras(list(loras), expected)
    block = fp8_format.ROWWISE if fp8_matmul else fp8_format.BLOCK
    if fp8_file is not None:
        model = _load_tool_fp8(model, Path(fp8_file), expected, read_device, dtype, block, loaded_loras)
    elif fp8 == "scaled":
        model = _load_scaled_fp8(model, root, variant, expected, arch, read_device, dtype, cache_dir,
                                 loaded_loras, block)
    else:
        state = read_fusion_weights(root, fusion_weights(variant, fp8), expected, arch, read_device,
                                    dtype=None if fp8 else dtype)
        merge_loras(state, loaded_loras)
        model.load_state_dict(state, strict=True, assign=True)
    if fp8_matmul:
        fp8_format.use_fp8_matmul(model)
    return model.eval().requires_grad_(False), variant


def quantize_fusion_layers(model: FusionModel, block: int = fp8_format.BLOCK) -> None:
    """Turn the fusion layers' Linears into scaled FP8Linears (structure only on meta)."""
    for tower in (model.video_model, model.audio_model):
        fp8_format.quantize_linears(tower.blocks, block=block)


def _load_tool_fp8(model: FusionModel, path: Path, expected, device: torch.device,
                   dtype: torch.dtype, block: int, loras) -> FusionModel:
    """A scaled-fp8 file of another tool: its fp8 layers kept with their scales (requantised
    only where LoRAs are merged or fp8 matmuls need row scales), everything else in `dtype`."""
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(path, f"unreadable safetensors file ({exc})", TOOL_FP8_HINT) from None
    check_scaled_keys(path, tensors.keys(), expected.keys())
    entries = fp8_format.read_scaled_file(tensors)
    quantize_fusion_layers(model, block)
    layers = {name + ".weight" for name, m in model.named_modules() if isinstance(m, fp8_format.FP8Linear)}
    state = {}
    for key, entry in entries.items():
        if isinstance(entry, tuple) and (key not in layers or loras or
                                         (block == fp8_format.ROWWISE and entry[1].shape[1] != 1)):
            entry = fp8_format.dequantize_blockwise(*entry, dtype)
        state[key] = entry
    if loras:
        merge_loras(state, loras)
    for key, entry in list(state.items()):
        if key in layers and not isinstance(entry, tuple):
            entry = fp8_format.quantize_blockwise(entry.to(dtype), block)
        if isinstance(entry, tuple):
            state[key] = entry[0]
            state[key[: -len(".weight")] + ".scale"] = entry[1]
        else:
            state[key] = entry.to(dtype)
    fp8_format.assign_parameters(model, state)
    return model.to(device)


def _load_scaled_fp8(model: FusionModel, root: Path, variant: Variant, expected, arch: Arch,
                     device: torch.device, dtype: torch.dtype, cache_dir, loras, block: int) -> FusionModel:
    """The variant's bf16 weights with the LoRAs merged, quantised; the result is cached per
    base file and set of LoRAs (files and scales)."""
    relative = fusion_weights(variant, False)
    merged = ";".join(f"{file_fingerprint(spec.path)}*{spec.scale}@{spec.tower}"
                      for spec, _ in loras if spec.scale != 0)
    cached = fp8_format.converted_cache_path(cache_root(cache_dir), root / relative, block, merged)
    converted = fp8_format.load_converted_or_drop(cached, device) if cached.is_file() else None
    if converted is not None:
        quantize_fusion_layers(model, block)
        state = fp8_format.load_scales_into(model, converted)
        model.load_state_dict(state, strict=True, assign=True)
        return model
    state = read_fusion_weights(root, relative, expected, arch, torch.device("cpu"), dtype=dtype)
    merge_loras(state, loras)
    model.load_state_dict(state, strict=True, assign=True)
    del state
    quantize_fusion_layers(model, block)
    fp8_format.save_converted(cached, fp8_format.scaled_state_dict(model))
    return model.to(device)


def _hint(root: Path, relative: str) -> str:
    repo = source_of(relative)
    return (f"{relative} comes from the Hugging Face repository {repo}; download it again into "
            f"{root / Path(relative).parent} (e.g. `huggingface-cli download {repo} "
            f"{Path(relative).name} --local-dir {root / Path(relative).parent}`)")


def _some(keys: list[str]) -> str:
    more = f" and {len(keys) - _LISTED} more" if len(keys) > _LISTED else ""
    return ", ".join(keys[:_LISTED]) + more


def read_fusion_weights(root: Path, relative: str, expected: dict[str, tuple[int, ...]], arch: Arch,
                        device: torch.device, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """Every tensor of `root/relative` on `device` (cast to `dtype` unless None), after checking
    that the file holds exactly the `expected` keys and shapes."""
    path = root / relative
    hint = _hint(root, relative)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if not path.is_file():
        raise CheckpointError(path, "fusion checkpoint not found", hint)
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            keys = set(f.keys())
            missing, extra = sorted(expected.keys() - keys), sorted(keys - expected.keys())
            if missing or extra:
                parts = ([f"{len(missing)} missing key(s): {_some(missing)}"] if missing else []) + (
                    [f"{len(extra)} unexpected key(s): {_some(extra)}"] if extra else [])
                raise CheckpointError(path, "not an Ovi fusion checkpoint: " + "; ".join(parts), hint)
            wrong = [f"{k} is {list(f.get_slice(k).get_shape())}, expected {list(expected[k])}"
                     for k in sorted(expected) if tuple(f.get_slice(k).get_shape()) != expected[k]]
            if wrong:
                sizes = ("the published sizes" if arch.is_published_size
                         else f"the sizes in {root / 'arch.json'}")
                raise CheckpointError(path, f"{len(wrong)} tensor(s) of the wrong shape for "
                                      f"{sizes}: {_some(wrong)}",
                                      hint + "; or fix arch.json if this is a resized model")
            state = {}
            for k in expected:
                t = f.get_tensor(k)
                state[k] = t if dtype is None else t.to(dtype)
            return state
    except SafetensorError as exc:
        raise CheckpointError(path, f"unreadable safetensors file ({exc}); it is probably "
                              "truncated or corrupted", hint) from None


def release_fusion_model(model: FusionModel) -> None:
    """Free the model's weights now (its tensors move to the meta device; the model is unusable)."""
    model.to("meta")
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
