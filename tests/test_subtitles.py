"""Dialogue timing, SRT/WebVTT and ffmetadata chapters."""
from __future__ import annotations

import pytest

from ovi_studio.render import subtitles as st


def test_windows_share_the_shot_by_word_count_with_gaps():
    windows = st.speech_windows([2, 6], 5.0)
    (a0, a1), (b0, b1) = windows
    assert a0 == pytest.approx(st.LEAD_S) and b1 == pytest.approx(5.0 - st.TAIL_S)
    assert b0 - a1 == pytest.approx(st.GAP_S)
    assert (b1 - b0) / (a1 - a0) == pytest.approx(3.0)


def test_a_very_short_shot_still_fits_its_lines():
    windows = st.speech_windows([1, 1, 1], 0.3)
    assert windows[0][0] >= 0 and windows[-1][1] <= 0.3 + 1e-9
    assert all(a < b for a, b in windows)


def test_cues_are_offset_by_the_shot_start_and_name_the_speaker():
    cues = st.shot_cues([("Anna", "Hello there"), (None, "Bye")], 10.0, 5.0)
    assert cues[0].start == pytest.approx(10.0 + st.LEAD_S)
    assert cues[0].text == "Anna: Hello there" and cues[1].text == "Bye"


def test_srt_and_webvtt_formats():
    cues = [st.Cue(1.5, 3.25, "Anna: Hi"), st.Cue(3661.0, 3662.001, "Ben: Yo")]
    assert st.to_srt(cues) == ("1\n00:00:01,500 --> 00:00:03,250\nAnna: Hi\n\n"
                               "2\n01:01:01,000 --> 01:01:02,001\nBen: Yo\n")
    vtt = st.to_webvtt(cues)
    assert vtt.startswith("WEBVTT\n\n00:00:01.500 --> 00:00:03.250\nAnna: Hi\n")


def test_chapters_have_an_explicit_timebase_and_escaped_titles():
    text = st.chapters_ffmetadata([(0.0, 5.0, "a=b;c"), (5.0, 10.0416, "two")])
    assert text.startswith(";FFMETADATA1\n")
    assert text.count("TIMEBASE=1/1000") == 2
    assert "title=a\\=b\\;c" in text and "END=10042" in text
