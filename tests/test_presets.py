"""Memory presets: the memory model agrees with the published parameter count, and each preset
fits its budget for the shots it is meant for."""
import pytest

from engine.arch import Arch
from engine.memory_model import (GB, ShotSize, stream_text_encoder, text_encoder_bytes,
                                 text_encoder_parameter_counts, weight_bytes)
from engine.presets import (AUTO, PRESETS, MemoryConfig, blocks_to_swap, plan_memory, resolve_memory,
                            suggest_preset)
from engine.video_vae import Tiling, decode_bytes_estimate
from engine.variants import VARIANTS, snap_t2v_size, video_tokens


def test_weight_model_matches_the_published_parameter_count():
    assert weight_bytes(Arch(), fp8=False, blocks_to_swap=0) == 2 * 11_660_753_108
    assert sum(text_encoder_parameter_counts(Arch().t5)[i] * (Arch().t5.num_layers if i < 2 else 1)
               for i in range(4)) == 5_680_910_336


def _shot(variant_name):
    v = VARIANTS[variant_name]
    h, w = snap_t2v_size(720, 720, v.video_area)
    return ShotSize(h, w, video_tokens(h, w, v), v.audio_latent_length)


def _plan(preset, variant_name):
    return plan_memory(resolve_memory(preset, free_bytes=0), Arch(), _shot(variant_name))


def test_a_preset_fills_what_the_shot_leaves_open():
    small = resolve_memory("8gb", free_bytes=123)
    assert (small.fp8, small.tiled_vae, small.offload, small.blocks_to_swap, small.budget_bytes) == \
        ("scaled", True, True, AUTO, 8 * GB)
    assert resolve_memory("80gb", free_bytes=0).tiled_vae is None  # left to the decode's size
    explicit = resolve_memory("12gb", free_bytes=0).override(blocks_to_swap=3, fp8=None, tiled_vae=None)
    assert (explicit.fp8, explicit.blocks_to_swap, explicit.tiled_vae) == (False, 3, True)
    machine = resolve_memory(None, free_bytes=5 * GB)
    assert (machine.fp8, machine.blocks_to_swap, machine.offload, machine.budget_bytes) == (False, 0, False, 5 * GB)
    with pytest.raises(ValueError, match="unknown preset"):
        resolve_memory("6gb", free_bytes=0)
    with pytest.raises(ValueError, match="blocks_to_swap"):
        MemoryConfig(blocks_to_swap="many")
    with pytest.raises(ValueError, match="fp8"):
        MemoryConfig(fp8="yes")


def test_auto_swapping_is_sized_per_shot_within_the_budget():
    auto = MemoryConfig(blocks_to_swap=AUTO, budget_bytes=24 * GB)
    five, ten = (blocks_to_swap(auto, Arch(), _shot(v)) for v in ("960x960_5s", "960x960_10s"))
    assert 0 < five < ten  # the longer shot's activations leave room for fewer layers
    assert blocks_to_swap(MemoryConfig(blocks_to_swap=AUTO), Arch(), _shot("960x960_10s")) == 0  # CPU
    assert blocks_to_swap(MemoryConfig(blocks_to_swap=7, budget_bytes=GB), Arch(), _shot("960x960_10s")) == 7


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_fits_a_720_shot(preset):
    plan = _plan(preset, "720x720_5s")
    assert plan.fits and plan.peak_bytes <= PRESETS[preset].gpu_gb * GB


def test_low_memory_targets_of_issue_6():
    bf16 = _plan("12gb", "720x720_5s")
    assert bf16.peak_bytes <= 12 * GB and not PRESETS["12gb"].fp8
    fp8 = _plan("8gb", "720x720_5s")
    assert fp8.peak_bytes <= 8 * GB and PRESETS["8gb"].fp8
    assert _plan("80gb", "960x960_10s").blocks_to_swap == 0


def test_the_text_encoder_streams_only_where_it_does_not_fit():
    t5 = Arch().t5
    whole = text_encoder_bytes(t5, streamed=False)
    assert 2 * 5_680_910_336 < whole < 2 * 5_680_910_336 + GB  # weights + one batch's activations
    assert text_encoder_bytes(t5, streamed=True) < 2 * GB
    assert [stream_text_encoder(Arch(), PRESETS[p].gpu_gb * GB) for p in ("80gb", "24gb", "16gb", "12gb", "8gb")] \
        == [False, False, False, True, True]
    assert not stream_text_encoder(Arch(), 0)  # no budget (the CPU): nothing to save


def test_the_vae_decode_counts_its_weights_and_tiles_shrink_it():
    shape = (1, 48, 31, 45, 45)  # 720x720, 121 frames
    untiled, tiled = (decode_bytes_estimate(shape, Arch().video_vae, t) for t in (None, Tiling()))
    weights = 4 * 704_688_668  # the published VAE's parameters, held in fp32
    output = 3 * 121 * 720 * 720 * 4
    assert untiled > tiled > weights + 2 * output and untiled > 2 * tiled


@pytest.mark.slow
def test_swapping_grows_as_the_budget_shrinks():
    swaps = [_plan(p, "960x960_5s").blocks_to_swap for p in ("80gb", "24gb", "16gb", "12gb")]
    assert swaps == sorted(swaps) and swaps[0] == 0 and swaps[-1] > 0


def test_a_shot_that_cannot_fit_is_reported():
    assert not _plan("8gb", "960x960_10s").fits


@pytest.mark.parametrize("gpu_gb,expected", [(80, "80gb"), (141, "80gb"), (24, "24gb"), (23.6, "24gb"),
                                              (16, "16gb"), (12, "12gb"), (11, "8gb"), (6, "8gb")])
def test_suggest_preset(gpu_gb, expected):
    assert suggest_preset(int(gpu_gb * GB)).name == expected
