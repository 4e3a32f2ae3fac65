"""MMAudio's mel VAE decoder and BigVGAN against the reference's outputs (tests/golden/COMPONENTS.md)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from engine.arch import load_arch
from engine.audio_vae import load_audio_vae_decoder
from engine.errors import CheckpointError
from engine.layout import AUDIO_VAE_WEIGHTS, VOCODER_WEIGHTS
from component_goldens import load_golden, rel_error
from engine.vocoder import load_vocoder

GOLDEN = Path(__file__).parent / "golden" / "data" / "components_audio.safetensors"
MEL_TOL = 2e-3  # bf16 network: bit-exact on this CPU; other CPUs may round a few values differently
# The vocoder amplifies tiny mel differences (deep, periodic activations), so the waveform is
# compared on the golden mel: a bit-exact input isolates the vocoder's own arithmetic.
WAVE_TOL = 5e-3


@pytest.fixture(scope="module")
def golden():
    return load_golden("components_audio.safetensors")[1]


@pytest.fixture(scope="module")
def decoder(tiny_ckpt):
    return load_audio_vae_decoder(tiny_ckpt, load_arch(tiny_ckpt).audio_vae)


@pytest.fixture(scope="module")
def vocoder(tiny_ckpt):
    return load_vocoder(tiny_ckpt, load_arch(tiny_ckpt).vocoder)


def test_mel_matches_reference(decoder, golden):
    mel = decoder(golden["latents"])
    assert mel.shape == (1, 80, 64) and mel.dtype == torch.bfloat16
    assert rel_error(mel, golden["mel"]) < MEL_TOL


def test_waveform_matches_reference(vocoder, golden):
    wave = vocoder(golden["mel"])
    assert wave.shape == (1, 1, 64 * 256)
    assert rel_error(wave, golden["waveform"]) < WAVE_TOL


def test_end_to_end_waveform(decoder, vocoder, golden):
    assert rel_error(vocoder(decoder(golden["latents"])), golden["waveform"]) < WAVE_TOL


def test_wrong_mel_unnormalisation_is_detected(decoder, golden):
    normalised = decoder.decoder(golden["latents"])  # skipping `mel * std + mean`
    swapped = normalised * decoder.data_mean + decoder.data_std
    assert rel_error(normalised, golden["mel"]) > 100 * MEL_TOL
    assert rel_error(swapped, golden["mel"]) > 100 * MEL_TOL


def test_parametrization_names_load_the_same(tiny_ckpt, tmp_path, vocoder, golden):
    """best_netG.pt may use torch's newer `parametrizations.weight.original0/1` names."""
    root = tmp_path / "ckpt"
    (root / VOCODER_WEIGHTS).parent.mkdir(parents=True)
    legacy = torch.load(Path(tiny_ckpt) / VOCODER_WEIGHTS, weights_only=True)["generator"]
    renamed = {k.replace(".weight_g", ".parametrizations.weight.original0")
                .replace(".weight_v", ".parametrizations.weight.original1"): v for k, v in legacy.items()}
    torch.save({"generator": renamed}, root / VOCODER_WEIGHTS)
    other = load_vocoder(root, load_arch(tiny_ckpt).vocoder)
    assert torch.equal(other(golden["mel"]), vocoder(golden["mel"]))


def test_the_encoder_half_is_checked_strictly(tiny_ckpt, tmp_path):
    root = tmp_path / "ckpt"
    (root / AUDIO_VAE_WEIGHTS).parent.mkdir(parents=True)
    state = torch.load(Path(tiny_ckpt) / AUDIO_VAE_WEIGHTS, weights_only=True)
    del state["encoder.conv_out.weight"]
    torch.save(state, root / AUDIO_VAE_WEIGHTS)
    with pytest.raises(CheckpointError, match="missing key.*encoder.conv_out.weight"):
        load_audio_vae_decoder(root, load_arch(tiny_ckpt).audio_vae)


def test_vocoder_without_generator_entry(tiny_ckpt, tmp_path):
    root = tmp_path / "ckpt"
    shutil.copytree(Path(tiny_ckpt) / "MMAudio", root / "MMAudio")
    torch.save({"weights": {}}, root / VOCODER_WEIGHTS)
    with pytest.raises(CheckpointError, match="(?s)'generator'.*hkchengrex/MMAudio"):
        load_vocoder(root, load_arch(tiny_ckpt).vocoder)
