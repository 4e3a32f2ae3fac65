"""Loading fusion checkpoints: tiny files in the real format load; broken ones give one clear error."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.arch import parse_arch
from engine.checkpoint import load_fusion_model, release_fusion_model
from engine.errors import CheckpointError
from engine.testing.tiny_checkpoint import TINY_ARCH
from engine.testing.tiny_fusion import FP8_DTYPE, write_fusion

CPU = torch.device("cpu")
ARCH = parse_arch(TINY_ARCH)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A folder with arch.json and the tiny 720x720_5s, 960x960_10s and fp8 fusion files."""
    root = tmp_path_factory.mktemp("pristine")
    (root / "arch.json").write_text(json.dumps(TINY_ARCH))
    write_fusion(root, ARCH, "720x720_5s", seed=1)
    write_fusion(root, ARCH, "960x960_10s", seed=2)
    write_fusion(root, ARCH, "720x720_5s", seed=1, fp8=True)
    return root


@pytest.fixture
def ckpt(pristine, tmp_path):
    """A private copy to break."""
    return shutil.copytree(pristine, tmp_path / "ckpt")


def test_tiny_checkpoint_loads(pristine):
    model, variant = load_fusion_model(pristine, "720x720_5s", device=CPU)
    on_disk = load_file(str(pristine / "Ovi/model.safetensors"))
    state = model.state_dict()
    assert state.keys() == on_disk.keys()
    assert all(torch.equal(state[k], on_disk[k]) for k in on_disk)
    assert {t.dtype for t in state.values()} == {torch.bfloat16}
    assert not any(p.requires_grad for p in model.parameters())
    assert model.attention_backend == "sdpa"
    # arch.json's `variant` section overrides the table entry
    assert (variant.name, variant.video_area) == ("720x720_5s", TINY_ARCH["variant"]["video_area"])
    release_fusion_model(model)
    assert all(p.is_meta for p in model.parameters())


def test_each_variant_reads_its_own_file(pristine):
    a, _ = load_fusion_model(pristine, "720x720_5s", device=CPU)
    b, variant = load_fusion_model(pristine, "960x960_10s", device=CPU)
    assert variant.filename == "model_960x960_10s.safetensors"
    key = "video_model.blocks.0.ffn.0.weight"
    assert not torch.equal(a.state_dict()[key], b.state_dict()[key])


def test_fp8_file_keeps_its_dtypes_and_computes_in_bf16(pristine):
    model, _ = load_fusion_model(pristine, "720x720_5s", device=CPU, fp8=True)
    state = model.state_dict()
    assert state["video_model.blocks.0.self_attn.q.weight"].dtype == FP8_DTYPE
    assert state["video_model.blocks.0.modulation.modulation"].dtype == FP8_DTYPE
    assert state["video_model.blocks.0.self_attn.q.bias"].dtype == torch.bfloat16
    assert state["video_model.blocks.0.norm3.weight"].dtype == torch.bfloat16
    g = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        v, a = model(torch.randn(48, 2, 4, 4, generator=g).bfloat16(),
                     torch.randn(6, 20, generator=g).bfloat16(), torch.tensor([900]),
                     torch.randn(3, 64, generator=g).bfloat16(),
                     torch.randn(3, 64, generator=g).bfloat16())
    assert v.dtype == torch.bfloat16 and torch.isfinite(v.float()).all()


def test_fp8_only_for_720(pristine):
    with pytest.raises(ValueError, match="fp8"):
        load_fusion_model(pristine, "960x960_10s", device=CPU, fp8=True)


def _expect_error(ckpt, match, variant="720x720_5s", file="Ovi/model.safetensors"):
    with pytest.raises(CheckpointError, match=match) as info:
        load_fusion_model(ckpt, variant, device=CPU)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.path == ckpt / file
    assert "chetwinlow1/Ovi" in err.hint and str(err.path) in str(err)
    return err


def test_missing_file(ckpt):
    (ckpt / "Ovi/model.safetensors").unlink()
    _expect_error(ckpt, "not found")


def test_truncated_file(ckpt):
    path = ckpt / "Ovi/model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _expect_error(ckpt, "truncated")


def _rewrite(ckpt, edit):
    path = ckpt / "Ovi/model.safetensors"
    state = load_file(str(path))
    edit(state)
    save_file(state, str(path))


def test_missing_key(ckpt):
    _rewrite(ckpt, lambda s: s.pop("audio_model.blocks.3.cross_attn.k_fusion.weight"))
    err = _expect_error(ckpt, "1 missing key")
    assert "audio_model.blocks.3.cross_attn.k_fusion.weight" in err.problem


def test_extra_key(ckpt):
    _rewrite(ckpt, lambda s: s.update({"video_model.blocks.0.cross_attn.q_fusion.weight":
                                       torch.zeros(2, 2, dtype=torch.bfloat16)}))
    _expect_error(ckpt, "unexpected key.*q_fusion")


def test_shape_mismatch(ckpt):
    _rewrite(ckpt, lambda s: s.update({"video_model.head.head.bias":
                                       torch.zeros(7, dtype=torch.bfloat16)}))
    err = _expect_error(ckpt, "wrong shape")
    assert "video_model.head.head.bias is [7], expected [192]" in err.problem
    assert "arch.json" in err.problem


def test_wrong_file_is_named_as_such(ckpt):
    save_file({"encoder.weight": torch.zeros(2)}, str(ckpt / "Ovi/model_960x960_10s.safetensors"))
    _expect_error(ckpt, "not an Ovi fusion checkpoint", variant="960x960_10s",
                  file="Ovi/model_960x960_10s.safetensors")
