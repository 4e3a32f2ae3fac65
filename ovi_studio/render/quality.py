"""Quality checks of takes and of the assembled cut.

Each check measures one thing with ffmpeg's own meters or plain numpy and compares it with a
threshold from the storyboard's `qc:` section (`QcThresholds`):

* durations  — a take has the planned frame count; the cut has the assembled frame count
* av_sync    — audio and video streams start together and are equally long (within a tolerance)
* loudness   — integrated loudness of the cut (EBU R128, ffmpeg `ebur128`) near the target
* true_peak  — the cut's true peak (`ebur128=peak=true`) at or below the ceiling
* speech     — a take whose prompt asks for speech (`<S>…<E>`) has voiced audio, not silence
* black      — no black stretch (ffmpeg `blackdetect`)
* frozen     — no frozen stretch (ffmpeg `freezedetect`); skipped for the preview engine,
               whose animatic is still cards by design
* seam       — an extension's first kept frame continues its parent's seed frame: the jump in
               mean CIE Lab colour (delta E 1976) and in lightness is small
* clipping   — few samples at or beyond full scale

A check passes, fails (with the measured value, the limit and a sentence saying what is wrong
where) or is skipped (with the reason). The speech check is an energy detector in the voice band:
it catches silence where dialogue was asked for, not the wrong words.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ovi_studio.media import audio, ffmpeg, probe
from ovi_studio.render.continuity import srgb_to_lab
from ovi_studio.storyboard import QcThresholds
from ovi_studio.take_choice import FAIL, PASS, QC_FILE, SKIP, Check, draws_stills, qc_key, stored_checks
from ovi_studio.media.rates import FPS

CHECKS = ("durations", "av_sync", "loudness", "true_peak", "speech", "black", "frozen", "seam",
          "clipping")
_FULL_SCALE = 0.999  # a sample this close to 1.0 counts as clipped
_SPEECH_BAND_HZ = (300.0, 3400.0)  # telephone band: where voices carry their energy
_WINDOW_S = 0.03  # speech-detector analysis window


def _judge(name: str, ok: bool, value: float | None, limit: float | None, good: str, bad: str) -> Check:
    return Check(name, PASS if ok else FAIL, good if ok else bad, value, limit)


# -- measurements ----------------------------------------------------------------------------

@dataclass(frozen=True)
class VideoScan:
    frames: int
    black: list[tuple[float, float]]  # (start s, duration s)
    frozen: list[tuple[float, float]]


_BLACK = re.compile(r"black_start:([\d.]+) black_end:([\d.]+) black_duration:([\d.]+)")
_FREEZE_START = re.compile(r"freeze_start: ([\d.]+)")
_FREEZE_DURATION = re.compile(r"freeze_duration: ([\d.]+)")


def scan_video(path: Path, th: QcThresholds, frozen: bool = True) -> VideoScan:
    """One decode of the video stream: frame count, black and frozen stretches."""
    filters = [f"blackdetect=d={th.black_min_s}:pix_th={th.black_pixel_threshold}"]
    if frozen:
        filters.append(f"freezedetect=n={th.freeze_noise_db}dB:d={th.freeze_min_s}")
    proc = ffmpeg.run(ffmpeg.command("-i", path, "-map", "0:v:0", "-vf", ",".join(filters),
                                     "-f", "framecrc", "pipe:1"))
    text = proc.stderr.decode(errors="replace")
    frames = sum(1 for line in proc.stdout.decode().splitlines() if line and not line.startswith("#"))
    black = [(float(m[1]), float(m[3])) for m in _BLACK.finditer(text)]
    starts = [float(m[1]) for m in _FREEZE_START.finditer(text)]
    durations = [float(m[1]) for m in _FREEZE_DURATION.finditer(text)]
    if len(starts) > len(durations):  # frozen up to the end: ffmpeg prints no duration
        durations.append(frames / FPS - starts[-1])
    return VideoScan(frames, black, list(zip(starts, durations)))


def measure_loudness(path: Path, mono: bool) -> tuple[float, float]:
    """(integrated loudness LUFS, true peak dBTP) of the first audio stream. A mono programme is
    measured as dual mono (it plays on two speakers)."""
    measured = audio.measure_loudness(path, dual_mono=mono)
    return measured["integrated_lufs"], measured["true_peak_dbtp"]


_PTS_TIME = re.compile(r"pts_time:(-?[\d.]+)")


def stream_start(path: Path, kind: str) -> float:
    """Presentation time of the first decoded frame of the first `kind` stream ("v" | "a")."""
    show = "showinfo" if kind == "v" else "ashowinfo"
    proc = ffmpeg.run(ffmpeg.command("-copyts", "-i", path, "-map", f"0:{kind}:0",
                                     f"-frames:{kind}", "1", "-af" if kind == "a" else "-vf", show, "-f", "null", "-"))
    found = _PTS_TIME.search(proc.stderr.decode(errors="replace"))
    return float(found[1]) if found else 0.0


def frames_at(path: Path, width: int, height: int, indices: list[int]) -> dict[int, np.ndarray]:
    """Decode the frames with the given indices (uint8 RGB) in one pass."""
    if not indices:
        return {}
    wanted = sorted(set(indices))
    select = "select='" + "+".join(f"eq(n\\,{i})" for i in wanted) + "'"
    args = ffmpeg.command("-i", path, "-map", "0:v:0", "-vf", select, "-fps_mode", "passthrough",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1")
    data = ffmpeg.run(args).stdout
    size = width * height * 3
    frames = [np.frombuffer(data[k * size:(k + 1) * size], np.uint8).reshape(height, width, 3)
              for k in range(len(data) // size)]
    return dict(zip(wanted, frames))


def voiced_seconds(samples: np.ndarray, rate: int, floor_db: float) -> float:
    """Seconds of audio whose voice-band level is above `floor_db` dBFS."""
    window = max(1, int(rate * _WINDOW_S))
    count = samples.shape[0] // window
    if count == 0:
        return 0.0
    blocks = samples[:count * window].reshape(count, window).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(blocks * np.hanning(window), axis=1)) ** 2
    freqs = np.fft.rfftfreq(window, 1.0 / rate)
    band = (freqs >= _SPEECH_BAND_HZ[0]) & (freqs <= _SPEECH_BAND_HZ[1])
    # Parseval: band power as a mean square of the (windowed) signal
    power = 2 * spectrum[:, band].sum(axis=1) / (window * (np.hanning(window) ** 2).sum())
    level = 10 * np.log10(np.maximum(power, 1e-20))
    return float((level > floor_db).sum() * window / rate)


def clipped_fraction(samples: np.ndarray) -> float:
    return clipped_samples(samples) / samples.size if samples.size else 0.0


def clipped_samples(samples: np.ndarray) -> int:
    return int(np.count_nonzero(np.abs(samples) >= _FULL_SCALE))


def seam_jump(before: np.ndarray, after: np.ndarray) -> tuple[float, float]:
    """(delta E 1976 of the mean Lab colours, lightness difference) between two frames."""
    a = srgb_to_lab(before[::2, ::2]).reshape(-1, 3).mean(0)
    b = srgb_to_lab(after[::2, ::2]).reshape(-1, 3).mean(0)
    return float(np.linalg.norm(a - b)), float(b[0] - a[0])


# -- checks ----------------------------------------------------------------------------------

def _stretch_check(name: str, stretches: list[tuple[float, float]], minimum: float, what: str) -> Check:
    if not stretches:
        return Check(name, PASS, f"no {what} stretch of {minimum:g} s or more", 0.0, minimum)
    longest = max(stretches, key=lambda s: s[1])
    where = ", ".join(f"{d:.2f} s from {s:.2f} s" for s, d in stretches)
    return Check(name, FAIL, f"{what}: {where}", longest[1], minimum)


def _av_check(video_s: float, audio_s: float, offset_s: float | None, tolerance_ms: float) -> Check:
    """`offset_s`: where the audio stream starts relative to the video (None: a take's files,
    which both start at 0)."""
    end_gap = ((offset_s or 0.0) + audio_s - video_s) * 1000
    worst = max(abs((offset_s or 0.0) * 1000), abs(end_gap))
    lengths = f"video {video_s:.3f} s, audio {audio_s:.3f} s"
    detail = (f"{lengths}: audio {end_gap:+.1f} ms longer" if offset_s is None else
              f"audio starts {offset_s * 1000:+.1f} ms after video and ends {end_gap:+.1f} ms "
              f"after it ({lengths})")
    return _judge("av_sync", worst <= tolerance_ms, worst, tolerance_ms, detail, detail)


def _seam_check(pair: tuple[np.ndarray, np.ndarray] | None, th: QcThresholds, where: str) -> Check:
    if pair is None:
        return Check("seam", SKIP, "not an extension")
    delta_e, delta_l = seam_jump(*pair)
    detail = f"{where}: colour jump delta E {delta_e:.1f}, lightness {delta_l:+.1f}"
    return _judge("seam", delta_e <= th.seam_max_delta_e, delta_e, th.seam_max_delta_e, detail, detail)


def _audio_checks(samples: np.ndarray, rate: int, speech: list[str], th: QcThresholds) -> list[Check]:
    clipped = clipped_fraction(samples)
    checks = [_judge("clipping", clipped <= th.clip_max_fraction, clipped, th.clip_max_fraction,
                     f"{clipped:.3%} of samples at full scale",
                     f"{clipped:.3%} of samples at full scale (clipped audio)")]
    if not speech:
        checks.append(Check("speech", SKIP, "the prompt asks for no speech"))
    else:
        voiced = voiced_seconds(samples, rate, th.speech_floor_db)
        checks.append(_judge(
            "speech", voiced >= th.speech_min_s, voiced, th.speech_min_s,
            f"{voiced:.2f} s of voiced audio for {len(speech)} line(s)",
            f"silence where dialogue was asked for: {voiced:.2f} s above {th.speech_floor_db:g} dBFS "
            f"in the voice band (asked: {'; '.join(speech)[:80]})"))
    return checks


@dataclass(frozen=True)
class TakeFacts:
    """What the take checks look at: the lossless frames and audio of one take."""
    frames_path: Path
    audio_path: Path
    planned_frames: int
    speech: list[str]  # the spoken lines the prompt asks for
    still_frames: bool  # the engine renders stills by design (the preview): no freeze check
    seam: tuple[np.ndarray, np.ndarray] | None = None  # (parent's seed frame, first kept frame)


def check_take(facts: TakeFacts, th: QcThresholds) -> list[Check]:
    from ovi_studio.media import audio as audio_io
    scan = scan_video(facts.frames_path, th, frozen=not facts.still_frames)
    samples, rate = audio_io.read_wav(facts.audio_path)
    checks = [
        _judge("durations", scan.frames == facts.planned_frames, scan.frames, facts.planned_frames,
               f"{scan.frames} frames as planned",
               f"{scan.frames} frames; the plan asked for {facts.planned_frames}"),
        _av_check(scan.frames / FPS, samples.shape[0] / rate, None, th.take_av_tolerance_ms),
        _stretch_check("black", scan.black, th.black_min_s, "black"),
        (Check("frozen", SKIP, "the preview engine renders still cards") if facts.still_frames
         else _stretch_check("frozen", scan.frozen, th.freeze_min_s, "frozen")),
        _seam_check(facts.seam, th, "parent's seed frame -> first kept frame"),
        *_audio_checks(samples, rate, facts.speech, th),
    ]
    return _ordered(checks)


@dataclass(frozen=True)
class CutFacts:
    path: Path
    width: int
    height: int
    frames: int  # what the assembly laid out
    seams: list[tuple[str, int]]  # (extension shot id, first frame of the extension in the cut)
    loudness_target: float | None  # None: not normalised
    still_frames: bool


def check_cut(facts: CutFacts, th: QcThresholds) -> list[Check]:
    scan = scan_video(facts.path, th, frozen=not facts.still_frames)
    info = probe.probe(facts.path)
    stream = info.first("audio")
    samples = clipped = 0  # block by block: a feature's audio is hundreds of MB as float
    for block in probe.audio_blocks(facts.path):
        samples, clipped = samples + block.size, clipped + clipped_samples(block)
    clipped_share = clipped / samples if samples else 0.0
    rate = stream.sample_rate if stream and stream.sample_rate else 48_000
    offset = stream_start(facts.path, "a") - stream_start(facts.path, "v")
    loud, peak = measure_loudness(facts.path, mono=bool(stream and stream.channels == "mono"))
    checks = [
        _judge("durations", scan.frames == facts.frames, scan.frames, facts.frames,
               f"{scan.frames} frames as assembled", f"{scan.frames} frames; the cut has {facts.frames}"),
        _av_check(scan.frames / FPS, samples / rate, offset, th.av_tolerance_ms),
        _loudness_check(loud, facts.loudness_target, th),
        _judge("true_peak", peak <= th.true_peak_max_db, peak, th.true_peak_max_db,
               f"true peak {peak:.1f} dBTP", f"true peak {peak:.1f} dBTP is above {th.true_peak_max_db:g}"),
        _stretch_check("black", scan.black, th.black_min_s, "black"),
        (Check("frozen", SKIP, "the preview engine renders still cards") if facts.still_frames
         else _stretch_check("frozen", scan.frozen, th.freeze_min_s, "frozen")),
        *_cut_seams(facts, th),
        _judge("clipping", clipped_share <= th.clip_max_fraction, clipped_share,
               th.clip_max_fraction, "no clipped audio", "clipped audio"),
    ]
    return _ordered(checks)


def _loudness_check(loud: float, target: float | None, th: QcThresholds) -> Check:
    if target is None:
        return Check("loudness", SKIP, f"integrated {loud:.1f} LUFS; no loudness target (output.loudness: off)", loud)
    diff = loud - target
    detail = f"integrated {loud:.1f} LUFS, target {target:g} ({diff:+.1f} LU)"
    return _judge("loudness", abs(diff) <= th.loudness_tolerance_lu, loud, target, detail,
                  detail + f", more than {th.loudness_tolerance_lu:g} LU off")


def _cut_seams(facts: CutFacts, th: QcThresholds) -> list[Check]:
    if not facts.seams:
        return [Check("seam", SKIP, "no extension seams in the cut")]
    frames = frames_at(facts.path, facts.width, facts.height,
                       [i for _, start in facts.seams for i in (start - 1, start)])
    checks = []
    for shot, start in facts.seams:
        pair = (frames[start - 1], frames[start]) if start - 1 in frames and start in frames else None
        checks.append(_seam_check(pair, th, f"seam into {shot} at frame {start}")
                      if pair else Check("seam", FAIL, f"seam into {shot}: frame {start} is not in the cut"))
    worst = max(checks, key=lambda c: (c.status == FAIL, c.value or 0.0))
    return [worst]


def _ordered(checks: list[Check]) -> list[Check]:
    return sorted(checks, key=lambda c: CHECKS.index(c.name))


# -- verdicts --------------------------------------------------------------------------------

def parse_fail_on(text: str | None) -> set[str]:
    """`--fail-on black,loudness` -> {"black", "loudness"}; `all` selects every check."""
    names = {n.strip() for n in (text or "").split(",") if n.strip()}
    if "all" in names:
        return set(CHECKS)
    unknown = sorted(names - set(CHECKS))
    if unknown:
        from ovi_studio.errors import UserError
        raise UserError(f"--fail-on: unknown check(s) {', '.join(unknown)}",
                        hint="checks: " + ", ".join(CHECKS) + ", or all")
    return names


# -- a take in the output folder -------------------------------------------------------------

def checks_of_take(take_dir: Path, shot, out_dir: Path, th: QcThresholds) -> list[Check]:
    """The checks of a finished take, measured once and kept in `qc.json` beside it (keyed by
    the take's file hashes, its seed frame and the thresholds: take_choice.qc_key)."""
    from ovi_studio.prompt import spoken_lines
    from ovi_studio.render.artifacts import TakeLayout, read_json, write_json_atomic
    layout = TakeLayout(Path(take_dir))
    meta = read_json(layout.meta) or {}
    kept = stored_checks(layout.dir, meta, shot, th)
    if kept is not None:
        return kept
    try:
        facts = TakeFacts(layout.frames, layout.audio, meta["planned"]["frames"], spoken_lines(shot.prompt),
                          draws_stills(meta), _seam_pair(layout, meta, out_dir))
        checks = check_take(facts, th)
    except Exception as exc:  # a meter failing must not lose the render
        return [Check("durations", FAIL, f"the take could not be measured: {exc}")]
    write_json_atomic(layout.dir / QC_FILE, {"key": qc_key(meta, shot, th),
                                             "checks": [c.to_json() for c in checks]})
    return checks


def _seam_pair(layout, meta: dict, out_dir: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(the parent's seed frame, this take's first kept frame) for an extension."""
    from ovi_studio.render.artifacts import TakeLayout
    from ovi_studio.store import take_dir
    parent = meta.get("parent")
    if not parent:
        return None
    width, height = meta["size"]["width"], meta["size"]["height"]
    before = frames_at(TakeLayout(take_dir(out_dir, parent["shot"], parent["take"])).frames,
                       width, height, [parent["index"]]).get(parent["index"])
    after = frames_at(layout.frames, width, height, [1]).get(1)  # frame 0 repeats the seed
    return None if before is None or after is None else (before, after)
