"""A take's viewing copy, `clip.mp4`: H.264 + AAC that browsers and editors play.

It is made only where something uses it — the review page (for a take that is not in the cut;
one that is plays from the cut itself) and timeline exports — from the take's lossless frames
and audio in one pass, the first time it is asked for. A take rendered again loses its old copy
with its other files (artifacts.begin_take), so an existing copy always matches the frames.
"""
from __future__ import annotations

from pathlib import Path

from ovi_studio.render.artifacts import TakeLayout, read_meta, work_folder
from ovi_studio.render.assembly import AssemblySettings, Segment, assemble

CLIP_CRF = 18


def viewing_copy(take_dir: Path, storyboard: Path | None = None) -> Path | None:
    """The take's clip.mp4, made now if it is missing; None for a take without committed
    frames (nothing to show). `storyboard` goes into the file's tags."""
    layout = TakeLayout(Path(take_dir))
    if layout.clip.is_file():
        return layout.clip
    meta = read_meta(layout.meta)
    if not meta or not layout.frames.is_file() or not layout.audio.is_file():
        return None
    size = meta["size"]
    preview = (meta.get("engine") or {}).get("name") == "preview"
    settings = AssemblySettings(loudness_lufs=None, subtitles=False, chapters=False, crf=CLIP_CRF,
                                preset="ultrafast" if preview else "medium")
    segment = Segment(meta["shot"], layout.frames, layout.audio, size["width"], size["height"],
                      size["frames"])
    with work_folder(layout.dir) as work:
        assemble([segment], layout.clip, settings, work, take_tags(meta, storyboard))
    return layout.clip


def take_tags(meta: dict, storyboard: Path | None) -> dict[str, str]:
    """mp4 metadata of a take's clip: where it came from, however the file is moved."""
    tags = {"storyboard": str(storyboard)} if storyboard else {}
    return {**tags, "shot": meta["shot"], "take": str(meta["take"]), "seed": str(meta["seed"]),
            "engine": (meta.get("engine") or {}).get("name", ""),
            "checkpoint": str((meta.get("key_inputs") or {}).get("checkpoint")),
            "cache_key": meta["cache_key"]}
