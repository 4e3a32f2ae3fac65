"""The Wan2.2 video VAE against the reference's outputs (tests/golden/COMPONENTS.md)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.arch import load_arch
from engine.layout import VIDEO_VAE_WEIGHTS
from component_goldens import load_golden, rel_error
from engine.video_vae import (LATENT_MEAN, LATENT_STD, Tiling, VideoVAE, decode_bytes_estimate,
                              to_diffusers_keys, to_reference_keys)

GOLDEN = Path(__file__).parent / "golden" / "data" / "components_video_vae.safetensors"
REL_TOL = 1e-4  # fp32 arithmetic: bit-exact on this CPU; room for other CPUs' conv kernels


@pytest.fixture(scope="module")
def golden():
    return load_golden("components_video_vae.safetensors")[1]


@pytest.fixture(scope="module")
def vae(tiny_ckpt):
    return VideoVAE.load(tiny_ckpt, load_arch(tiny_ckpt).video_vae)


def test_encode_matches_reference(vae, golden):
    encoded = vae.encode(golden["video"])
    assert encoded.shape == golden["encoded"].shape == (1, 48, 2, 2, 4)
    assert rel_error(encoded, golden["encoded"]) < REL_TOL


def test_decode_matches_reference(vae, golden):
    decoded = vae.decode(golden["latents"])
    assert decoded.shape == golden["decoded"].shape == (1, 3, 5, 32, 64)
    assert decoded.dtype == torch.float32 and decoded.abs().max() <= 1
    assert rel_error(decoded, golden["decoded"]) < REL_TOL


def test_missing_latent_normalisation_is_detected(vae, golden):
    mean = torch.tensor(LATENT_MEAN).view(1, -1, 1, 1, 1)
    std = torch.tensor(LATENT_STD).view(1, -1, 1, 1, 1)
    unnormalised = vae.encode(golden["video"]) * std + mean  # what forgetting (mu - mean) / std gives
    assert rel_error(unnormalised, golden["encoded"]) > 100 * REL_TOL


def test_key_map_round_trips_and_covers_every_key(tiny_ckpt):
    params = load_arch(tiny_ckpt).video_vae
    state = torch.load(Path(tiny_ckpt) / VIDEO_VAE_WEIGHTS, weights_only=True)
    mapped = to_diffusers_keys(state, params)
    assert len(mapped) == len(state)
    assert not any(k.startswith(("encoder.downsamples", "decoder.upsamples", "conv1.", "conv2."))
                   or ".middle." in k or ".residual." in k for k in mapped)
    assert to_reference_keys(mapped, params).keys() == state.keys()


def test_one_tile_covering_the_frame_is_exact(vae, golden):
    untiled = vae.decode(golden["latents"])
    assert torch.equal(vae.decode(golden["latents"], Tiling(size=64, stride=64)), untiled)


def test_tiled_decode_of_several_tiles(vae, golden):
    """Two tiles side by side over a 32x64 frame: right shape and range, seams blended. How far
    it is from the untiled decode depends on the trained weights (COMPONENTS.md)."""
    latents = golden["latents"]
    untiled = vae.decode(latents)
    tiled = vae.decode(latents, Tiling(size=32, stride=32))
    assert tiled.shape == untiled.shape and tiled.abs().max() <= 1
    assert not torch.equal(tiled, untiled)


def test_bad_tiles_are_refused(vae, golden):
    with pytest.raises(ValueError, match="multiples of 32"):
        vae.decode(golden["latents"], Tiling(size=100, stride=50))


def test_memory_estimate_grows_with_the_frame():
    params = load_arch("/nonexistent").video_vae  # published sizes
    small = decode_bytes_estimate((1, 48, 31, 34, 60), params)
    large = decode_bytes_estimate((1, 48, 61, 44, 80), params)
    assert 0 < small < large
    assert large > 3 * 241 * 704 * 1280 * 4  # at least the fp32 output itself
    assert decode_bytes_estimate((1, 48, 61, 44, 80), params, Tiling()) < large
