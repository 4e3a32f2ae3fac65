"""Opt-in feature caching across denoising steps (`step_cache: THRESHOLD`), TeaCache/EasyCache style.

The fusion layers turn the embedded tokens (V, A) of a step into (V + dV, A + dA) per CFG
branch. When the embedded tokens barely move from one step to the next, dV and dA barely move
either, so a step may reuse the residuals of the last step that ran the layers. The change is
measured on the model's own inputs — the embedded video and audio tokens — as the relative L1
distance to the previous step's, the larger of the two towers; it accumulates over skipped
steps, and once the sum reaches the threshold the layers run again and the sum restarts.
The first and the last step always run. Never on by default: it trades exactness for speed
(bench/RESULTS.md states the drift and skip rate per threshold).
"""
from __future__ import annotations

import torch


def relative_l1(new: torch.Tensor, old: torch.Tensor) -> float:
    old = old.float()
    return ((new.float() - old).abs().mean() / old.abs().mean().clamp_min(1e-12)).item()


class StepCache:
    def __init__(self, threshold: float, steps: int):
        self.threshold = threshold
        self.last_step = steps - 1
        self._previous: tuple[torch.Tensor, torch.Tensor] | None = None  # the last step's inputs
        self._residuals: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # per branch
        self._accumulated = 0.0

    def can_skip(self, step: int, V: torch.Tensor, A: torch.Tensor) -> bool:
        """Whether `step` may reuse the cached residuals (and note its inputs either way)."""
        if self._residuals is None or step == self.last_step:
            return False
        old_v, old_a = self._previous
        self._accumulated += max(relative_l1(V, old_v), relative_l1(A, old_a))
        self._previous = (V, A)
        return self._accumulated < self.threshold

    def reuse(self, V: torch.Tensor, A: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each branch's layer output, approximated by its cached residual on today's inputs."""
        return [(V + dv, A + da) for dv, da in self._residuals]

    def store(self, V: torch.Tensor, A: torch.Tensor, states: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Remember what the layers added to (V, A) in each branch, at a step that ran them."""
        self._residuals = [(v - V, a - A) for v, a in states]
        self._previous = (V, A)
        self._accumulated = 0.0
