"""Both CFG branches inside one layer loop (`engine.sampling.cfg_branches`, the path `denoise`
takes) give the same bits as the reference's two sequential forward calls, with and without
block swapping through a CPU LayerStreamer."""
from __future__ import annotations

import copy

import pytest
import torch

import engine.sampling as sampling
from engine.checkpoint import load_fusion_model
from engine.offload import stream_model
from engine.sampling import SamplerSettings, denoise


def sequential_branches(model, video, audio, t, *, text, video_negative, audio_negative,
                        first_frame_is_clean, slg_layer, streamer=None):
    """The reference's order: a whole positive forward, then a whole negative forward."""
    assert streamer is None
    pos = model(video, audio, t, text, text, first_frame_is_clean=first_frame_is_clean)
    neg = model(video, audio, t, video_negative, audio_negative,
                first_frame_is_clean=first_frame_is_clean, slg_layer=slg_layer)
    return pos, neg


@pytest.fixture(scope="module")
def tiny(tiny_ckpt):
    return load_fusion_model(tiny_ckpt, "720x720_5s", device=torch.device("cpu"))[0]


def _texts():
    g = torch.Generator().manual_seed(1)
    return [torch.randn(n, 64, generator=g).bfloat16() for n in (6, 2, 3)]


def _denoise(model, solver, i2v, streamer=None):
    text, vneg, aneg = _texts()
    first = (torch.randn(48, 1, 4, 4, generator=torch.Generator().manual_seed(2)).bfloat16()
             if i2v else None)
    return denoise(model, settings=SamplerSettings(steps=2, solver=solver, slg_layer=2), text=text,
                   video_negative=vneg, audio_negative=aneg, video_shape=(48, 3, 4, 4),
                   audio_shape=(8, 20), first_frame_latent=first, device=torch.device("cpu"),
                   streamer=streamer)


@pytest.mark.slow
@pytest.mark.parametrize("i2v", [False, True], ids=["t2v", "i2v"])
@pytest.mark.parametrize("solver", ["unipc", "dpm++", "euler"])
def test_layerwise_cfg_is_bit_identical_to_sequential_forwards(tiny, solver, i2v, monkeypatch):
    ours = _denoise(tiny, solver, i2v)
    monkeypatch.setattr(sampling, "cfg_branches", sequential_branches)
    reference = _denoise(tiny, solver, i2v)
    assert torch.equal(ours[0], reference[0]) and torch.equal(ours[1], reference[1])


def test_skip_layer_guidance_changes_only_the_negative_branch(tiny):
    text, vneg, aneg = _texts()
    video = torch.randn(48, 3, 4, 4, generator=torch.Generator().manual_seed(3)).bfloat16()
    audio = torch.randn(8, 20, generator=torch.Generator().manual_seed(4)).bfloat16()
    t = torch.tensor([700])
    with torch.inference_mode():
        runs = [sampling.cfg_branches(tiny, video, audio, t, text=text, video_negative=vneg,
                                      audio_negative=aneg, first_frame_is_clean=False, slg_layer=slg)
                for slg in (0, 2)]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][0], runs[1][0]))
    assert not torch.equal(runs[0][1][0], runs[1][1][0])


@pytest.mark.parametrize("blocks_to_swap,slots", [(4, 2), (3, 1)])
def test_swapping_through_a_cpu_streamer_is_bit_identical(tiny, tiny_ckpt, blocks_to_swap, slots):
    model = load_fusion_model(tiny_ckpt, "720x720_5s", device=torch.device("cpu"))[0]
    streamer = stream_model(model, blocks_to_swap, "cpu", slots=slots)
    assert streamer.plan.active and len(streamer.streamed_ids) > 0
    original = copy.deepcopy(dict(tiny.named_parameters()))
    for solver, i2v in (("unipc", True), ("euler", False)):
        swapped = _denoise(model, solver, i2v, streamer)
        resident = _denoise(tiny, solver, i2v)
        assert torch.equal(swapped[0], resident[0]) and torch.equal(swapped[1], resident[1])
    # between passes every streamed weight is its permanent CPU master, with the file's values
    for name, p in model.named_parameters():
        assert torch.equal(p, original[name]), name
