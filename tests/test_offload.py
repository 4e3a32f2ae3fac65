"""Block swapping on CPU: the schedule (which layer is resident when, prefetch order,
wrap-around) and the streamer's weight bookkeeping (each layer computes with its own weights)."""
import pytest
import torch
from torch import nn

from engine.offload import LayerStreamer, SwapPlan, auto_blocks_to_swap, layer_bytes, streamed_layers


def test_streamed_layers_are_spread_evenly():
    assert streamed_layers(30, 10) == (1, 4, 7, 10, 13, 16, 19, 22, 25, 28)
    assert streamed_layers(30, 30) == tuple(range(30))
    assert streamed_layers(30, 0) == ()
    with pytest.raises(ValueError):
        streamed_layers(30, 31)


def test_schedule_loads_each_streamed_layer_before_it_computes_and_wraps_around():
    plan = SwapPlan.build(num_layers=8, blocks_to_swap=4, slots=2)  # streams 1, 3, 5, 7
    events = plan.events(passes=2)
    assert events[:2] == [("load", 1, 0), ("load", 3, 1)]
    loaded: dict[int, int] = {}
    computed = []
    for ev in events:
        if ev[0] == "load":
            assert ev[2] not in loaded.values(), "a slot was overwritten while still holding a layer"
            loaded[ev[1]] = ev[2]
        elif ev[0] == "release":
            assert loaded.pop(ev[1]) == ev[2]
        else:
            layer = ev[1]
            computed.append(layer)
            if layer in plan.streamed:
                assert layer in loaded, f"layer {layer} computed before it was loaded"
    assert computed == list(range(8)) * 2
    # prefetch order: after layer 1 is done its slot receives layer 5, after 3 -> 7, after 5 -> 1 (wrap)
    loads = [ev[1:] for ev in events if ev[0] == "load"]
    assert loads[2:6] == [(5, 0), (7, 1), (1, 0), (3, 1)]
    # at the end of a pass the ring already holds the first streamed layers of the next pass
    assert sorted(loaded) == [1, 3]


def test_no_streaming_when_slots_cover_the_swapped_layers():
    plan = SwapPlan.build(num_layers=6, blocks_to_swap=2, slots=2)
    assert not plan.active
    assert [e for e in plan.events(passes=1) if e[0] == "release"] == []


class _Layer(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.a, self.b = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


def _run(layers, x, streamer=None):
    for i, layer in enumerate(layers):
        if streamer:
            streamer.before(i)
        x = layer(x)
        if streamer:
            streamer.after(i)
    return x


@pytest.mark.parametrize("swapped,slots", [(5, 2), (6, 1), (6, 3), (4, 2)])
def test_streamed_forward_is_bit_identical_over_several_passes(swapped, slots):
    torch.manual_seed(0)
    layers = [_Layer(16) for _ in range(6)]
    x = torch.randn(3, 16)
    expected = [_run(layers, x), _run(layers, x * 2)]
    plan = SwapPlan.build(6, swapped, slots)
    streamer = LayerStreamer([[l] for l in layers], plan, torch.device("cpu"))
    got = [_run(layers, x, streamer), _run(layers, x * 2, streamer)]
    for e, g in zip(expected, got):
        assert torch.equal(e, g)
    assert streamer.resident_bytes == (layer_bytes([layers[0]]) * slots if plan.active else 0)


def test_streamer_binds_the_right_layer_weights():
    """A schedule that loaded the wrong layer would silently compute with another layer's
    weights; make the layers differ strongly and check every pass."""
    torch.manual_seed(1)
    layers = [_Layer(8) for _ in range(5)]
    for k, l in enumerate(layers):
        with torch.no_grad():
            l.a.weight.mul_(k + 1)
    x = torch.randn(2, 8)
    expected = _run(layers, x)
    streamer = LayerStreamer([[l] for l in layers], SwapPlan.build(5, 5, 2), torch.device("cpu"))
    for _ in range(3):
        assert torch.equal(_run(layers, x, streamer), expected)


def test_auto_blocks_to_swap_picks_the_fewest_that_fit():
    gb = 1 << 30
    kwargs = dict(num_layers=30, bytes_per_layer=gb // 2, other_weight_bytes=gb, activation_bytes=2 * gb)
    assert auto_blocks_to_swap(free_bytes=80 * gb, **kwargs) == 0
    n = auto_blocks_to_swap(free_bytes=12 * gb, **kwargs)
    assert 0 < n < 30
    on_device = (30 - n + 2) * (gb // 2) + gb + 2 * gb
    assert on_device <= 12 * gb * 0.9
    on_device_one_fewer = (30 - (n - 1) + 2) * (gb // 2) + gb + 2 * gb
    assert on_device_one_fewer > 12 * gb * 0.9
    assert auto_blocks_to_swap(free_bytes=2 * gb, **kwargs) == 30
