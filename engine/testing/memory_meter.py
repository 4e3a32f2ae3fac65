"""Peak bytes of live tensors on the CPU, the analogue of CUDA's `max_memory_allocated`.

CPU torch has no allocator statistics and RSS mixes in everything else, so the meter watches
every op's outputs (a TorchDispatchMode) and counts a storage from the op that creates it until
the last tensor referring to it is collected. Tensors that exist before the meter starts (the
weights) are not counted, nor are kernels' private workspaces. The tests use it to check the
memory model (engine.memory_model, engine.video_vae.decode_bytes_estimate) against what the code
really holds at once, without a GPU.
"""
from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LiveTensorBytes(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self._storages: dict[int, list[int]] = {}  # data_ptr -> [tensors referring, nbytes]
        self.live = 0
        self.peak = 0

    def _release(self, ptr: int) -> None:
        entry = self._storages.get(ptr)
        if entry is None:
            return
        entry[0] -= 1
        if entry[0] == 0:
            self.live -= entry[1]
            del self._storages[ptr]

    def _track(self, tensor: torch.Tensor, inputs: set[int]) -> None:
        storage = tensor.untyped_storage()
        ptr = storage.data_ptr()
        if ptr == 0:  # empty
            return
        entry = self._storages.get(ptr)
        if entry is None and ptr in inputs:
            return  # a view of (or `.to` returning) a tensor made before the meter started
        if entry is None:
            self._storages[ptr] = [1, storage.nbytes()]
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
        else:  # a view of, or another wrapper around, a storage already counted
            entry[0] += 1
        weakref.finalize(tensor, self._release, ptr)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0]
                  if isinstance(t, torch.Tensor)}
        for item in tree_flatten(out)[0]:
            if isinstance(item, torch.Tensor) and item.device.type == "cpu":
                self._track(item, inputs)
        return out
