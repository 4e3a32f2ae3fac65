"""Make the golden outputs of the reference's components (T5, Wan2.2 VAE, MMAudio decoder + BigVGAN,
i2v image preprocessing) on tiny random weights. Run by hand, never by the test suite:

    PYTHONPATH=<dir with einops> .venv/bin/python tests/golden/make_component_goldens.py \
        [--reference /work/ovi-ref]

The reference runs on the CPU through `tests/golden/refenv.py` (its stubs and the CUDA-autocast
emulation), so the goldens are what the reference computes on a GPU, up to CPU kernels. Each
output file is self-contained: its inputs (tensors; texts and seeds in the metadata) and the
reference's outputs. The tests rebuild the same tiny weight files with
`engine.testing.tiny_components` and the seeds recorded here. See COMPONENTS.md.
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from engine.arch import parse_arch  # noqa: E402
from engine.layout import AUDIO_VAE_WEIGHTS, T5_WEIGHTS, TOKENIZER_DIR, VIDEO_VAE_WEIGHTS, VOCODER_WEIGHTS  # noqa: E402
from engine.testing import tiny_components  # noqa: E402
from engine.testing.tiny_checkpoint import TINY_ARCH  # noqa: E402

DATA = Path(__file__).parent / "data"
SEEDS = {"t5": 100, "video_vae": 200, "audio_vae": 300, "vocoder": 400}  # as write_tiny_checkpoint(seed=0)

TEXTS = [
    "A woman in a red coat walks through snow. <S>We made it home.<E> Audio: wind, footsteps on snow.",
    "  Two   friends\tlaugh\n\nat a caf&amp;eacute; table &lt;AUDCAP&gt;clinking cups&lt;ENDAUDCAP&gt;  ",
    "jitter, bad hands, blur, distortion",
    "robotic, muffled, echo, distorted",
    "mojibake cafÃ© and non\u00a0breaking\u3000spaces, <S>Hello there!<E>",
    " ".join(["The camera pans slowly across the quiet harbour at dawn while gulls circle overhead."] * 40),
]
VIDEO_SHAPE = (1, 3, 5, 32, 64)  # pixels to encode: 2 latent frames (first frame + one 4-frame chunk)
LATENT_SHAPE = (1, 48, 2, 2, 4)  # latents to decode: 5 frames of 32x64
AUDIO_LATENTS = 32  # -> 64 mel frames -> 16384 samples
IMAGES = [  # (height, width, mode, area)
    (97, 131, "RGB", 4096),
    (64, 64, "RGB", 4096),  # already the target size: no resize
    (100, 60, "RGBA", 4096),
    (32, 128, "L", 4096),
    (75, 55, "RGB", 8192),
]


def tiny_arch():
    return parse_arch(TINY_ARCH)


def write_components(root: Path, seeds: dict[str, int] = SEEDS) -> Path:
    """The tiny component files the goldens are made from (and the tests load)."""
    arch = tiny_arch()
    tiny_components.write_t5(root, arch, seed=seeds["t5"])
    tiny_components.write_tokenizer(root, arch)
    tiny_components.write_video_vae(root, arch, seed=seeds["video_vae"])
    tiny_components.write_audio_vae(root, arch, seed=seeds["audio_vae"])
    tiny_components.write_vocoder(root, arch, seed=seeds["vocoder"])
    return root


def video_inputs(seed: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    video = (torch.rand(VIDEO_SHAPE, generator=gen) * 2 - 1).to(torch.bfloat16)
    latents = torch.randn(LATENT_SHAPE, generator=gen).to(torch.bfloat16)
    return video, latents


def audio_inputs(seed: int = 8) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(1, 20, AUDIO_LATENTS, generator=gen).to(torch.bfloat16)


def test_image(height: int, width: int, mode: str, seed: int) -> Image.Image:
    """A smooth gradient plus noise, so that bicubic resampling has structure to work on."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    base = torch.stack([yy, xx, (yy + xx) / 2, 1 - yy])[:4] * 200
    pixels = (base + torch.rand(4, height, width, generator=gen) * 55).clamp(0, 255).to(torch.uint8)
    rgba = Image.fromarray(pixels.permute(1, 2, 0).numpy(), mode="RGBA")
    return rgba if mode == "RGBA" else rgba.convert(mode)


# --- reference runs -----------------------------------------------------------------------------

def reference_text_model(ref, ckpt: Path, arch, device="cpu"):
    """The reference's T5EncoderModel over `ckpt`'s weights, sized by `arch` (its constructor
    only knows the full size, so the object is assembled: same attributes, same __call__)."""
    t5 = ref.module("ovi.modules.t5")
    tok = ref.module("ovi.modules.tokenizers")
    p = arch.t5
    model = t5.T5Encoder(vocab=p.vocab, dim=p.dim, dim_attn=p.dim_attn, dim_ffn=p.dim_ffn, num_heads=p.num_heads,
                         num_layers=p.num_layers, num_buckets=p.num_buckets, shared_pos=p.shared_pos,
                         dropout=p.dropout)
    model = model.to(torch.bfloat16).eval().requires_grad_(False)
    model.load_state_dict(torch.load(ckpt / T5_WEIGHTS, map_location="cpu"))
    encoder = object.__new__(t5.T5EncoderModel)
    encoder.model = model.to(device)
    encoder.device = device
    encoder.tokenizer = tok.HuggingfaceTokenizer(name=str(ckpt / TOKENIZER_DIR), seq_len=512, clean="whitespace")
    return encoder


def reference_video_vae_model(ref, ckpt: Path, arch, device="cpu"):
    """The reference's Wan2_2_VAE over `ckpt`'s weights, sized by `arch`, in bf16 as
    OviFusionEngine keeps it (wrapped_* run it under fp32 autocast)."""
    vae_mod = ref.module("ovi.modules.vae2_2")
    p = arch.video_vae
    original = vae_mod._video_vae
    vae_mod._video_vae = functools.partial(original, dec_dim=p.dec_dim, num_res_blocks=p.num_res_blocks)
    try:
        vae = vae_mod.Wan2_2_VAE(z_dim=p.z_dim, c_dim=p.dim, vae_pth=str(ckpt / VIDEO_VAE_WEIGHTS),
                                 dim_mult=list(p.dim_mult), temperal_downsample=list(p.temperal_downsample),
                                 device=device)
    finally:
        vae_mod._video_vae = original
    vae.model = vae.model.bfloat16()
    return vae


class ReferenceAudioDecoder(torch.nn.Module):
    """MMAudio's VAE decoder + BigVGAN as the reference's FeaturesUtils runs them (weight norm
    folded, bf16, decode then vocode under bf16 autocast), built at `arch`'s sizes."""

    def __init__(self, ref, ckpt: Path, arch):
        super().__init__()
        vae_mod = ref.module("ovi.modules.mmaudio.ext.autoencoder.vae")
        bigvgan = ref.module("ovi.modules.mmaudio.ext.bigvgan.models")
        vae = vae_mod.VAE(data_dim=arch.audio_vae.data_dim, embed_dim=arch.audio_vae.embed_dim,
                          hidden_dim=arch.audio_vae.hidden_dim).eval()
        vae.load_state_dict(torch.load(ckpt / AUDIO_VAE_WEIGHTS, weights_only=True, map_location="cpu"))
        vae.remove_weight_norm()
        # the yml's hyper-parameters with the arch's on top; BigVGAN reads them as attributes
        h = yaml.safe_load((Path(ref.root) / "ovi/modules/mmaudio/ext/bigvgan/bigvgan_vocoder.yml").read_text())
        h.update(json.loads(json.dumps(arch.to_json()["vocoder"])))
        vocoder = bigvgan.BigVGANVocoder(types.SimpleNamespace(**h)).eval()
        vocoder.load_state_dict(torch.load(ckpt / VOCODER_WEIGHTS, map_location="cpu", weights_only=True)["generator"])
        vocoder.remove_weight_norm()
        self.vae, self.vocoder = vae.bfloat16(), vocoder.bfloat16()  # the engine's cast after folding

    @torch.no_grad()
    def wrapped_decode(self, z: torch.Tensor) -> torch.Tensor:
        with torch.amp.autocast("cuda", dtype=torch.bfloat16):
            return self.vocoder(self.vae.decode(z))


def reference_t5(ref, ckpt: Path) -> dict[str, torch.Tensor]:
    encoder = reference_text_model(ref, ckpt, tiny_arch())
    with torch.no_grad():
        outputs = encoder(TEXTS[:3], "cpu") + encoder(TEXTS[3:], "cpu")  # batches of 3, as in generate()
    return {f"t5.{i}": o.contiguous() for i, o in enumerate(outputs)}


def reference_video_vae(ref, ckpt: Path) -> dict[str, torch.Tensor]:
    from tests.golden.refenv import cuda_autocast_emulation

    vae = reference_video_vae_model(ref, ckpt, tiny_arch())
    video, latents = video_inputs()
    with torch.no_grad(), cuda_autocast_emulation():
        encoded = vae.wrapped_encode(video)
        decoded = vae.wrapped_decode(latents)
    return {"video": video, "latents": latents, "encoded": encoded.contiguous(), "decoded": decoded.contiguous()}


def reference_audio(ref, ckpt: Path) -> dict[str, torch.Tensor]:
    from tests.golden.refenv import cuda_autocast_emulation

    decoder = ReferenceAudioDecoder(ref, ckpt, tiny_arch())
    z = audio_inputs()
    with torch.no_grad(), cuda_autocast_emulation():
        with torch.amp.autocast("cuda", dtype=torch.bfloat16):  # FeaturesUtils.wrapped_decode
            mel = decoder.vae.decode(z)
            wav = decoder.vocoder(mel)
    return {"latents": z, "mel": mel.contiguous(), "waveform": wav.contiguous()}


def reference_images(ref) -> dict[str, torch.Tensor]:
    processing = ref.module("ovi.utils.processing_utils")
    out = {}
    for i, (h, w, mode, area) in enumerate(IMAGES):
        image = test_image(h, w, mode, seed=i)
        out[f"image.{i}.input"] = torch.from_numpy(np.array(image))  # [H, W] or [H, W, C]: the mode
        out[f"image.{i}.output"] = processing.preprocess_image_tensor(image, "cpu", torch.bfloat16,
                                                                      resize_total_area=area).contiguous()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default="/work/ovi-ref")
    args = parser.parse_args()
    from tests.golden.provenance import provenance
    from tests.golden.refenv import import_reference

    torch.set_num_threads(2)
    DATA.mkdir(parents=True, exist_ok=True)
    meta = {"seeds": json.dumps(SEEDS), "arch": json.dumps(TINY_ARCH),
            **provenance(args.reference, ("torch", "transformers", "einops", "omegaconf"))}
    with tempfile.TemporaryDirectory() as tmp, import_reference(args.reference) as ref:
        ckpt = write_components(Path(tmp))
        goldens = {
            "components_t5": (reference_t5(ref, ckpt), {"texts": json.dumps(TEXTS)}),
            "components_video_vae": (reference_video_vae(ref, ckpt), {}),
            "components_audio": (reference_audio(ref, ckpt), {}),
            "components_image": (reference_images(ref), {"images": json.dumps(IMAGES)}),
        }
    for name, (tensors, extra) in goldens.items():
        path = DATA / f"{name}.safetensors"
        save_file(tensors, str(path), metadata={**meta, **extra})
        print(f"wrote {path.relative_to(REPO)} ({path.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
