"""The preview engine: an animatic rendered without the model.

Each take is a picture — the shot's first frame, the parent's picture for an extension, or a
plain card coloured by the shot id — with drawn layers over it: a header naming the take, the
shot's own scene text (t2v and extensions), the audio caption and the dialogue as timed
captions (speaker names, the same timings as the cut's subtitles). The picture without the
layers is kept as the take's plate; an extension starts from its parent's plate, so it never
inherits the parent's header or captions. The audio is a rough guide track: each line spoken
by espeak-ng when it is installed, else a soft tone per line (a pitch per speaker), and the
engine's identity (meta.json, report.json) says which. Durations are exact (the variant's 121 or 241 frames), so pacing and the
assembled cut are what the model's cut will be. Frames are 256 px high at the shot's aspect
to keep a whole storyboard under a minute on a laptop.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import textwrap
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ovi_studio.media import audio as audio_io
from ovi_studio.doctor import ESPEAK_INSTALL
from ovi_studio.media.images import fit_image
from ovi_studio.render.engines import PhaseCallback, ShotJob, ShotOutput, StepCallback
from ovi_studio.render.subtitles import caption_text, speech_windows
from ovi_studio.media.rates import FPS
from ovi_studio.media.rates import MODEL_AUDIO_RATE as SAMPLE_RATE

PREVIEW_HEIGHT = 256
PREVIEW_VERSION = 2  # 2: extensions start from the parent's plate
TONE_LEVEL = 0.2


def preview_size(height: int, width: int) -> tuple[int, int]:
    """(height, width) 256 px high at the aspect of the planned size, width even."""
    w = max(2, round(PREVIEW_HEIGHT * width / height / 2) * 2)
    return PREVIEW_HEIGHT, w


class PreviewEngine:
    name = "preview"
    color_drift = False  # an extension's picture is its seed frame, already anchored

    def __init__(self, speech: bool | None = None):
        espeak = shutil.which("espeak-ng")
        self.espeak = espeak if speech is not False else None

    def identity(self) -> dict:
        if self.espeak:
            return {"name": self.name, "version": PREVIEW_VERSION, "speech": "espeak-ng"}
        return {"name": self.name, "version": PREVIEW_VERSION, "speech": "tones",
                "speech_note": "espeak-ng is not installed: a tone stands in for each spoken line "
                               f"({ESPEAK_INSTALL})"}

    def prepare(self, jobs: list[ShotJob]) -> None:
        """Nothing to precompute: no text encoder."""

    def render(self, job: ShotJob, first_frame: Image.Image | None,
               on_step: StepCallback | None = None,
               on_phase: PhaseCallback | None = None) -> ShotOutput:
        on_phase = on_phase or (lambda name: None)
        on_phase("draw")
        height, width = preview_size(job.height, job.width)
        plate = (fit_image(first_frame, height, width, job.settings.get("fit") or "crop")
                 if first_frame is not None else plain_card(job.shot_id, height, width))
        base = plate if job.mode == "i2v" else with_scene_text(plate, job.scene or job.prompt)
        duration = job.frames / FPS
        windows = speech_windows([text for _, text in job.dialogue], duration)
        frames = self._frames(job, base, windows)
        if on_step:
            on_step(1, 2)
        on_phase("guide_speech")
        sound = self._audio(job, windows)
        if on_step:
            on_step(2, 2)
        return ShotOutput(frames, sound, None, {"preview_size": [height, width]},
                          plate=np.asarray(plate.convert("RGB")))

    def _frames(self, job: ShotJob, base: Image.Image, windows) -> np.ndarray:
        """One drawn image per caption state, repeated over its frames."""
        t = np.arange(job.frames) / FPS
        active = np.full(job.frames, -1)
        for i, (a, b) in enumerate(windows):
            active[(t >= a) & (t < b)] = i
        stills = {}
        for state in np.unique(active):
            line = job.dialogue[state] if state >= 0 else None
            stills[state] = np.asarray(overlay(base, job, line))
        return np.stack([stills[s] for s in active])

    def _audio(self, job: ShotJob, windows) -> np.ndarray:
        total = round(job.frames / FPS * SAMPLE_RATE)
        out = np.zeros(total, np.float32)
        for (speaker, text), (a, b) in zip(job.dialogue, windows):
            start, stop = round(a * SAMPLE_RATE), min(total, round(b * SAMPLE_RATE))
            voice = self._speak(text, stop - start) if self.espeak else None
            if voice is None:
                voice = tone(speaker, stop - start)
            out[start:stop] += voice[:stop - start]
        return out

    def _speak(self, text: str, length: int) -> np.ndarray | None:
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "line.wav"
            try:
                subprocess.run([self.espeak, "-w", str(wav), text], check=True, timeout=30,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                samples, rate = audio_io.read_wav(wav)
            except (OSError, subprocess.SubprocessError, ValueError):
                return None
        speech = audio_io.resample(samples, rate, SAMPLE_RATE)
        return audio_io.fade_edges(audio_io.fit_length(speech, length), 80, 80)

    def close(self) -> None:
        """Nothing held."""


def tone(speaker: str | None, length: int) -> np.ndarray:
    """A soft, syllable-paced tone standing in for a spoken line; pitch fixed per speaker."""
    pitch = 160 + zlib.crc32((speaker or "").encode()) % 160
    t = np.arange(length) / SAMPLE_RATE
    carrier = np.sin(2 * np.pi * pitch * t) + 0.3 * np.sin(4 * np.pi * pitch * t)
    syllables = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t) ** 2
    ramp = min(length // 2, SAMPLE_RATE // 50)
    return audio_io.fade_edges((TONE_LEVEL / 1.3 * carrier * syllables).astype(np.float32), ramp, ramp)


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def plain_card(shot_id: str, height: int, width: int) -> Image.Image:
    """The picture of a t2v preview: a muted colour derived from the shot id."""
    digest = hashlib.sha256(shot_id.encode()).digest()
    return Image.new("RGB", (width, height), tuple(40 + b % 50 for b in digest[:3]))


def with_scene_text(picture: Image.Image, text: str) -> Image.Image:
    """The scene text over the picture, on a dark band so it reads over any image."""
    card = picture.copy()
    draw = ImageDraw.Draw(card, "RGBA")
    width, height = card.size
    size = max(10, height // 16)
    wrapped = textwrap.fill(" ".join(text.split()), width=max(12, int(width / (size * 0.55))))
    lines = wrapped.splitlines()[: max(1, (height - 4 * size) // (size + 4))]
    box = draw.multiline_textbbox((size, 2 * size), "\n".join(lines), font=_font(size), spacing=4)
    draw.rectangle((box[0] - 4, box[1] - 3, box[2] + 4, box[3] + 4), fill=(0, 0, 0, 110))
    draw.multiline_text((size, 2 * size), "\n".join(lines), font=_font(size), fill=(235, 235, 225),
                        spacing=4)
    return card


def overlay(base: Image.Image, job: ShotJob, line: tuple[str | None, str] | None) -> Image.Image:
    """The base image with the shot label, the audio caption, and the current line."""
    img = base.copy()
    draw = ImageDraw.Draw(img)
    w, h = img.size
    small = max(8, h // 22)
    draw.text((4, 2), f"{job.shot_id} · take {job.take} · {job.mode} · PREVIEW", font=_font(small),
              fill=(255, 255, 0), stroke_width=1, stroke_fill=(0, 0, 0))
    if job.audio_caption:
        cap = textwrap.shorten("Audio: " + job.audio_caption, width=max(16, int(w / (small * 0.5))))
        draw.text((4, 4 + small), cap, font=_font(small), fill=(180, 220, 255), stroke_width=1,
                  stroke_fill=(0, 0, 0))
    if line is not None:
        size = max(9, h // 18)
        text = textwrap.fill(caption_text(*line), width=max(12, int(w / (size * 0.55))))
        box = draw.multiline_textbbox((0, 0), text, font=_font(size))
        tw, th = box[2] - box[0], box[3] - box[1]
        x, y = (w - tw) // 2, h - th - size
        draw.rectangle((x - 4, y - 3, x + tw + 4, y + th + 6), fill=(0, 0, 0))
        draw.multiline_text((x, y), text, font=_font(size), fill=(255, 255, 255), align="center")
    return img
