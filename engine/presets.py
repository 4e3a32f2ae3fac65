"""Memory presets for 80, 24, 16, 12 and 8 GB GPUs, and the one place they become settings.

A render resolves its `MemoryConfig` once, from the preset (if any), the machine's free memory
and the explicit settings; each shot carries it in its request, and the pipeline reads only it.
How many layers stream under `blocks_to_swap="auto"` is worked out per shot (`blocks_to_swap`),
since a 10-s 960² shot needs 3.6x the activations of 720².
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from engine.arch import Arch
from engine.memory_model import GB, ShotSize, fewest_blocks_to_swap, peak_bytes

AUTO = "auto"


@dataclass(frozen=True)
class Preset:
    """A memory budget and the switches used to meet it."""
    name: str
    gpu_gb: int
    fp8: bool
    tiled_vae: bool
    offload: bool  # park networks not in use in CPU memory (VAEs while sampling, DiT while decoding)
    note: str


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("80gb", 80, False, False, False, "bf16, everything resident: fastest"),
    Preset("24gb", 24, False, True, True, "bf16, some layers streamed, tiled VAE"),
    Preset("16gb", 16, False, True, True, "bf16, most layers streamed, tiled VAE"),
    Preset("12gb", 12, False, True, True, "bf16, nearly all layers streamed, tiled VAE"),
    Preset("8gb", 8, True, True, True, "fp8 block-scaled weights, layers streamed, tiled VAE"),
)}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


def suggest_preset(total_gpu_bytes: int) -> Preset:
    """The fastest preset whose budget fits the GPU."""
    fitting = [p for p in PRESETS.values() if p.gpu_gb * GB <= total_gpu_bytes * 1.02]
    return max(fitting, key=lambda p: p.gpu_gb) if fitting else PRESETS["8gb"]


@dataclass(frozen=True)
class MemoryConfig:
    """How a shot uses device memory. Frozen: resolved once (`resolve_memory`), then carried."""
    fp8: bool | str = False  # False; True: the published fp8 file; "scaled": converted at load
    tiled_vae: bool | None = None  # None: tile when an untiled decode would not fit
    blocks_to_swap: int | str = 0  # fusion layers streamed from CPU memory, or "auto"
    offload: bool = False  # park the networks not in use in CPU memory
    budget_bytes: int = 0  # device memory a shot may use; 0: unlimited (the CPU)
    preset: str | None = None  # recorded only: the preset's choices are already in the fields

    def __post_init__(self):
        if self.fp8 not in (False, True, "scaled"):
            raise ValueError(f"fp8 must be False, True (the published fp8 file) or 'scaled', got {self.fp8!r}")
        swap = self.blocks_to_swap
        if not (swap == AUTO or (isinstance(swap, int) and not isinstance(swap, bool) and swap >= 0)):
            raise ValueError(f"blocks_to_swap must be a number of layers or 'auto', got {swap!r}")

    def override(self, **explicit) -> "MemoryConfig":
        """These settings with the explicit (not None) values of `explicit` in place."""
        return replace(self, **{k: v for k, v in explicit.items() if v is not None})


def resolve_memory(preset: str | None, *, free_bytes: int) -> MemoryConfig:
    """The memory settings of a render, before any shot's own settings: a preset's fp8, tiling
    and offload, with `auto` swapping within its budget; without one, nothing streams unless a
    shot asks and `auto` plans within `free_bytes` (the machine's free device memory, 0 on the
    CPU). Explicit settings then win (`MemoryConfig.override`)."""
    if preset is None:
        return MemoryConfig(budget_bytes=free_bytes)
    chosen = get_preset(preset)
    return MemoryConfig(fp8="scaled" if chosen.fp8 else False, tiled_vae=chosen.tiled_vae or None,
                        blocks_to_swap=AUTO, offload=chosen.offload,
                        budget_bytes=chosen.gpu_gb * GB, preset=chosen.name)


def blocks_to_swap(memory: MemoryConfig, arch: Arch, shot: ShotSize) -> int:
    """How many fusion layers this shot streams."""
    if memory.blocks_to_swap != AUTO:
        return memory.blocks_to_swap
    if memory.budget_bytes == 0:
        return 0
    return fewest_blocks_to_swap(arch, shot, fp8=bool(memory.fp8), budget_bytes=memory.budget_bytes)


@dataclass(frozen=True)
class MemoryPlan:
    blocks_to_swap: int
    peak_bytes: int
    fits: bool


def plan_memory(memory: MemoryConfig, arch: Arch, shot: ShotSize) -> MemoryPlan:
    """What a shot will hold at its peak under `memory`, and whether that fits the budget."""
    swap = blocks_to_swap(memory, arch, shot)
    peak = peak_bytes(arch, shot, fp8=bool(memory.fp8), tiled_vae=bool(memory.tiled_vae),
                      offload=memory.offload, blocks_to_swap=swap, budget_bytes=memory.budget_bytes)
    return MemoryPlan(swap, peak, memory.budget_bytes == 0 or peak <= memory.budget_bytes)
