"""`ovi-studio render` on the command line: exit codes, messages, dry runs, engine choice."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ovi_studio.cli import app

runner = CliRunner()

STORY = """\
version: 1
model: 720x720_5s
shots:
  - id: intro
    scene: A sunny beach.
    audio: waves
  - id: portrait
    first_frame: broken.png
    scene: A portrait.
    audio: wind
  - id: portrait-more
    extends: portrait
    scene: The portrait, closer.
    audio: wind
  - id: outro
    scene: A sunset.
    audio: waves
"""


def _story(tmp_path: Path, text: str = STORY) -> Path:
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    path = tmp_path / "story.yaml"
    path.write_text(text)
    return path


def invoke(*args: str):
    return runner.invoke(app, ["render", *map(str, args)])


def test_a_broken_first_frame_fails_its_shot_and_descendants_only(tmp_path):
    story = _story(tmp_path)  # lint stops this render; --no-lint shows what the session does
    result = invoke(story, "-o", tmp_path / "out", "--engine", "preview", "--no-lint")
    assert result.exit_code == 1, result.output
    assert "broken.png is not a readable image" in result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    status = {s["id"]: s["takes"][0]["status"] for s in report["shots"]}
    assert status == {"intro": "rendered", "portrait": "failed", "portrait-more": "skipped", "outro": "rendered"}
    assert report["failed_shots"] == ["portrait"] and report["final"]["status"] == "skipped"
    assert "portrait" in result.output.splitlines()[-1] or "failed" in result.output


def test_dry_run_prints_the_plan_and_renders_nothing(tmp_path):
    story = _story(tmp_path, STORY.replace("    first_frame: broken.png\n", ""))
    result = invoke(story, "-o", tmp_path / "out", "--engine", "preview", "--dry-run")
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.output.splitlines() if "/take" in line}
    assert " t2v " in rows["intro/take0"] and rows["intro/take0"].endswith("render: not rendered yet")
    assert " extends portrait " in rows["portrait-more/take0"]
    assert "4 of 4 takes to render" in result.output
    assert not (tmp_path / "out").exists()
    planned = runner.invoke(app, ["plan", str(story), "-o", str(tmp_path / "out"), "--engine", "preview"])
    assert planned.exit_code == 0 and planned.output == result.output  # one printer, one answer


def test_bad_input_exits_2_without_a_traceback(tmp_path):
    story = _story(tmp_path)
    for args in ([tmp_path / "missing.yaml"],
                 [story, "--set", "steps"],
                 [story, "--set", "colour=red"],
                 [story, "--set", "steps=-3"],
                 [story, "--set", "crf=high"],
                 [story, "--set", "loudness=loud"],
                 [story, "--only", "nope"],
                 [story, "--engine", "gpu"]):
        result = invoke(*args, "-o", tmp_path / "out")
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output and "error:" in result.output


def test_a_bad_setting_value_says_what_is_expected(tmp_path):
    story = _story(tmp_path)
    for args, message in ((["--set", "steps=-3"], "--set steps=-3: expected a value greater than or equal to 1"),
                          (["--set", "solver=rk4"], "--set solver=rk4: expected 'unipc', 'dpm++' or 'euler'"),
                          (["--blocks-to-swap", "many"], "--set blocks_to_swap=many: expected a valid integer or 'auto'")):
        result = invoke(story, "-o", tmp_path / "out", "--engine", "preview", *args)
        assert result.exit_code == 2 and message in result.output, result.output
        assert "pydantic" not in result.output


def test_a_storyboard_with_errors_is_refused(tmp_path):
    story = _story(tmp_path, STORY.replace("extends: portrait", "extends: nowhere"))
    result = invoke(story, "-o", tmp_path / "out", "--engine", "preview")
    assert result.exit_code == 1 and "nowhere" in result.output
    assert not (tmp_path / "out").exists()


LINT_ERRORS = """\
version: 1
model: 720x720_5s
shots:
  - id: door
    prompt: He calls out, <S>Who's there? <AUDCAP>Knocks.<ENDAUDCAP>
  - id: long
    duration: 7
    scene: A long corridor.
    audio: Footsteps.
  - id: fine
    scene: A quiet room.
    audio: A clock ticking.
"""


def test_lint_errors_stop_the_render_before_anything_renders(tmp_path):
    from ovi_studio.cli import check_cmd  # noqa: F401  (the same findings `check` prints)
    story = _story(tmp_path, LINT_ERRORS)
    out = tmp_path / "out"
    (out / "shots" / "fine" / "take0").mkdir(parents=True)
    keep = out / "shots" / "fine" / "take0" / "clip.mp4"
    keep.write_bytes(b"earlier work")
    result = invoke(story, "-o", out, "--engine", "preview")
    checked = runner.invoke(app, ["check", str(story)])
    assert result.exit_code == 1 and checked.exit_code == 1
    assert "OVI101" in result.output and "OVI403" in result.output
    for line in checked.output.splitlines():
        if line.startswith(str(story)):
            assert line in result.output  # printed as `check` prints it
    assert "nothing was rendered" in result.output and "--no-lint" in result.output
    assert keep.read_bytes() == b"earlier work" and not (out / "report.json").exists()
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["clip.mp4"]


@pytest.mark.slow
def test_no_lint_renders_anyway_and_says_so_in_the_report(tmp_path):
    story = _story(tmp_path, LINT_ERRORS.replace("    duration: 7\n", ""))
    result = invoke(story, "-o", tmp_path / "out", "--engine", "preview", "--no-lint")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["lint"] == {"skipped": True, "reason": "--no-lint"}


@pytest.mark.slow
def test_warnings_are_shown_and_the_render_goes_on(tmp_path):
    story = _story(tmp_path, LINT_ERRORS.split("  - id: door")[0] + """\
  - id: busy
    prompt: "She says, <S>one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty twenty-one twenty-two<E> <AUDCAP>Rain.<ENDAUDCAP>"
""")
    result = invoke(story, "-o", tmp_path / "out", "--engine", "preview")
    assert result.exit_code == 0, result.output
    assert "warning" in result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["lint"]["errors"] == 0 and report["lint"]["warnings"] >= 1


def test_asking_for_ovi_never_falls_back(tmp_path):
    story = _story(tmp_path, STORY.replace("    first_frame: broken.png\n", ""))
    (tmp_path / "ckpts" / "Ovi").mkdir(parents=True)
    result = invoke(story, "-o", tmp_path / "out", "--engine", "ovi", "--ckpt-dir", tmp_path / "ckpts")
    assert result.exit_code == 2
    assert "Ovi/model.safetensors" in result.output and "chetwinlow1/Ovi" in result.output
    assert "Wan2.2-TI2V-5B/Wan2.2_VAE.pth" in result.output and "hkchengrex/MMAudio" in result.output
    assert not (tmp_path / "out" / "shots").exists()


def test_a_storyboard_can_demand_the_model_and_the_flag_overrides_it(tmp_path, monkeypatch):
    """`engine: ovi` never falls back; `--engine preview` beats the key. The preview render
    also starts a shot from a video's last frame (planned and rendered the same way)."""
    import numpy as np
    from ovi_studio.media import video
    monkeypatch.delenv("OVI_CKPT_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    frames = np.zeros((2, 64, 64, 3), np.uint8)
    frames[-1] = (250, 10, 10)
    video.write_lossless(tmp_path / "prev.mkv", frames)
    story = _story(tmp_path, "version: 1\nmodel: 720x720_5s\nengine: ovi\nshots:\n"
                             "  - id: one\n    scene: A cat.\n    first_frame: prev.mkv\n")
    demanded = invoke(story, "-o", tmp_path / "out")
    assert demanded.exit_code == 2 and "checkpoints are incomplete" in demanded.output
    assert "PREVIEW" not in demanded.output
    result = invoke(story, "-o", tmp_path / "out", "--engine", "preview", "-q")
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "out" / "shots" / "one" / "take0" / "meta.json").read_text())
    assert meta["mode"] == "i2v" and meta["first_frame"]["source"].endswith("prev.mkv")
    assert meta["key_inputs"]["engine"] == "preview"


def test_auto_falls_back_to_preview_with_a_banner(tmp_path, monkeypatch):
    monkeypatch.delenv("OVI_CKPT_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    story = _story(tmp_path, "version: 1\nmodel: 720x720_5s\nshots:\n  - id: one\n    scene: A cat.\n")
    result = invoke(story, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "PREVIEW" in result.output and "--engine ovi" in result.output
    assert "[1/1] one/take0 done" in result.output  # plain progress lines when not a terminal
    assert (tmp_path / "out" / "final.mp4").is_file()


@pytest.mark.slow
def test_a_csv_prompt_file_renders(tmp_path):
    csv = tmp_path / "prompts.csv"
    csv.write_text('text_prompt\n"A dog barks. <S>Woof there.<E> Audio: barking"\n"A cat sleeps. Audio: purring"\n')
    result = invoke(csv, "--engine", "preview", "-q")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "prompts" / "report.json").read_text())
    assert len(report["shots"]) == 2 and report["final"]["status"] == "done"


def test_asking_for_cuda_without_one_is_a_clear_error(tmp_path, tiny_ckpt):
    import torch
    story = _story(tmp_path, "version: 1\nmodel: 720x720_5s\nshots:\n  - id: one\n    scene: A cat.\n")
    result = invoke(story, "-o", tmp_path / "out", "--engine", "ovi", "--ckpt-dir", tiny_ckpt,
                    "--device", "cuda", "--dry-run")
    if torch.cuda.is_available():
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 2 and "no CUDA device" in result.output


def test_an_unknown_memory_preset_is_a_clear_error(tmp_path, tiny_ckpt):
    result = invoke(_story(tmp_path), "-o", tmp_path / "out", "--engine", "ovi", "--ckpt-dir",
                    tiny_ckpt, "--device", "cpu", "--preset", "3gb")
    assert result.exit_code == 2, result.output
    assert "unknown memory preset '3gb'" in result.output and "12gb" in result.output


@pytest.mark.slow
def test_attention_and_compile_are_chosen_and_reported(tmp_path, tiny_ckpt_short):
    story = _story(tmp_path, "version: 1\nmodel: 720x720_5s\nshots:\n  - id: one\n    scene: A cat.\n")
    common = [story, "-o", tmp_path / "out", "--engine", "ovi", "--ckpt-dir", tiny_ckpt_short,
              "--device", "cpu", "--set", "steps=1", "-q"]
    missing = invoke(*common, "--attention", "flash3")
    assert missing.exit_code == 2 and "not available" in missing.output and "--attention auto" in missing.output
    assert invoke(*common, "--attention", "fast").exit_code == 2
    result = invoke(*common, "--attention", "sdpa", "--compile")
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "out" / "shots" / "one" / "take0" / "meta.json").read_text())
    assert meta["engine"]["attention"] == "sdpa" and meta["engine"]["compile"] is True


def test_fp8_and_blocks_to_swap_flags_are_shot_settings(tmp_path, tiny_ckpt_short):
    story = _story(tmp_path, "version: 1\nmodel: 720x720_5s\nshots:\n  - id: one\n    scene: A cat.\n")
    result = invoke(story, "-o", tmp_path / "out", "--engine", "ovi", "--ckpt-dir", tiny_ckpt_short,
                    "--device", "cpu", "--set", "steps=1", "-q", "--fp8", "--blocks-to-swap", "3")
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "out" / "shots" / "one" / "take0" / "meta.json").read_text())
    assert meta["settings"]["fp8"] is True and meta["settings"]["blocks_to_swap"] == 3
    assert meta["engine_info"]["memory"]["fp8"] == "scaled"  # no published fp8 file in the folder
    assert meta["engine_info"]["memory"]["blocks_to_swap"] == 3

