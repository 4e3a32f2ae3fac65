"""Speech is speech whatever the form: subtitles and the animatic's captions come from the
compiled prompt's <S>…<E> spans (raw prompts, CSV imports), timed to the speech."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ovi_studio.cli import app
from ovi_studio.render import subtitles

runner = CliRunner()

LINES = ["Who's there? Show yourself.",
         "I have kept this light burning for forty years, through storms that tore the roof "
         "away, and I will not let it go dark tonight."]
PROMPTS = [
    "A lighthouse keeper turns toward the stairs as a knock echoes below. He calls out, "
    f"<S>{LINES[0]}<E> <AUDCAP>Heavy knocks on a wooden door, wind.<ENDAUDCAP>",
    "The keeper stands by the great lens, rain streaming down the windows, and speaks firmly, "
    f"<S>{LINES[1]}<E> <AUDCAP>A deep calm male voice. Rain on glass.<ENDAUDCAP>",
]


def _srt(text: str) -> list[tuple[float, float, str]]:
    def seconds(stamp: str) -> float:
        h, m, rest = stamp.split(":")
        s, ms = rest.split(",")
        return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000
    cues = []
    for block in text.strip().split("\n\n"):
        _, times, *words = block.split("\n")
        a, b = times.split(" --> ")
        cues.append((seconds(a), seconds(b), " ".join(words)))
    return cues


@pytest.mark.slow
def test_a_csv_import_with_speech_gets_cues_of_its_speech_within_the_speech_time(tmp_path: Path):
    path = tmp_path / "prompts.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text_prompt"])
        for prompt in PROMPTS:
            writer.writerow([prompt])
    result = runner.invoke(app, ["render", str(path), "-o", str(tmp_path / "out"),
                                 "--engine", "preview", "--set", "loudness=off"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    cues = _srt((tmp_path / "out" / report["final"]["srt"]).read_text())
    starts = report["final"]["segment_starts"]
    by_shot = [[c for c in cues if starts[i] / 24 <= c[0] < (starts[i + 1] / 24 if i + 1 < len(starts) else 1e9)]
               for i in range(len(starts))]
    for i, (line, shot_cues) in enumerate(zip(LINES, by_shot)):
        assert " ".join(c[2] for c in shot_cues) == line  # the <S> text, nothing else
        (a, b), = subtitles.speech_windows([line], 121 / 24)
        offset = starts[i] / 24
        assert shot_cues[0][0] >= offset + a - 0.002 and shot_cues[-1][1] <= offset + b + 0.002
    assert by_shot[0][-1][1] < starts[0] / 24 + 3.0  # a short line is not spread over its shot
    assert len(by_shot[1]) > 1 and all(len(c[2]) <= subtitles.MAX_CUE_CHARS for c in by_shot[1])
    assert all(c[1] <= d[0] for c, d in zip(cues, cues[1:]))  # never overlapping


def test_raw_prompt_speech_reaches_the_animatic_captions(tmp_path: Path):
    from ovi_studio.render.captions import dialogue_of
    from ovi_studio.storyboard import load_storyboard
    story = tmp_path / "s.yaml"
    story.write_text("version: 1\nmodel: 720x720_5s\ncharacters:\n  anna:\n    look: a woman\n"
                     "    name: Anna\nshots:\n"
                     f"  - id: knock\n    prompt: \"{PROMPTS[0]}\"\n"
                     "  - id: talk\n    scene: '{anna} at a desk.'\n    dialogue:\n"
                     "      - speaker: anna\n        line: Hello there.\n")
    loaded = load_storyboard(story)
    assert dialogue_of(loaded, loaded.shot("knock")) == ((None, LINES[0]),)
    assert dialogue_of(loaded, loaded.shot("talk")) == (("Anna", "Hello there."),)
    assert re.search("<S>", loaded.shot("talk").raw_prompt)
