"""ffmpeg wrapper, probing without ffprobe, float WAV, resampling, images."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ovi_studio.media import audio, ffmpeg, images, probe, video


def _frames(n=5, h=16, w=24, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_lossless_video_round_trips_bit_exactly(tmp_path):
    frames = _frames()
    video.write_lossless(tmp_path / "f.mkv", frames)
    assert np.array_equal(video.read_frames(tmp_path / "f.mkv", 24, 16), frames)
    tail, total = video.read_tail(tmp_path / "f.mkv", 24, 16, 2)
    assert total == 5 and np.array_equal(np.stack(tail), frames[-2:])
    assert probe.count_video_frames(tmp_path / "f.mkv") == 5


def test_probe_reads_streams_from_the_ffmpeg_banner(tmp_path):
    frames = _frames(24)
    audio.write_wav(tmp_path / "a.wav", np.zeros(48000, np.float32), 48000)
    ffmpeg.write_rawvideo(["-i", str(tmp_path / "a.wav"), "-c:v", "libx264", "-pix_fmt", "yuv420p",
                           "-c:a", "aac", "-shortest", str(tmp_path / "c.mp4")], frames, 24)
    info = probe.probe(tmp_path / "c.mp4")
    v, a = info.first("video"), info.first("audio")
    assert (v.codec, v.width, v.height, v.fps, v.pix_fmt) == ("h264", 24, 16, 24.0, "yuv420p")
    assert (a.codec, a.sample_rate) == ("aac", 48000)
    assert info.duration_s == pytest.approx(1.0, abs=0.05)


def test_float_wav_round_trips_bit_exactly(tmp_path):
    samples = np.random.default_rng(1).standard_normal(1001).astype(np.float32) * 0.3
    audio.write_wav(tmp_path / "x.wav", samples, 16000)
    back, rate = audio.read_wav(tmp_path / "x.wav")
    assert rate == 16000 and np.array_equal(back, samples)
    # ffmpeg agrees with our header
    assert np.array_equal(probe.decode_audio(tmp_path / "x.wav"), samples)


def test_resample_16k_to_48k_keeps_length_and_pitch():
    t = np.arange(16000) / 16000
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    up = audio.resample(tone, 16000, 48000)
    assert abs(up.shape[0] - 48000) <= 3
    spectrum = np.abs(np.fft.rfft(up[:48000]))
    assert np.argmax(spectrum) == pytest.approx(440, abs=1)


def test_fit_and_fade_are_sample_exact():
    x = np.ones(100, np.float32)
    assert audio.fit_length(x, 80).shape == (80,)
    padded = audio.fit_length(x, 120)
    assert padded.shape == (120,) and padded[100:].max() == 0
    faded = audio.fade_edges(x, 10, 10)
    assert faded[0] == 0 and faded[-1] == 0 and faded[50] == 1


def test_ffmpeg_failure_names_the_command_and_stderr(tmp_path):
    with pytest.raises(ffmpeg.FfmpegError) as info:
        ffmpeg.run(ffmpeg.command("-i", tmp_path / "missing.mp4", tmp_path / "out.mp4"))
    message = str(info.value)
    assert "missing.mp4" in message and "command:" in message and "No such file" in message


def test_first_frame_from_a_video_is_its_last_frame(tmp_path):
    frames = _frames(7)
    video.write_lossless(tmp_path / "clip.mkv", frames)
    img = images.load_first_frame(tmp_path / "clip.mkv")
    assert np.array_equal(np.asarray(img), frames[-1])


def test_a_video_first_frame_is_decoded_once_while_unchanged(tmp_path, monkeypatch):
    """Planning and rendering both read a shot's first frame; a video decodes once."""
    decodes = []
    real = ffmpeg.read_rawvideo
    monkeypatch.setattr(ffmpeg, "read_rawvideo", lambda *a, **k: decodes.append(a) or real(*a, **k))
    path = tmp_path / "clip.mkv"
    video.write_lossless(path, _frames(5))
    first = images.load_first_frame(path)
    first.paste((0, 0, 0), (0, 0, 4, 4))  # callers get their own copy
    again = images.load_first_frame(path)
    assert len(decodes) == 1 and np.array_equal(np.asarray(again), _frames(5)[-1])
    video.write_lossless(path, _frames(6))  # a new file: decoded again
    assert np.array_equal(np.asarray(images.load_first_frame(path)), _frames(6)[-1])
    assert len(decodes) == 2


def test_broken_first_frame_is_a_clear_error(tmp_path):
    bad = tmp_path / "frame.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(images.ImageLoadError, match="not a readable image"):
        images.load_first_frame(bad)
    with pytest.raises(images.ImageLoadError, match="does not exist"):
        images.load_first_frame(tmp_path / "nope.png")


@pytest.mark.parametrize("mode", ["crop", "pad"])
def test_fit_image_gives_the_requested_size(mode):
    img = Image.new("RGB", (200, 100), (255, 0, 0))
    out = images.fit_image(img, 64, 64, mode)
    assert out.size == (64, 64)
    corner = out.getpixel((0, 0))
    assert corner == ((255, 0, 0) if mode == "crop" else (0, 0, 0))
