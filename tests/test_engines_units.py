"""The model engine's wiring without the model: which of a take's settings reach the engine's
request (every text, size, sampler setting, the seed, the first frame, fp8 and its file, tiled
VAE, block swap, LoRAs), what it loads, what it records, the out-of-memory ladder, and how the
engine is chosen. The networks, `generate`, `describe` and the prompt encoder are stand-ins
that record what they are given (tests/test_conditioning_wiring.py renders the real thing)."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import engine.device
import engine.networks
import engine.pipeline
from engine.lora_keys import LoraSpec
from engine.presets import GB, MemoryConfig
from engine.variants import VARIANTS
from ovi_studio.checkpoints import EngineChoice
from ovi_studio.errors import UserError
from ovi_studio.render import engines
from ovi_studio.render.engines import (OOM_ADVICE, EngineOptions, OutOfMemory, OviEngine, ShotJob,
                                       engine_factory, memory_saving)
from ovi_studio.render.preview import PreviewEngine

FREE = 7 * GB  # the device's free memory, as the stand-in reports it


class Nets:
    """Stand-in networks: the arguments they were loaded with."""
    made: list["Nets"] = []

    def __init__(self, ckpt_dir, variant, **kw):
        self.args = (ckpt_dir, variant, kw)
        self.closed = False
        Nets.made.append(self)

    def close(self):
        self.closed = True


@pytest.fixture()
def model(monkeypatch):
    """Networks, free memory, generate, describe and encode_prompts replaced by recorders."""
    Nets.made = []
    calls = SimpleNamespace(generate=[], encode=[], free=[], result=None, error=None)
    monkeypatch.setattr(engine.networks, "Networks", Nets)
    monkeypatch.setattr(engine.device, "free_device_bytes", lambda device: calls.free.append(device) or FREE)

    def generate(nets, request, callback=None, on_phase=None):
        calls.generate.append((nets, request, callback, on_phase))
        if calls.error is not None:
            raise calls.error
        return calls.result or SimpleNamespace(
            # wider types than the take keeps: the engine hands on uint8 frames and float32 audio
            frames=torch.full((2, 4, 6, 3), 7, dtype=torch.int32), audio=torch.full((5,), 0.5, dtype=torch.float64),
            video_latents="video latents", audio_latents="audio latents", timings={"denoise_s": 3.0},
            peak_memory_bytes=1234, height=4, width=6, memory={"blocks_to_swap": 0}, skipped_steps=[3, 4])
    monkeypatch.setattr(engine.pipeline, "generate", generate)
    monkeypatch.setattr(engine.pipeline, "describe", lambda nets, memory, loras=(), fp8_file=None: {
        "nets": nets, "memory": memory, "loras": loras, "fp8_file": fp8_file})
    monkeypatch.setattr(engine.pipeline, "encode_prompts",
                        lambda nets, texts, memory: calls.encode.append((nets, list(texts), memory)))
    return calls


def job(**kw) -> ShotJob:
    base = dict(shot_id="s", take=1, seed=42, mode="i2v", prompt="A boat. Audio: waves.", height=64,
                width=96, frames=121, video_negative="blurry", audio_negative="hiss")
    return ShotJob(**{**base, **kw})


def ovi(**kw) -> OviEngine:
    return OviEngine(Path("/ckpts"), "720x720_5s", device="cpu", **kw)


def test_texts_are_the_prompt_and_both_negatives_in_order():
    assert job().texts == ("A boat. Audio: waves.", "blurry", "hiss")
    assert job(video_negative=None, audio_negative=None).texts == ("A boat. Audio: waves.", "", "")


def test_every_conditioning_input_reaches_the_request_in_its_place(model):
    first = Image.new("RGB", (96, 64))
    on_step, on_phase = object(), object()
    settings = {"steps": 7, "solver": "euler", "shift": 3.5, "video_guidance": 6.0, "audio_guidance": 2.5,
                "slg_layer": 9, "cfg_batch": True, "step_cache": 0.0, "seed": 999, "fit": "crop", "tiled_vae": None}
    out = ovi().render(job(settings=settings), first, on_step, on_phase)
    nets, request, callback, phase = model.generate[0]
    assert nets is Nets.made[0] and (callback, phase) == (on_step, on_phase)
    assert (request.prompt, request.video_negative, request.audio_negative) == ("A boat. Audio: waves.", "blurry", "hiss")
    assert (request.height, request.width, request.first_frame) == (64, 96, first)
    s = request.sampler
    assert (s.steps, s.solver, s.shift, s.video_guidance, s.audio_guidance, s.slg_layer, s.cfg_batch, s.seed) == \
        (7, "euler", 3.5, 6.0, 2.5, 9, True, 42)  # the take's seed, never a stale one in settings
    assert request.memory == MemoryConfig(budget_bytes=FREE) and request.loras == () and request.fp8_file is None
    assert out.frames.dtype == np.uint8 and out.frames.shape == (2, 4, 6, 3) and (out.frames == 7).all()
    assert out.audio.dtype == np.float32 and out.audio.tolist() == [0.5] * 5
    assert out.latents == {"video": "video latents", "audio": "audio latents"} and out.plate is None
    assert "step_cache" not in out.info


def test_missing_negatives_are_empty_texts_and_unset_settings_keep_the_samplers_defaults(model):
    ovi().render(job(video_negative=None, audio_negative=None, settings={"shift": None}), None)
    request = model.generate[0][1]
    assert (request.video_negative, request.audio_negative, request.first_frame) == ("", "", None)
    assert (request.sampler.shift, request.sampler.steps, request.sampler.seed) == (5.0, 50, 42)
    assert model.generate[0][2:] == (None, None)


def test_the_sampler_fields_are_the_known_settings_and_the_seed():
    @__import__("dataclasses").dataclass
    class NoSeed:
        steps: int = 1
    assert engines._sampler_fields(NoSeed, job(settings={"steps": 3, "seed": 5, "fp8": True})) == {"steps": 3}


def test_the_take_record_says_how_long_and_what_it_used(model, monkeypatch):
    clock = iter([100.0, 102.5])
    monkeypatch.setattr(engines.time, "perf_counter", lambda: next(clock))
    out = ovi().render(job(settings={"step_cache": 0.2}), None)
    assert out.info == {"timings": {"denoise_s": 3.0, "total_s": 2.5}, "peak_memory_bytes": 1234,
                        "height": 4, "width": 6, "memory": {"blocks_to_swap": 0},
                        "step_cache": {"threshold": 0.2, "skipped_steps": [3, 4]}}
    model.result = SimpleNamespace(frames=np.zeros((1, 2, 2, 3)), audio=np.zeros(3), video_latents=None,
                                   audio_latents=None, timings=None, peak_memory_bytes=None, height=2,
                                   width=2, memory=None, skipped_steps=[])
    clock = iter([0.0, 1.0])
    assert ovi().render(job(), None).info["timings"] == {"total_s": 1.0}


@pytest.mark.parametrize("settings, published, fp8", [
    ({}, "scaled", False), ({"fp8": False}, True, False), ({"fp8": True}, "scaled", "scaled"),
    ({"fp8": True}, True, True), ({"fp8_file": "/tools/model_fp8_scaled.safetensors"}, True, "scaled"),
    ({"fp8": True, "fp8_file": "/tools/f.safetensors"}, True, "scaled")])
def test_fp8_reaches_the_engine_as_the_shot_asks(model, settings, published, fp8):
    engine = ovi(fp8_weights=published)
    engine.render(job(settings=settings), None)
    request = model.generate[0][1]
    assert request.memory.fp8 == fp8
    fp8_file = settings.get("fp8_file")
    assert request.fp8_file == (Path(fp8_file) if fp8_file else None)
    assert engine.identity()["fp8_file"] == request.fp8_file


@pytest.mark.parametrize("preset, settings, tiled, swapped", [
    (None, {}, None, 0), (None, {"tiled_vae": True}, True, 0), (None, {"tiled_vae": False}, None, 0),
    (None, {"blocks_to_swap": 12}, None, 12), (None, {"blocks_to_swap": "auto"}, None, "auto"),
    ("24gb", {}, True, "auto"), ("24gb", {"tiled_vae": False, "blocks_to_swap": 0}, True, "auto"),
    ("24gb", {"blocks_to_swap": 5}, True, 5)])
def test_tiled_vae_and_block_swap_follow_the_shot_over_the_preset(model, preset, settings, tiled, swapped):
    ovi(preset=preset).render(job(settings=settings), None)
    memory = model.generate[0][1].memory
    assert (memory.tiled_vae, memory.blocks_to_swap) == (tiled, swapped)
    assert memory.budget_bytes == (24 * GB if preset else FREE) and memory.preset == preset


def test_loras_reach_the_request_and_the_identity(model):
    loras = [{"path": "/l/a.safetensors", "scale": 0.5, "tower": "video"}, {"path": "/l/b.safetensors", "scale": 1.5, "tower": None}]
    engine = ovi()
    engine.render(job(settings={"loras": loras}), None)
    expected = (LoraSpec(Path("/l/a.safetensors"), 0.5, "video"), LoraSpec(Path("/l/b.safetensors"), 1.5, None))
    assert model.generate[0][1].loras == expected
    assert engine.identity() == {"name": "ovi", "nets": Nets.made[0], "memory": model.generate[0][1].memory,
                                 "loras": expected, "fp8_file": None}
    engine.render(job(settings={"loras": None}), None)  # the next take's own: none
    assert model.generate[1][1].loras == () and engine.identity()["loras"] == ()


def test_the_networks_load_once_with_the_engines_options(model):
    engine = OviEngine(Path("/ckpts"), "960x960_10s", device="cpu", dtype="fp16", cache_dir=Path("/cache"),
                       attention="sdpa", compile=True)
    first = engine.networks
    assert engine.networks is first and Nets.made == [first] and model.free == ["cpu"]
    assert first.args == (Path("/ckpts"), "960x960_10s", {"device": "cpu", "dtype": torch.float16,
                                                          "cache_dir": Path("/cache"), "attention": "sdpa",
                                                          "compile": True})
    assert OviEngine("/c", "720x720_5s", device="cpu").networks.args[2]["dtype"] is torch.bfloat16
    assert OviEngine("/c", "720x720_5s", device="cpu").networks.args[2]["cache_dir"] is None
    engine.close()
    assert first.closed and engine._networks is None
    engine.close()  # twice: nothing left to close
    assert engine.networks is not first


def test_the_engines_defaults(model):
    engine = OviEngine(Path("/ckpts"), "720x720_5s", device="cpu")
    identity = engine.identity()  # before any take: no LoRAs, no fp8 file of another tool
    assert (identity["loras"], identity["fp8_file"]) == ((), None)
    assert (engine.fp8_weights, engine.attention, engine.compile, engine.preset, engine.dtype) == \
        ("scaled", "auto", False, None, None)
    assert engine.networks.args[2] == {"device": "cpu", "dtype": torch.bfloat16, "cache_dir": None,
                                       "attention": "auto", "compile": False}
    assert (engine.name, engine.color_drift) == ("ovi", True)


def test_prepare_encodes_every_distinct_text_once_without_fp8(model):
    engine = ovi(preset="8gb")  # the preset's fp8 is for the fusion model, not the text encoder
    engine.prepare([job(prompt="p1", video_negative=None, audio_negative="hiss"),
                    job(prompt="p1", video_negative="blurry", audio_negative=None)])
    nets, texts, memory = model.encode[0]
    assert nets is Nets.made[0] and texts == ["p1", "", "hiss", "blurry"]
    assert memory.fp8 is False and memory.budget_bytes == 8 * GB
    engine.prepare([])
    assert len(model.encode) == 1


@pytest.mark.parametrize("error", [RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"),
                                   type("OutOfMemoryError", (RuntimeError,), {})("no room")])
def test_out_of_memory_frees_the_cache_and_says_what_to_try(model, monkeypatch, error):
    freed = []
    monkeypatch.setattr(engines, "_free_cuda_cache", lambda: freed.append(True))
    model.error = error
    with pytest.raises(OutOfMemory) as raised:
        ovi().render(job(), None)
    assert str(raised.value) == OOM_ADVICE and raised.value.__cause__ is error and freed == [True]


def test_other_failures_pass_through(model, monkeypatch):
    freed = []
    monkeypatch.setattr(engines, "_free_cuda_cache", lambda: freed.append(True))
    model.error = ValueError("bad latents")
    with pytest.raises(ValueError, match="bad latents"):
        ovi().render(job(), None)
    assert freed == []


def test_freeing_the_cuda_cache_only_touches_cuda(monkeypatch):
    emptied = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    engines._free_cuda_cache()
    assert emptied == []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    engines._free_cuda_cache()
    assert emptied == [True]


def test_default_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert engines.default_device() == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert engines.default_device() == "cpu"


@pytest.mark.parametrize("settings, expected", [
    ({}, 20), ({"blocks_to_swap": 5}, 20), ({"blocks_to_swap": 10}, 20), ({"blocks_to_swap": 15}, 25),
    ({"blocks_to_swap": "auto"}, 20), ({"blocks_to_swap": None}, 20)])
def test_the_out_of_memory_ladder_tiles_and_swaps_ten_more_blocks_at_least_twenty(settings, expected):
    assert memory_saving({**settings, "steps": 30}) == {"steps": 30, "tiled_vae": True, "blocks_to_swap": expected}


# -- choosing the engine -----------------------------------------------------------------------

LOADED = SimpleNamespace(variant=VARIANTS["720x720_5s"])


def _factory(choice, log=None, **options):
    return engine_factory(choice, EngineOptions(**options), LOADED, Path("/no/ckpts"),
                          log if log is not None else (lambda line: None))


def test_the_preview_is_chosen_quietly_when_asked_for():
    lines = []
    factory = _factory(EngineChoice("preview", "preview"), lines.append)
    assert lines == [] and isinstance(factory(), PreviewEngine)


@pytest.mark.parametrize("missing, named", [(("fusion.safetensors",), "fusion.safetensors"),
                                            (("a", "b"), "a and 1 more"), (("a", "b", "c"), "a and 2 more")])
def test_a_fallback_to_the_preview_is_announced_loudly(missing, named):
    lines = []
    factory = _factory(EngineChoice("preview", "auto", missing), lines.append)
    assert lines == ["=" * 72, "engine: PREVIEW (no model) — checkpoints not found: " + named,
                     "this renders an animatic for pacing; pass --engine ovi (or `engine: ovi`) to require the model",
                     "=" * 72]
    assert isinstance(factory(), PreviewEngine)


def test_the_model_factory_passes_every_option(monkeypatch):
    checked = []
    monkeypatch.setattr(engines, "_check_attention", lambda requested, device: checked.append((requested, device)))
    monkeypatch.setattr(engines, "default_device", lambda: "cuda")
    made = _factory(EngineChoice("ovi", "ovi"), dtype="fp16", preset="24gb", attention="sdpa", compile=True)()
    assert checked == [("sdpa", "cuda")]
    assert (made.ckpt_dir, made.variant, made.device, made.dtype, made.fp8_weights, made.preset,
            made.attention, made.compile) == (Path("/no/ckpts"), "720x720_5s", "cuda", "fp16", "scaled",
                                              "24gb", "sdpa", True)
    made = _factory(EngineChoice("ovi", "ovi"), device="cpu")()
    assert (made.device, made.dtype, made.preset, made.attention, made.compile) == ("cpu", None, None, "auto", False)
    assert checked[-1] == ("auto", "cpu")


def test_the_model_reads_the_published_fp8_file_when_the_folder_has_it(tmp_path, monkeypatch):
    from engine.layout import fusion_weights
    monkeypatch.setattr(engines, "_check_attention", lambda requested, device: None)
    (tmp_path / fusion_weights(LOADED.variant, True)).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / fusion_weights(LOADED.variant, True)).write_bytes(b"")
    made = engine_factory(EngineChoice("ovi", "ovi"), EngineOptions(device="cpu"), LOADED, tmp_path, print)()
    assert made.fp8_weights is True and made.ckpt_dir == tmp_path


@pytest.mark.parametrize("options, message", [
    ({"dtype": "int8"}, "--dtype must be one of bfloat16, bf16, float16, fp16, float32, fp32, not 'int8'"),
    ({"device": "tpu"}, "--device must be cuda, cuda:N or cpu, not 'tpu'"),
    ({"device": "tpu:0"}, "--device must be cuda, cuda:N or cpu, not 'tpu:0'")])
def test_bad_options_are_refused_before_anything_loads(options, message):
    with pytest.raises(UserError) as raised:
        _factory(EngineChoice("preview", "preview"), **options)
    assert raised.value.message == message


def test_accepted_devices_and_dtypes(monkeypatch):
    monkeypatch.setattr(engines, "default_device", lambda: "cuda")
    for options in ({"device": "cpu:0"}, {"device": "cuda:1"}, {"device": "cuda"}, {"dtype": "bf16"}):
        assert callable(_factory(EngineChoice("ovi", "ovi"), **options))


def test_asking_for_cuda_without_one_is_refused_with_a_hint(monkeypatch):
    monkeypatch.setattr(engines, "default_device", lambda: "cpu")
    for device in ("cuda", "cuda:1"):
        with pytest.raises(UserError) as raised:
            _factory(EngineChoice("ovi", "ovi"), device=device)
        assert raised.value.message == f"--device {device}: no CUDA device is available here"
        assert raised.value.hint == "use --device cpu (slow), or --engine preview for an animatic"
    assert isinstance(_factory(EngineChoice("preview", "preview"), device="cuda")(), PreviewEngine)


def test_an_unavailable_attention_backend_is_a_user_error():
    engines._check_attention("sdpa", "cpu")
    with pytest.raises(UserError) as raised:
        engines._check_attention("warp-speed", "cpu")
    assert raised.value.message.startswith("--attention: unknown attention backend 'warp-speed'")
    assert raised.value.hint == "--attention auto picks the fastest one installed"
    assert raised.value.__cause__ is None
