"""Dialogue timing, SRT/WebVTT and ffmetadata chapters."""
from __future__ import annotations

import pytest

from ovi_studio.render import subtitles as st


def test_each_line_lasts_as_long_as_its_words_take_to_say_not_the_whole_shot():
    windows = st.speech_windows(["Hello there.", "I came as soon as I heard the news."], 10.0)
    (a0, a1), (b0, b1) = windows
    assert a0 == pytest.approx(st.LEAD_S) and b0 - a1 == pytest.approx(st.GAP_S)
    assert b1 - b0 == pytest.approx(9 / st.SPEECH_WORDS_PER_S)
    assert b1 < 10.0 - 4  # the rest of the shot is silence, not a subtitle


def test_more_speech_than_the_shot_holds_is_compressed_to_fit():
    many = " ".join(["word"] * 40)
    windows = st.speech_windows([many, many], 5.0)
    assert windows[-1][1] == pytest.approx(5.0 - st.TAIL_S)
    assert windows[0][1] - windows[0][0] == pytest.approx(windows[1][1] - windows[1][0])


def test_a_very_short_shot_still_fits_its_lines():
    windows = st.speech_windows(["a", "b", "c"], 0.3)
    assert windows[0][0] >= 0 and windows[-1][1] <= 0.3 + 1e-9
    assert all(a < b for a, b in windows)


def test_cues_are_offset_by_the_shot_start_and_name_the_speaker():
    cues = st.shot_cues([("Anna", "Hello there"), (None, "Bye")], 10.0, 5.0)
    assert cues[0].start == pytest.approx(10.0 + st.LEAD_S)
    assert cues[0].text == "Anna: Hello there" and cues[1].text == "Bye"


def test_a_long_line_is_split_into_readable_cues_within_its_speech():
    line = ("I have kept this light burning for forty years, through storms that tore the roof "
            "away, and I will not let it go dark tonight, not while a single ship is out there.")
    cues = st.shot_cues([(None, line)], 0.0, 10.0)
    (start, end), = st.speech_windows([line], 10.0)
    assert len(cues) > 1 and all(len(c.text) <= st.MAX_CUE_CHARS for c in cues)
    assert " ".join(c.text for c in cues) == line
    assert cues[0].start == pytest.approx(start) and cues[-1].end == pytest.approx(end)
    assert all(a.end <= b.start + 1e-9 for a, b in zip(cues, cues[1:]))


def test_cues_stay_inside_the_stretch_a_shot_owns_and_never_overlap():
    cues = st.shot_cues([(None, " ".join(["word"] * 30))], 0.0, 5.0, visible=(0.5, 3.0))
    assert cues and all(0.5 <= c.start and c.end <= 3.0 for c in cues)
    merged = st.without_overlaps([st.Cue(0, 2, "a"), st.Cue(1.5, 3, "b")])
    assert merged[0].end <= merged[1].start - st.MIN_CUE_GAP_S + 1e-9


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
