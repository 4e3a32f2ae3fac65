"""Assembly: the final cut, encoded once from lossless intermediates (product-anchors §2.2).

Audio is built as one 48 kHz programme in numpy, where every edit is sample-exact: at 24 fps one
frame is exactly 2000 samples, so each segment's audio is made exactly (kept frames x 2000)
samples long and no drift can accumulate however many shots there are. Cuts get short
de-click ramps; a crossfade is an equal-power overlap of the same length as the video `xfade`
(what `acrossfade` would do, without its rounding to audio frames). Loudness is normalised in
two `loudnorm` passes over the whole programme (never per clip, which eats the boundaries).
Video goes through one ffmpeg filter graph: trim by frame number, retime to exact frame
indices, scale/pad to the cut's size, concat or xfade; then a single libx264 encode muxes the
programme audio, mov_text subtitles and chapters.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ovi_studio.media import audio, ffmpeg
from ovi_studio.render.artifacts import atomic_target, write_text_atomic
from ovi_studio.render.subtitles import (Cue, chapters_ffmetadata, shot_cues, to_srt, to_webvtt,
                                         without_overlaps)

FPS = 24
SAMPLE_RATE = 48_000
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 2000
SILENT_LUFS = -70.0  # below this, loudnorm has nothing to measure (EBU R128 absolute gate)


@dataclass(frozen=True)
class Segment:
    """One shot's contribution to the cut: frames [start_frame, end_frame) of a lossless take."""
    shot_id: str
    frames_path: Path
    audio_path: Path  # float WAV at any rate (Ovi: 16 kHz)
    width: int
    height: int
    total_frames: int
    start_frame: int = 0  # 1 drops an extension's duplicated seam frame
    end_frame: int | None = None  # exclusive; earlier than total when a child seeds from a sharper frame
    transition_frames: int = 0  # crossfade from the previous segment (0 = hard cut)
    dialogue: tuple[tuple[str | None, str], ...] = ()
    title: str = ""

    @property
    def stop(self) -> int:
        return self.total_frames if self.end_frame is None else self.end_frame

    @property
    def kept_frames(self) -> int:
        return self.stop - self.start_frame


@dataclass(frozen=True)
class AssemblySettings:
    loudness_lufs: float | None = -16.0  # None: no normalisation
    true_peak_db: float = -1.5  # the normaliser's ceiling; delivery promises <= -1 dBTP measured
    loudness_range: float = 11.0
    subtitles: bool = True
    chapters: bool = True
    declick_ms: float = 5.0
    crf: int = 18
    preset: str = "slow"
    audio_bitrate: str = "192k"  # AAC-LC, stereo, 48 kHz


@dataclass
class AssemblyResult:
    final: Path
    frames: int
    audio_samples: int
    segment_starts: list[int]
    cues: list[Cue] = field(default_factory=list)
    srt: Path | None = None
    vtt: Path | None = None
    chapters: Path | None = None
    loudness: dict | None = None

    @property
    def duration_s(self) -> float:
        return self.frames / FPS


def segment_starts(segments: list[Segment]) -> tuple[list[int], int]:
    """Start frame of each segment on the cut's timeline, and the cut's length in frames."""
    starts, t = [], 0
    for i, seg in enumerate(segments):
        overlap = seg.transition_frames if i else 0
        if overlap > min(seg.kept_frames, t):
            raise ValueError(f"shot {seg.shot_id}: transition of {overlap} frames is longer than a clip")
        t -= overlap
        starts.append(t)
        t += seg.kept_frames
    return starts, t


def segment_audio(seg: Segment) -> np.ndarray:
    """The segment's audio at 48 kHz, exactly kept_frames x 2000 samples."""
    samples, rate = audio.read_wav(seg.audio_path)
    full = audio.fit_length(audio.resample(samples, rate, SAMPLE_RATE),
                            seg.total_frames * SAMPLES_PER_FRAME)
    return full[seg.start_frame * SAMPLES_PER_FRAME:seg.stop * SAMPLES_PER_FRAME]


def programme_audio(segments: list[Segment], settings: AssemblySettings) -> np.ndarray:
    declick = round(settings.declick_ms * SAMPLE_RATE / 1000)
    out = np.zeros(0, np.float32)
    for i, seg in enumerate(segments):
        nxt = segments[i + 1] if i + 1 < len(segments) else None
        fade_in = 0 if (i and seg.transition_frames) else declick
        fade_out = 0 if (nxt and nxt.transition_frames) else declick
        clip = audio.fade_edges(segment_audio(seg), fade_in, fade_out)
        overlap = seg.transition_frames * SAMPLES_PER_FRAME if i else 0
        out = audio.crossfade(out, clip, overlap)
    return out


def _loudnorm_filter(settings: AssemblySettings, measured: dict | None) -> str:
    parts = [f"I={settings.loudness_lufs}", f"TP={settings.true_peak_db}",
             f"LRA={settings.loudness_range}", "dual_mono=true", "print_format=json"]
    if measured:
        parts += [f"measured_I={measured['input_i']}", f"measured_TP={measured['input_tp']}",
                  f"measured_LRA={measured['input_lra']}", f"measured_thresh={measured['input_thresh']}",
                  f"offset={measured['target_offset']}", "linear=true"]
    return "loudnorm=" + ":".join(parts)


def _loudnorm_json(stderr: str) -> dict:
    blocks = re.findall(r"\{[^{}]*\}", stderr)
    if not blocks:
        raise ValueError("loudnorm printed no measurement")
    return json.loads(blocks[-1])


def normalize_loudness(samples: np.ndarray, settings: AssemblySettings) -> tuple[np.ndarray, dict]:
    """Two-pass EBU R128 normalisation; the result keeps the exact sample count."""
    pcm = np.ascontiguousarray(samples, "<f4").tobytes()
    src = ["-f", "f32le", "-ar", str(SAMPLE_RATE), "-ac", "1", "-i", "pipe:0"]
    first = ffmpeg.run(ffmpeg.command(*src, "-af", _loudnorm_filter(settings, None), "-f", "null", "-"),
                       stdin=pcm)
    measured = _loudnorm_json(first.stderr.decode(errors="replace"))
    input_i = float(measured["input_i"])
    if not np.isfinite(input_i) or input_i < SILENT_LUFS:
        return samples, {"skipped": "silent programme", "input_i": measured["input_i"]}
    second = ffmpeg.run(ffmpeg.command(*src, "-af", _loudnorm_filter(settings, measured),
                                       "-ar", str(SAMPLE_RATE), "-f", "f32le", "-c:a", "pcm_f32le",
                                       "pipe:1"), stdin=pcm)
    result = _loudnorm_json(second.stderr.decode(errors="replace"))
    out = audio.fit_length(np.frombuffer(second.stdout, np.float32), samples.shape[0])
    return out, {"target_i": settings.loudness_lufs, "input_i": input_i,
                 "output_i": float(result["output_i"]), "output_tp": float(result["output_tp"]),
                 "normalization_type": result.get("normalization_type")}


DELIVERY_CHANNELS = 2  # stereo: what players, platforms and meters expect of a film's mix
LOUDNESS_TOLERANCE_LU = 0.3  # delivered loudness is corrected once when further off than this
TRUE_PEAK_LIMIT_DBTP = -1.0  # measured on the delivered file


def encode_audio(samples: np.ndarray, out: Path, settings: AssemblySettings) -> None:
    """The delivered audio track: the mono programme on both channels of a stereo AAC stream,
    48 kHz at the configured bitrate; the cut copies it as it is."""
    pcm = np.ascontiguousarray(samples, "<f4").tobytes()
    with atomic_target(out) as tmp:
        ffmpeg.run(ffmpeg.command(
            "-f", "f32le", "-ar", str(SAMPLE_RATE), "-ac", "1", "-i", "pipe:0",
            "-ac", str(DELIVERY_CHANNELS), "-c:a", "aac", "-b:a", settings.audio_bitrate,
            "-ar", str(SAMPLE_RATE), "-f", "mp4", tmp), stdin=pcm)


def deliver_audio(samples: np.ndarray, out: Path, settings: AssemblySettings) -> dict | None:
    """Encode the delivered audio and, when a loudness target is set, make ffmpeg's ebur128
    meter read the target on that very file: the AAC encode and the stereo layout move the
    reading a little from the normaliser's estimate, so one gain correction (held under the
    true-peak limit) follows when it is off by more than the tolerance. Returns what the meter
    reads on the delivered stream."""
    encode_audio(samples, out, settings)
    if settings.loudness_lufs is None:
        return None
    measured = audio.measure_loudness(out)
    gain = settings.loudness_lufs - measured["integrated_lufs"]
    if np.isfinite(gain) and measured["integrated_lufs"] > SILENT_LUFS and abs(gain) > LOUDNESS_TOLERANCE_LU:
        gain = min(gain, TRUE_PEAK_LIMIT_DBTP - 0.2 - measured["true_peak_dbtp"])
        encode_audio((samples * 10 ** (gain / 20)).astype(np.float32), out, settings)
        measured = {**audio.measure_loudness(out), "corrected_by_db": round(gain, 3)}
    return measured


def video_graph(segments: list[Segment], width: int, height: int) -> str:
    """Filter graph from inputs 0..N-1 to [vout]."""
    chains = []
    for i, seg in enumerate(segments):
        fit = ""
        if (seg.width, seg.height) != (width, height):
            fit = (f",scale={width}:{height}:force_original_aspect_ratio=decrease,"
                   f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2")
        chains.append(f"[{i}:v]trim=start_frame={seg.start_frame}:end_frame={seg.stop},"
                      f"settb=1/{FPS},setpts=N{fit},setsar=1[s{i}]")  # pts = frame index
    retime = f",settb=1/{FPS},setpts=N"  # joins change the time base; keep exact frame indices
    acc, length = "[s0]", segments[0].kept_frames
    for i, seg in enumerate(segments[1:], 1):
        label = f"[j{i}]"
        if seg.transition_frames:
            offset = (length - seg.transition_frames) / FPS
            chains.append(f"{acc}[s{i}]xfade=transition=fade:duration={seg.transition_frames / FPS:.6f}"
                          f":offset={offset:.6f}{retime}{label}")
            length += seg.kept_frames - seg.transition_frames
        else:
            chains.append(f"{acc}[s{i}]concat=n=2:v=1:a=0{retime}{label}")
            length += seg.kept_frames
        acc = label
    chains.append(f"{acc}scale=out_color_matrix=bt709:out_range=tv,format=yuv420p[vout]")
    return ";".join(chains)


def encode(segments: list[Segment], audio_track: Path, out: Path, settings: AssemblySettings,
           total_frames: int, srt: Path | None = None, chapters: Path | None = None,
           tags: dict[str, str] | None = None) -> None:
    width, height = segments[0].width, segments[0].height
    args: list[str | Path] = []
    for seg in segments:
        args += ["-i", seg.frames_path]
    audio_idx = len(segments)
    args += ["-i", audio_track]
    maps = ["-map", "[vout]", "-map", f"{audio_idx}:a"]
    if srt:
        args += ["-i", srt]
        maps += ["-map", f"{audio_idx + 1}:s", "-c:s", "mov_text"]
    if chapters:
        meta_idx = audio_idx + 1 + (1 if srt else 0)
        args += ["-f", "ffmetadata", "-i", chapters]
        maps += ["-map_metadata", str(meta_idx), "-map_chapters", str(meta_idx)]
    for key, value in (tags or {}).items():  # provenance that survives moving the file
        maps += ["-metadata", f"{key}={value}"]
    with atomic_target(out) as tmp:
        ffmpeg.run(ffmpeg.command(
            *args, "-filter_complex", video_graph(segments, width, height), *maps,
            "-frames:v", str(total_frames), "-c:v", "libx264", "-preset", settings.preset,
            "-crf", str(settings.crf), "-pix_fmt", "yuv420p", "-r", str(FPS), "-fps_mode", "cfr",
            "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709",
            "-c:a", "copy", "-movflags", "+faststart+use_metadata_tags", "-f", "mp4", tmp))


def timeline_cues(segments: list[Segment], starts: list[int], total: int) -> list[Cue]:
    """Every shot's cues on the cut's timeline: timed from its take's own first frame, kept to
    the stretch the shot has alone (after a crossfade into it, before the next shot starts)."""
    cues = []
    for i, (seg, start) in enumerate(zip(segments, starts)):
        end = starts[i + 1] if i + 1 < len(segments) else total
        cues += shot_cues(list(seg.dialogue), (start - seg.start_frame) / FPS, seg.total_frames / FPS,
                          visible=((start + seg.transition_frames) / FPS, end / FPS))
    return without_overlaps(cues)


def sidecar(final: Path, suffix: str) -> Path:
    return final.with_name(final.stem + suffix)


def assemble(segments: list[Segment], final: Path, settings: AssemblySettings,
             workdir: Path, tags: dict[str, str] | None = None) -> AssemblyResult:
    """Write `final` (plus .srt/.vtt/.chapters.txt beside it) from the segments in cut order."""
    if not segments:
        raise ValueError("nothing to assemble")
    starts, total = segment_starts(segments)
    workdir.mkdir(parents=True, exist_ok=True)
    samples = programme_audio(segments, settings)
    assert samples.shape[0] == total * SAMPLES_PER_FRAME, "programme audio drifted from video"
    loudness = None
    if settings.loudness_lufs is not None:
        samples, loudness = normalize_loudness(samples, settings)
    track = workdir / "programme.m4a"
    delivered = deliver_audio(samples, track, settings)
    if loudness is not None:  # what the meter reads on the delivered file, not the estimate
        loudness = {"target_i": settings.loudness_lufs, "true_peak_limit": TRUE_PEAK_LIMIT_DBTP,
                    "normaliser": loudness, **(delivered or {}),
                    **({"skipped": loudness["skipped"]} if "skipped" in loudness else {})}
    result = AssemblyResult(final, total, int(samples.shape[0]), starts, loudness=loudness)
    if settings.subtitles:
        result.cues = timeline_cues(segments, starts, total)
        result.srt, result.vtt = sidecar(final, ".srt"), sidecar(final, ".vtt")
        write_text_atomic(result.srt, to_srt(result.cues))
        write_text_atomic(result.vtt, to_webvtt(result.cues))
    if settings.chapters:
        bounds = starts[1:] + [total]
        result.chapters = sidecar(final, ".chapters.txt")
        write_text_atomic(result.chapters, chapters_ffmetadata(
            [(s / FPS, e / FPS, seg.title or seg.shot_id) for seg, s, e in zip(segments, starts, bounds)]))
    encode(segments, track, final, settings, total,
           srt=result.srt if result.cues else None, chapters=result.chapters, tags=tags)
    return result
