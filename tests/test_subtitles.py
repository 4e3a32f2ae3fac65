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


# --- literal timings: a speaking rate of 2.5 words a second, 0.2 s lead-in and tail, 0.15 s
# between lines, at least 0.6 s a line, cues at most 84 characters and a frame (0.04 s) apart

def _approx(windows):
    return pytest.approx([x for w in windows for x in w], abs=1e-9)


def test_speech_windows_in_seconds():
    # 2 and 9 words: 0.8 s and 3.6 s, after a 0.2 s lead-in and a 0.15 s gap
    assert [x for w in st.speech_windows(["Hello there.", "I came as soon as I heard the news."], 10.0)
            for x in w] == _approx([(0.2, 1.0), (1.15, 4.75)])
    # 16 s of speech each in 5 s: 4.45 s of room shared in proportion, ending 0.2 s before the cut
    many = " ".join(["word"] * 40)
    assert [x for w in st.speech_windows([many, many], 5.0) for x in w] == _approx([(0.2, 2.425), (2.575, 4.8)])
    # margins are kept while they take less than half the shot ...
    assert [x for w in st.speech_windows(["No.", "Yes."], 1.2) for x in w] == _approx([(0.2, 0.525), (0.675, 1.0)])
    # ... and dropped from half on: a one-word line still takes 0.6 s
    assert [x for w in st.speech_windows(["No."], 0.8) for x in w] == _approx([(0.0, 0.6)])
    assert [x for w in st.speech_windows(["a", "b", "c"], 0.3) for x in w] == _approx([(0, 0.1), (0.1, 0.2), (0.2, 0.3)])
    assert st.speech_windows([], 5.0) == []


def test_lines_split_after_clauses_then_between_words_at_84_characters():
    assert st.split_line("Wait. Stop! Go?") == ["Wait. Stop! Go?"]
    assert st.split_line("Wait. Stop! Go?", limit=11) == ["Wait. Stop!", "Go?"]  # 11 fits, 15 does not
    assert st.split_line("Wait. Stop!", limit=10) == ["Wait.", "Stop!"]  # 11 does not fit in 10
    assert st.split_line("One, two three four", limit=10) == ["One,", "two three", "four"]
    assert st.split_line("abcd efghi", limit=10) == ["abcd efghi"]
    assert st.split_line("a " + "x" * 20, limit=10) == ["a", "x" * 20]  # a longer word stays whole
    line = "w" * 40 + " " + "v" * 43 + " z"  # 86 characters: 84 of them fit on two subtitle lines
    assert st.split_line(line) == ["w" * 40 + " " + "v" * 43, "z"]


def test_each_piece_of_a_long_line_is_timed_by_its_share_of_the_words():
    line = ("one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
            "fifteen, a b c")
    cues = st.line_cues("Anna", line, 1.0, 5.0)
    # "Anna:" (1 word), 14 words, 4 words: 4 s shared 1 : 14 : 4
    assert [c.text for c in cues] == [
        "Anna:", "one two three four five six seven eight nine ten eleven twelve thirteen fourteen",
        "fifteen, a b c"]
    assert [x for c in cues for x in (c.start, c.end)] == pytest.approx(
        [1.0, 1.0 + 4 / 19, 1.0 + 4 / 19, 1.0 + 60 / 19, 1.0 + 60 / 19, 5.0])
    assert st.line_cues(None, "Hello there", 2.0, 3.0) == [st.Cue(2.0, 3.0, "Hello there")]


def test_a_cue_is_clipped_to_the_stretch_the_shot_owns_and_dropped_under_a_frame():
    # "Hello there" is spoken 10.2 - 11.0 s on the cut's timeline
    assert st.shot_cues([(None, "Hello there")], 10.0, 5.0, visible=(10.5, 12.0)) == [
        st.Cue(10.5, 11.0, "Hello there")]
    assert st.shot_cues([(None, "Hello there")], 10.0, 5.0, visible=(9.0, 10.6)) == [
        st.Cue(10.2, 10.6, "Hello there")]
    assert st.shot_cues([(None, "Hello there")], 10.0, 5.0, visible=(10.95, 12.0)) == [
        st.Cue(10.95, 11.0, "Hello there")]  # 0.05 s left: shown
    assert st.shot_cues([(None, "Hello there")], 10.0, 5.0, visible=(10.97, 12.0)) == []  # 0.03 s: dropped
    # exactly one frame (0.08 - 0.04 is 0.04 in binary floating point too) is still shown
    assert st.shot_cues([(None, "Hello there")], -0.5, 5.0, visible=(0.04, 0.08)) == [
        st.Cue(0.04, 0.08, "Hello there")]


def test_overlapping_cues_end_a_frame_before_the_next_and_too_short_ones_go():
    merged = st.without_overlaps([st.Cue(1.5, 3, "b"), st.Cue(0, 2, "a")])
    assert [(c.start, c.end, c.text) for c in merged] == [(0, pytest.approx(1.46), "a"), (1.5, 3, "b")]
    assert st.without_overlaps([st.Cue(0, 1, "a"), st.Cue(2, 3, "b")]) == [st.Cue(0, 1, "a"), st.Cue(2, 3, "b")]
    assert st.without_overlaps([st.Cue(1.0, 2, "a"), st.Cue(1.05, 3, "b")]) == [st.Cue(1.05, 3, "b")]
    assert st.without_overlaps([st.Cue(1.0, 1.03, "a")]) == []
    assert st.without_overlaps([st.Cue(0.04, 0.08, "a")]) == [st.Cue(0.04, 0.08, "a")]  # one frame: kept


def test_webvtt_and_srt_in_full():
    cues = [st.Cue(-0.01, 59.9996, "Hi"), st.Cue(61.25, 3723.5, "Yo")]
    assert st.to_webvtt(cues) == ("WEBVTT\n\n00:00:00.000 --> 00:01:00.000\nHi\n\n"
                                  "00:01:01.250 --> 01:02:03.500\nYo\n")
    assert st.to_srt(cues) == ("1\n00:00:00,000 --> 00:01:00,000\nHi\n\n"
                               "2\n00:01:01,250 --> 01:02:03,500\nYo\n")


def test_chapters_file_in_full_with_every_special_character_escaped():
    text = st.chapters_ffmetadata([(0.0, 1.5, "a\\b=c;d#e\nf"), (1.5, 3.0, "Xmas")], title="My = film")
    assert text == (";FFMETADATA1\ntitle=My \\= film\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=1500\n"
                    "title=a\\\\b\\=c\\;d\\#e\\\nf\n"
                    "[CHAPTER]\nTIMEBASE=1/1000\nSTART=1500\nEND=3000\ntitle=Xmas\n")
    assert st.chapters_ffmetadata([]) == ";FFMETADATA1\n"
