"""Block swapping on a CUDA device (skipped without one): the copy stream and events give the
same bits as all-resident."""
from __future__ import annotations

import pytest
import torch

from engine.checkpoint import load_fusion_model
from engine.offload import stream_model
from engine.sampling import SamplerSettings, denoise

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")
VIDEO_SHAPE, AUDIO_SHAPE = (48, 3, 8, 8), (16, 20)


def _denoise(model, streamer=None):
    g = torch.Generator().manual_seed(1)
    text, vneg, aneg = (torch.randn(n, 64, generator=g).bfloat16() for n in (6, 2, 3))
    return denoise(model, settings=SamplerSettings(steps=3, slg_layer=2), text=text,
                   video_negative=vneg, audio_negative=aneg, video_shape=VIDEO_SHAPE,
                   audio_shape=AUDIO_SHAPE, device=CUDA, streamer=streamer)


def _swapped(ckpt, blocks_to_swap, slots=2):
    model = load_fusion_model(ckpt, "720x720_5s", device=CUDA, read_device="cpu")[0]
    return model, stream_model(model, blocks_to_swap, CUDA, slots=slots)


@pytest.mark.parametrize("blocks_to_swap,slots", [(3, 2), (4, 1)])
def test_swapping_on_cuda_is_bit_identical(tiny_ckpt, blocks_to_swap, slots):
    resident = load_fusion_model(tiny_ckpt, "720x720_5s", device=CUDA)[0]
    expected = _denoise(resident)
    model, streamer = _swapped(tiny_ckpt, blocks_to_swap, slots)
    assert streamer.plan.active
    for _ in range(2):  # the wrap-around preload carries over to the next denoise
        ours = _denoise(model, streamer)
        assert torch.equal(ours[0], expected[0]) and torch.equal(ours[1], expected[1])


SLOW_COPY_CYCLES = 20_000_000  # ~10 ms of GPU spin before each streamed copy


def _slow_copies(streamer_type, monkeypatch):
    """Every load waits behind a spin kernel on the copy stream, so a compute stream that does
    not wait for the copy's event reads the slot's previous occupant."""
    real_load = streamer_type._load

    def slow_load(self, layer, slot):
        with torch.cuda.stream(self.copy_stream):
            torch.cuda._sleep(SLOW_COPY_CYCLES)
        real_load(self, layer, slot)

    monkeypatch.setattr(streamer_type, "_load", slow_load)


def test_a_layer_is_never_used_before_its_copy_completes(tiny_ckpt, monkeypatch):
    resident = load_fusion_model(tiny_ckpt, "720x720_5s", device=CUDA)[0]
    expected = _denoise(resident)
    model, streamer = _swapped(tiny_ckpt, 4, 1)
    _slow_copies(type(streamer), monkeypatch)
    ours = _denoise(model, streamer)
    assert torch.equal(ours[0], expected[0]) and torch.equal(ours[1], expected[1])

    # the control: the same slow copies with the compute-side wait removed must be caught
    def before_without_wait(self, layer):
        slot = self.slot_of.get(layer) if self.params else None
        if slot is not None:
            for p, v in zip(self.params[layer], self.slot_views[slot]):
                p.data = v

    monkeypatch.setattr(type(streamer), "before", before_without_wait)
    racing = _denoise(model, streamer)
    assert not (torch.equal(racing[0], expected[0]) and torch.equal(racing[1], expected[1]))
