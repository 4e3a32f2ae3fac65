"""engine.fp8's decisions with values worked out by hand: e4m3's largest finite value is 448, a
scale maps a block's largest magnitude onto it, one scale per 64 input channels (per row when
the width is not a multiple of 64 or rows are asked for), and the key names of converted and
tool files."""
from __future__ import annotations

import re
import warnings

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import engine.fp8 as fp8
from engine.fp8 import FP8, FP8Linear
from engine.fp8_files import scaled_file_format


def test_e4m3_constants():
    assert fp8.FP8_MAX == 448.0 and fp8.BLOCK == 64 and fp8.FP8_MATMUL_CAPABILITY == (8, 9)


def test_one_scale_per_block_maps_its_largest_magnitude_to_448():
    w = torch.zeros(2, 128)
    w[0, 5], w[0, 70] = -896.0, 4.48  # row 0: block 0 peaks at 896, block 1 at 4.48
    w[1, 64] = 44.8  # row 1: block 0 all zero
    q, scale = fp8.quantize_blockwise(w)
    assert scale.dtype == torch.float32
    torch.testing.assert_close(scale, torch.tensor([[2.0, 0.01], [1.0, 0.1]]))
    assert q.dtype == FP8 and q.shape == (2, 128)
    assert q[0, 5].float() == -448 and q[0, 70].float() == 448 and q[1, 64].float() == 448
    torch.testing.assert_close(fp8.dequantize_blockwise(q, scale, torch.float32), w)
    assert fp8.dequantize_blockwise(q, scale).dtype == torch.bfloat16


def test_rowwise_and_odd_widths_get_one_scale_per_row():
    w = torch.zeros(2, 128)
    w[0, 5], w[0, 70], w[1, 1] = 896.0, 4.48, -0.448
    q, scale = fp8.quantize_blockwise(w, fp8.ROWWISE)
    torch.testing.assert_close(scale, torch.tensor([[2.0], [0.001]]))
    q, scale = fp8.quantize_blockwise(w[:, :96])  # 96 is not a multiple of 64
    torch.testing.assert_close(scale, torch.tensor([[2.0], [0.001]]))
    q, scale = fp8.quantize_blockwise(w, 32)
    assert scale.shape == (2, 4)


def test_values_beyond_the_range_saturate_instead_of_overflowing():
    # the scale is exact, but rounding x / scale can leave the fp8 range: clamp, never nan/inf
    w = torch.tensor([[448.0 * 3, -448.0 * 3 + 1e-3]])
    q, scale = fp8.quantize_blockwise(w, fp8.ROWWISE)
    assert torch.isfinite(q.float()).all() and q.float().abs().max() == 448


def test_weights_too_small_for_a_scale_quantise_to_zero_not_nan():
    """A block whose largest magnitude over 448 underflows float32 gets scale 0: its values
    saturate at +-448 and expand to exactly 0."""
    q, scale = fp8.quantize_blockwise(torch.tensor([[1e-44, -1e-44]]), fp8.ROWWISE)
    assert scale.tolist() == [[0.0]] and q.float().tolist() == [[448.0, -448.0]]
    assert fp8.dequantize_blockwise(q, scale, torch.float32).tolist() == [[0.0, 0.0]]


def test_linear_layout_of_scales_for_each_width():
    layer = FP8Linear(128, 4)
    assert layer.weight.shape == (4, 128) and layer.bias.dtype == torch.bfloat16
    assert not any(p.requires_grad for p in layer.parameters())
    assert FP8Linear(64, 2, compute_dtype=torch.float16).bias.dtype == torch.float16
    meta = FP8Linear(128, 4, device="meta")
    assert meta.weight.is_meta and meta.scale.is_meta and meta.bias.is_meta
    assert FP8Linear(128, 4).scale.shape == (4, 2)
    assert FP8Linear(128, 4, block=fp8.ROWWISE).scale.shape == (4, 1)
    assert FP8Linear(70, 4).scale.shape == (4, 1)
    assert FP8Linear(128, 4, scaled=False).scale is None
    layer = FP8Linear(128, 4, bias=False)
    assert layer.bias is None and layer.weight.dtype == FP8 and not layer.weight.requires_grad
    assert FP8Linear(64, 2).bias.shape == (2,)
    assert not FP8Linear(128, 4).rowwise and FP8Linear(70, 4).rowwise
    assert not FP8Linear(70, 4, scaled=False).rowwise


def test_from_linear_quantises_or_casts_and_keeps_the_bias():
    lin = nn.Linear(64, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.5] * 64, [-0.5] * 64]))
        lin.bias.copy_(torch.tensor([0.5, -2.0]))
    scaled = FP8Linear.from_linear(lin)
    torch.testing.assert_close(scaled.scale, torch.tensor([[1.5 / 448], [0.5 / 448]]))
    assert scaled.bias.dtype == torch.bfloat16 and scaled.bias.tolist() == [0.5, -2.0]
    plain = FP8Linear.from_linear(lin, scaled=False)
    assert plain.scale is None and plain.weight.float()[0, 0] == 1.5
    x = torch.ones(1, 64)
    assert plain(x).float().tolist() == [[96.5, -34.0]]  # 64 * 1.5 + 0.5, 64 * -0.5 - 2
    assert scaled(x).float().tolist() == [[96.5, -34.0]]
    assert plain.weight.dtype == FP8 and scaled.weight.dtype == FP8
    for layer in (scaled, plain):
        assert not any(p.requires_grad for p in layer.parameters())
    assert FP8Linear.from_linear(nn.Linear(128, 2), block=fp8.ROWWISE).scale.shape == (2, 1)
    no_bias = FP8Linear.from_linear(nn.Linear(64, 2, bias=False))
    assert no_bias.bias is None
    meta = FP8Linear.from_linear(nn.Linear(64, 2, device="meta"))
    assert meta.weight.is_meta and meta.scale.shape == (2, 1) and meta.bias.shape == (2,)
    assert FP8Linear.from_linear(nn.Linear(128, 2, device="meta"), block=fp8.ROWWISE).scale.shape == (2, 1)


def test_a_layer_computes_in_its_compute_dtype():
    layer = FP8Linear(64, 2, compute_dtype=torch.float16)
    layer.weight.data = torch.ones(2, 64).to(FP8)
    layer.scale.data = torch.tensor([[0.5], [2.0]])
    layer.bias.data = torch.tensor([1.0, -1.0], dtype=torch.float16)
    assert layer.dequantized_weight().dtype == torch.float16
    out = layer(torch.ones(1, 64))
    assert out.dtype == torch.float16 and out.tolist() == [[33.0, 127.0]]


def test_a_held_weight_is_used_instead_of_expanding_again():
    layer = FP8Linear.from_linear(nn.Linear(64, 2, bias=False))
    layer.held = torch.ones(2, 64, dtype=torch.bfloat16)
    assert layer(torch.ones(1, 64)).float().tolist() == [[64.0, 64.0]]


def test_fp8_matmul_switches_only_row_scaled_layers_of_multiples_of_16():
    root = nn.ModuleList([FP8Linear(64, 16, block=fp8.ROWWISE), FP8Linear(128, 16), FP8Linear(32, 32),
                          FP8Linear(64, 8, block=fp8.ROWWISE), FP8Linear(24, 16, block=fp8.ROWWISE),
                          FP8Linear(32, 32, scaled=False), nn.Linear(16, 16)])
    assert fp8.use_fp8_matmul(root) == 2
    assert [m.fp8_matmul for m in fp8.fp8_linears(root)] == [True, False, True, False, False, False]
    assert "fp8_matmul=True" in repr(root[0]) and "scaled=False" in repr(root[5])


def test_holding_expands_the_next_layer_and_frees_the_last():
    a, b, c = (FP8Linear.from_linear(nn.Linear(64, 2)) for _ in range(3))
    c.fp8_matmul = True
    fp8.hold_dequantized([a, c], [])
    assert a.held is not None and a.held.dtype == torch.bfloat16 and c.held is None
    first = a.held
    fp8.hold_dequantized([a, b], [])
    assert a.held is first  # already held: not expanded again
    fp8.hold_dequantized([b], [a])
    assert a.held is None and b.held is not None


def test_fp8_matmuls_need_a_cuda_device_of_compute_capability_8_9_or_later(monkeypatch):
    assert not fp8.fp8_matmul_available(torch.device("cpu"))
    assert not fp8.fp8_matmul_available("meta")
    asked = []
    for capability, expected in [((8, 9), True), ((9, 0), True), ((8, 6), False), ((7, 5), False)]:
        monkeypatch.setattr(torch.cuda, "get_device_capability",
                            lambda device, c=capability: asked.append(device) or c)
        assert fp8.fp8_matmul_available("cuda:1") is expected
    assert asked == [torch.device("cuda:1")] * 4


def test_quantize_linears_names_every_linear_by_its_path():
    model = nn.Sequential(nn.Linear(64, 64), nn.Sequential(nn.GELU(), nn.Linear(64, 8)))
    assert fp8.quantize_linears(model, block=fp8.ROWWISE) == ["0", "1.1"]
    assert isinstance(model[1][1], FP8Linear) and model[1][1].scale.shape == (8, 1)
    assert fp8.quantize_linears(nn.Linear(4, 4)) == []  # the root itself is not replaced
    plain = nn.Sequential(nn.Linear(128, 2))
    fp8.quantize_linears(plain, scaled=False)
    assert plain[0].scale is None
    blocked = nn.Sequential(nn.Linear(128, 2))
    fp8.quantize_linears(blocked)
    assert blocked[0].scale.shape == (2, 2)
    rows = nn.Sequential(nn.Linear(128, 2))
    fp8.quantize_linears(rows, block=fp8.ROWWISE)
    assert rows[0].scale.shape == (2, 1)


def test_converted_files_store_scales_next_to_their_weights():
    model = nn.Sequential(nn.Linear(64, 2))
    fp8.quantize_linears(model)
    stored = fp8.scaled_state_dict(model)
    assert sorted(stored) == ["0.bias", "0.weight", "0.weight.fp8_scale"]
    assert sorted(fp8.load_scales_into(model, stored)) == ["0.bias", "0.scale", "0.weight"]


def test_assigning_parameters_names_what_is_missing_or_unexpected():
    model = nn.Sequential(FP8Linear(64, 2))
    state = {"0.weight": torch.zeros(2, 64, dtype=FP8), "0.scale": torch.full((2, 4), 0.5),
             "0.bias": torch.ones(2)}
    fp8.assign_parameters(model, state)
    assert model[0].scale.shape == (2, 4) and not model[0].scale.requires_grad
    with pytest.raises(ValueError, match=r"missing: \['0.bias'\], unexpected: \['0.other'\]"):
        fp8.assign_parameters(model, {"0.weight": state["0.weight"], "0.scale": state["0.scale"],
                                      "0.other": torch.ones(1)})
    wide = nn.Sequential(*(nn.Linear(1, 1, bias=False) for _ in range(7)))
    extra = {f"x{i}": torch.ones(1) for i in range(7)}
    with pytest.raises(ValueError, match=r"missing: \['0.weight', '1.weight', '2.weight', '3.weight', "
                                         r"'4.weight'\], unexpected: \['x0', 'x1', 'x2', 'x3', 'x4'\]$"):
        fp8.assign_parameters(wide, extra)  # five of each named


def test_nested_parameters_are_assigned_to_their_own_module():
    model = nn.Sequential(nn.Sequential(nn.Linear(2, 2, bias=False)))
    fp8.assign_parameters(model, {"0.0.weight": torch.full((2, 2), 3.0)})
    assert model[0][0].weight.tolist() == [[3.0, 3.0], [3.0, 3.0]]


def test_the_conversion_cache_name_holds_source_block_version_and_extras(tmp_path):
    src = tmp_path / "model.safetensors"
    src.write_bytes(b"weights")
    plain = fp8.converted_cache_path(tmp_path, src)
    assert re.fullmatch(r"model-[0-9a-f]{32}-b64-v1\.safetensors", plain.name)
    assert plain.parent == tmp_path / "fp8"
    assert fp8.converted_cache_path(tmp_path, src, block=fp8.ROWWISE).name.endswith("-b0-v1.safetensors")
    with_lora = fp8.converted_cache_path(tmp_path, src, extra="lora:a")
    assert re.fullmatch(r"model-[0-9a-f]{32}-[0-9a-f]{16}-b64-v1\.safetensors", with_lora.name)
    assert with_lora != fp8.converted_cache_path(tmp_path, src, extra="lora:b")


def test_a_damaged_or_foreign_conversion_is_deleted_with_a_warning(tmp_path):
    good = tmp_path / "good.safetensors"
    fp8.save_converted(good, {"w": torch.ones(2)})
    assert fp8.load_converted_or_drop(good)["w"].tolist() == [1.0, 1.0]
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.ones(2)}, str(foreign), metadata={"format": "pt"})
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:20])
    for path in (foreign, truncated):
        with pytest.warns(UserWarning, match="unreadable .*deleting it and converting again"):
            assert fp8.load_converted_or_drop(path) is None
        assert not path.exists()
    with pytest.warns(UserWarning, match=r"\(ValueError: not an ovi-studio fp8 conversion\)"):
        save_file({"w": torch.ones(2)}, str(foreign))  # no metadata at all
        fp8.load_converted_or_drop(foreign)
    with pytest.warns(UserWarning, match="unreadable"):  # gone meanwhile: nothing to delete
        assert fp8.load_converted_or_drop(tmp_path / "missing.safetensors") is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fp8.load_converted_or_drop(good) is not None


def test_scaled_file_formats_are_told_by_their_keys():
    assert scaled_file_format(["scaled_fp8", "a.weight", "a.scale_weight"]) == "comfyui"
    assert scaled_file_format(["a.weight", "a.weight.fp8_scale"]) == "ovi-studio"
    assert scaled_file_format(["a.weight", "a.scale_weight"]) == "musubi"
    assert scaled_file_format(["a.weight", "a.scale"]) is None


def test_tool_scales_of_every_shape_become_out_by_blocks():
    two = torch.tensor(2.0)
    assert fp8._tool_scale(two, None, 3).tolist() == [[2.0]] * 3
    assert fp8._tool_scale(torch.tensor([2.0]), torch.tensor([0.5]), 2).tolist() == [[1.0]] * 2
    assert fp8._tool_scale(torch.tensor([[1.0], [3.0]]), None, 2).tolist() == [[1.0], [3.0]]
    blocks = torch.tensor([[[1.0], [2.0]], [[3.0], [4.0]]])  # [out 2, blocks 2, 1]
    assert fp8._tool_scale(blocks, torch.tensor([10.0]), 2).tolist() == [[10.0, 20.0], [30.0, 40.0]]
    assert fp8._tool_scale(two.half(), None, 1).dtype == torch.float32


def test_a_tool_file_is_read_under_the_model_names_with_its_scales():
    q = torch.ones(2, 64, dtype=FP8)
    tensors = {"scaled_fp8": torch.zeros(0, dtype=FP8),
               "model.diffusion_model.blocks.0.q.weight": q,
               "model.diffusion_model.blocks.0.q.scale_weight": torch.tensor(0.5),
               "model.diffusion_model.blocks.0.q.scale_input": torch.tensor(1.0),
               "diffusion_model.head.weight": torch.ones(2, 2),
               "model.norm.weight": torch.ones(2),
               "blocks.1.k.weight": q, "blocks.1.k.weight.fp8_scale": torch.full((2, 1), 0.25),
               "blocks.1.v.weight": q, "blocks.1.v.scale_weight": torch.full((2, 1, 1), 4.0),
               "blocks.1.v.scale_weight_tensor": torch.tensor([0.5]),
               "blocks.2.plain.weight": q}
    out = fp8.read_scaled_file(tensors)
    assert sorted(out) == ["blocks.0.q.weight", "blocks.1.k.weight", "blocks.1.v.weight",
                           "blocks.2.plain.weight", "head.weight", "norm.weight"]
    weight, scale = out["blocks.0.q.weight"]
    assert weight is q and scale.tolist() == [[0.5], [0.5]]
    assert out["blocks.1.k.weight"][1].tolist() == [[0.25], [0.25]]
    assert out["blocks.1.v.weight"][1].tolist() == [[2.0], [2.0]]
    assert out["blocks.2.plain.weight"] is q  # fp8 without a scale: as stored
    assert torch.equal(out["head.weight"], torch.ones(2, 2))


def test_relative_error_is_the_norm_of_the_difference_over_the_reference():
    assert fp8.relative_error(torch.tensor([3.0, 4.0]), torch.tensor([0.0, 5.0])) == pytest.approx(
        (9 + 1) ** 0.5 / 5)
    assert fp8.relative_error(torch.ones(2).bfloat16(), torch.ones(2)) == 0
    assert fp8.relative_error(torch.ones(1), torch.zeros(1)) == pytest.approx(1e12)


def test_an_fp8_matmul_scales_each_row_of_both_operands():
    """Rows of x quantised to 448 at x_scale = row max / 448, weights per output row: the product
    of 64 channels of (r + 1) with 2 and with -0.5 is exact in fp8 and bf16; a zero row stays 0."""
    q, scale = fp8.quantize_blockwise(torch.tensor([[2.0] * 64, [-0.5] * 64]), fp8.ROWWISE)
    x = torch.tensor([[1.0] * 64, [2.0] * 64, [0.0] * 64, [3.0] * 64]).bfloat16()[None]
    out = fp8.scaled_matmul(x, q, scale, torch.tensor([0.0, 0.5]))
    assert out.shape == (1, 4, 2) and out.dtype == torch.bfloat16
    assert out[0].float().tolist() == [[128.0, -31.5], [256.0, -63.5], [0.0, 0.5], [384.0, -95.5]]
    assert fp8.scaled_matmul(x[0, :1], q, scale, None).float().tolist() == [[128.0, -32.0]]
    # 0.3 has no e4m3 value (0.28125, 0.3125): scaled to 448 first, the row stays 0.3
    small = fp8.scaled_matmul(torch.full((1, 64), 0.3).bfloat16(), q, scale, None).float()
    torch.testing.assert_close(small, torch.tensor([[38.4, -9.6]]), atol=0.2, rtol=0)
    layer = FP8Linear(64, 2, block=fp8.ROWWISE)
    layer.weight, layer.scale = nn.Parameter(q, requires_grad=False), nn.Parameter(scale, requires_grad=False)
    layer.bias = nn.Parameter(torch.tensor([1.0, 0.0]).bfloat16(), requires_grad=False)
    layer.fp8_matmul = True
    assert layer(x[0, :1]).float().tolist() == [[129.0, -32.0]]
