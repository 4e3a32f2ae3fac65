"""LoRAs: each file format merges to exactly W + s * alpha / r * B @ A (compared with a checkpoint
merged by hand, output for output), scale 0 is bit-identical, Wan LoRAs land on the video tower
and Ovi LoRAs on both, and bad files are clear errors naming the file and the first keys."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.arch import parse_arch
from engine.checkpoint import load_fusion_model
from engine.lora_keys import LoraError, LoraSpec, check_lora, fusion_param_shapes
from engine.model import FusionModel
from engine.testing.tiny_checkpoint import TINY_ARCH
from engine.testing.tiny_lora import FORMATS, OVI_MODULES, WAN_MODULES, write_tiny_lora

CPU = torch.device("cpu")
ARCH = parse_arch(TINY_ARCH)
FUSION_FILE = "Ovi/model.safetensors"


@pytest.fixture(scope="module")
def base(tiny_fusion_folder):
    return tiny_fusion_folder


def _inputs():
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g).bfloat16()  # noqa: E731
    return r(48, 3, 4, 4), r(12, 20), torch.tensor([500]), r(6, 64)


def _forward(model):
    video, audio, t, text = _inputs()
    with torch.inference_mode():
        return model(video, audio, t, text, text)


def _merged_by_hand(base, tmp_path, made, towers, scale):
    """A checkpoint folder whose weights are W + s * alpha / r * (B @ A), written out."""
    state = load_file(str(base / FUSION_FILE))
    for module, (up, down, alpha) in made.items():
        rank = down.shape[0]
        for key in ([module] if module.startswith(("video_", "audio_")) else
                    [f"{t}_model.{module}" for t in towers]):
            w = state[key + ".weight"]
            state[key + ".weight"] = (w.float() + scale * alpha / rank * (up.float() @ down.float())).to(w.dtype)
    root = tmp_path / "merged"
    (root / "Ovi").mkdir(parents=True)
    (root / "arch.json").write_text(json.dumps(TINY_ARCH))
    save_file(state, str(root / FUSION_FILE))
    return root


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("family", ["wan", "ovi"])
def test_a_lora_equals_the_checkpoint_merged_by_hand(base, tmp_path, fmt, family):
    modules = WAN_MODULES if family == "wan" else OVI_MODULES
    lora = tmp_path / f"{fmt}.safetensors"
    made = write_tiny_lora(lora, ARCH, fmt, modules, seed=1)
    scale = 0.7
    ours, _ = load_fusion_model(base, "720x720_5s", device=CPU, loras=(LoraSpec(lora, scale),))
    hand, _ = load_fusion_model(_merged_by_hand(base, tmp_path, made, ["video"], scale),
                                "720x720_5s", device=CPU)
    plain, _ = load_fusion_model(base, "720x720_5s", device=CPU)
    ours_state, hand_state, plain_state = ours.state_dict(), hand.state_dict(), plain.state_dict()
    changed = {k for k in plain_state if not torch.equal(ours_state[k], plain_state[k])}
    assert changed, "the LoRA changed nothing"
    assert all(torch.equal(ours_state[k], hand_state[k]) for k in hand_state)
    if family == "wan":  # a Wan2.2-5B LoRA goes onto the video tower only
        assert all(k.startswith("video_model.") for k in changed)
    else:
        assert {k.split(".")[0] for k in changed} == {"video_model", "audio_model"}
    for a, b in zip(_forward(ours), _forward(hand)):
        assert torch.equal(a, b)


def test_scale_zero_is_bit_identical(base, tmp_path):
    lora = tmp_path / "l.safetensors"
    write_tiny_lora(lora, ARCH, "kohya")
    with_lora, _ = load_fusion_model(base, "720x720_5s", device=CPU, loras=(LoraSpec(lora, 0.0),))
    plain, _ = load_fusion_model(base, "720x720_5s", device=CPU)
    for a, b in zip(_forward(with_lora), _forward(plain)):
        assert torch.equal(a, b)


def test_tower_both_puts_a_wan_lora_on_both_towers_and_loras_add_up(base, tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    made_a = write_tiny_lora(a, ARCH, "comfyui", seed=1)
    made_b = write_tiny_lora(b, ARCH, "kohya", seed=2)
    ours, _ = load_fusion_model(base, "720x720_5s", device=CPU,
                                loras=(LoraSpec(a, 0.5, "both"), LoraSpec(b, 1.5, "audio")))
    plain = load_file(str(base / FUSION_FILE))
    state = ours.state_dict()
    key = "blocks.0.self_attn.q"
    up_a, down_a, alpha_a = made_a[key]
    up_b, down_b, alpha_b = made_b[key]
    delta_a = 0.5 * alpha_a / 4 * (up_a.float() @ down_a.float())
    delta_b = 1.5 * alpha_b / 4 * (up_b.float() @ down_b.float())
    w = plain[f"video_model.{key}.weight"]
    assert torch.equal(state[f"video_model.{key}.weight"], (w.float() + delta_a).bfloat16())
    w = plain[f"audio_model.{key}.weight"]  # both LoRAs, rounded once
    assert torch.equal(state[f"audio_model.{key}.weight"], (w.float() + (delta_a + delta_b)).bfloat16())


def test_an_ovi_lora_narrowed_to_one_tower(base, tmp_path):
    lora = tmp_path / "ovi.safetensors"
    write_tiny_lora(lora, ARCH, "comfyui", OVI_MODULES)
    ours, _ = load_fusion_model(base, "720x720_5s", device=CPU, loras=(LoraSpec(lora, 1.0, "audio"),))
    plain = load_file(str(base / FUSION_FILE))
    changed = {k for k, v in ours.state_dict().items() if not torch.equal(v, plain[k])}
    assert changed == {"audio_model.blocks.1.cross_attn.k_fusion.weight",
                       "audio_model.blocks.2.ffn.2.weight"}


def test_the_fp8_conversion_merges_before_quantising(base, tmp_path):
    lora = tmp_path / "l.safetensors"
    write_tiny_lora(lora, ARCH, "kohya")
    spec = LoraSpec(lora, 1.0)
    fp8_lora, _ = load_fusion_model(base, "720x720_5s", device=CPU, fp8="scaled", loras=(spec,),
                                    cache_dir=tmp_path / "cache")
    bf16_lora, _ = load_fusion_model(base, "720x720_5s", device=CPU, loras=(spec,))
    fp8_plain, _ = load_fusion_model(base, "720x720_5s", device=CPU, fp8="scaled",
                                     cache_dir=tmp_path / "cache")
    layer = "video_model.blocks.0.self_attn.q"
    merged = bf16_lora.get_submodule(layer).weight.float()
    got = fp8_lora.get_submodule(layer).dequantized_weight().float()
    base_q = fp8_plain.get_submodule(layer).dequantized_weight().float()
    # the quantised merged weight is within fp8 rounding of the merged weight, and far from the base
    assert (got - merged).norm() / merged.norm() < 0.05
    assert (base_q - merged).norm() > 4 * (got - merged).norm()
    # cached apart: the base conversion is not reused for the LoRA
    assert len(list((tmp_path / "cache" / "fp8").glob("*.safetensors"))) == 2


def test_unknown_keys_name_the_file_and_the_first_keys(base, tmp_path):
    bad = tmp_path / "flux.safetensors"
    save_file({f"lora_unet_double_blocks_{i}_img_attn_qkv.lora_down.weight": torch.zeros(4, 8)
               for i in range(7)} | {"lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight":
                                     torch.zeros(8, 4)}, str(bad))
    with pytest.raises(LoraError) as err:
        load_fusion_model(base, "720x720_5s", device=CPU, loras=(LoraSpec(bad),))
    message = str(err.value)
    assert str(bad) in message and "lora_unet_double_blocks_0_img_attn_qkv" in message
    assert "and 2 more" in message


def test_a_lora_for_another_model_size_is_an_error(base, tmp_path):
    bad = tmp_path / "wan14b.safetensors"
    save_file({"diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.zeros(4, 5120),
               "diffusion_model.blocks.0.self_attn.q.lora_up.weight": torch.zeros(5120, 4)}, str(bad))
    with pytest.raises(LoraError, match=r"wrong size.*blocks\.0\.self_attn\.q"):
        load_fusion_model(base, "720x720_5s", device=CPU, loras=(LoraSpec(bad),))


def test_a_lora_with_nothing_for_the_chosen_tower_is_an_error(base, tmp_path):
    lora = tmp_path / "audio_only.safetensors"
    write_tiny_lora(lora, ARCH, "comfyui", ("audio_model.blocks.0.ffn.0",))
    with pytest.raises(LoraError, match="nothing to apply to the video tower"):
        load_fusion_model(base, "720x720_5s", device=CPU, loras=(LoraSpec(lora, 1.0, "video"),))


def test_missing_and_unreadable_files(base, tmp_path):
    with pytest.raises(LoraError, match="not found"):
        load_fusion_model(base, "720x720_5s", device=CPU, loras=(LoraSpec(tmp_path / "nope.safetensors"),))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(LoraError, match="not a readable safetensors"):
        load_fusion_model(base, "720x720_5s", device=CPU, loras=(LoraSpec(junk),))


def test_the_shape_table_check_uses_is_the_model_s():
    with torch.device("meta"):
        model = FusionModel(ARCH.video_dit, ARCH.audio_dit)
    built = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    table = fusion_param_shapes(ARCH)
    linears = {name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert {k.rsplit(".", 1)[0] for k in table} == linears
    assert all(built[k] == shape for k, shape in table.items())


def test_check_reads_only_the_header_and_flags_what_loading_would(tmp_path):
    good, bad = tmp_path / "good.safetensors", tmp_path / "ovi_audio.safetensors"
    write_tiny_lora(good, ARCH, "peft")
    write_tiny_lora(bad, ARCH, "kohya", ("audio_model.blocks.0.ffn.0",))
    check_lora(LoraSpec(good), ARCH)
    check_lora(LoraSpec(bad, tower="audio"), ARCH)
    with pytest.raises(LoraError, match="nothing to apply to the video tower"):
        check_lora(LoraSpec(bad, tower="video"), ARCH)
    with pytest.raises(LoraError, match="not found"):
        check_lora(LoraSpec(tmp_path / "gone.safetensors"), ARCH)
