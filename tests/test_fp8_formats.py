"""fp8 that is faster: other tools' fp8_scaled files (musubi-tuner, ComfyUI/kijai) load with their
own fp8 values and scales; row-scaled layers multiply in fp8 (`torch._scaled_mm`, which also runs
on the CPU); elsewhere a layer's weights are expanded once per step, not once per call."""
from __future__ import annotations


import pytest
import torch
from safetensors.torch import load_file, save_file

import engine.fp8 as fp8
from engine.arch import parse_arch
from engine.checkpoint import load_fusion_model
from engine.errors import CheckpointError
from engine.fp8 import FP8, FP8_MAX, FP8Linear, relative_error, scaled_matmul
from engine.sampling import SamplerSettings, denoise
from engine.testing.tiny_checkpoint import TINY_ARCH
from engine.testing.tool_fp8 import write_kijai_fp8, write_musubi_fp8

CPU = torch.device("cpu")
ARCH = parse_arch(TINY_ARCH)
LAYER = "video_model.blocks.1.self_attn.q"


@pytest.fixture(scope="module")
def base(tiny_fusion_folder):
    return tiny_fusion_folder


def _tool_weight(tensors: dict, key: str) -> torch.Tensor:
    """The weight the tool means: fp8 values times every scale it stores for them."""
    stem = key[: -len(".weight")]
    q = tensors[key].float()
    scale = tensors[stem + ".scale_weight"].float()
    if scale.dim() == 3:
        q = q.reshape(q.shape[0], scale.shape[1], -1)
    w = q * scale * tensors.get(stem + ".scale_weight_tensor", torch.ones(()))
    return w.reshape(tensors[key].shape)


@pytest.mark.parametrize("layout", ["kijai", "musubi"])
def test_tool_files_load_with_their_own_fp8_values_and_scales(base, tmp_path, layout):
    state = load_file(str(base / "Ovi/model.safetensors"))
    path = tmp_path / f"{layout}.safetensors"
    written = (write_kijai_fp8 if layout == "kijai" else write_musubi_fp8)(state, path)
    model, _ = load_fusion_model(base, "720x720_5s", device=CPU, fp8="scaled", fp8_file=path)
    prefix = "model.diffusion_model." if layout == "kijai" else ""
    layer = model.get_submodule(LAYER)
    assert isinstance(layer, FP8Linear)
    assert torch.equal(layer.weight, written[prefix + LAYER + ".weight"])  # not requantised
    # the tool's weights, to bf16 rounding (its scales multiply in another order)
    assert torch.allclose(layer.dequantized_weight().float(),
                          _tool_weight(written, prefix + LAYER + ".weight"), rtol=2 ** -8, atol=0)
    params = model.state_dict()
    assert params["video_model.blocks.0.norm3.weight"].dtype == torch.bfloat16
    embed = params["video_model.text_embedding.0.weight"]  # fp8 in the kijai file, bf16 here
    assert embed.dtype == torch.bfloat16
    assert relative_error(embed, state["video_model.text_embedding.0.weight"]) < 0.05
    bf16, _ = load_fusion_model(base, "720x720_5s", device=CPU)
    x = torch.randn(3, 128).bfloat16()
    assert relative_error(layer(x), bf16.get_submodule(LAYER)(x)) < 0.05


def test_a_file_without_scales_or_of_another_model_is_a_clear_error(base, tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({"blocks.0.self_attn.q.weight": torch.zeros(4, 4)}, str(plain))
    with pytest.raises(CheckpointError, match="no fp8 scales"):
        load_fusion_model(base, "720x720_5s", device=CPU, fp8="scaled", fp8_file=plain)
    other = tmp_path / "other.safetensors"
    save_file({"scaled_fp8": torch.zeros(0, dtype=FP8),
               "double_blocks.0.img_attn.qkv.weight": torch.zeros(4, 4, dtype=FP8),
               "double_blocks.0.img_attn.qkv.scale_weight": torch.ones(())}, str(other))
    with pytest.raises(CheckpointError, match=r"not an Ovi fusion model: .*missing.*unexpected key\(s\): "
                                              r"double_blocks\.0\.img_attn\.qkv\.weight"):
        load_fusion_model(base, "720x720_5s", device=CPU, fp8="scaled", fp8_file=other)


def test_scaled_matmul_is_the_product_of_the_quantised_operands():
    torch.manual_seed(0)
    w = torch.randn(32, 64)
    q, scale = fp8.quantize_blockwise(w, fp8.ROWWISE)
    assert scale.shape == (32, 1)
    x = torch.randn(2, 5, 64).bfloat16()
    bias = torch.randn(32).bfloat16()
    out = scaled_matmul(x, q, scale, bias)
    assert out.shape == (2, 5, 32) and out.dtype == torch.bfloat16
    rows = x.reshape(-1, 64).float()
    x_scale = rows.abs().amax(-1, keepdim=True) / FP8_MAX
    expected = ((rows / x_scale).to(FP8).float() * x_scale) @ (q.float() * scale).t() + bias.float()
    assert torch.allclose(out.float().reshape(-1, 32), expected, rtol=2e-2, atol=2e-2)
    assert relative_error(out, x.float() @ w.t() + bias.float()) < 0.06


def test_fp8_matmul_mode_quantises_per_row_and_multiplies_in_fp8(base, tmp_path, monkeypatch):
    model, _ = load_fusion_model(base, "720x720_5s", device=CPU, fp8="scaled", fp8_matmul=True,
                                 cache_dir=tmp_path)
    linears = fp8.fp8_linears(model)
    assert linears and all(m.fp8_matmul and m.rowwise for m in linears)
    calls = []
    real = torch._scaled_mm
    monkeypatch.setattr(torch, "_scaled_mm", lambda *a, **k: calls.append(1) or real(*a, **k))
    g = torch.Generator().manual_seed(0)
    video, audio = torch.randn(48, 3, 4, 4, generator=g).bfloat16(), torch.randn(12, 20, generator=g).bfloat16()
    text = torch.randn(6, 64, generator=g).bfloat16()
    with torch.inference_mode():
        v, a = model(video, audio, torch.tensor([500]), text, text)
        bf16, _ = load_fusion_model(base, "720x720_5s", device=CPU)
        v_ref, a_ref = bf16(video, audio, torch.tensor([500]), text, text)
    assert len(calls) == len(linears)  # every fusion-layer Linear, once
    assert relative_error(v, v_ref) < 0.1 and relative_error(a, a_ref) < 0.1


def test_weights_are_expanded_once_per_step_per_layer(base, tmp_path, monkeypatch):
    model, _ = load_fusion_model(base, "720x720_5s", device=CPU, fp8="scaled", cache_dir=tmp_path)
    expansions = []
    real = FP8Linear.dequantized_weight
    monkeypatch.setattr(FP8Linear, "dequantized_weight",
                        lambda self: expansions.append(1) or real(self))
    g = torch.Generator().manual_seed(0)
    steps = 2
    kwargs = dict(settings=SamplerSettings(steps=steps), text=torch.randn(6, 64, generator=g),
                  video_negative=torch.randn(2, 64, generator=g),
                  audio_negative=torch.randn(3, 64, generator=g),
                  video_shape=(48, 3, 4, 4), audio_shape=(12, 20), device=CPU)
    held = denoise(model, **kwargs)
    assert len(expansions) == steps * len(fp8.fp8_linears(model))  # both CFG branches share one
    assert all(m.held is None for m in fp8.fp8_linears(model))  # released after each step
    monkeypatch.setattr(fp8, "hold_dequantized", lambda hold, release: None)
    monkeypatch.setattr("engine.model.hold_dequantized", lambda hold, release: None)
    per_call = denoise(model, **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(held, per_call))  # same bits either way
