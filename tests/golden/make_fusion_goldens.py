"""Make the fusion-DiT golden outputs by running the reference implementation on the CPU.

    .venv/bin/python tests/golden/make_fusion_goldens.py [--reference /work/ovi-ref] [--out DIR]

Not run by the test suite (it needs a checkout of the reference). See tests/golden/README.md for
what it writes and how the reference is run (refenv.py: CUDA autocast emulated, flash-attn on
SDPA, unused imports stubbed). Writes:
  fusion_forward.safetensors    inputs, forward outputs (t2v, i2v, SLG), 4-step samplings
  fusion_schedulers.safetensors 50-step timestep/sigma lists, isolated scheduler steps
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import types
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

import refenv  # noqa: E402
from provenance import provenance  # noqa: E402
from engine.arch import parse_arch  # noqa: E402
from engine.testing.tiny_checkpoint import TINY_ARCH  # noqa: E402
from engine.testing.tiny_fusion import state_fingerprint, tiny_fusion_state_dict, write_fusion  # noqa: E402

WEIGHT_SEED = 7
INPUT_SEED = 11
VIDEO_SHAPE = (48, 5, 6, 8)  # latent [C, F, h, w]: 5 x 3 x 4 = 60 video tokens
AUDIO_SHAPE = (32, 20)  # 32 audio tokens
TIMESTEP = 873
FWD_SLG_LAYER = 2
SAMPLING = dict(steps=4, shift=5.0, video_guidance=4.0, audio_guidance=3.0, slg_layer=2, seed=103)
SCHEDULER_STEPS = 5  # isolated scheduler runs: orders 1, 2, ..., and the lower final order


def make_inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator("cpu").manual_seed(INPUT_SEED)
    text_dim = TINY_ARCH["video_dit"]["text_dim"]
    rnd = lambda *shape: torch.randn(*shape, generator=g).bfloat16()  # noqa: E731
    return {
        "in.video": rnd(*VIDEO_SHAPE),
        "in.audio": rnd(*AUDIO_SHAPE),
        "in.text": rnd(9, text_dim),
        "in.video_negative": rnd(4, text_dim),
        "in.audio_negative": rnd(5, text_dim),
        "in.first_frame": rnd(VIDEO_SHAPE[0], 1, *VIDEO_SHAPE[2:]),
        "in.t": torch.tensor([TIMESTEP]),
    }


def _config(params) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(params).items()}


def reference_model(ref, arch, weights: Path):
    fusion = ref.module("ovi.modules.fusion")
    loading = ref.module("ovi.utils.model_loading_utils")
    with torch.device("meta"):
        model = fusion.FusionModel(_config(arch.video_dit), _config(arch.audio_dit))
    loading.load_fusion_checkpoint(model, checkpoint_path=str(weights), from_meta=True)
    model = model.to(torch.bfloat16).eval()
    model.set_rope_params()
    return model


def forward_goldens(model, x) -> dict[str, torch.Tensor]:
    out = {}
    cases = {  # name: (video context, audio context, first_frame_is_clean, slg_layer)
        "t2v": (x["in.text"], x["in.text"], False, False),
        "i2v": (x["in.text"], x["in.text"], True, False),
        "slg": (x["in.video_negative"], x["in.audio_negative"], False, FWD_SLG_LAYER),
    }
    for name, (vctx, actx, clean, slg) in cases.items():
        video = x["in.video"].clone()
        if clean:
            video[:, :1] = x["in.first_frame"]
        with torch.amp.autocast("cuda", dtype=torch.bfloat16):
            v, a = model(vid=[video], audio=[x["in.audio"]], t=x["in.t"], vid_context=[vctx],
                         audio_context=[actx], vid_seq_len=VIDEO_SHAPE[1] * VIDEO_SHAPE[2] * VIDEO_SHAPE[3] // 4,
                         audio_seq_len=AUDIO_SHAPE[0], first_frame_is_clean=clean, slg_layer=slg)
        out[f"fwd.{name}.video"], out[f"fwd.{name}.audio"] = v[0], a[0]
    return out


def reference_engine(ref, model, x, video_shape=VIDEO_SHAPE, audio_shape=AUDIO_SHAPE, device="cpu"):
    """An OviFusionEngine around `model`, with the text encoder and VAEs replaced by stand-ins
    that hand over our embeddings and latents (decode = identity). x: make_inputs()' keys."""
    module = ref.module("ovi.ovi_fusion_engine")
    h, w = video_shape[2] * 16, video_shape[3] * 16
    identity = types.SimpleNamespace(wrapped_decode=lambda z: z,
                                     wrapped_encode=lambda img: x["in.first_frame"][None],
                                     model=None)
    engine = assemble_engine(
        ref, model, _TextStandIn([x["in.text"], x["in.video_negative"], x["in.audio_negative"]]),
        identity, identity, video_shape=video_shape, audio_shape=audio_shape, area=h * w, device=device)
    # i2v: the image only goes through the (replaced) VAE encode; skip the pixel preprocessing.
    module.preprocess_image_tensor = lambda *a, **k: torch.zeros(1, 3, h, w, dtype=torch.bfloat16)
    return engine, (h, w)


def assemble_engine(ref, model, text_model, video_vae, audio_vae, *, video_shape, audio_shape, area,
                    device="cpu"):
    """OviFusionEngine with the given networks, everything resident (cpu_offload off), without
    its constructor (which only knows the full-size files)."""
    engine = object.__new__(ref.module("ovi.ovi_fusion_engine").OviFusionEngine)
    engine.__dict__.update(
        device=device, target_dtype=torch.bfloat16, model=model, cpu_offload=False, image_model=None,
        text_model=text_model, vae_model_video=video_vae, vae_model_audio=audio_vae,
        audio_latent_channel=audio_shape[1], video_latent_channel=video_shape[0],
        video_latent_length=video_shape[1], audio_latent_length=audio_shape[0],
        text_formatter=lambda s: s, target_area=area, model_name="bench")
    return engine


class _TextStandIn:
    device = "cpu"
    model = None

    def __init__(self, contexts):
        self.contexts = contexts

    def __call__(self, texts, device):
        return [c.clone() for c in self.contexts]


def sampling_goldens(engine, hw) -> dict[str, torch.Tensor]:
    out = {}
    runs = {"unipc": ("unipc", None), "dpm++": ("dpm++", None), "euler": ("euler", None),
            "unipc_i2v": ("unipc", "first-frame")}
    for name, (solver, image) in runs.items():
        result = engine.generate(
            text_prompt="tiny", image_path=image, video_frame_height_width=list(hw),
            seed=SAMPLING["seed"], solver_name=solver, sample_steps=SAMPLING["steps"],
            shift=SAMPLING["shift"], video_guidance_scale=SAMPLING["video_guidance"],
            audio_guidance_scale=SAMPLING["audio_guidance"], slg_layer=SAMPLING["slg_layer"],
            video_negative_prompt="v-", audio_negative_prompt="a-")
        if result is None:
            raise RuntimeError(f"reference generate() failed for {name} (traceback logged above)")
        video, audio, _ = result
        out[f"sample.{name}.video"] = torch.from_numpy(video).bfloat16()
        out[f"sample.{name}.audio"] = torch.from_numpy(audio).T.contiguous().bfloat16()
    return out


def scheduler_goldens(ref) -> dict[str, torch.Tensor]:
    engine_module = ref.module("ovi.ovi_fusion_engine")
    engine = object.__new__(engine_module.OviFusionEngine)
    out = {}
    g = torch.Generator("cpu").manual_seed(INPUT_SEED + 1)
    sample0 = torch.randn(1, 4, 3, 5, generator=g).bfloat16()
    outputs = torch.randn(SCHEDULER_STEPS, 1, 4, 3, 5, generator=g).bfloat16()
    out["sched.in.sample"], out["sched.in.model_outputs"] = sample0, outputs
    for solver in ("unipc", "dpm++", "euler"):
        scheduler, timesteps = engine.get_scheduler_time_steps(50, solver_name=solver, device="cpu",
                                                               shift=5.0)
        out[f"sched.{solver}.timesteps"] = timesteps.clone()
        out[f"sched.{solver}.sigmas"] = scheduler.sigmas.clone()
        scheduler, timesteps = engine.get_scheduler_time_steps(SCHEDULER_STEPS, solver_name=solver,
                                                               device="cpu", shift=5.0)
        sample, steps = sample0, []
        for i, t in enumerate(timesteps):
            with torch.amp.autocast("cuda", dtype=torch.bfloat16):
                sample = scheduler.step(outputs[i], t, sample, return_dict=False)[0]
            steps.append(sample)
        out[f"sched.{solver}.steps"] = torch.stack(steps)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default=refenv.DEFAULT_REFERENCE)
    parser.add_argument("--out", default=str(HERE / "data"))
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    arch = parse_arch(TINY_ARCH)
    x = make_inputs()
    with tempfile.TemporaryDirectory() as tmp:
        weights = write_fusion(tmp, arch, "720x720_5s", seed=WEIGHT_SEED)
        meta = {"weight_seed": str(WEIGHT_SEED),
                "weights_sha256": state_fingerprint(tiny_fusion_state_dict(arch, WEIGHT_SEED)),
                "arch": json.dumps({k: TINY_ARCH[k] for k in ("video_dit", "audio_dit")}),
                "sampling": json.dumps(SAMPLING), "fwd_slg_layer": str(FWD_SLG_LAYER),
                **provenance(args.reference, ("torch", "diffusers"))}
        with refenv.import_reference(args.reference) as ref, torch.inference_mode(), \
                refenv.cuda_autocast_emulation():
            model = reference_model(ref, arch, weights)
            forward = forward_goldens(model, x)
            engine, hw = reference_engine(ref, model, x)
            sampling = sampling_goldens(engine, hw)
            schedulers = scheduler_goldens(ref)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({**x, **forward, **sampling}, str(out / "fusion_forward.safetensors"), metadata=meta)
    save_file(schedulers, str(out / "fusion_schedulers.safetensors"), metadata=meta)
    print(f"wrote {out / 'fusion_forward.safetensors'} and {out / 'fusion_schedulers.safetensors'}")


if __name__ == "__main__":
    main()
