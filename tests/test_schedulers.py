"""Our solvers against the reference's: timestep/sigma lists and isolated update steps (goldens
from tests/golden/make_fusion_goldens.py), plus the spec's published values."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from engine.sampling import SamplerSettings, make_noise, timesteps
from engine.schedulers import FlowUniPC, make_scheduler

GOLDEN = Path(__file__).parent / "golden" / "data" / "fusion_schedulers.safetensors"
SOLVERS = ("unipc", "dpm++", "euler")


@pytest.fixture(scope="module")
def golden():
    return load_file(str(GOLDEN))


@pytest.mark.parametrize("solver", SOLVERS)
def test_50_step_lists_equal_the_reference(golden, solver):
    scheduler = make_scheduler(solver, 50, 5.0)
    assert scheduler.timesteps.dtype == golden[f"sched.{solver}.timesteps"].dtype
    assert torch.equal(scheduler.timesteps, golden[f"sched.{solver}.timesteps"])
    assert scheduler.sigmas.dtype == golden[f"sched.{solver}.sigmas"].dtype == torch.float32
    assert torch.equal(scheduler.sigmas, golden[f"sched.{solver}.sigmas"])


# The reference's values (first and last five timesteps at 50 steps, shift 5).
SPEC_TIMESTEPS = {
    "unipc": ([999, 995, 991, 987, 982], [356, 302, 241, 172, 92]),
    "dpm++": ([1000, 995, 991, 987, 982], [357, 303, 241, 172, 92]),
    "euler": ([1000.0, 995.8716, 991.6046, 987.1918, 982.6258],
              [320.5109, 260.7619, 192.8036, 114.8195, 24.4141]),
}


@pytest.mark.parametrize("solver", SOLVERS)
def test_50_step_timesteps_match_the_spec(solver):
    ts = timesteps(SamplerSettings(solver=solver))
    first, last = SPEC_TIMESTEPS[solver]
    torch.testing.assert_close(ts[:5].double(), torch.tensor(first, dtype=torch.float64),
                               atol=1e-4, rtol=0)
    torch.testing.assert_close(ts[-5:].double(), torch.tensor(last, dtype=torch.float64),
                               atol=1e-4, rtol=0)


def _run(scheduler, golden):
    sample, steps = golden["sched.in.sample"], []
    for output in golden["sched.in.model_outputs"]:
        sample = scheduler.step(output, sample)
        steps.append(sample)
    return torch.stack(steps)


def _rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@pytest.mark.parametrize("solver", SOLVERS)
def test_update_steps_equal_the_reference(golden, solver):
    """Five steps from the same model outputs (first order, multistep, last lower-order step),
    bit for bit: the same bf16 and float32 operations in the same order as the reference."""
    steps = golden["sched.in.model_outputs"].shape[0]
    ours = _run(make_scheduler(solver, steps, 5.0), golden)
    assert ours.dtype == torch.bfloat16
    assert torch.equal(ours, golden[f"sched.{solver}.steps"]), _rel(ours, golden[f"sched.{solver}.steps"])


def test_unipc_without_corrector_is_detected(golden, monkeypatch):
    """The step check is sharp enough to see a missing UniC corrector."""
    monkeypatch.setattr(FlowUniPC, "_correct", lambda self, x0, sample: sample)
    ours = _run(make_scheduler("unipc", golden["sched.in.model_outputs"].shape[0], 5.0), golden)
    assert _rel(ours, golden["sched.unipc.steps"]) > 1e-2


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="unknown solver"):
        SamplerSettings(solver="ddim")
    with pytest.raises(ValueError, match="steps must be at least 1, got 0"):
        make_scheduler("unipc", 0, 5.0)
    with pytest.raises(ValueError, match=r"unknown solver 'ddim'; choose one of unipc, dpm\+\+, euler$"):
        make_scheduler("ddim", 50, 5.0)


def test_one_step_is_a_schedule_too():
    """One step from sigma_max: shift 5 maps UniPC's 0.999 to 0.9998 (timestep 999, truncated)
    and DPM++'s and Euler's 1 to 1 (timestep 1000)."""
    assert make_scheduler("unipc", 1, 5.0).timesteps.tolist() == [999]
    assert make_scheduler("dpm++", 1, 5.0).timesteps.tolist() == [1000]
    assert make_scheduler("euler", 1, 5.0).timesteps.tolist() == [1000.0]


def test_noise_is_two_generators_with_the_same_seed():
    video, audio = make_noise((2, 3, 4, 4), (5, 2), seed=103, device="cpu")
    assert video.dtype == audio.dtype == torch.bfloat16
    first = torch.randn((5, 2), dtype=torch.bfloat16, generator=torch.Generator().manual_seed(103))
    assert torch.equal(audio, first)  # audio does not continue the video generator


@pytest.mark.parametrize("solver", ("unipc", "dpm++"))
def test_diffusers_flow_schedules_are_not_the_reference(golden, solver):
    """Why engine/schedulers.py has its own UniPC and DPM++: diffusers' flow-sigma versions of
    these solvers pick other timesteps than the reference (Euler is diffusers' own class)."""
    from diffusers import DPMSolverMultistepScheduler, UniPCMultistepScheduler

    cls = UniPCMultistepScheduler if solver == "unipc" else DPMSolverMultistepScheduler
    theirs = cls(num_train_timesteps=1000, prediction_type="flow_prediction",
                 use_flow_sigmas=True, flow_shift=5.0)
    theirs.set_timesteps(50)
    assert not torch.equal(theirs.timesteps.long(), golden[f"sched.{solver}.timesteps"])
