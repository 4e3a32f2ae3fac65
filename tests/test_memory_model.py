"""The memory model (engine.memory_model, engine.video_vae) against what the code really holds.

`LiveTensorBytes` measures the peak of live tensors on the CPU — the analogue of CUDA's
`max_memory_allocated` without kernels' workspaces — for each phase of a shot at tiny sizes.
Each estimate must bound its measurement (the plans built on it must not run out of memory)
and stay within 2x of it (a model that only over-counts would waste the memory it plans).
The tiny sizes exercise the same formulas as the published ones; the GPU test
(tests/test_memory_gpu.py) checks them at full width on CUDA."""
from __future__ import annotations

import pytest
import torch

from engine.arch import load_arch
from engine.checkpoint import load_fusion_model
from engine.memory_model import activation_bytes, text_encoder_activation_bytes
from engine.sampling import cfg_branches
from engine.testing.memory_meter import LiveTensorBytes
from engine.text import TextEncoder
from engine.video_vae import Tiling, VideoVAE, decode_bytes_estimate, weight_bytes

SLACK = 2.0


def check(measured: int, estimate: int) -> None:
    assert measured <= estimate <= SLACK * measured, (measured, estimate)


def test_meter_counts_what_is_alive_at_once():
    base = torch.zeros(1000)  # made before the meter: not counted, nor its views
    with LiveTensorBytes() as meter:
        view = base[:10].to(torch.float32)
        a = torch.ones(1000)  # 4000 bytes
        b = a * 2  # 8000 alive
        del a
        c = b + 1  # 8000 again after `a` went
        del b, c
    assert meter.peak == 8000 and meter.live == 0 and view.shape == (10,)


@pytest.mark.parametrize("frames,side,audio", [(5, 16, 40), (9, 24, 80)])
def test_one_denoising_step_stays_within_the_activation_estimate(tiny_ckpt, frames, side, audio):
    model = load_fusion_model(tiny_ckpt, "720x720_5s", device=torch.device("cpu"))[0]
    g = torch.Generator().manual_seed(0)
    video = torch.randn(48, frames, side, side, generator=g).bfloat16()
    sound = torch.randn(audio, 20, generator=g).bfloat16()
    text, vneg, aneg = (torch.randn(n, 64, generator=g).bfloat16() for n in (30, 10, 12))
    with torch.inference_mode(), LiveTensorBytes() as meter:
        cfg_branches(model, video, sound, torch.tensor([500.0]), text=text, video_negative=vneg,
                     audio_negative=aneg, first_frame_is_clean=True, slg_layer=2)  # the worst case
    video_tokens = frames * (side // 2) ** 2
    check(meter.peak, activation_bytes(load_arch(tiny_ckpt), video_tokens, audio))


@pytest.mark.slow
@pytest.mark.parametrize("tiling", [None, Tiling()], ids=["untiled", "tiled"])
def test_a_decode_stays_within_its_estimate(tiny_ckpt, tiling):
    params = load_arch(tiny_ckpt).video_vae
    vae = VideoVAE.load(tiny_ckpt, params)
    shape = (1, 48, 5, 24, 24)  # 17 frames of 384x384: several 256/192 tiles
    latents = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode(), LiveTensorBytes() as meter:
        vae.decode(latents, tiling)
    check(meter.peak, decode_bytes_estimate(shape, params, tiling) - weight_bytes(params))


@pytest.mark.parametrize("stream", [False, True], ids=["resident", "streamed"])
def test_text_encoding_stays_within_its_estimate(tiny_ckpt, stream):
    params = load_arch(tiny_ckpt).t5
    encoder = TextEncoder(tiny_ckpt, params, stream=stream)
    with torch.inference_mode(), LiveTensorBytes() as meter:
        encoder.encode(["A fox in the snow. <AUDCAP>wind<ENDAUDCAP>", "blur", "noise"])
    check(meter.peak, text_encoder_activation_bytes(params))
