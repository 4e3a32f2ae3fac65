"""The Wan2.2 video VAE against the reference's outputs (tests/golden/COMPONENTS.md)."""
from __future__ import annotations

import copy
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


def spatially_local(vae: VideoVAE) -> VideoVAE:
    """The same VAE with every decoder convolution cut to its centre tap in space (time taps
    kept) and the middle attention's output zeroed: each output pixel then depends only on the
    latent pixel above it, so a decoder like this shows the tiling's own error and nothing else."""
    local = copy.deepcopy(vae)
    with torch.no_grad():
        for module in [*local.model.decoder.modules(), local.model.post_quant_conv]:
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Conv3d)) and module.weight.shape[-2:] == (3, 3):
                centre = module.weight[..., 1:2, 1:2].clone()
                module.weight.zero_()
                module.weight[..., 1:2, 1:2] = centre
        attention = local.model.decoder.mid_block.attentions[0]
        attention.proj.weight.zero_()
        attention.proj.bias.zero_()
    return local


# The stated tolerance of tiled decoding (engine/video_vae.py): the tiling adds no error of its
# own — tiles placed, blended and cropped so that a decoder local to the overlap decodes
# identically up to fp32 rounding.
TILING_TOL = 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("tiling", [Tiling(64, 32), Tiling(96, 64), Tiling(32, 32), Tiling()])
def test_tiling_adds_no_error_of_its_own(vae, tiling):
    local = spatially_local(vae)
    latents = torch.randn(1, 48, 2, 6, 10, generator=torch.Generator().manual_seed(0))  # 96x160
    untiled = local.decode(latents)
    tiled = local.decode(latents, tiling)
    assert (tiled - untiled).abs().max() <= TILING_TOL
    # a tile placed one pixel off would be far outside the bound
    assert (tiled.roll(1, dims=-1) - untiled).abs().max() > 100 * TILING_TOL


def test_tiled_decode_with_random_weights(vae, golden):
    """With the full random decoder, seams differ from the untiled decode by how far its
    receptive field reaches across them (COMPONENTS.md has the figures)."""
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
