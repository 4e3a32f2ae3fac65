"""Rendering one take: the engine job a planned take stands for, its first frame (an image, or
the parent's seed frame for an extension), colour matching along a chain, and the take's files
with meta.json written last (the commit marker, render/artifacts.py) into the take store, then
the shot's take linked to it (store.py)."""
from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ovi_studio import __version__
from ovi_studio.errors import UserError
from ovi_studio.media import audio as audio_io
from ovi_studio.media import video
from ovi_studio.media.images import load_i2v_frame, save_png
from ovi_studio.media.rates import MODEL_AUDIO_RATE
from ovi_studio.render import continuity
from ovi_studio.render.artifacts import (ERROR, TakeLayout, atomic_target, begin_take, file_record,
                                         link_take, read_meta, write_json_atomic, write_latents)
from ovi_studio.render.captions import dialogue_of, display_text
from ovi_studio.render.engines import OutOfMemory, ShotEngine, ShotJob, ShotOutput, memory_saving
from ovi_studio.store import take_dir


def shot_job(step, loaded) -> ShotJob:
    """The engine's view of a planned take: compiled prompt, size, seed and settings."""
    shot = step.shot
    return ShotJob(
        shot_id=shot.id, take=step.take, seed=step.seed, mode=step.mode, prompt=shot.prompt,
        height=step.height, width=step.width, frames=step.frames,
        video_negative=shot.settings.video_negative, audio_negative=shot.settings.audio_negative,
        dialogue=dialogue_of(loaded, shot), scene=display_text(loaded, shot.scene),
        audio_caption=shot.audio_caption, settings=dataclasses.asdict(shot.settings))


@dataclass(frozen=True)
class TakeContext:
    """What every take of one render shares."""
    loaded: object  # the LoadedStoryboard, as the render applied its overrides
    out_dir: Path
    ckpt_dir: Path | None
    oom_retry: bool = False  # on out of memory, once more with the memory-saving settings


def render_take(ctx: TakeContext, step, engine: ShotEngine, on_step: Callable[[int, int], None],
                on_phase: Callable[[str, str], None], log: Callable[[str], None]) -> dict:
    """Render planned take `step` with `engine`, commit its files to the take store and link
    the shot's take to them; returns its meta.json. `on_phase(label, phase)` names each phase
    as it starts."""
    shot = step.shot
    layout = TakeLayout(step.stored_dir)
    begin_take(layout)
    first, provenance = first_frame(ctx, step)
    job = shot_job(step, ctx.loaded)
    phase = functools.partial(on_phase, f"{shot.id}/take{step.take}")
    try:
        output = engine.render(job, first, on_step, phase)
    except OutOfMemory:
        if not ctx.oom_retry:
            raise
        log(f"{shot.id}: out of memory; retrying once with more memory saving")
        job = dataclasses.replace(job, settings=memory_saving(job.settings))
        output = engine.render(job, first, on_step, phase)
    if step.mode == "extend" and engine.color_drift and shot.settings.color_match != "off":
        phase("color_match")
    color = color_match(ctx, step, output, engine)
    phase("write")
    meta = write_take(ctx, step, layout, job, output, engine, first, provenance, color)
    link_take(ctx.out_dir, shot.id, step.take, step.cache_key)
    return meta


def first_frame(ctx: TakeContext, step) -> tuple[Image.Image | None, dict | None]:
    """The picture a take starts from and where it came from: the shot's image (i2v), the
    parent's seed frame (an extension), or none (t2v)."""
    shot = step.shot
    if step.mode == "i2v":
        # upright (EXIF), aspect-fitted at its own resolution: the engine's reference-exact
        # resize is the only resampling, as in the reference
        asked = shot.settings.asked_size(ctx.loaded.variant)
        image = load_i2v_frame(shot.first_frame, asked, shot.settings.fit)
        return image, {"source": str(shot.first_frame), "fit": shot.settings.fit,
                       "size": list(image.size), "aspect_from": asked}
    if step.mode != "extend":
        return None, None
    parent = TakeLayout(step.parent_dir)
    parent_meta = read_meta(parent.meta) or {}
    size = parent_meta.get("size", {})
    if parent.plate.is_file():  # a preview: start from its picture, never its drawn captions
        with Image.open(parent.plate) as img:
            frame = img.convert("RGB")
        tail_index, total = size.get("frames", 1) - 1, size.get("frames", 1)
    elif shot.settings.seed_frame == "last":
        tail_index, total = size.get("frames", 1) - 1, size.get("frames", 1)
        with Image.open(parent.last_frame) as img:
            frame = img.convert("RGB")
    else:
        tail, total = video.read_tail(parent.frames, size["width"], size["height"],
                                      continuity.SHARPEST_WINDOW)
        pick = continuity.choose_seed_frame(tail, "sharpest")
        tail_index = total - len(tail) + pick
        frame = Image.fromarray(tail[pick])
    provenance = {"shot": step.parent, "take": step.parent_take, "index": tail_index, "of": total,
                  "mode": shot.settings.seed_frame,
                  "frames_sha256": parent_meta.get("files", {}).get("frames", {}).get("sha256")}
    return frame, provenance  # the parent's own size: an extension keeps its geometry


def color_match(ctx: TakeContext, step, output: ShotOutput, engine: ShotEngine) -> dict | None:
    """Anchor an extension's colours to its chain's first shot (or its parent): the model
    drifts a little each time a shot continues another."""
    mode = step.shot.settings.color_match
    if step.mode != "extend" or mode == "off" or not engine.color_drift:
        return None
    source, ref_meta = step.parent, read_meta(TakeLayout(step.parent_dir).meta) or {}
    while mode == "first" and ref_meta.get("parent"):  # up the takes this chain started from
        source = ref_meta["parent"]["shot"]
        ref_meta = read_meta(TakeLayout(take_dir(ctx.out_dir, source, ref_meta["parent"]["take"])).meta) or {}
    if "color_stats" not in ref_meta:
        return None
    reference = continuity.ColorStats.from_json(ref_meta["color_stats"])
    before = continuity.color_stats(output.frames)
    output.frames = continuity.match_color(output.frames, reference)
    return {"mode": mode, "reference_shot": source, "reference": reference.to_json(),
            "before": before.to_json()}


def write_take(ctx: TakeContext, step, layout: TakeLayout, job: ShotJob, output: ShotOutput,
               engine: ShotEngine, first: Image.Image | None, seed_frame: dict | None,
               color: dict | None) -> dict:
    """The take's files, each atomically, then meta.json last: the commit marker, recording
    every file's size and hash and how the take was made."""
    frames = np.ascontiguousarray(output.frames, np.uint8)
    count, height, width = frames.shape[:3]
    with atomic_target(layout.frames) as tmp:
        video.write_lossless(tmp, frames)
    with atomic_target(layout.audio) as tmp:
        audio_io.write_wav(tmp, np.asarray(output.audio, np.float32), MODEL_AUDIO_RATE)
    with atomic_target(layout.last_frame) as tmp:
        save_png(tmp, frames[-1])
    if output.plate is not None:
        with atomic_target(layout.plate) as tmp:
            save_png(tmp, output.plate)
    if output.latents:
        write_latents(layout.latents, output.latents)
    # no clip.mp4 here: the viewing copy is made where something shows it (render.viewing)
    files = {name: file_record(path, layout.dir) for name, path in (
        ("frames", layout.frames), ("audio", layout.audio), ("last_frame", layout.last_frame),
        ("plate", layout.plate), ("latents", layout.latents)) if path.is_file()}
    shot = step.shot
    meta = {
        "schema": 1, "shot": shot.id, "take": step.take, "status": "done",
        "cache_key": step.cache_key, "key_inputs": step.key_inputs,
        "mode": step.mode, "seed": step.seed, "prompt": shot.prompt, "raw_prompt": shot.raw_prompt,
        "video_negative": shot.settings.video_negative, "audio_negative": shot.settings.audio_negative,
        "dialogue": [{"speaker": d.speaker, "text": d.text} for d in shot.dialogue],  # as written
        "settings": _jsonable(job.settings), "variant": ctx.loaded.variant.name,
        "planned": {"height": step.height, "width": step.width, "frames": step.frames},
        "size": {"height": height, "width": width, "frames": count},
        "audio": {"sample_rate": MODEL_AUDIO_RATE, "samples": int(np.asarray(output.audio).shape[0])},
        "first_frame": (None if first is None or step.mode != "i2v" else seed_frame),
        "parent": seed_frame if step.mode == "extend" else None,
        "color_match": color, "color_stats": continuity.color_stats(frames).to_json(),
        # as the engine rendered this take: fp8 and swapping follow the shot's settings
        "engine": engine.identity(), "ckpt_dir": str(ctx.ckpt_dir) if ctx.ckpt_dir else None,
        "timings": output.info.get("timings"), "peak_memory_bytes": output.info.get("peak_memory_bytes"),
        "engine_info": _jsonable({k: v for k, v in output.info.items()
                                  if k not in ("timings", "peak_memory_bytes")}),
        "ovi_studio": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": files,
    }
    write_json_atomic(layout.meta, meta)  # the commit marker: last
    return meta


def record_error(take_folder: Path, text: str) -> None:
    """Keep the traceback of a failed take beside its artifacts for post-mortems (when the take
    folder itself is what failed, the traceback stays in the report's reason only)."""
    try:
        with atomic_target(take_folder / ERROR) as tmp:
            tmp.write_text(text, encoding="utf-8", errors="backslashreplace")
    except (OSError, UserError):
        pass


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))
