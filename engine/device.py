"""What the machine offers a shot: the memory budget, and the peak memory a shot really used."""
from __future__ import annotations

import resource

import torch


def free_device_bytes(device) -> int:
    """Free memory on a CUDA device now; 0 elsewhere (the CPU needs no memory plan)."""
    device = torch.device(device)
    if device.type != "cuda":
        return 0
    return torch.cuda.mem_get_info(device)[0]


def reset_peak_memory(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes(device) -> int:
    """Peak memory since the last reset: CUDA allocator peak, or the process's peak RSS on CPU."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
