"""The final cut: its encode settings (the storyboard's `output:` under the render's
overrides), its segments (the chosen take of every shot, take_choice.py, trimmed where a
chain continues), and assembling it only when its inputs changed since the last cut."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ovi_studio.output_names import CUT_PIECES, STATE
from ovi_studio.render.artifacts import META, TakeLayout, read_meta, work_folder
from ovi_studio.render.assembly import (AssemblyResult, AssemblySettings, Segment, assemble,
                                        reuse_summary)
from ovi_studio.render.captions import dialogue_of
from ovi_studio.store import take_dir
from ovi_studio.render.report import previous_report

ASSEMBLY_VERSION = 3  # 2: report.json lists the cut's segments; 3: mp4 tags
DEFAULT_FINAL = "final.mp4"
DEFAULT_CRF = 18


@dataclass(frozen=True)
class Cut:
    """One storyboard's cut as a render makes it."""
    loaded: object  # LoadedStoryboard
    out_dir: Path
    overrides: dict  # the render's typed overrides (output and x264 keys are read here)
    engine_name: str

    def settings(self) -> AssemblySettings:
        o, model = self.overrides, self.loaded.model.output
        loud = o.get("loudness", model.loudness)
        return AssemblySettings(
            loudness_lufs=None if loud in ("off", None, False) else float(loud),
            subtitles=bool(o.get("subtitles", model.subtitles)),
            chapters=bool(o.get("chapters", model.chapters)),
            crf=int(o.get("crf", DEFAULT_CRF)),
            preset=o.get("preset", "ultrafast" if self.engine_name == "preview" else "slow"))

    def final_path(self) -> Path:
        name = self.overrides.get("final") or self.loaded.model.output.final or DEFAULT_FINAL
        return self.out_dir / str(name)

    def segments(self, chosen: dict[str, int], usable: Callable[[str, int], bool]
                 ) -> tuple[list[Segment], list[str]]:
        """Segments in storyboard order from each shot's `chosen` take, and the shots whose
        chosen take is not `usable` (failed, skipped, or not rendered)."""
        metas, missing = {}, []
        for shot in self.loaded.shots:
            meta = read_meta(take_dir(self.out_dir, shot.id, chosen[shot.id]) / META)
            if not usable(shot.id, chosen[shot.id]) or meta is None:
                missing.append(shot.id)
            metas[shot.id] = meta
        if missing:
            return [], missing
        shots = self.loaded.shots
        segments = []
        for i, shot in enumerate(shots):
            layout = TakeLayout(take_dir(self.out_dir, shot.id, chosen[shot.id]))
            meta = metas[shot.id]
            prev_id = shots[i - 1].id if i else None
            nxt = shots[i + 1] if i + 1 < len(shots) else None
            start = 1 if shot.extends is not None and shot.extends == prev_id else 0
            end = None
            if nxt is not None and nxt.extends == shot.id:
                end = metas[nxt.id]["parent"]["index"] + 1  # end on the frame the next shot continues
            crossfade = shot.settings.transition == "crossfade" and i > 0
            segments.append(Segment(
                shot.id, layout.frames, layout.audio, meta["size"]["width"], meta["size"]["height"],
                meta["size"]["frames"], start, end, shot.settings.transition_frames if crossfade else 0,
                dialogue_of(self.loaded, shot), shot.id))
        return segments, []

    def tags(self, chosen: dict[str, int], key: str) -> dict[str, str]:
        """The mp4's metadata tags: what made this cut."""
        takes = ",".join(f"{shot}:{take}" for shot, take in chosen.items())
        return {"storyboard": str(self.loaded.path),
                "title": self.loaded.model.title or self.loaded.path.stem,
                "engine": self.engine_name, "takes": takes, "cache_key": key}


def assemble_cut(cut: Cut, segments: list[Segment], chosen: dict[str, int],
                 log: Callable[[str], None], on_phase: Callable[[str, str], None],
                 on_progress: Callable | None = None) -> dict:
    """Assemble the cut unless the last one was made from the same inputs (re-encoding only
    the pieces whose inputs changed); report.json's `final` object for it."""
    final = cut.final_path()
    settings = cut.settings()
    key = assembly_key(segments, settings, final)
    old = (previous_report(cut.out_dir) or {}).get("final")
    old = old if isinstance(old, dict) else {}
    if old.get("key") == key and final.is_file() and final.stat().st_size == old.get("bytes"):
        log(f"final cut up to date: {final}")
        return {**old, "status": "cached"}
    on_phase("cut", "assembly")
    log(f"assembling {len(segments)} shot(s) -> {final}"
        + reassembly_note(old.get("segments"), segments, cut.out_dir))
    started = time.perf_counter()
    try:
        with work_folder(cut.out_dir) as work:
            result = assemble(segments, final, settings, work, cut.tags(chosen, key),
                              piece_cache=cut.out_dir / STATE / CUT_PIECES, on_progress=on_progress)
    except Exception as exc:
        log(f"assembly failed: {exc}")
        return {"status": "failed", "reason": str(exc)}
    log(f"cut: {reuse_summary(result.pieces)}")
    return final_json(result, cut.out_dir, key, time.perf_counter() - started, segments)


def reassembly_note(old_segments: list | None, segments: list[Segment], out_dir: Path) -> str:
    """Which shots a re-assembly finds changed (the encode then says which pieces it redid)."""
    if not old_segments:
        return ""
    before = {s["shot"]: (s["take_dir"], s["start_frame"], s["end_frame"], s["transition_frames"])
              for s in old_segments}
    changed = [seg.shot_id for seg in segments
               if before.get(seg.shot_id) != (seg.frames_path.parent.relative_to(out_dir).as_posix(),
                                               seg.start_frame, seg.stop, seg.transition_frames)]
    what = f"{len(changed)} shot(s) changed ({', '.join(changed[:5])}{', …' if len(changed) > 5 else ''})" \
        if changed else "the settings or the takes' files changed"
    return f" ({what})"


def assembly_key(segments: list[Segment], settings: AssemblySettings, final: Path) -> str:
    parts = {"version": ASSEMBLY_VERSION, "settings": dataclasses.asdict(settings), "final": final.name,
             "segments": [{**{k: str(v) if isinstance(v, Path) else v
                              for k, v in dataclasses.asdict(seg).items()},
                           **_file_hashes(seg)} for seg in segments]}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _file_hashes(seg: Segment) -> dict[str, str | None]:
    """The frames' and audio's hashes the segment's take recorded (one read of its meta.json)."""
    files = (read_meta(seg.frames_path.parent / META) or {}).get("files", {})
    return {f"{name}_sha256": files.get(name, {}).get("sha256") for name in ("frames", "audio")}


def final_json(result: AssemblyResult, out_dir: Path, key: str, seconds: float,
               segments: list[Segment]) -> dict:
    rel = lambda p: p.relative_to(out_dir).as_posix() if p else None  # noqa: E731
    timeline = [{"shot": seg.shot_id, "take_dir": rel(seg.frames_path.parent), "frames": seg.total_frames,
                 "start_frame": seg.start_frame, "end_frame": seg.stop,
                 "transition_frames": seg.transition_frames, "cut_start": start,
                 "dialogue": [list(line) for line in seg.dialogue]}
                for seg, start in zip(segments, result.segment_starts)]
    return {"status": "done", "path": rel(result.final), "srt": rel(result.srt), "vtt": rel(result.vtt),
            "chapters": rel(result.chapters), "frames": result.frames,
            "duration_s": round(result.duration_s, 4), "audio_samples_48k": result.audio_samples,
            "segment_starts": result.segment_starts, "loudness": result.loudness,
            "bytes": result.final.stat().st_size, "key": key, "seconds": round(seconds, 2),
            "segments": timeline,
            "pieces": [{"shots": list(p.shots), "frames": p.frames, "reused": p.reused}
                       for p in result.pieces]}
