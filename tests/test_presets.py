"""Memory presets: the memory model agrees with the published parameter count, and each preset
fits its budget for the shots it is meant for."""
import pytest

from engine.arch import Arch
from engine.presets import (GB, PRESETS, plan_memory, stream_text_encoder, suggest_preset,
                            text_encoder_bytes, weight_bytes)
from engine.video_vae import Tiling, decode_bytes_estimate
from engine.variants import VARIANTS, snap_t2v_size, video_tokens


def test_weight_model_matches_the_published_parameter_count():
    assert weight_bytes(Arch(), fp8=False, blocks_to_swap=0) == 2 * 11_660_753_108


def _plan(preset, variant_name):
    v = VARIANTS[variant_name]
    h, w = snap_t2v_size(720, 720, v.video_area)
    return plan_memory(Arch(), PRESETS[preset], height=h, width=w,
                       video_tokens=video_tokens(h, w, v), audio_tokens=v.audio_latent_length)


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


def test_the_vae_decode_counts_its_weights_and_tiles_shrink_it():
    shape = (1, 48, 31, 45, 45)  # 720x720, 121 frames
    untiled, tiled = (decode_bytes_estimate(shape, Arch().video_vae, t) for t in (None, Tiling()))
    weights = 4 * 704_688_668  # the published VAE's parameters, held in fp32
    output = 3 * 121 * 720 * 720 * 4
    assert untiled > tiled > weights + 2 * output and untiled > 2 * tiled


def test_swapping_grows_as_the_budget_shrinks():
    swaps = [_plan(p, "960x960_5s").blocks_to_swap for p in ("80gb", "24gb", "16gb", "12gb")]
    assert swaps == sorted(swaps) and swaps[0] == 0 and swaps[-1] > 0


def test_a_shot_that_cannot_fit_is_reported():
    assert not _plan("8gb", "960x960_10s").fits


@pytest.mark.parametrize("gpu_gb,expected", [(80, "80gb"), (141, "80gb"), (24, "24gb"), (23.6, "24gb"),
                                              (16, "16gb"), (12, "12gb"), (11, "8gb"), (6, "8gb")])
def test_suggest_preset(gpu_gb, expected):
    assert suggest_preset(int(gpu_gb * GB)).name == expected
