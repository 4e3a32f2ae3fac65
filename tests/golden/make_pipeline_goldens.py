"""Make the whole-shot golden outputs: the reference's own `OviFusionEngine.generate`, end to end.

    .venv/bin/python tests/golden/make_pipeline_goldens.py [--reference /work/ovi-ref]
    .venv/bin/python tests/golden/make_pipeline_goldens.py --variant 960x960_10s

Needs `einops` (the `bench` extra). Not run by the test suite. On a tiny checkpoint folder with a
short clip (`TINY_SHORT_ARCH`, written by `engine.testing.tiny_checkpoint`, seed 0) the reference
renders a t2v and an i2v shot with all of its own networks — T5 and its tokenizer, the fusion
model, the Wan2.2 VAE (i2v encode and decode), the MMAudio VAE decoder and BigVGAN — on the CPU
through refenv.py. Writes `data/pipeline_shots.safetensors`: the i2v input image, and per shot
the uint8 frames (the reference's float video through our truncating conversion, which is the
reference writer's) and the waveform. The prompts and settings are in its metadata.

`--variant 960x960_10s` renders the t2v shot with the 10-second model's own latent lengths
(61 video, 314 audio latents: 241 frames, 160768 samples, audio RoPE positions up to 313) and
its `Audio:` caption format, at a 64x64 frame (`TEN_SECOND_ARCH`), into
`data/pipeline_shots_960x960_10s.safetensors`.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "golden")]

import make_component_goldens as components  # noqa: E402
import make_fusion_goldens as fusion  # noqa: E402
import refenv  # noqa: E402
from provenance import provenance  # noqa: E402
from engine.arch import load_arch  # noqa: E402
from engine.layout import fusion_weights  # noqa: E402
from engine.pipeline import frames_uint8  # noqa: E402
from engine.testing.tiny_checkpoint import TEN_SECOND_ARCH, TINY_SHORT_ARCH, write_tiny_checkpoint  # noqa: E402
from engine.variants import get_variant, snap_t2v_size  # noqa: E402

PIPELINE_LIBRARIES = ("torch", "transformers", "diffusers", "einops")

DATA = Path(__file__).parent / "data"
# per variant: the checkpoint sizes, the shots rendered and the golden file
VARIANTS = {"720x720_5s": (TINY_SHORT_ARCH, ("t2v", "i2v"), "pipeline_shots.safetensors"),
            "960x960_10s": (TEN_SECOND_ARCH, ("t2v",), "pipeline_shots_960x960_10s.safetensors")}
SHOTS = {
    "t2v": {"prompt": "A lighthouse keeper climbs the stairs at dusk. <S>Storm's coming.<E> "
                      "<AUDCAP>wind, creaking wood<ENDAUDCAP>", "height": 720, "width": 720},
    "i2v": {"prompt": "The kite dives toward the hill. <AUDCAP>wind gusts<ENDAUDCAP>", "image": True},
}
SETTINGS = {"seed": 103, "solver": "unipc", "steps": 3, "shift": 5.0, "video_guidance": 4.0,
            "audio_guidance": 3.0, "slg_layer": 2,
            "video_negative": "jitter, bad hands, blur, distortion",
            "audio_negative": "robotic, muffled, echo, distorted"}


def first_frame() -> Image.Image:
    """A 96x80 RGB test image (not the target size: the reference resizes and crops it)."""
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)
    pixels[20:60, 30:70] = (230, 40, 40)
    return Image.fromarray(pixels)


def official_engine(ref, ckpt: Path, device="cpu", variant_name: str = "720x720_5s"):
    """The reference's OviFusionEngine with its own networks loaded from `ckpt` at the folder's
    sizes (arch.json), everything resident as the engine keeps it."""
    arch = load_arch(ckpt)
    variant = arch.variant.apply(get_variant(variant_name))
    height, width = snap_t2v_size(720, 720, variant.video_area)
    model = fusion.reference_model(ref, arch, ckpt / fusion_weights(variant, False)).to(device)
    return fusion.assemble_engine(
        ref, model, components.reference_text_model(ref, ckpt, arch, str(device)),
        components.reference_video_vae_model(ref, ckpt, arch, str(device)),
        components.ReferenceAudioDecoder(ref, ckpt, arch).to(device),
        video_shape=(arch.video_dit.in_dim, variant.video_latent_length, height // 16, width // 16),
        audio_shape=(variant.audio_latent_length, arch.audio_dit.in_dim), area=variant.video_area,
        device=str(device))


def generate(engine, prompt: str, *, image=None, height=720, width=720, settings=SETTINGS):
    """One reference shot -> (uint8 frames [F, H, W, 3], float32 waveform [samples])."""
    result = engine.generate(
        text_prompt=prompt, image_path=image, video_frame_height_width=[height, width],
        seed=settings["seed"], solver_name=settings["solver"], sample_steps=settings["steps"],
        shift=settings["shift"], video_guidance_scale=settings["video_guidance"],
        audio_guidance_scale=settings["audio_guidance"], slg_layer=settings["slg_layer"],
        video_negative_prompt=settings["video_negative"], audio_negative_prompt=settings["audio_negative"])
    if result is None:
        raise RuntimeError("the reference's generate() failed (its traceback is logged above)")
    video, audio, _ = result
    return frames_uint8(torch.from_numpy(video)), torch.from_numpy(audio).float().reshape(-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default="/work/ovi-ref")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="720x720_5s")
    args = parser.parse_args()
    torch.set_num_threads(2)
    arch_json, names, filename = VARIANTS[args.variant]
    shots = {name: SHOTS[name] for name in names}
    image = first_frame()
    tensors = {"i2v.image": torch.from_numpy(np.array(image))} if "i2v" in shots else {}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = write_tiny_checkpoint(Path(tmp) / "ckpts", seed=0, arch_json=arch_json, variants=(args.variant,))
        with refenv.import_reference(args.reference) as ref, torch.inference_mode(), \
                refenv.cuda_autocast_emulation():
            engine = official_engine(ref, ckpt, variant_name=args.variant)
            # the prompt as the reference's variant table formats it (stored so, tests use it as is)
            formatter = ref.module("ovi.ovi_fusion_engine").NAME_TO_MODEL_SPECS_MAP[args.variant]["formatter"]
            shots = {name: {**shot, "prompt": formatter(shot["prompt"])} for name, shot in shots.items()}
            for name, shot in shots.items():
                frames, audio = generate(engine, shot["prompt"], image=image if shot.get("image") else None,
                                         height=shot.get("height"), width=shot.get("width"))
                tensors[f"{name}.frames"], tensors[f"{name}.audio"] = frames, audio.contiguous()
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / filename
    save_file(tensors, str(path), metadata={"shots": json.dumps(shots), "settings": json.dumps(SETTINGS),
                                            "variant": args.variant, "arch": json.dumps(arch_json),
                                            **provenance(args.reference, PIPELINE_LIBRARIES)})
    print(f"wrote {path.relative_to(REPO)} ({path.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
