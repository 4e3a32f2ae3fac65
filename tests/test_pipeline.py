"""One call per shot: t2v and i2v through every network of a tiny checkpoint, on the CPU."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from engine.errors import CheckpointError
from engine.layout import required_files
from engine.pipeline import OviPipeline, ShotRequest, frames_uint8
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
def pipeline(short_ckpt, tmp_path_factory):
    pipe = OviPipeline(short_ckpt, "720x720_5s", cache_dir=tmp_path_factory.mktemp("cache"))
    yield pipe
    pipe.close()


def request(**changes) -> ShotRequest:
    base = dict(prompt="A fox in the snow. <AUDCAP>wind<ENDAUDCAP>", video_negative="blur",
                audio_negative="noise", height=720, width=1280, sampler=SETTINGS)
    return ShotRequest(**{**base, **changes})


def test_t2v_shot(pipeline):
    result = pipeline.generate(request())
    height, width = snap_t2v_size(720, 1280, 4096)
    assert (result.height, result.width) == (height, width)
    assert result.frames.dtype == torch.uint8 and result.frames.shape == (5, height, width, 3)
    assert result.audio.dtype == torch.float32 and result.audio.shape == (8 * 512,)
    assert result.audio.abs().max() <= 1
    assert result.video_latents.dtype == torch.bfloat16
    assert result.video_latents.shape == (48, 2, height // 16, width // 16)
    assert result.audio_latents.shape == (8, 20)
    assert {"text", "denoise", "audio_decode", "video_decode"} <= result.timings.keys()
    again = pipeline.generate(request())  # same seed, same shot
    assert torch.equal(again.frames, result.frames) and torch.equal(again.audio, result.audio)


def test_i2v_shot_keeps_the_image_latent(pipeline):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (100, 150, 3), dtype=np.uint8))
    result = pipeline.generate(request(first_frame=image, height=0, width=0))
    height, width = best_i2v_size(100, 150, 4096)
    assert (result.height, result.width) == (height, width)
    assert result.frames.shape == (5, height, width, 3)
    from engine.image import image_tensor
    clean = pipeline._vae().encode(image_tensor(image, 4096)[:, :, None]).to(torch.bfloat16)[0]
    assert torch.equal(result.video_latents[:, :1], clean)


def test_texts_are_encoded_once_across_shots(pipeline):
    pipeline.encode_prompts(["a new prompt", "blur", "noise"])
    before = pipeline.embeddings.encoded_texts
    pipeline.generate(request(prompt="a new prompt"))
    assert pipeline.embeddings.encoded_texts == before
    assert pipeline.embeddings._encoder is None  # freed before the fusion model ran


def test_frames_are_truncated_like_the_reference_writer():
    video = torch.tensor([-1.5, -1.0, 0.0, 0.999, 1.0, 0.5]).view(1, 6, 1, 1).expand(3, 6, 1, 1)
    frames = frames_uint8(video)
    assert frames.shape == (6, 1, 1, 3)
    assert frames[:, 0, 0, 0].tolist() == [0, 0, 127, 254, 255, 191]


def test_missing_files_are_listed_with_their_sources(tmp_path):
    with pytest.raises(CheckpointError) as info:
        OviPipeline(tmp_path, "960x960_10s")
    message = str(info.value)
    for relative in required_files(get_variant("960x960_10s")):
        assert relative in message
    for repo in ("chetwinlow1/Ovi", "Wan-AI/Wan2.2-TI2V-5B", "hkchengrex/MMAudio"):
        assert repo in message


def test_describe(pipeline):
    info = pipeline.describe()
    assert info["variant"] == "720x720_5s" and info["device"] == "cpu" and info["dtype"] == "bfloat16"
    assert info["checkpoint"].startswith("sha256:") and info["fp8"] is False
    assert info["attention"] == "sdpa"
    assert info["preset"] is None and info["blocks_to_swap"] == 0 and info["offload"] is False


def test_swapping_and_offload_give_the_same_shot_and_load_once(pipeline, short_ckpt, tmp_path,
                                                               monkeypatch):
    """Streamed layers + parked networks: same bits as all-resident, over several shots with
    the model loaded once (i2v between two t2v shots moves the VAE back and forth)."""
    import engine.pipeline as pipeline_module
    loads = []
    real_load = pipeline_module.load_fusion_model
    monkeypatch.setattr(pipeline_module, "load_fusion_model",
                        lambda *a, **kw: loads.append(kw) or real_load(*a, **kw))
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    shots = [request(), request(first_frame=image, height=0, width=0), request(prompt="again")]
    swapped = OviPipeline(short_ckpt, "720x720_5s", cache_dir=pipeline.cache.directory.parent,
                          blocks_to_swap=4, offload=True)
    try:
        for shot in shots:
            ours, reference = swapped.generate(shot), pipeline.generate(shot)
            assert torch.equal(ours.frames, reference.frames) and torch.equal(ours.audio, reference.audio)
            assert torch.equal(ours.video_latents, reference.video_latents)
            assert ours.memory == {"blocks_to_swap": 4, "offload": True, "tiled_vae": False, "fp8": False}
        assert [kw["read_device"] for kw in loads] == ["cpu"]
        assert swapped.describe()["blocks_to_swap"] == 4
    finally:
        swapped.close()
    assert swapped._model is None and swapped._streamer is None


def test_presets_fill_the_memory_settings(short_ckpt, tmp_path, monkeypatch):
    small = OviPipeline(short_ckpt, "720x720_5s", cache_dir=tmp_path, preset="8gb")
    assert (small.fp8, small.tiled_vae, small.offload, small.blocks_to_swap) == ("scaled", True, True, "auto")
    assert small.describe()["preset"] == "8gb"
    # the text encoder streams when the memory model says the preset's budget is too small
    import engine.pipeline as pipeline_module
    budgets = []
    monkeypatch.setattr(pipeline_module, "stream_text_encoder",
                        lambda arch, budget: budgets.append(budget) or True)
    small.encode_prompts(["a fox"])
    assert budgets == [8 << 30] and small.embeddings.stream and small.embeddings.encoded_texts == 1
    explicit = OviPipeline(short_ckpt, "720x720_5s", cache_dir=tmp_path, preset="12gb", blocks_to_swap=3)
    assert (explicit.fp8, explicit.blocks_to_swap) == (False, 3)
    with pytest.raises(ValueError, match="unknown preset"):
        OviPipeline(short_ckpt, "720x720_5s", cache_dir=tmp_path, preset="6gb")
    with pytest.raises(ValueError, match="blocks_to_swap"):
        OviPipeline(short_ckpt, "720x720_5s", cache_dir=tmp_path, blocks_to_swap="many")


def test_compiled_layers_agree_with_eager_and_are_reported(pipeline, short_ckpt, tmp_path):
    """`compile=True` runs the fusion layers through one torch.compile graph (all layers share
    it); inductor fuses bf16 ops differently, so the latents agree closely, not bit for bit."""
    import torch._dynamo
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    counters.clear()
    compiled = OviPipeline(short_ckpt, "720x720_5s", cache_dir=pipeline.cache.directory.parent,
                           compile=True)
    try:
        ours, eager = compiled.generate(request()), pipeline.generate(request())
        assert compiled._model.compiled and compiled.describe()["compile"] is True
        assert pipeline.describe()["compile"] is False
        # prompt and negatives differ in length: one static graph, then one dynamic one
        assert counters["stats"]["unique_graphs"] <= 2
        again = compiled.generate(request(prompt="A much longer prompt about a fox in the snow. "
                                                 "<AUDCAP>wind and snow<ENDAUDCAP>"))
        assert counters["stats"]["unique_graphs"] <= 2 and again.frames.shape == ours.frames.shape
        # block swapping moves the weights under the same graph: same bits, nothing recompiled
        compiled.close()
        compiled.blocks_to_swap = 4
        swapped = compiled.generate(request())
        assert compiled._streamer is not None and counters["stats"]["unique_graphs"] <= 2
        assert torch.equal(swapped.video_latents, ours.video_latents)
    finally:
        compiled.close()
    for a, b in ((ours.video_latents, eager.video_latents), (ours.audio_latents, eager.audio_latents)):
        error = ((a.float() - b.float()).norm() / b.float().norm()).item()
        assert 0 < error < 0.05, error
