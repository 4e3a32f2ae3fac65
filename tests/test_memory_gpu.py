"""The memory model against the CUDA allocator (skipped without a GPU).

A shot's measured peak (text encoding, denoising and decoding together) must stay within the
estimate that presets and `auto` swapping are planned with (engine.memory_model), at the real token
count of 720x720_5s and the full layer width. Depth is cut to 2 fusion layers and the text
encoder to one narrow block by arch.json: the per-layer activations, the VAE decode and the
slot ring do not depend on depth, and a 30-layer file would take minutes to write."""
from __future__ import annotations

import pytest
import torch

from engine.arch import parse_arch
from engine.memory_model import GB
from engine.networks import Networks
from engine.pipeline import ShotRequest, generate, shot_size
from engine.presets import PRESETS, plan_memory, resolve_memory
from engine.sampling import SamplerSettings
from engine.testing.tiny_checkpoint import TINY_ARCH, write_tiny_checkpoint
from engine.variants import get_variant, snap_t2v_size

pytestmark = pytest.mark.gpu

FULL_WIDTH_SHALLOW = {
    "video_dit": {"num_layers": 2}, "audio_dit": {"num_layers": 2},
    "t5": {**TINY_ARCH["t5"], "dim": 4096, "dim_attn": 256, "dim_ffn": 256, "num_layers": 1},
}


@pytest.fixture(scope="module")
def shallow_ckpt(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("shallow") / "ckpts", seed=0,
                                 arch_json=FULL_WIDTH_SHALLOW)


@pytest.mark.parametrize("preset", ["12gb", "8gb"])
def test_measured_peak_is_within_the_memory_model(shallow_ckpt, tmp_path, preset):
    arch = parse_arch(FULL_WIDTH_SHALLOW)
    variant = get_variant("720x720_5s")
    height, width = snap_t2v_size(720, 720, variant.video_area)
    nets = Networks(shallow_ckpt, "720x720_5s", device="cuda", cache_dir=tmp_path)
    memory = resolve_memory(preset, free_bytes=0)
    try:
        result = generate(nets, ShotRequest(prompt="A lighthouse at night. <AUDCAP>waves<ENDAUDCAP>",
                                            video_negative="blur", audio_negative="noise",
                                            height=height, width=width, memory=memory,
                                            sampler=SamplerSettings(steps=2, seed=1)))
        plan = plan_memory(memory, arch, shot_size(nets, height, width))
    finally:
        nets.close()
    assert result.memory["tiled_vae"] and result.memory["offload"]
    assert result.peak_memory_bytes <= plan.peak_bytes, (result.peak_memory_bytes / GB, plan.peak_bytes / GB)
    assert plan.peak_bytes <= PRESETS[preset].gpu_gb * GB
