"""Every lint rule: a prompt or storyboard that triggers it, and a close one that does not."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from engine.variants import get_variant
from ovi_studio.diagnostics import Severity
from ovi_studio.lint import LintOptions, PromptContext, Selection, all_rules, fix_prompt, lint_path, lint_prompt
from ovi_studio.lint.tokens import TokenCounter, token_counter

SCENE = ("A young woman with short silver hair sits at a wooden desk in a quiet library, warm lamp "
         "light falling across stacks of old books and a green reading lamp. She looks up from an open "
         "notebook, smiles softly toward the camera and ")
SPEECH = "says, <S>We found the missing page at last.<E> "
ACTION = ("She taps the paper twice with her pen and leans back in her chair as dust drifts through "
          "the light. ")
CAPTION = "Clear, calm female voice, soft paper rustle, quiet library room tone."
GOOD_960 = SCENE + SPEECH + ACTION + "Audio: " + CAPTION
GOOD_720 = SCENE + SPEECH + ACTION + f"<AUDCAP>{CAPTION}<ENDAUDCAP>"


def findings(text: str, model: str = "960x960_10s", duration: float | None = None, tokens=None):
    variant = get_variant(model)
    ctx = PromptContext(variant, duration or float(variant.duration_s), tokens or TokenCounter())
    return lint_prompt(text, ctx)


def codes(text: str, **kwargs) -> set[str]:
    return {f.code for f in findings(text, **kwargs)}


def test_good_prompts_are_clean():
    assert findings(GOOD_960) == []
    assert findings(GOOD_960, model="960x960_5s") == []
    assert findings(GOOD_720, model="720x720_5s") == []


def test_every_rule_has_help_and_a_known_severity():
    rules = all_rules()
    assert len(rules) >= 30
    for code, rule in rules.items():
        assert rule.code == code and rule.summary and len(rule.help) > 40
        assert isinstance(rule.severity, Severity)


# -- prompt rules: (code, triggering prompt, model) ----------------------------------------------

POSITIVE = [
    ("OVI101", SCENE + "says, <S>We found the missing page at last. " + ACTION + "Audio: " + CAPTION, "960x960_10s"),
    ("OVI102", SCENE + "says, <S>We found <S>the page.<E> " + ACTION + "Audio: " + CAPTION, "960x960_10s"),
    ("OVI103", SCENE + "says, <S>We found the missing page at last.</S> " + ACTION + "Audio: " + CAPTION, "960x960_10s"),
    ("OVI104", SCENE + "says, <S> <E> " + ACTION + "Audio: " + CAPTION, "960x960_10s"),
    ("OVI105", SCENE + SPEECH + ACTION + f"<AUDCAP>{CAPTION}", "720x720_5s"),
    ("OVI106", SCENE + SPEECH + "<pause> " + ACTION + "Audio: " + CAPTION, "960x960_10s"),
    ("OVI201", SCENE + SPEECH + ACTION, "960x960_10s"),
    ("OVI202", SCENE + SPEECH + f"<AUDCAP>{CAPTION}<ENDAUDCAP> " + ACTION, "720x720_5s"),
    ("OVI203", SCENE + SPEECH + ACTION + f"<AUDCAP>{CAPTION} <S>Shh.<E><ENDAUDCAP>", "720x720_5s"),
    ("OVI204", SCENE + SPEECH + "A poster reads Audio: live. " + ACTION + "Audio: " + CAPTION, "960x960_10s"),
    ("OVI205", SCENE + 'says "We found the page." ' + ACTION + "Audio: " + CAPTION, "960x960_10s"),
    ("OVI206", SCENE + "looks around. " + ACTION, "960x960_10s"),
    ("OVI207", SCENE + "nods. <S>We found the missing page at last.<E> " + ACTION + "Audio: " + CAPTION, "960x960_10s"),
    ("OVI208", "<S>We found the page.<E> " + SCENE + "smiles. " + ACTION + "Audio: " + CAPTION, "960x960_10s"),
    ("OVI302", SCENE + "says, <S>One.<E> then <S>Two.<E> then <S>Three.<E> and adds <S>Four.<E> "
     + ACTION + "Audio: " + CAPTION, "960x960_5s"),
    ("OVI303", SCENE + "says, <S>" + "word " * 21 + "<E> " + ACTION + "Audio: " + CAPTION, "960x960_10s"),
    ("OVI305", "A man says, <S>Hello.<E> Audio: deep male voice, street noise.", "960x960_10s"),
    ("OVI306", SCENE + SPEECH + ACTION + "Audio: voice.", "960x960_10s"),
    ("OVI401", GOOD_720, "960x960_10s"),
    ("OVI402", GOOD_960, "720x720_5s"),
]

# The same prompts with the one thing fixed (or a harmless look-alike).
NEGATIVE = [
    ("OVI101", GOOD_960, "960x960_10s"),
    ("OVI102", SCENE + "says, <S>We found<E> then <S>the page.<E> " + ACTION + "Audio: " + CAPTION, "960x960_10s"),
    ("OVI103", SCENE + "says, <S>We found the missing page at last.<E>. " + ACTION + "Audio: " + CAPTION, "960x960_10s"),
    ("OVI104", GOOD_960, "960x960_10s"),
    ("OVI105", GOOD_720, "720x720_5s"),
    ("OVI106", SCENE + SPEECH + "a < b > c " + ACTION + "Audio: " + CAPTION, "960x960_10s"),
    ("OVI201", GOOD_960, "960x960_10s"),
    ("OVI202", GOOD_720 + ".", "720x720_5s"),
    ("OVI203", GOOD_720, "720x720_5s"),
    ("OVI204", GOOD_960, "960x960_10s"),
    ("OVI205", SCENE + 'points at a sign reading "EXIT". ' + SPEECH + ACTION + "Audio: " + CAPTION, "960x960_10s"),
    ("OVI206", SCENE + "looks around. " + ACTION + "Audio: " + CAPTION, "960x960_10s"),
    ("OVI207", GOOD_960, "960x960_10s"),
    ("OVI208", GOOD_960, "960x960_10s"),
    ("OVI302", SCENE + "says, <S>One.<E> then <S>Two.<E> then adds <S>Three.<E> " + ACTION + "Audio: " + CAPTION, "960x960_5s"),
    ("OVI303", SCENE + "says, <S>" + "word " * 20 + "<E> " + ACTION + "Audio: " + CAPTION, "960x960_10s"),
    ("OVI305", GOOD_960, "960x960_10s"),
    ("OVI306", GOOD_960, "960x960_10s"),
    ("OVI401", GOOD_960, "960x960_10s"),
    ("OVI402", GOOD_720, "720x720_5s"),
]


@pytest.mark.parametrize("code, text, model", POSITIVE, ids=[p[0] for p in POSITIVE])
def test_rule_fires(code, text, model):
    assert code in codes(text, model=model)


@pytest.mark.parametrize("code, text, model", NEGATIVE, ids=[n[0] for n in NEGATIVE])
def test_rule_stays_quiet(code, text, model):
    assert code not in codes(text, model=model)


def _speech_of(words: int) -> str:
    return SCENE + "says, <S>" + " ".join(["go"] * words) + ".<E> " + ACTION + "Audio: " + CAPTION


@pytest.mark.parametrize("words, duration, severity", [
    (15, 5, None), (16, 5, Severity.INFO), (21, 5, Severity.WARNING), (28, 5, Severity.ERROR),
    (30, 10, None), (41, 10, Severity.WARNING), (56, 10, Severity.ERROR),
])
def test_ovi301_speech_density_levels(words, duration, severity):
    text = _speech_of(words) if words <= 20 else (
        SCENE + "says, " + " then ".join(f"<S>{' '.join(['go'] * (words // 3 + (i < words % 3)))}.<E>"
                                         for i in range(3)) + " " + ACTION + "Audio: " + CAPTION)
    found = [f for f in findings(text, duration=duration) if f.code == "OVI301"]
    assert [f.severity for f in found] == ([] if severity is None else [severity])


def test_ovi304_estimate():
    long_text = SCENE * 20 + SPEECH + "Audio: " + CAPTION
    found = [f for f in findings(long_text) if f.code == "OVI304"]
    assert found and found[0].severity is None  # the rule's default: error
    assert "estimated" in found[0].message
    medium = SCENE * 8 + SPEECH + "Audio: " + CAPTION
    warn = [f for f in findings(medium) if f.code == "OVI304"]
    assert [f.severity for f in warn] == [Severity.WARNING]
    assert "OVI304" not in codes(GOOD_960)


def _word_tokenizer(ckpt: Path) -> Path:
    """A word-level tokenizer.json in the checkpoint layout: one token per word, </s> appended."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    folder = ckpt / "Wan2.2-TI2V-5B" / "google" / "umt5-xxl"
    folder.mkdir(parents=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    return ckpt


def test_ovi304_counts_with_the_real_tokenizer_when_the_checkpoint_is_known(tmp_path):
    counter = token_counter(str(_word_tokenizer(tmp_path)))
    assert counter.exact and counter.count("a b  c") == 4  # three words + </s>
    # 520 one-letter words: ~1000 characters is ~260 estimated tokens, but 521 real ones
    text = "x " * 520 + "Audio: rain."
    assert "OVI304" not in codes(text)
    exact = [f for f in findings(text, tokens=counter) if f.code == "OVI304"]
    assert exact and "estimated" not in exact[0].message


def test_fixes_are_safe_and_converge():
    broken = (SCENE + "says, <s>We found the missing page at last.</S> <AUDCAP>" + CAPTION
              + "<ENDAUDCAP> " + ACTION)
    ctx = PromptContext(get_variant("960x960_10s"), 10.0, TokenCounter())
    fixed = fix_prompt(broken, ctx)
    assert fixed == GOOD_960 + " "  # trailing whitespace stays where it was
    assert not [f for f in lint_prompt(fixed, ctx) if f.fix is not None]
    # only the selected fix is applied
    only_tags = fix_prompt(broken, ctx, lambda code: code == "OVI103")
    assert "<S>We found the missing page at last.<E>" in only_tags and "<AUDCAP>" in only_tags


# -- storyboard rules ------------------------------------------------------------------------------

def storyboard(tmp_path: Path, body: str, name: str = "story.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def shot(shot_id: str, extra: str = "", prompt: str = GOOD_960) -> str:
    lines = [f"  - id: {shot_id}", f"    prompt: {json.dumps(prompt)}"]
    lines += [f"    {line}" for line in textwrap.dedent(extra).strip().splitlines()]
    return "\n".join(lines) + "\n"


def lint_story(tmp_path: Path, shots: str, header: str = "", **options) -> list:
    path = storyboard(tmp_path, "version: 1\nmodel: 960x960_10s\n" + header + "shots:\n" + shots)
    return lint_path(path, LintOptions(**options))


def story_codes(tmp_path: Path, shots: str, header: str = "") -> set[str]:
    return {d.code for d in lint_story(tmp_path, shots, header)}


def test_clean_storyboard(tmp_path):
    assert lint_story(tmp_path, shot("a") + shot("b", "extends: a")) == []


@pytest.mark.parametrize("shots, header, code", [
    (shot("a") + shot("a"), "", "SB101"),
    (shot("a") + shot("b", "extends: nope"), "", "SB101"),
    (shot("a", "extends: b") + shot("b", "extends: a"), "", "SB101"),
    (shot("a") + shot("b", "extends: a") + shot("c", "extends: b") + shot("d", "extends: c")
     + shot("e", "extends: d"), "", "SB103"),
    (shot("a") + shot("b", "extends: a\nfirst_frame: x.png"), "", "SB113"),
    (shot("a", "video_negative: 'blur, <S>'"), "", "SB107"),
    (shot("a"), "defaults:\n  audio_negative: 'echo Audio: hum'\n", "SB107"),
    (shot("a", "duration: 5"), "", "OVI403"),
    (shot("a", "resolution: [720, 1280]"), "", "OVI404"),
    (shot("a", "fp8: true"), "", "OVI405"),
    (shot("a", "noqa: [OVI301]"), "", "OVI001"),
    (shot("a", "bogus: 1"), "", "SB102"),
    ("  - id: a\n    scene: '{anna} waves.'\n    audio: wind\n", "", "SB110"),
    ("  - id: a\n    use: no-such-template\n", "", "SB111"),
])
def test_storyboard_rule_fires(tmp_path, shots, header, code):
    assert code in story_codes(tmp_path, shots, header)


@pytest.mark.parametrize("shots, header, code", [
    (shot("a") + shot("b"), "", "SB101"),
    (shot("a") + shot("b", "extends: a") + shot("c", "extends: b") + shot("d", "extends: c"), "", "SB103"),
    (shot("a") + shot("b", "extends: a"), "", "SB113"),
    (shot("a", "video_negative: 'blur, jitter'"), "", "SB107"),
    (shot("a", "duration: 10"), "", "OVI403"),
    (shot("a", "resolution: [704, 1280]"), "", "OVI404"),
    (shot("a", "fp8: false"), "", "OVI405"),
    (shot("a", "noqa: [OVI207]", prompt=GOOD_960.replace("says,", "nods.")), "", "OVI001"),
    (shot("a", "seed: 1"), "", "SB102"),
    ("  - id: a\n    scene: '{anna} waves.'\n    audio: wind\n",
     "characters:\n  anna: {look: a woman in a red coat}\n", "SB110"),
])
def test_storyboard_rule_stays_quiet(tmp_path, shots, header, code):
    assert code not in story_codes(tmp_path, shots, header)


def test_fp8_is_fine_on_the_720_model(tmp_path):
    path = storyboard(tmp_path, "version: 1\nmodel: 720x720_5s\nshots:\n" + shot("a", "fp8: true", GOOD_720))
    assert lint_path(path) == []


def test_noqa_suppresses_by_code_and_prefix(tmp_path):
    unattributed = GOOD_960.replace("says,", "nods.")
    assert "OVI207" in story_codes(tmp_path, shot("a", prompt=unattributed))
    assert story_codes(tmp_path, shot("a", "noqa: [OVI207]", unattributed)) == set()
    assert story_codes(tmp_path, shot("a", "noqa: [OVI2]", unattributed)) == set()


def test_select_and_ignore_prefixes(tmp_path):
    shots = shot("a", "fp8: true", prompt=GOOD_960.replace("says,", "nods."))
    every = {d.code for d in lint_story(tmp_path, shots)}
    assert every == {"OVI207", "OVI405"}
    assert {d.code for d in lint_story(tmp_path, shots, selection=Selection(("OVI2",)))} == {"OVI207"}
    assert {d.code for d in lint_story(tmp_path, shots, selection=Selection((), ("OVI4",)))} == {"OVI207"}
    # the more specific prefix wins
    assert {d.code for d in lint_story(tmp_path, shots, selection=Selection(("OVI405",), ("OVI4",)))} == {"OVI405"}


def test_diagnostics_point_into_the_prompt(tmp_path):
    path = storyboard(tmp_path, """\
        version: 1
        shots:
          - id: a
            prompt: |
              A man in a grey coat stands at a bus stop in the rain.
              He says, <s>Late again.<E> Audio: male voice, rain.
        """)
    (diag,) = [d for d in lint_path(path) if d.code == "OVI103"]
    assert (diag.line, diag.column, diag.end_line, diag.end_column) == (6, 16, 6, 19)
    assert path.read_text().splitlines()[5][diag.column - 1:diag.end_column - 1] == "<s>"
    assert diag.shot == "a" and diag.fixable


def _png(path: Path, size: tuple[int, int]) -> Path:
    from PIL import Image
    Image.new("RGB", size, (40, 80, 120)).save(path)
    return path


@pytest.mark.parametrize("setup, extra, expected", [
    (lambda d: None, "first_frame: missing.png", Severity.ERROR),
    (lambda d: (d / "bad.png").write_text("not an image"), "first_frame: bad.png", Severity.ERROR),
    (lambda d: _png(d / "tall.png", (64, 128)), "first_frame: tall.png\naspect: '16:9'", Severity.WARNING),
    (lambda d: _png(d / "wide.png", (128, 72)), "first_frame: wide.png\naspect: '16:9'", None),
    (lambda d: _png(d / "any.png", (64, 128)), "first_frame: any.png", None),
])
def test_ovi406_first_frames(tmp_path, setup, extra, expected):
    setup(tmp_path)
    found = [d for d in lint_story(tmp_path, shot("a", extra)) if d.code == "OVI406"]
    assert [d.severity for d in found] == ([] if expected is None else [expected])


def test_csv_files_use_the_model_their_caption_form_implies(tmp_path):
    path = tmp_path / "prompts.csv"
    path.write_text("text_prompt\n" + json.dumps(GOOD_720) + "\n", encoding="utf-8")
    assert lint_path(path) == []  # <AUDCAP> -> 720x720_5s
    assert {d.code for d in lint_path(path, LintOptions(model="960x960_10s"))} == {"OVI401"}
    other = tmp_path / "new.csv"
    other.write_text("text_prompt\n" + json.dumps(GOOD_960) + "\n", encoding="utf-8")
    assert lint_path(other) == []  # `Audio:` -> 960x960_10s


def test_csv_positions_are_file_columns(tmp_path):
    path = tmp_path / "prompts.csv"
    text = 'A "quoted" sign, he says, <s>hi<E>. Audio: wind.'
    path.write_text("text_prompt,image_path\n" + '"' + text.replace('"', '""') + '",\n', encoding="utf-8")
    (diag,) = [d for d in lint_path(path) if d.code == "OVI103"]
    row = path.read_text().splitlines()[1]
    assert diag.line == 2 and row[diag.column - 1:diag.end_column - 1] == "<s>"


def test_huge_prompts_get_one_finding():
    text = "a says, <S>hi<E> <AUDCAP>x<ENDAUDCAP> " * 2000
    found = findings(text)
    assert [f.code for f in found] == ["OVI304"] and "characters" in found[0].message


@pytest.mark.slow
def test_exact_count_matches_transformers_on_the_test_tokenizer(tmp_path):
    """Our torch-free count equals what the reference's AutoTokenizer path produces."""
    import shutil

    from transformers import AutoTokenizer

    from engine.layout import TOKENIZER_DIR
    from engine.testing.tiny_components import TOKENIZER_FILES
    from ovi_studio.lint.tokens import clean_whitespace

    shutil.copytree(TOKENIZER_FILES, tmp_path / TOKENIZER_DIR)
    counter = token_counter(str(tmp_path))
    reference = AutoTokenizer.from_pretrained(str(tmp_path / TOKENIZER_DIR))
    for text in (GOOD_960, GOOD_720, "  spaced\n\nout  &amp; text ", "<S>Hi<E> Audio: x"):
        expected = len(reference(clean_whitespace(text), add_special_tokens=True).input_ids)
        assert counter.exact and counter.count(text) == expected


def test_template_parameters_are_passed_through_from_the_loader(tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "mine.yaml").write_text(textwrap.dedent(f"""\
        params:
          who: {{description: who speaks}}
        shot:
          prompt: {json.dumps(GOOD_960.replace("A young woman", "{who}"))}
        """), encoding="utf-8")
    missing = "  - id: a\n    use: mine\n"
    given = "  - id: a\n    use: mine\n    with: {who: A young woman}\n"
    assert "SB112" in story_codes(tmp_path, missing)
    assert story_codes(tmp_path, given) == set()
