"""ovi_studio.media.audio against the formats it writes and reads: the float WAV header byte for
byte as RIFF/WAVE defines it, integer PCM written by the stdlib, the de-click ramps and the
equal-power crossfade sample by sample, and the loudness meter on signals of known loudness."""
from __future__ import annotations

import math
import struct
import wave

import numpy as np
import pytest

from ovi_studio.media import audio, ffmpeg


def test_the_float_wav_header_is_the_riff_wave_layout(tmp_path):
    path = tmp_path / "three.wav"
    audio.write_wav(path, np.array([0.5, -0.25, 1.0], np.float32), 16000)
    raw = path.read_bytes()
    # RIFF size = file size - 8; fmt: 18 bytes (cbSize 0), IEEE float (3), mono, 16 kHz,
    # 64000 bytes/s, 4-byte frames, 32 bits; fact: 3 samples; data: 12 bytes
    expected = (b"RIFF" + struct.pack("<I", 62) + b"WAVE"
                + b"fmt " + struct.pack("<IHHIIHHH", 18, 3, 1, 16000, 64000, 4, 32, 0)
                + b"fact" + struct.pack("<II", 4, 3)
                + b"data" + struct.pack("<I", 12) + struct.pack("<3f", 0.5, -0.25, 1.0))
    assert raw == expected and len(raw) == 70


def test_a_streamed_wav_counts_every_piece_in_its_header(tmp_path):
    path = tmp_path / "pieces.wav"
    with audio.WavWriter(path, 48000) as out:
        out.write(np.zeros(5, np.float32))
        out.write(np.ones(2, np.float32))
    raw = path.read_bytes()
    assert struct.unpack("<I", raw[4:8])[0] == len(raw) - 8 == 50 + 7 * 4
    assert struct.unpack("<I", raw[46:50])[0] == 7  # fact: samples
    assert struct.unpack("<I", raw[54:58])[0] == 28  # data: bytes
    back, rate = audio.read_wav(path)
    assert rate == 48000 and back.tolist() == [0, 0, 0, 0, 0, 1, 1]


def test_float64_samples_are_written_as_float32(tmp_path):
    audio.write_wav(tmp_path / "x.wav", np.array([0.5, -0.25]), 16000)
    assert (tmp_path / "x.wav").stat().st_size == 58 + 2 * 4
    assert audio.read_wav(tmp_path / "x.wav")[0].tolist() == [0.5, -0.25]


def test_sizes_past_2_gib_are_unsigned_32_bit_as_riff_defines_them(tmp_path):
    """A 3.5-hour programme at 48 kHz is 2.4 GB of float32: still a valid header."""
    writer = audio.WavWriter(tmp_path / "long.wav", 48000)
    writer.samples = 600_000_000
    writer.close()
    raw = (tmp_path / "long.wav").read_bytes()
    assert struct.unpack("<I", raw[4:8])[0] == 50 + 2_400_000_000
    assert struct.unpack("<I", raw[54:58])[0] == 2_400_000_000
    assert struct.unpack("<I", raw[46:50])[0] == 600_000_000


def test_stereo_samples_are_refused(tmp_path):
    with audio.WavWriter(tmp_path / "x.wav", 16000) as out:
        with pytest.raises(ValueError, match=r"expected mono samples \[N\], got shape \(4, 2\)"):
            out.write(np.zeros((4, 2), np.float32))


def _pcm16(path, frames: list[tuple[int, ...]], rate: int) -> None:
    with wave.open(str(path), "wb") as w:  # the stdlib's writer: integer PCM only
        w.setnchannels(len(frames[0]))
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack(f"<{len(f)}h", *f) for f in frames))


def test_int16_pcm_reads_as_the_first_channel_over_32768(tmp_path):
    path = tmp_path / "stereo.wav"
    _pcm16(path, [(16384, 1), (-32768, 2), (32767, 3)], 22050)
    samples, rate = audio.read_wav(path)
    assert rate == 22050 and samples.dtype == np.float32
    assert samples.tolist() == [0.5, -1.0, 32767 / 32768]


def test_an_odd_sized_chunk_is_padded_to_an_even_offset(tmp_path):
    """RIFF chunks start on even offsets: a 3-byte chunk is followed by one pad byte."""
    path = tmp_path / "padded.wav"
    _pcm16(path, [(8192,), (-8192,)], 8000)
    raw = path.read_bytes()
    fmt_end = 12 + 8 + 16
    odd = b"LIST" + struct.pack("<I", 3) + b"abc" + b"\0"
    body = raw[12:fmt_end] + odd + raw[fmt_end:]
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body)
    samples, rate = audio.read_wav(path)
    assert rate == 8000 and samples.tolist() == [0.25, -0.25]


def _chunk(cid: bytes, body: bytes) -> bytes:
    return cid + struct.pack("<I", len(body)) + body + b"\0" * (len(body) & 1)


def _riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


FMT_FLOAT_16K = _chunk(b"fmt ", struct.pack("<HHIIHH", 3, 1, 16000, 64000, 4, 32))


def test_chunks_after_the_data_and_an_empty_data_chunk_at_the_end(tmp_path):
    path = tmp_path / "x.wav"
    path.write_bytes(_riff(FMT_FLOAT_16K, _chunk(b"data", struct.pack("<2f", 0.5, -1.0)),
                           _chunk(b"LIST", b"odd")))
    assert audio.read_wav(path)[0].tolist() == [0.5, -1.0]
    path.write_bytes(_riff(FMT_FLOAT_16K, _chunk(b"data", b"")))
    samples, rate = audio.read_wav(path)
    assert samples.shape == (0,) and rate == 16000


def test_a_streamed_wav_of_unknown_data_size_reads_to_the_end(tmp_path):
    """A WAV written to a pipe cannot seek back: its data size stays 0xFFFFFFFF."""
    path = tmp_path / "piped.wav"
    data = b"data" + struct.pack("<I", 0xFFFFFFFF) + struct.pack("<3f", 0.25, 0.5, 0.75)
    path.write_bytes(_riff(FMT_FLOAT_16K) + data)
    assert audio.read_wav(path)[0].tolist() == [0.25, 0.5, 0.75]


def test_files_that_are_not_mono_float_or_int16_wav_are_named(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFX" + bytes(8))
    with pytest.raises(ValueError, match="bad.wav: not a WAV file"):
        audio.read_wav(bad)
    bad.write_bytes(b"RIFF" + struct.pack("<I", 4) + b"AVI " + FMT_FLOAT_16K)
    with pytest.raises(ValueError, match="bad.wav: not a WAV file"):
        audio.read_wav(bad)
    bad.write_bytes(b"RIFF" + struct.pack("<I", 4) + b"WAVE")
    with pytest.raises(ValueError, match="without fmt or data"):
        audio.read_wav(bad)
    bad.write_bytes(_riff(FMT_FLOAT_16K))
    with pytest.raises(ValueError, match="without fmt or data"):
        audio.read_wav(bad)
    bad.write_bytes(_riff(_chunk(b"data", bytes(8))))
    with pytest.raises(ValueError, match="without fmt or data"):
        audio.read_wav(bad)
    float64 = tmp_path / "f64.wav"
    float64.write_bytes(_riff(_chunk(b"fmt ", struct.pack("<HHIIHH", 3, 1, 8000, 64000, 8, 64)),
                              _chunk(b"data", bytes(16))))
    with pytest.raises(ValueError, match=r"unsupported WAV encoding \(tag 3, 64 bits\)"):
        audio.read_wav(float64)
    for width in (1, 4):  # 8- and 32-bit integer PCM, as the stdlib writes them
        pcm = tmp_path / f"pcm{width}.wav"
        with wave.open(str(pcm), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(width)
            w.setframerate(8000)
            w.writeframes(bytes(2 * width))
        with pytest.raises(ValueError, match=rf"unsupported WAV encoding \(tag 1, {8 * width} bits\)"):
            audio.read_wav(pcm)


def test_resampling_takes_float64_input_as_its_values():
    half = audio.resample(np.full(1600, 0.5, np.float64), 16000, 8000)
    assert half.dtype == np.float32 and abs(half.shape[0] - 800) <= 2
    assert np.allclose(half[100:700], 0.5, atol=1e-3)


def test_resampling_at_the_same_rate_or_of_nothing_runs_no_ffmpeg(monkeypatch):
    monkeypatch.setattr(ffmpeg, "run", lambda *a, **k: pytest.fail("ffmpeg was run"))
    same = audio.resample(np.array([1, 2], np.int16), 16000, 16000)
    assert same.dtype == np.float32 and same.tolist() == [1.0, 2.0]
    empty = audio.resample(np.zeros(0, np.float32), 16000, 48000)
    assert empty.dtype == np.float32 and empty.shape == (0,)


def test_fit_length_trims_and_pads_with_silence_to_the_sample():
    x = np.arange(1, 6, dtype=np.float32)
    assert audio.fit_length(x, 3).tolist() == [1, 2, 3]
    assert audio.fit_length(x, 5).tolist() == [1, 2, 3, 4, 5]
    padded = audio.fit_length(x, 7)
    assert padded.dtype == np.float32 and padded.tolist() == [1, 2, 3, 4, 5, 0, 0]
    trimmed = audio.fit_length(x, 2)
    trimmed[0] = 9
    assert x[0] == 1  # a copy, never a view of the clip


def test_de_click_ramps_are_linear_from_silence_sample_by_sample():
    out = audio.fade_edges(np.ones(8, np.float64), 4, 2)
    assert out.dtype == np.float32 and out.tolist() == [0, 0.25, 0.5, 0.75, 1, 1, 0.5, 0]
    assert audio.fade_edges(np.ones(4, np.float32), 1, 1).tolist() == [0, 1, 1, 0]
    assert audio.fade_edges(np.ones(3, np.float32), 0, 0).tolist() == [1, 1, 1]
    # a ramp longer than the clip covers the clip
    assert audio.fade_edges(np.full(2, 3.0, np.float32), 4, 0).tolist() == [0, 1.5]
    assert audio.fade_edges(np.full(2, 3.0, np.float32), 0, 4).tolist() == [1.5, 0]


def test_the_crossfade_is_equal_power_quarter_sine_sample_by_sample():
    n = 4
    out_only = audio.equal_power_overlap(np.ones(n, np.float32), np.zeros(n, np.float32))
    in_only = audio.equal_power_overlap(np.zeros(n, np.float32), np.ones(n, np.float32))
    # sample centres (k + 0.5) / 4 of a quarter period: cos and sin of pi/16, 3pi/16, ...
    np.testing.assert_allclose(out_only, [0.98078528, 0.83146961, 0.55557023, 0.19509032], atol=1e-7)
    np.testing.assert_allclose(in_only, [0.19509032, 0.55557023, 0.83146961, 0.98078528], atol=1e-7)
    np.testing.assert_allclose(out_only ** 2 + in_only ** 2, 1.0, atol=1e-6)  # constant power
    both = audio.equal_power_overlap(np.full(n, 2.0, np.float32), np.full(n, -1.0, np.float32))
    np.testing.assert_allclose(both, 2.0 * out_only - in_only, atol=1e-6)
    assert both.dtype == np.float32
    with pytest.raises(ValueError, match="crossfade of 3 samples is longer than a clip"):
        audio.equal_power_overlap(np.zeros(2, np.float32), np.zeros(3, np.float32))


def test_the_meter_reads_a_sine_of_known_loudness(tmp_path):
    """EBU R128: a 997 Hz sine at -20 dBFS in one channel reads -23 LUFS (a full-scale one
    -3.01); played on two speakers (dual mono) 3 dB louder. Its true peak is -20 dBTP."""
    rate = 48000
    t = np.arange(rate * 4) / rate
    path = tmp_path / "tone.wav"
    audio.write_wav(path, (0.1 * np.sin(2 * math.pi * 997 * t)).astype(np.float32), rate)
    mono = audio.measure_loudness(path)
    assert mono["integrated_lufs"] == pytest.approx(-23.0, abs=0.1)
    assert mono["true_peak_dbtp"] == pytest.approx(-20.0, abs=0.1)
    assert mono["loudness_range_lu"] == pytest.approx(0.0, abs=0.1)
    assert audio.measure_loudness(path, dual_mono=True)["integrated_lufs"] == pytest.approx(-20.0, abs=0.1)


def test_a_file_without_audio_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(ffmpeg, "run", lambda args: type("P", (), {"stderr": b"no summary here"})())
    with pytest.raises(ValueError, match="x.mp4: the ebur128 meter printed no summary"):
        audio.measure_loudness(tmp_path / "x.mp4")
