"""Editor hand-off: the rendered cut as an OpenTimelineIO timeline, written as `.otio`, `.otioz`
(with the media bundled), FCPXML (Final Cut Pro X, DaVinci Resolve), FCP7 XML (Premiere) or a
CMX 3600 EDL through OpenTimelineIO's adapters.

The timeline is read from `report.json`, which lists the cut's segments as the assembly laid
them out: one clip per shot (its chosen take's `clip.mp4`) on a video and an audio track, with
in/out points after the seam trims, a dissolve for every crossfade, a marker with the shot id
at each clip's start and one marker per dialogue line (timed as the subtitles are).

A crossfade of N frames overlaps the end of one clip with the start of the next; in OTIO a
transition sits on a cut and borrows frames from both sides, so the outgoing clip ends N/2
frames early, the incoming clip starts N/2 frames late, and the transition covers both halves:
the timeline has exactly the cut's length.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from ovi_studio.errors import UserError
from ovi_studio.render.artifacts import atomic_target, read_json
from ovi_studio.render.report import CUT_MADE, REPORT, cut_cues
from ovi_studio.media.rates import FPS

FORMATS = {  # --format -> (OTIO adapter, file suffix)
    "otio": ("otio_json", ".otio"),
    "otioz": ("otioz", ".otioz"),
    "fcpxml": ("fcpx_xml", ".fcpxml"),
    "xml": ("fcp_xml", ".xml"),
    "edl": ("cmx_3600", ".edl"),
}
NO_TRANSITIONS = {"fcpxml"}  # the FCPXML adapter writes no transitions: they become cuts
SINGLE_TRACK = {"edl"}  # a CMX 3600 EDL holds one video track (its audio follows the events)


def _otio():
    try:
        import opentimelineio
    except ImportError:
        raise UserError("export needs OpenTimelineIO", hint="pip install 'ovi-studio[export]'") from None
    return opentimelineio


def cut_timeline(report: dict, out_dir: Path, name: str):
    """The cut in `report` (report.json of `out_dir`) as an otio Timeline."""
    otio = _otio()
    final = report.get("final") or {}
    segments = final.get("segments")
    if final.get("status") not in CUT_MADE or not segments:
        raise UserError(f"{out_dir / REPORT} has no assembled cut to export",
                        hint="run `ovi-studio render` first (it must finish the final cut)")
    rt = lambda frames: otio.opentime.RationalTime(frames, FPS)  # noqa: E731
    span = lambda start, frames: otio.opentime.TimeRange(rt(start), rt(frames))  # noqa: E731
    takes = {s["id"]: {t["dir"]: t for t in s["takes"]} for s in report.get("shots", [])}
    cues = cut_cues(final)
    bounds = [s["cut_start"] for s in segments] + [final["frames"]]
    timeline = otio.schema.Timeline(name=name, global_start_time=rt(0))
    video = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    sound = otio.schema.Track(name="A1", kind=otio.schema.TrackKind.Audio)
    for i, seg in enumerate(segments):
        head = seg["transition_frames"] // 2  # this clip's share of the dissolve into it
        tail = segments[i + 1]["transition_frames"] - segments[i + 1]["transition_frames"] // 2 \
            if i + 1 < len(segments) else 0
        start, stop = seg["start_frame"] + head, seg["end_frame"] - tail
        take = takes.get(seg["shot"], {}).get(seg["take_dir"], {})
        clip_path = (out_dir / seg["take_dir"] / "clip.mp4").absolute()
        for track in (video, sound):
            if seg["transition_frames"]:
                track.append(otio.schema.Transition(
                    name=f"dissolve into {seg['shot']}",
                    transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve,
                    in_offset=rt(head), out_offset=rt(seg["transition_frames"] - head)))
            clip = otio.schema.Clip(
                name=seg["shot"],
                media_reference=otio.schema.ExternalReference(
                    target_url=clip_path.as_uri(), available_range=span(0, seg["frames"])),
                source_range=span(start, stop - start),
                metadata={"ovi_studio": {"shot": seg["shot"], "take": take.get("take"),
                                         "seed": take.get("seed"), "cache_key": take.get("cache_key")},
                          "cmx_3600": {"reel": _reel(seg["shot"], take.get("take"))}})
            if track is video:
                _add_markers(otio, clip, seg, start, [c for c in cues if bounds[i] <= c.start * FPS < bounds[i + 1]],
                             span)
            track.append(clip)
    timeline.tracks.append(video)
    timeline.tracks.append(sound)
    return timeline


def _reel(shot: str, take: int | None) -> str:
    """An EDL reel name (8 characters of letters, digits and _) for a shot's take."""
    base = "".join(ch if ch.isalnum() else "_" for ch in shot).upper()
    suffix = f"T{take or 0}"
    return base[:8 - len(suffix)] + suffix


def _add_markers(otio, clip, seg: dict, start: int, cues: list, span) -> None:
    """The shot id at the clip's first visible frame; each subtitle cue of the shot where the
    cut shows it (marker times are in the clip's media time: cut frame - cut_start + start_frame)."""
    clip.markers.append(otio.schema.Marker(name=f"shot {seg['shot']}", marked_range=span(start, 0),
                                           color=otio.schema.MarkerColor.BLUE))
    offset = seg["start_frame"] - seg["cut_start"]
    for cue in cues:
        first = round(cue.start * FPS) + offset
        clip.markers.append(otio.schema.Marker(
            name=cue.text, marked_range=span(first, max(1, round(cue.end * FPS) + offset - first)),
            color=otio.schema.MarkerColor.YELLOW, metadata={"ovi_studio": {"dialogue": cue.text}}))


def url_to_path(url: str) -> str:
    return unquote(urlparse(url).path)


def for_format(timeline, fmt: str):
    """A copy of `timeline` reduced to what the format's adapter can write."""
    otio = _otio()
    if fmt not in NO_TRANSITIONS and fmt not in SINGLE_TRACK:
        return timeline
    reduced = timeline.deepcopy()
    if fmt in SINGLE_TRACK:
        for track in [t for t in reduced.tracks if t.kind != otio.schema.TrackKind.Video]:
            reduced.tracks.remove(track)
    if fmt in NO_TRANSITIONS:
        for track in reduced.tracks:
            for item in [c for c in track if isinstance(c, otio.schema.Transition)]:
                track.remove(item)
    return reduced


def export(out_dir: Path, fmt: str, target: Path | None, name: str) -> Path:
    """Write the cut of `out_dir` in `fmt`; returns the file written."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    report = read_json(out_dir / REPORT)
    if report is None:
        raise UserError(f"{out_dir / REPORT} does not exist or is unreadable",
                        hint="run `ovi-studio render` first")
    adapter, suffix = FORMATS[fmt]
    final = (report.get("final") or {}).get("path") or "cut"
    target = Path(target) if target else out_dir / (Path(final).stem + suffix)
    timeline = for_format(cut_timeline(report, out_dir, name), fmt)
    _make_viewing_copies(report, out_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=target.parent) as staging:
        if fmt == "otioz":  # a bundle needs one file name per clip; every take's is clip.mp4
            _unique_media_names(timeline, Path(staging))
        with atomic_target(target) as tmp:
            _otio().adapters.write_to_file(timeline, str(tmp), adapter_name=adapter)
    return target


def _make_viewing_copies(report: dict, out_dir: Path) -> None:
    """The clip.mp4 of every take the timeline points at, made now where it is missing (the
    render makes none: render.viewing)."""
    from ovi_studio.render.viewing import viewing_copy
    storyboard = Path(report["storyboard"]) if report.get("storyboard") else None
    for seg in (report.get("final") or {}).get("segments") or []:
        viewing_copy(out_dir / seg["take_dir"], storyboard)


def _unique_media_names(timeline, staging: Path) -> None:
    """Point every clip at a link named `<shot>-take<k>.mp4` to its take's clip.mp4."""
    for clip in timeline.find_clips():
        source = Path(url_to_path(clip.media_reference.target_url))
        link = staging / f"{source.parent.parent.name}-{source.parent.name}.mp4"
        if not link.exists():
            link.symlink_to(source)
        clip.media_reference.target_url = link.absolute().as_uri()
