"""fp8 e4m3 weights with per-block scales: round trip, the Linear replacement, the cached file."""
import torch
from torch import nn

from engine.fp8 import (FP8, FP8Linear, converted_cache_path, dequantize_blockwise, load_converted,
                        load_scales_into, quantize_blockwise, quantize_linears, relative_error,
                        save_converted, scaled_state_dict)


def test_blockwise_round_trip_is_close_and_better_than_a_plain_cast():
    torch.manual_seed(0)
    w = torch.randn(64, 256) * torch.logspace(-3, 1, 256)  # columns of very different magnitude
    q, scale = quantize_blockwise(w)
    assert q.dtype == FP8 and scale.shape == (64, 4)
    blockwise = relative_error(dequantize_blockwise(q, scale, torch.float32), w)
    plain = relative_error(w.to(FP8).float(), w)
    assert blockwise < 0.04
    assert blockwise < plain


def test_zero_blocks_and_odd_widths_survive():
    w = torch.zeros(4, 70)
    w[0, 3] = 5.0
    q, scale = quantize_blockwise(w)
    assert scale.shape == (4, 1)  # 70 is not a multiple of 64: one scale per row
    assert torch.equal(dequantize_blockwise(q, scale, torch.float32), w)


def test_fp8_linear_matches_bf16_linear_closely():
    torch.manual_seed(0)
    lin = nn.Linear(128, 32).to(torch.bfloat16)
    x = torch.randn(5, 128, dtype=torch.bfloat16)
    fp8 = FP8Linear.from_linear(lin)
    assert fp8.weight.dtype == FP8
    err = relative_error(fp8(x), lin(x))
    assert 0 < err < 0.05


def test_quantize_linears_and_cached_file_round_trip(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 8)).to(torch.bfloat16)
    x = torch.randn(2, 64, dtype=torch.bfloat16)
    reference = model(x)
    assert quantize_linears(model) == ["0", "2"]
    quantised_out = model(x)
    assert relative_error(quantised_out, reference) < 0.05

    src = tmp_path / "model.safetensors"
    src.write_bytes(b"pretend checkpoint")
    path = converted_cache_path(tmp_path / "cache", src)
    save_converted(path, scaled_state_dict(model))
    assert path.exists() and not path.with_suffix(".tmp").exists()
    assert any(k.endswith(".weight.fp8_scale") for k in load_converted(path))

    fresh = nn.Sequential(nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 8)).to(torch.bfloat16)
    quantize_linears(fresh)
    fresh.load_state_dict(load_scales_into(fresh, load_converted(path)), assign=True)
    assert torch.equal(fresh(x), quantised_out)

    src.write_bytes(b"another checkpoint")
    assert converted_cache_path(tmp_path / "cache", src) != path  # a new source converts anew
