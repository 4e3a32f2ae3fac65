"""Assembly: the final cut, encoded once from lossless intermediates.

Audio is built as one 48 kHz programme where every edit is sample-exact: at 24 fps one frame is
exactly 2000 samples, so each segment's audio is made exactly (kept frames x 2000) samples long
and no drift can accumulate however many shots there are. Cuts get short de-click ramps; a
crossfade is an equal-power overlap of the same length as the video `xfade` (what `acrossfade`
would do, without its rounding to audio frames). The programme is written to disk in one pass,
one segment in memory at a time. Loudness is normalised in two `loudnorm` passes over the
whole programme file (never per clip, which eats the boundaries), then the delivered stereo AAC
track is measured and, if need be, corrected once.

Video is cut into pieces — a run of one segment's frames, or a crossfade of the end of one
segment with the start of the next — and the pieces go through ffmpeg in groups of at most
GROUP_INPUTS lossless inputs: each group trims by frame number, retimes to exact frame indices,
scales/pads to the cut's size, crossfades and concatenates, and streams raw RGB frames into the
one final encoder (libx264, muxing the audio track, mov_text subtitles and chapters). So memory
does not grow with the number of shots, and every frame is encoded lossy exactly once.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ovi_studio.media import audio, ffmpeg
from ovi_studio.render.artifacts import atomic_target, write_text_atomic
from ovi_studio.counting import CountProgress
from ovi_studio.render.subtitles import (Cue, chapters_ffmetadata, shot_cues, to_srt, to_webvtt,
                                         without_overlaps)

FPS = 24
SAMPLE_RATE = 48_000
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 2000
SILENT_LUFS = -70.0  # below this, loudnorm has nothing to measure (EBU R128 absolute gate)
# Lossless inputs one ffmpeg process decodes at a time (each costs a demuxer, a decoder and its
# frame buffers): the bound on assembly memory, whatever the number of shots.
GROUP_INPUTS = 8
RAW_PIX_FMT = "gbrp"  # planar RGB between the group decoders and the final encoder: lossless


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
        if overlap + _outgoing(segments, i) > seg.kept_frames:
            raise ValueError(f"shot {seg.shot_id}: its crossfades in and out overlap (the shot "
                             f"keeps {seg.kept_frames} frames)")
        t -= overlap
        starts.append(t)
        t += seg.kept_frames
    return starts, t


def _outgoing(segments: list[Segment], i: int) -> int:
    """Frames of segment i that the next segment crossfades over."""
    return segments[i + 1].transition_frames if i + 1 < len(segments) else 0


def segment_audio(seg: Segment) -> np.ndarray:
    """The segment's audio at 48 kHz, exactly kept_frames x 2000 samples."""
    samples, rate = audio.read_wav(seg.audio_path)
    full = audio.fit_length(audio.resample(samples, rate, SAMPLE_RATE),
                            seg.total_frames * SAMPLES_PER_FRAME)
    return full[seg.start_frame * SAMPLES_PER_FRAME:seg.stop * SAMPLES_PER_FRAME]


def write_programme_audio(segments: list[Segment], settings: AssemblySettings, path: Path) -> int:
    """Write the programme audio in one pass, holding one segment (and the end of the previous
    one, under a crossfade) at a time; returns its length in samples."""
    declick = round(settings.declick_ms * SAMPLE_RATE / 1000)
    held = np.zeros(0, np.float32)  # the previous segment's end, which this one fades over
    progress = CountProgress("assembly: programme audio", len(segments))
    with audio.WavWriter(path, SAMPLE_RATE) as out:
        for i, seg in enumerate(segments):
            progress.advance()
            overlap = seg.transition_frames * SAMPLES_PER_FRAME if i else 0
            outgoing = _outgoing(segments, i) * SAMPLES_PER_FRAME
            clip = audio.fade_edges(segment_audio(seg), 0 if overlap else declick,
                                    0 if outgoing else declick)
            if overlap:
                out.write(audio.equal_power_overlap(held, clip[:overlap]))
            out.write(clip[overlap:len(clip) - outgoing])
            held = clip[len(clip) - outgoing:]
        return out.samples


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


def normalize_loudness(programme: Path, samples: int, settings: AssemblySettings,
                       out: Path) -> dict:
    """Two-pass EBU R128 normalisation of the programme file into `out`, exactly `samples`
    long. A silent programme is not written (the result says "skipped")."""
    src = ["-i", programme]
    first = ffmpeg.run(ffmpeg.command(*src, "-af", _loudnorm_filter(settings, None), "-f", "null", "-"))
    measured = _loudnorm_json(first.stderr.decode(errors="replace"))
    input_i = float(measured["input_i"])
    if not np.isfinite(input_i) or input_i < SILENT_LUFS:
        return {"skipped": "silent programme", "input_i": measured["input_i"]}
    exact = f"aresample={SAMPLE_RATE},apad=whole_len={samples},atrim=end_sample={samples}"
    second = ffmpeg.run(ffmpeg.command(*src, "-af", f"{_loudnorm_filter(settings, measured)},{exact}",
                                       "-c:a", "pcm_f32le", "-f", "wav", out))
    result = _loudnorm_json(second.stderr.decode(errors="replace"))
    return {"target_i": settings.loudness_lufs, "input_i": input_i,
            "output_i": float(result["output_i"]), "output_tp": float(result["output_tp"]),
            "normalization_type": result.get("normalization_type")}


DELIVERY_CHANNELS = 2  # stereo: what players, platforms and meters expect of a film's mix
LOUDNESS_TOLERANCE_LU = 0.3  # delivered loudness is corrected once when further off than this
TRUE_PEAK_LIMIT_DBTP = -1.0  # measured on the delivered file


def encode_audio(programme: Path, out: Path, settings: AssemblySettings, gain_db: float = 0.0) -> None:
    """The delivered audio track: the mono programme file on both channels of a stereo AAC
    stream, 48 kHz at the configured bitrate (with a gain, for the one correction); the cut
    copies it as it is."""
    gain = ["-af", f"volume={gain_db:.6f}dB"] if gain_db else []
    with atomic_target(out) as tmp:
        ffmpeg.run(ffmpeg.command(
            "-i", programme, *gain, "-ac", str(DELIVERY_CHANNELS), "-c:a", "aac",
            "-b:a", settings.audio_bitrate, "-ar", str(SAMPLE_RATE), "-f", "mp4", tmp))


def deliver_audio(programme: Path, out: Path, settings: AssemblySettings) -> dict | None:
    """Encode the delivered audio and, when a loudness target is set, make ffmpeg's ebur128
    meter read the target on that very file: the AAC encode and the stereo layout move the
    reading a little from the normaliser's estimate, so one gain correction (held under the
    true-peak limit) follows when it is off by more than the tolerance. Returns what the meter
    reads on the delivered stream."""
    encode_audio(programme, out, settings)
    if settings.loudness_lufs is None:
        return None
    measured = audio.measure_loudness(out)
    gain = settings.loudness_lufs - measured["integrated_lufs"]
    if np.isfinite(gain) and measured["integrated_lufs"] > SILENT_LUFS and abs(gain) > LOUDNESS_TOLERANCE_LU:
        gain = min(gain, TRUE_PEAK_LIMIT_DBTP - 0.2 - measured["true_peak_dbtp"])
        encode_audio(programme, out, settings, gain)
        measured = {**audio.measure_loudness(out), "corrected_by_db": round(gain, 3)}
    return measured


@dataclass(frozen=True)
class Piece:
    """A run of the cut's frames from one place: frames [start, stop) of one segment, or — two
    parts of one length — the end of a segment crossfading into the start of the next."""
    parts: tuple[tuple[int, int, int], ...]  # (segment index, start frame, stop frame)

    @property
    def frames(self) -> int:
        _, start, stop = self.parts[0]
        return stop - start


def cut_pieces(segments: list[Segment]) -> list[Piece]:
    """The cut as consecutive pieces (their frames add up to segment_starts' length)."""
    pieces = []
    for i, seg in enumerate(segments):
        fade_in = seg.transition_frames if i else 0
        if fade_in:
            before = segments[i - 1]
            pieces.append(Piece(((i - 1, before.stop - fade_in, before.stop),
                                 (i, seg.start_frame, seg.start_frame + fade_in))))
        start, stop = seg.start_frame + fade_in, seg.stop - _outgoing(segments, i)
        if stop > start:
            pieces.append(Piece(((i, start, stop),)))
    return pieces


def piece_groups(pieces: list[Piece]) -> list[list[Piece]]:
    """Consecutive pieces, at most GROUP_INPUTS inputs (piece parts) per group."""
    groups: list[list[Piece]] = [[]]
    used = 0
    for piece in pieces:
        if groups[-1] and used + len(piece.parts) > GROUP_INPUTS:
            groups.append([])
            used = 0
        groups[-1].append(piece)
        used += len(piece.parts)
    return groups


def group_graph(segments: list[Segment], pieces: list[Piece], width: int, height: int) -> str:
    """Filter graph from inputs 0..K-1 (the pieces' parts, in order) to [vout]."""
    retime = f"settb=1/{FPS},setpts=N"  # pts = frame index
    chains, labels, k = [], [], 0
    for p, piece in enumerate(pieces):
        parts = []
        for index, start, stop in piece.parts:
            seg = segments[index]
            fit = ""
            if (seg.width, seg.height) != (width, height):
                fit = (f",scale={width}:{height}:force_original_aspect_ratio=decrease,"
                       f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2")
            chains.append(f"[{k}:v]trim=start_frame={start}:end_frame={stop},{retime}{fit},setsar=1[i{k}]")
            parts.append(f"[i{k}]")
            k += 1
        if len(parts) == 2:
            chains.append(f"{parts[0]}{parts[1]}xfade=transition=fade:duration={piece.frames / FPS:.6f}"
                          f":offset=0,{retime}[p{p}]")
            labels.append(f"[p{p}]")
        else:
            labels.append(parts[0])
    if len(labels) == 1:
        chains.append(f"{labels[0]}null[vout]")
    else:
        chains.append(f"{''.join(labels)}concat=n={len(labels)}:v=1:a=0,{retime}[vout]")
    return ";".join(chains)


def _group_command(segments: list[Segment], pieces: list[Piece], width: int, height: int) -> list[str]:
    inputs: list[str | Path] = []
    for piece in pieces:
        for index, _, _ in piece.parts:
            inputs += ["-i", segments[index].frames_path]
    return ffmpeg.command(*inputs, "-filter_complex", group_graph(segments, pieces, width, height),
                          "-map", "[vout]", "-frames:v", str(sum(p.frames for p in pieces)),
                          "-f", "rawvideo", "-pix_fmt", RAW_PIX_FMT, "pipe:1")


def encode(segments: list[Segment], audio_track: Path, out: Path, settings: AssemblySettings,
           total_frames: int, srt: Path | None = None, chapters: Path | None = None,
           tags: dict[str, str] | None = None) -> None:
    """The one lossy video encode: the groups' raw frames, streamed in order, muxed with the
    delivered audio track (copied)."""
    width, height = segments[0].width, segments[0].height
    args: list[str | Path] = ["-f", "rawvideo", "-pix_fmt", RAW_PIX_FMT, "-s", f"{width}x{height}",
                              "-framerate", str(FPS), "-i", "pipe:0", "-i", audio_track]
    maps = ["-map", "0:v", "-map", "1:a"]
    if srt:
        args += ["-i", srt]
        maps += ["-map", "2:s", "-c:s", "mov_text"]
    if chapters:
        meta_idx = 2 + (1 if srt else 0)
        args += ["-f", "ffmetadata", "-i", chapters]
        maps += ["-map_metadata", str(meta_idx), "-map_chapters", str(meta_idx)]
    for key, value in (tags or {}).items():  # provenance that survives moving the file
        maps += ["-metadata", f"{key}={value}"]
    groups = piece_groups(cut_pieces(segments))
    with atomic_target(out) as tmp:
        ffmpeg.stream_into(
            (_group_command(segments, group, width, height) for group in groups),
            ffmpeg.command(
                *args, "-vf", "scale=out_color_matrix=bt709:out_range=tv,format=yuv420p", *maps,
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
    programme = workdir / "programme.wav"
    samples = write_programme_audio(segments, settings, programme)
    assert samples == total * SAMPLES_PER_FRAME, "programme audio drifted from video"
    loudness = None
    if settings.loudness_lufs is not None:
        normalised = workdir / "programme-normalised.wav"
        loudness = normalize_loudness(programme, samples, settings, normalised)
        if "skipped" not in loudness:
            programme = normalised
    track = workdir / "programme.m4a"
    delivered = deliver_audio(programme, track, settings)
    if loudness is not None:  # what the meter reads on the delivered file, not the estimate
        loudness = {"target_i": settings.loudness_lufs, "true_peak_limit": TRUE_PEAK_LIMIT_DBTP,
                    "normaliser": loudness, **(delivered or {}),
                    **({"skipped": loudness["skipped"]} if "skipped" in loudness else {})}
    result = AssemblyResult(final, total, samples, starts, loudness=loudness)
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
