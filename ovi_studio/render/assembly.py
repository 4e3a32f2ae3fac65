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
segment with the start of the next — and each piece is encoded on its own (one ffmpeg process,
at most two lossless inputs: trim by frame number, retime to exact frame indices, scale/pad to
the cut's size, crossfade, libx264). An x264 encode starts with an IDR frame and its GOPs are
closed, so the pieces join losslessly: the concat demuxer copies them, in order, into the
delivered file with the audio track, mov_text subtitles and chapters. So memory does not grow
with the number of shots, every frame is encoded lossy exactly once, and a piece's file is kept
under its content key (its takes' frames, the frames used, size, encoder settings): a
re-assembly after a pick or a transition change encodes only the pieces that changed.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.fingerprint import stat_cache
from ovi_studio.counting import CountProgress
from ovi_studio.media import audio, ffmpeg
from ovi_studio.render.artifacts import atomic_target, write_text_atomic
from ovi_studio.render.subtitles import (Cue, chapters_ffmetadata, shot_cues, to_srt, to_webvtt,
                                         without_overlaps)
from ovi_studio.media.rates import FPS, SAMPLES_PER_FRAME
from ovi_studio.media.rates import CUT_AUDIO_RATE as SAMPLE_RATE

SILENT_LUFS = -70.0  # below this, loudnorm has nothing to measure (EBU R128 absolute gate)
LOSSLESS_PIX_FMT = "gbrp"  # the takes' planar RGB, which the cut converts to yuv420p once
PIECE_FORMAT = 1  # in every piece's key: raise it when the way a piece is encoded changes
SUMMARY_NAMES = 8  # encoded pieces the log names before "..."


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
    pieces: list["PieceOutcome"] = field(default_factory=list)  # the video, piece by piece

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


def piece_graph(segments: list[Segment], piece: Piece, width: int, height: int) -> str:
    """Filter graph from the piece's inputs (0, and 1 for a crossfade) to [vout]: trimmed by
    frame number, retimed to exact frame indices, fitted to the cut's size, crossfaded, and
    converted to BT.709 limited-range yuv420p once, from planar RGB. The frames carry their
    colour tags (the encoder writes what the frames say, not its own options)."""
    retime = f"settb=1/{FPS},setpts=N"  # pts = frame index
    chains = []
    for k, (index, start, stop) in enumerate(piece.parts):
        seg = segments[index]
        fit = ""
        if (seg.width, seg.height) != (width, height):
            fit = (f",scale={width}:{height}:force_original_aspect_ratio=decrease,"
                   f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2")
        chains.append(f"[{k}:v]trim=start_frame={start}:end_frame={stop},{retime}{fit},setsar=1[i{k}]")
    mix = "[i0]"
    if len(piece.parts) == 2:
        mix = f"[i0][i1]xfade=transition=fade:duration={piece.frames / FPS:.6f}:offset=0,{retime},"
    chains.append(f"{mix}format={LOSSLESS_PIX_FMT},scale=out_color_matrix=bt709:out_range=tv,"
                  "format=yuv420p,setparams=color_primaries=bt709:color_trc=bt709[vout]")
    return ";".join(chains)


def piece_key(segments: list[Segment], piece: Piece, width: int, height: int,
              settings: AssemblySettings) -> str:
    """What a piece's encoded file depends on, hashed: its takes' frames (content), the frames
    it uses, the cut's size, the encoder and its settings. Not its place in the cut (frames
    are timed from 0 in every piece), so a piece that moves is reused too."""
    parts = [{"frames_sha256": stat_cache().sha256(segments[index].frames_path),
              "size": [segments[index].width, segments[index].height], "start": start, "stop": stop}
             for index, start, stop in piece.parts]
    return hashlib.sha256(json.dumps({
        "format": PIECE_FORMAT, "ffmpeg": ffmpeg.version(), "cut_size": [width, height],
        "crf": settings.crf, "preset": settings.preset, "parts": parts}, sort_keys=True).encode()).hexdigest()


def _piece_command(segments: list[Segment], piece: Piece, width: int, height: int,
                   settings: AssemblySettings, out: Path) -> list[str]:
    inputs: list[str | Path] = []
    for index, _, _ in piece.parts:
        inputs += ["-i", segments[index].frames_path]
    return ffmpeg.command(
        *inputs, "-filter_complex", piece_graph(segments, piece, width, height), "-map", "[vout]",
        "-frames:v", str(piece.frames), "-c:v", "libx264", "-preset", settings.preset,
        "-crf", str(settings.crf), "-pix_fmt", "yuv420p", "-r", str(FPS), "-fps_mode", "cfr",
        "-an", "-f", "mp4", out)


@dataclass(frozen=True)
class PieceOutcome:
    """One piece of the delivered cut: its shots (two for a crossfade), its frames, the key of
    its encoded file, and whether that file was kept from an earlier assembly."""
    shots: tuple[str, ...]
    frames: int
    key: str
    reused: bool

    @property
    def label(self) -> str:
        return " -> ".join(self.shots)


# Called as the video encode goes: (frames encoded, frames to encode, shots of the cut passed,
# shots in the cut). Reused pieces pass shots without encoding frames.
EncodeListener = Callable[[int, int, int, int], None]


def _shots_passed(pieces: list[Piece]) -> list[int]:
    """After each piece, how many shots have all their frames in pieces up to it."""
    last = {}
    for p, piece in enumerate(pieces):
        for index, _, _ in piece.parts:
            last[index] = p
    counts = [0] * len(pieces)
    for p in last.values():
        counts[p] += 1
    return list(itertools.accumulate(counts))


def encode_pieces(segments: list[Segment], settings: AssemblySettings, folder: Path,
                  on_progress: EncodeListener | None = None) -> list[tuple[Path, PieceOutcome]]:
    """Every piece of the cut as its own H.264 file in `folder`, named by its key; a piece
    whose file is already there (an earlier assembly's) is reused, not encoded again."""
    width, height = segments[0].width, segments[0].height
    pieces = cut_pieces(segments)
    keys = [piece_key(segments, piece, width, height, settings) for piece in pieces]
    missing = {key: piece.frames for piece, key in zip(pieces, keys)
               if not (folder / f"{key}.mp4").is_file()}
    to_encode, encoded = sum(missing.values()), 0
    report = on_progress or (lambda *_: None)
    report(0, to_encode, 0, len(segments))
    done: list[tuple[Path, PieceOutcome]] = []
    passed_before = 0
    for piece, key, passed in zip(pieces, keys, _shots_passed(pieces)):
        path = folder / f"{key}.mp4"
        reused = path.is_file()
        if not reused:
            with atomic_target(path) as tmp:
                ffmpeg.run_reporting(
                    _piece_command(segments, piece, width, height, settings, tmp),
                    lambda n, base=encoded, shots=passed_before: report(base + n, to_encode, shots,
                                                                         len(segments)))
            encoded += piece.frames
        report(encoded, to_encode, passed, len(segments))
        passed_before = passed
        done.append((path, PieceOutcome(tuple(segments[index].shot_id for index, _, _ in piece.parts),
                                        piece.frames, key, reused)))
    return done


def _concat_list(paths: list[Path], listing: Path) -> None:
    """An ffconcat file naming `paths` in order (quoted: any character may be in a path)."""
    quoted = ("'" + os.path.abspath(path).replace("'", "'\\''") + "'" for path in paths)
    listing.write_text("ffconcat version 1.0\n" + "".join(f"file {q}\n" for q in quoted),
                       encoding="utf-8")


def mux(pieces: list[Path], audio_track: Path, out: Path, workdir: Path, srt: Path | None = None,
        chapters: Path | None = None, tags: dict[str, str] | None = None) -> None:
    """The delivered file: the encoded pieces joined as they are (each starts with a keyframe
    and refers to no frame outside it, so the join needs no re-encode), with the audio track,
    subtitles, chapters and tags."""
    listing = workdir / "pieces.ffconcat"
    _concat_list(pieces, listing)
    args: list[str | Path] = ["-f", "concat", "-safe", "0", "-i", listing, "-i", audio_track]
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
    with atomic_target(out) as tmp:
        ffmpeg.run(ffmpeg.command(*args, *maps, "-c:v", "copy", "-c:a", "copy",
                                  "-movflags", "+faststart+use_metadata_tags", "-f", "mp4", tmp))


def forget_other_pieces(folder: Path, kept: list[PieceOutcome]) -> None:
    """Remove the encoded pieces the cut no longer uses, so the folder holds one cut's worth."""
    keys = {piece.key for piece in kept}
    for path in folder.glob("*.mp4"):
        if path.stem not in keys:
            path.unlink(missing_ok=True)


def reuse_summary(pieces: list[PieceOutcome]) -> str:
    """What the video encode did, for the log: which pieces were encoded, how many reused."""
    encoded = [piece.label for piece in pieces if not piece.reused]
    if len(encoded) == len(pieces):
        return f"encoded all {len(pieces)} piece(s) of the cut"
    shown = ", ".join(encoded[:SUMMARY_NAMES]) + (", ..." if len(encoded) > SUMMARY_NAMES else "")
    return (f"reused {len(pieces) - len(encoded)} of {len(pieces)} encoded piece(s) of the cut"
            + (f"; encoded {len(encoded)}: {shown}" if encoded else "; encoded none"))


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
             workdir: Path, tags: dict[str, str] | None = None, piece_cache: Path | None = None,
             on_progress: EncodeListener | None = None) -> AssemblyResult:
    """Write `final` (plus .srt/.vtt/.chapters.txt beside it) from the segments in cut order.
    `piece_cache`: where the encoded pieces are kept for the next assembly to reuse (it then
    holds this cut's pieces only); None encodes every piece into `workdir`."""
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
    encoded = encode_pieces(segments, settings, piece_cache or workdir / "pieces", on_progress)
    result.pieces = [outcome for _, outcome in encoded]
    mux([path for path, _ in encoded], track, final, workdir,
        srt=result.srt if result.cues else None, chapters=result.chapters, tags=tags)
    if piece_cache is not None:
        forget_other_pieces(piece_cache, result.pieces)
    return result
