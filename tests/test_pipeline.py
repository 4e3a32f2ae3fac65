"""One call per shot: t2v and i2v through every network of a tiny checkpoint, on the CPU."""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from engine.errors import CheckpointError
from engine.layout import required_files
from engine.networks import Networks
from engine.pipeline import ShotRequest, describe, encode_prompts, frames_uint8, generate
from engine.presets import MemoryConfig, resolve_memory
from engine.sampling import SamplerSettings
from engine.testing.tiny_checkpoint import TINY_ARCH, write_tiny_checkpoint
from engine.variants import best_i2v_size, get_variant, snap_t2v_size

# The tiny checkpoint with a short clip (5 frames, 8 audio latents) and small frames, so that a
# whole shot takes seconds on 2 CPU cores.
SHORT = {**copy.deepcopy(TINY_ARCH), "variant": {"video_latent_length": 2, "audio_latent_length": 8,
                                                 "video_area": 4096}}
SETTINGS = SamplerSettings(steps=2, seed=7)


@pytest.fixture(scope="module")
def short_ckpt(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("short") / "ckpts", seed=0, arch_json=SHORT)


@pytest.fixture(scope="module")
def nets(short_ckpt, tmp_path_factory):
    networks = Networks(short_ckpt, "720x720_5s", cache_dir=tmp_path_factory.mktemp("cache"))
    yield networks
    networks.close()


def request(**changes) -> ShotRequest:
    base = dict(prompt="A fox in the snow. <AUDCAP>wind<ENDAUDCAP>", video_negative="blur",
                audio_negative="noise", height=720, width=1280, sampler=SETTINGS)
    return ShotRequest(**{**base, **changes})


@pytest.mark.slow
def test_t2v_shot(nets):
    result = generate(nets, request())
    height, width = snap_t2v_size(720, 1280, 4096)
    assert (result.height, result.width) == (height, width)
    assert result.frames.dtype == torch.uint8 and result.frames.shape == (5, height, width, 3)
    assert result.audio.dtype == torch.float32 and result.audio.shape == (8 * 512,)
    assert result.audio.abs().max() <= 1
    assert result.video_latents.dtype == torch.bfloat16
    assert result.video_latents.shape == (48, 2, height // 16, width // 16)
    assert result.audio_latents.shape == (8, 20)
    assert {"text", "denoise", "audio_decode", "video_decode"} <= result.timings.keys()
    again = generate(nets, request())  # same seed, same shot
    assert torch.equal(again.frames, result.frames) and torch.equal(again.audio, result.audio)


def test_i2v_shot_keeps_the_image_latent(nets):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (100, 150, 3), dtype=np.uint8))
    result = generate(nets, request(first_frame=image, height=0, width=0))
    height, width = best_i2v_size(100, 150, 4096)
    assert (result.height, result.width) == (height, width)
    assert result.frames.shape == (5, height, width, 3)
    from engine.image import image_tensor
    clean = nets.video_vae().encode(image_tensor(image, 4096)[:, :, None]).to(torch.bfloat16)[0]
    assert torch.equal(result.video_latents[:, :1], clean)


def test_texts_are_encoded_once_across_shots(nets):
    encode_prompts(nets, ["a new prompt", "blur", "noise"], MemoryConfig())
    before = nets.embeddings.encoded_texts
    generate(nets, request(prompt="a new prompt"))
    assert nets.embeddings.encoded_texts == before
    assert nets.embeddings._encoder is None  # freed before the fusion model ran


def test_frames_are_truncated_like_the_reference_writer():
    video = torch.tensor([-1.5, -1.0, 0.0, 0.999, 1.0, 0.5]).view(1, 6, 1, 1).expand(3, 6, 1, 1)
    frames = frames_uint8(video)
    assert frames.shape == (6, 1, 1, 3)
    assert frames[:, 0, 0, 0].tolist() == [0, 0, 127, 254, 255, 191]


def test_missing_files_are_listed_with_their_sources(tmp_path):
    with pytest.raises(CheckpointError) as info:
        Networks(tmp_path, "960x960_10s")
    message = str(info.value)
    for relative in required_files(get_variant("960x960_10s")):
        assert relative in message
    for repo in ("chetwinlow1/Ovi", "Wan-AI/Wan2.2-TI2V-5B", "hkchengrex/MMAudio"):
        assert repo in message


def test_describe(nets):
    info = describe(nets, MemoryConfig())
    assert info["variant"] == "720x720_5s" and info["device"] == "cpu" and info["dtype"] == "bfloat16"
    assert info["checkpoint"].startswith("sha256:") and info["fp8"] is False
    assert info["attention"] == "sdpa"
    assert info["preset"] is None and info["blocks_to_swap"] == 0 and info["offload"] is False


@pytest.mark.slow
def test_swapping_and_offload_give_the_same_shot_and_load_once(nets, short_ckpt, monkeypatch):
    """Streamed layers + parked networks: same bits as all-resident, over several shots with
    the model loaded once (i2v between two t2v shots moves the VAE back and forth)."""
    import engine.networks as networks_module
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    memory = MemoryConfig(blocks_to_swap=4, offload=True)
    shots = [request(), request(first_frame=image, height=0, width=0), request(prompt="again")]
    references = [generate(nets, shot) for shot in shots]  # before counting: nets may load here
    loads = []
    real_load = networks_module.load_fusion_model
    monkeypatch.setattr(networks_module, "load_fusion_model",
                        lambda *a, **kw: loads.append(kw) or real_load(*a, **kw))
    swapped = Networks(short_ckpt, "720x720_5s", cache_dir=nets.cache.directory.parent)
    try:
        for shot, reference in zip(shots, references):
            ours = generate(swapped, dataclasses.replace(shot, memory=memory))
            assert torch.equal(ours.frames, reference.frames) and torch.equal(ours.audio, reference.audio)
            assert torch.equal(ours.video_latents, reference.video_latents)
            assert ours.memory == {"blocks_to_swap": 4, "offload": True, "tiled_vae": False, "fp8": False}
        assert [kw.get("read_device") for kw in loads] == ["cpu"]
        assert describe(swapped, memory)["blocks_to_swap"] == 4
    finally:
        swapped.close()
    assert swapped.model is None and swapped.streamer is None


def test_a_preset_budget_decides_whether_the_text_encoder_streams(nets, monkeypatch):
    """encode_prompts streams the encoder when the memory model says the budget is too small."""
    import engine.pipeline as pipeline_module
    budgets = []
    monkeypatch.setattr(pipeline_module, "stream_text_encoder",
                        lambda arch, budget: budgets.append(budget) or True)
    streamed = []
    real_ensure = nets.embeddings.ensure
    monkeypatch.setattr(nets.embeddings, "ensure",
                        lambda texts, stream=False: streamed.append(stream) or real_ensure(texts, stream))
    encode_prompts(nets, ["a fox"], resolve_memory("8gb", free_bytes=0))
    assert budgets == [8 << 30] and streamed == [True]


@pytest.mark.slow
def test_compiled_layers_agree_with_eager_and_are_reported(nets, short_ckpt):
    """`compile=True` runs the fusion layers through one torch.compile graph (all layers share
    it); inductor fuses bf16 ops differently, so the latents agree closely, not bit for bit."""
    import torch._dynamo
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    counters.clear()
    compiled = Networks(short_ckpt, "720x720_5s", cache_dir=nets.cache.directory.parent, compile=True)
    try:
        ours, eager = generate(compiled, request()), generate(nets, request())
        assert compiled.model.compiled and describe(compiled, MemoryConfig())["compile"] is True
        assert describe(nets, MemoryConfig())["compile"] is False
        # prompt and negatives differ in length: one static graph, then one dynamic one
        assert counters["stats"]["unique_graphs"] <= 2
        again = generate(compiled, request(prompt="A much longer prompt about a fox in the snow. "
                                                 "<AUDCAP>wind and snow<ENDAUDCAP>"))
        assert counters["stats"]["unique_graphs"] <= 2 and again.frames.shape == ours.frames.shape
        # block swapping moves the weights under the same graph: same bits, nothing recompiled
        compiled.close()
        swapped = generate(compiled, request(memory=MemoryConfig(blocks_to_swap=4)))
        assert compiled.streamer is not None and counters["stats"]["unique_graphs"] <= 2
        assert torch.equal(swapped.video_latents, ours.video_latents)
    finally:
        compiled.close()
    for a, b in ((ours.video_latents, eager.video_latents), (ours.audio_latents, eager.audio_latents)):
        error = ((a.float() - b.float()).norm() / b.float().norm()).item()
        assert 0 < error < 0.05, error
