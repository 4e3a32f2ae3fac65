"""Flow-matching solvers with the reference's timesteps and arithmetic.

Each scheduler has `timesteps` (what the model is fed, one per step), `sigmas` (steps + 1, ending
at 0) and `step(model_output, sample) -> next sample`, called once per timestep in order.
Tensors carry a leading batch axis of 1, as in the reference (it matters for the UniPC einsum).

- UniPC-bh2 (order 2, predict-x0): the reference's own port (Wan's). diffusers' UniPC cannot stand
  in: its flow sigmas start from 0.999 in float64 where the reference starts from float32(0.999),
  and its timesteps are not int64-truncated. Its arithmetic runs on the bf16 sample with float32
  0-dim coefficients, which this port repeats operation by operation.
- DPM-Solver++ (order 2, midpoint): also the reference's own; the update runs in float32 and the
  result is rounded to the sample dtype.
- Euler: the reference uses diffusers' FlowMatchEulerDiscreteScheduler itself, so do we.
"""
from __future__ import annotations

import numpy as np
import torch

NUM_TRAIN_TIMESTEPS = 1000
SOLVERS = ("unipc", "dpm++", "euler")


def shift_sigmas(sigmas: np.ndarray, shift: float) -> np.ndarray:
    """The flow-matching time shift sigma' = shift*sigma / (1 + (shift-1)*sigma), in float64."""
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def _discrete_schedule(sigmas: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Model timesteps int64(sigma*1000) (truncated) and float32 sigmas with a final 0."""
    timesteps = torch.from_numpy(sigmas * NUM_TRAIN_TIMESTEPS).to(torch.int64)
    return timesteps, torch.from_numpy(np.concatenate([sigmas, [0.0]]).astype(np.float32))


def _lambda(sigma: torch.Tensor) -> torch.Tensor:
    """log-SNR log(alpha) - log(sigma) with alpha = 1 - sigma (float32 0-dim)."""
    return torch.log(1 - sigma) - torch.log(sigma)


class FlowUniPC:
    """UniPC-bh2, solver order 2, x0 prediction, lower order on the last step, corrector on."""

    def __init__(self, steps: int, shift: float, device: torch.device):
        # The shift-1 training table's sigma_max, kept as float32 like the reference's tensor.
        sigma_max = float(np.float32(1.0 - 1.0 / NUM_TRAIN_TIMESTEPS))
        raw = np.linspace(sigma_max, 0.0, steps + 1)[:-1]
        timesteps, self.sigmas = _discrete_schedule(shift_sigmas(raw, shift))
        self.timesteps = timesteps.to(device)
        self.index = 0
        self.x0_preds: list[torch.Tensor] = []  # the last two x0 predictions, newest last
        self.last_sample = None
        self.order = 1  # order of the predictor just run (the next corrector's order)
        self.warmup = 0  # predictor steps done, capped at the solver order

    def step(self, model_output: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        i = self.index
        x0 = sample - self.sigmas[i] * model_output
        if i > 0:
            sample = self._correct(x0, sample)
        self.x0_preds = (self.x0_preds + [x0])[-2:]
        self.order = min(2, len(self.timesteps) - i, self.warmup + 1)
        self.last_sample = sample
        prev = self._predict(sample)
        self.warmup = min(self.warmup + 1, 2)
        self.index += 1
        return prev

    def _coefficients(self, sigma_t, sigma_s0):
        alpha_t = 1 - sigma_t
        h = _lambda(sigma_t) - _lambda(sigma_s0)
        hh = -h
        h_phi_1 = torch.expm1(hh)
        return alpha_t, h, hh, h_phi_1, torch.expm1(hh)  # B(h) of bh2 = expm1(-h)

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        """UniP: x at sigma[i+1] from x at sigma[i] and the x0 predictions (order 1 or 2)."""
        i = self.index
        sigma_t, sigma_s0 = self.sigmas[i + 1], self.sigmas[i]
        alpha_t, h, _, h_phi_1, b_h = self._coefficients(sigma_t, sigma_s0)
        m0 = self.x0_preds[-1]
        x_t = sigma_t / sigma_s0 * x - alpha_t * h_phi_1 * m0
        if self.order == 2:
            rk = (_lambda(self.sigmas[i - 1]) - _lambda(sigma_s0)) / h
            d1s = torch.stack([(self.x0_preds[-2] - m0) / rk], dim=1)
            rhos = torch.tensor([0.5], dtype=x.dtype, device=x.device)
            x_t = x_t - alpha_t * b_h * torch.einsum("k,bkc...->bc...", rhos, d1s)
        return x_t.to(x.dtype)

    def _correct(self, x0: torch.Tensor, this_sample: torch.Tensor) -> torch.Tensor:
        """UniC: refine the sample just predicted using the new x0 prediction."""
        i, order, x = self.index, self.order, self.last_sample
        sigma_t, sigma_s0 = self.sigmas[i], self.sigmas[i - 1]
        alpha_t, h, hh, h_phi_1, b_h = self._coefficients(sigma_t, sigma_s0)
        m0 = self.x0_preds[-1]
        lambda_s0 = _lambda(sigma_s0)
        rks, d1s = [], []
        for k in range(1, order):
            rk = (_lambda(self.sigmas[i - (k + 1)]) - lambda_s0) / h
            rks.append(rk)
            d1s.append((self.x0_preds[-(k + 1)] - m0) / rk)
        rks.append(1.0)
        if order == 1:
            rhos = torch.tensor([0.5], dtype=x.dtype, device=x.device)
        else:
            rhos = torch.linalg.solve(*self._unic_system(rks, hh, b_h, order, x.device)).to(x.dtype)
        x_t = sigma_t / sigma_s0 * x - alpha_t * h_phi_1 * m0
        corr = torch.einsum("k,bkc...->bc...", rhos[:-1], torch.stack(d1s, dim=1)) if d1s else 0
        x_t = x_t - alpha_t * b_h * (corr + rhos[-1] * (x0 - m0))
        return x_t.to(x.dtype)

    @staticmethod
    def _unic_system(rks, hh, b_h, order, device):
        """R rho = b of UniC: R[k] = r^k, b[k] = k! * phi_{k+1}(h) / B(h) (float32)."""
        rks = torch.tensor(rks, device=device)
        h_phi_k = torch.expm1(hh) / hh - 1
        factorial = 1
        rows, b = [], []
        for k in range(1, order + 1):
            rows.append(torch.pow(rks, k - 1))
            b.append(h_phi_k * factorial / b_h)
            factorial *= k + 1
            h_phi_k = h_phi_k / hh - 1 / factorial
        return torch.stack(rows), torch.tensor(b, device=device)


class FlowDPMSolverPP:
    """DPM-Solver++ order 2 (midpoint), first order on the first and the last step."""

    def __init__(self, steps: int, shift: float, device: torch.device):
        raw = np.linspace(1, 0, steps + 1)[:steps]
        timesteps, self.sigmas = _discrete_schedule(shift_sigmas(raw, shift))
        self.timesteps = timesteps.to(device)
        self.index = 0
        self.x0_preds: list[torch.Tensor] = []

    def step(self, model_output: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        i = self.index
        x0 = sample - self.sigmas[i] * model_output
        self.x0_preds = (self.x0_preds + [x0])[-2:]
        x = sample.to(torch.float32)
        sigma_t, sigma_s0 = self.sigmas[i + 1], self.sigmas[i]
        alpha_t = 1 - sigma_t
        h = _lambda(sigma_t) - _lambda(sigma_s0)
        first_order = i == 0 or i == len(self.timesteps) - 1
        if first_order:
            prev = (sigma_t / sigma_s0) * x - (alpha_t * (torch.exp(-h) - 1.0)) * x0
        else:
            m0, m1 = self.x0_preds[-1], self.x0_preds[-2]
            r0 = (_lambda(sigma_s0) - _lambda(self.sigmas[i - 1])) / h
            d1 = (1.0 / r0) * (m0 - m1)
            prev = ((sigma_t / sigma_s0) * x - (alpha_t * (torch.exp(-h) - 1.0)) * m0
                    - 0.5 * (alpha_t * (torch.exp(-h) - 1.0)) * d1)
        self.index += 1
        return prev.to(x0.dtype)


class FlowEuler:
    """diffusers' FlowMatchEulerDiscreteScheduler(shift) with its default 1000 training steps."""

    def __init__(self, steps: int, shift: float, device: torch.device):
        from diffusers import FlowMatchEulerDiscreteScheduler

        self._scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
        self._scheduler.set_timesteps(steps, device=device)
        self.timesteps = self._scheduler.timesteps
        self.sigmas = self._scheduler.sigmas
        self.index = 0

    def step(self, model_output: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        t = self.timesteps[self.index]
        self.index += 1
        return self._scheduler.step(model_output, t, sample, return_dict=False)[0]


def make_scheduler(solver: str, steps: int, shift: float, device: torch.device | str = "cpu"):
    """A fresh scheduler (one per tower per generation: they keep the multistep history)."""
    kinds = {"unipc": FlowUniPC, "dpm++": FlowDPMSolverPP, "euler": FlowEuler}
    if solver not in kinds:
        raise ValueError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    return kinds[solver](steps, shift, torch.device(device))
