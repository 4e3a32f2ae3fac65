"""Block swapping: keep some fusion layers' Linear weights in CPU memory and stream them in
(the text encoder's blocks use the same machinery when the encoder does not fit).

The design (docs/model.md, Memory):
- the unit is a fusion layer (video block i + audio block i together);
- the streamed layers are spread evenly among the resident ones, so copies have compute to
  hide behind on both sides;
- each streamed layer's Linear weights live permanently in one flat (pinned) CPU buffer — the
  "master" — so eviction is free: nothing is ever copied back;
- a ring of `slots` device buffers receives them, one coalesced host-to-device copy per layer
  on a dedicated copy stream; CUDA events order copy against compute without a CPU-side sync;
- prefetch runs `slots` streamed layers ahead and wraps around at the end of a pass, so the
  next pass (the other CFG branch, the next step) starts with its first layers already loaded.
Norms, biases and modulation tables stay resident: they are small.

Outputs are bit-identical to running all-resident: the bytes copied are the weights themselves.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

_ALIGN = 256  # bytes; keeps every weight view aligned for any dtype and for fast copies
HEADROOM = 0.9  # the share of free memory a plan may fill (the rest: allocator, fragmentation)


def streamed_layers(num_layers: int, blocks_to_swap: int) -> tuple[int, ...]:
    """Which fusion layers stream, spread evenly over the stack (e.g. 30 layers, 10 swapped:
    layers 1, 4, 7, … 28)."""
    if not 0 <= blocks_to_swap <= num_layers:
        raise ValueError(f"blocks_to_swap must be between 0 and {num_layers}, got {blocks_to_swap}")
    return tuple(int((k + 0.5) * num_layers / blocks_to_swap) for k in range(blocks_to_swap))


@dataclass(frozen=True)
class SwapPlan:
    """The static part of block swapping: which layers stream and through how many slots."""
    num_layers: int
    streamed: tuple[int, ...]
    slots: int = 2

    @classmethod
    def build(cls, num_layers: int, blocks_to_swap: int, slots: int = 2) -> "SwapPlan":
        if slots < 1:
            raise ValueError("slots must be at least 1")
        return cls(num_layers, streamed_layers(num_layers, blocks_to_swap), slots)

    @property
    def active(self) -> bool:
        """With no more streamed layers than slots, everything simply stays loaded."""
        return len(self.streamed) > self.slots

    @property
    def preload(self) -> tuple[int, ...]:
        return self.streamed[: self.slots]

    def next_after(self, layer: int) -> int:
        """The streamed layer to load into `layer`'s slot once `layer` is done (wraps around)."""
        k = self.streamed.index(layer)
        return self.streamed[(k + self.slots) % len(self.streamed)]

    def events(self, passes: int = 1) -> list[tuple]:
        """The schedule as a list of ("load", layer, slot) / ("compute", layer) /
        ("release", layer, slot) events over `passes` forward passes: what unit tests check."""
        out: list[tuple] = [("load", layer, slot) for slot, layer in enumerate(self.preload)]
        slot_of = {layer: slot for slot, layer in enumerate(self.preload)}
        for _ in range(passes):
            for layer in range(self.num_layers):
                out.append(("compute", layer))
                if self.active and layer in slot_of:
                    slot = slot_of.pop(layer)
                    out.append(("release", layer, slot))
                    nxt = self.next_after(layer)
                    slot_of[nxt] = slot
                    out.append(("load", nxt, slot))
        return out


def linear_weights(modules: list[nn.Module]) -> list[nn.Parameter]:
    """The Linear weights of `modules`: what block swapping streams."""
    return [m.weight for root in modules for m in root.modules()
            if isinstance(m, nn.Linear) or type(m).__name__ == "FP8Linear"]


def _layout(params: list[torch.Tensor]) -> tuple[list[int], int]:
    offsets, total = [], 0
    for p in params:
        offsets.append(total)
        total += -(-p.numel() * p.element_size() // _ALIGN) * _ALIGN
    return offsets, total


def _views(flat: torch.Tensor, params: list[torch.Tensor], offsets: list[int]) -> list[torch.Tensor]:
    return [flat[o: o + p.numel() * p.element_size()].view(p.dtype).view(p.shape)
            for p, o in zip(params, offsets)]


class LayerStreamer:
    """Streams the Linear weights of the planned layers through `plan.slots` device buffers.

    `layers[i]` lists the modules of fusion layer i (its video and audio block). Call
    `before(i)` right before computing layer i and `after(i)` right after (with the CFG-inside
    loop, once around both branches). On CUDA the copies run on a side stream; on CPU they run
    inline, which keeps the bookkeeping testable without a GPU.
    """

    def __init__(self, layers: list[list[nn.Module]], plan: SwapPlan, device: torch.device):
        self.plan, self.device = plan, torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.params = {i: linear_weights(layers[i]) for i in plan.streamed}
        if not plan.active:
            for i in plan.streamed:
                for p in self.params[i]:
                    p.data = p.data.to(self.device)
            self.params = {}
        self.streamed_ids = frozenset(id(p) for ps in self.params.values() for p in ps)
        if not plan.active:
            return
        first = self.params[plan.streamed[0]]
        self.offsets, self.nbytes = _layout(first)
        self.masters, self.master_views = {}, {}
        for i in plan.streamed:
            if [(p.shape, p.dtype) for p in self.params[i]] != [(p.shape, p.dtype) for p in first]:
                raise ValueError(f"layer {i} is shaped differently from layer {plan.streamed[0]}: "
                                 "streamed layers must share one layout")
            flat = torch.empty(self.nbytes, dtype=torch.uint8, pin_memory=self.cuda)
            views = _views(flat, self.params[i], self.offsets)
            for p, v in zip(self.params[i], views):
                v.copy_(p.data)
                p.data = v  # the permanent CPU master; the original storage is released
            self.masters[i], self.master_views[i] = flat, views
        self.slot_buffers = [torch.empty(self.nbytes, dtype=torch.uint8, device=self.device)
                             for _ in range(plan.slots)]
        self.slot_views = [_views(b, first, self.offsets) for b in self.slot_buffers]
        if self.cuda:
            self.copy_stream = torch.cuda.Stream(self.device)
            self.done = [torch.cuda.Event() for _ in range(plan.slots)]
            self.free = [torch.cuda.Event() for _ in range(plan.slots)]
        self.slot_of: dict[int, int] = {}
        for slot, layer in enumerate(plan.preload):
            self._load(layer, slot)

    def _load(self, layer: int, slot: int) -> None:
        self.slot_of[layer] = slot
        if not self.cuda:
            self.slot_buffers[slot].copy_(self.masters[layer])
            return
        with torch.cuda.stream(self.copy_stream):
            self.copy_stream.wait_event(self.free[slot])  # compute is done with the old occupant
            self.slot_buffers[slot].copy_(self.masters[layer], non_blocking=True)
            self.done[slot].record(self.copy_stream)

    def before(self, layer: int) -> None:
        slot = self.slot_of.get(layer) if self.params else None
        if slot is None:
            return
        if self.cuda:
            torch.cuda.current_stream(self.device).wait_event(self.done[slot])
        for p, v in zip(self.params[layer], self.slot_views[slot]):
            p.data = v

    def after(self, layer: int) -> None:
        slot = self.slot_of.get(layer) if self.params else None
        if slot is None:
            return
        for p, v in zip(self.params[layer], self.master_views[layer]):
            p.data = v  # back to the CPU master: nothing else refers to the slot now
        if self.cuda:
            self.free[slot].record(torch.cuda.current_stream(self.device))
        del self.slot_of[layer]
        self._load(self.plan.next_after(layer), slot)

    @property
    def resident_bytes(self) -> int:
        """Device bytes the streamed weights take (the slots), against all-resident."""
        return self.nbytes * self.plan.slots if self.params else 0


def fusion_layers(model: nn.Module) -> list[list[nn.Module]]:
    """The swap unit of the fusion model: [video block i, audio block i] for each layer i."""
    return [[v, a] for v, a in zip(model.video_model.blocks, model.audio_model.blocks)]


def move_except(module: nn.Module, device, keep: frozenset[int] = frozenset()) -> None:
    """Move every parameter and buffer of `module` to `device` in place, except the parameters
    whose id is in `keep` (the streamed weights, which live in CPU memory for good)."""
    for p in module.parameters():
        if id(p) not in keep:
            p.data = p.data.to(device)
    for m in module.modules():
        for name, b in m._buffers.items():
            if b is not None:
                m._buffers[name] = b.to(device)


def stream_layers(model: nn.Module, layers: list[list[nn.Module]], blocks_to_swap: int, device,
                  slots: int = 2, keep_on_cpu: frozenset[int] = frozenset()) -> LayerStreamer:
    """Place a model held in CPU memory on `device`, leaving the Linear weights of
    `blocks_to_swap` evenly spread `layers` in (pinned) CPU memory, streamed by the returned
    streamer; parameters whose id is in `keep_on_cpu` stay in CPU memory too."""
    plan = SwapPlan.build(len(layers), blocks_to_swap, slots)
    streamed = frozenset(id(p) for i in plan.streamed for p in linear_weights(layers[i]))
    move_except(model, device, streamed | keep_on_cpu)
    return LayerStreamer(layers, plan, device)


def stream_model(model: nn.Module, blocks_to_swap: int, device, slots: int = 2) -> LayerStreamer:
    """The fusion model with `blocks_to_swap` of its layers streamed (pass the streamer to
    `denoise`)."""
    return stream_layers(model, fusion_layers(model), blocks_to_swap, device, slots)


def layer_bytes(modules: list[nn.Module]) -> int:
    """Bytes of the Linear weights one fusion layer streams."""
    return _layout(linear_weights(modules))[1]


def auto_blocks_to_swap(*, num_layers: int, bytes_per_layer: int, other_weight_bytes: int,
                        activation_bytes: int, free_bytes: int, slots: int = 2,
                        headroom: float = HEADROOM) -> int:
    """The fewest layers to stream so that weights + activations fit in `free_bytes`.

    Resident cost = (num_layers − swapped) layers + the slot ring (when streaming) + the rest of
    the model + the shot's activations; `headroom` keeps a margin for the allocator and the
    VAE decode. Returns num_layers when even full streaming does not fit (the caller then
    reports it; the render's OOM advice takes over)."""
    budget = free_bytes * headroom - other_weight_bytes - activation_bytes
    for swapped in range(num_layers + 1):
        on_device = num_layers - swapped + slots if swapped > slots else num_layers
        if on_device * bytes_per_layer <= budget:
            return swapped
    return num_layers
