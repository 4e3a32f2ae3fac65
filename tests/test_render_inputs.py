"""What a render starts from (render/inputs.py): the storyboard as the session renders it, with
`--set` values, a memory preset's settings and `--takes` applied to every shot (so they reach
each take's cache key), the cut's checked values, and a clear error for each bad input. Fast
(no render): mutmut runs these for every mutant of render/inputs.py (docs/testing.md).
Expected values are literals from the storyboard schema, Ovi's defaults, the memory presets'
table (engine/presets.py) and x264's preset names."""
from __future__ import annotations

from pathlib import Path

import pytest

from ovi_studio.errors import UserError
from ovi_studio.render.inputs import RenderOptions, load_for_render

STORY = """\
version: 1
model: 720x720_5s
defaults: {steps: 30}
shots:
  - id: a
    prompt: "A lamp glows. Audio: hum."
    seed: 4
  - id: b
    extends: a
    prompt: "The lamp flickers. Audio: buzz."
  - id: c
    prompt: "Rain on glass. Audio: rain."
    steps: 20
"""
SCHEMA_HINT = "\n  hint: `ovi-studio schema` lists every setting and its values"


def story(tmp_path: Path, text: str = STORY) -> Path:
    path = tmp_path / "story.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str = STORY, **options):
    return load_for_render(RenderOptions(source=story(tmp_path, text), **options))


def error_of(tmp_path: Path, text: str = STORY, **options) -> str:
    with pytest.raises(UserError) as raised:
        load(tmp_path, text, **options)
    return str(raised.value)


def test_the_storyboard_as_written_when_nothing_is_set(tmp_path):
    loaded, cut = load(tmp_path)
    assert cut == {}
    assert [(s.id, s.takes, s.settings.steps, s.settings.seed, s.settings.color_match, s.settings.fp8,
             s.settings.tiled_vae) for s in loaded.shots] == [
        ("a", 1, 30, 4, "first", False, False), ("b", 1, 30, 100, "first", False, False),
        ("c", 1, 20, 100, "off", False, False)]


def test_set_values_beat_the_storyboards_own_on_every_shot_and_keep_chains_chained(tmp_path):
    loaded, cut = load(tmp_path, overrides={"steps": 12, "seed": 9, "loras": [{"path": "l.safetensors",
                                                                               "scale": 0.5}]})
    assert cut == {}
    assert [(s.settings.steps, s.settings.seed, s.settings.color_match) for s in loaded.shots] == [
        (12, 9, "first"), (12, 9, "first"), (12, 9, "off")]
    lora = loaded.shots[2].settings.loras[0]
    assert (lora.path, lora.scale, lora.tower) == (str(tmp_path / "l.safetensors"), 0.5, None)


def test_takes_applies_to_every_shot(tmp_path):
    loaded, _ = load(tmp_path, takes=3)
    assert [s.takes for s in loaded.shots] == [3, 3, 3]
    loaded, _ = load(tmp_path, takes=None)
    assert [s.takes for s in loaded.shots] == [1, 1, 1]


@pytest.mark.parametrize("preset, fp8, tiled", [
    ("80gb", False, False),  # bf16, everything resident
    ("24gb", False, True),  # tiled VAE
    ("12gb", False, True),
    ("8gb", True, True),  # fp8 block-scaled weights, tiled VAE
])
def test_a_memory_preset_sets_the_fp8_and_tiling_it_implies(tmp_path, preset, fp8, tiled):
    loaded, cut = load(tmp_path, preset=preset)
    assert {(s.settings.fp8, s.settings.tiled_vae) for s in loaded.shots} == {(fp8, tiled)}
    assert cut == {}  # a memory preset is not the encoder's --set preset


def test_set_values_beat_the_presets(tmp_path):
    loaded, _ = load(tmp_path, preset="8gb", overrides={"fp8": False, "tiled_vae": False})
    assert {(s.settings.fp8, s.settings.tiled_vae) for s in loaded.shots} == {(False, False)}


def test_an_unknown_memory_preset_names_the_presets(tmp_path):
    assert error_of(tmp_path, preset="4gb") == (
        "unknown memory preset '4gb'\n  hint: choose one of 80gb, 24gb, 16gb, 12gb, 8gb "
        "(`ovi-studio doctor` suggests one)")


def test_the_cuts_values_are_checked_and_typed(tmp_path):
    loaded, cut = load(tmp_path, overrides={"loudness": False, "final": 12, "crf": 0, "preset": "veryslow",
                                            "subtitles": False, "chapters": True, "steps": 7})
    assert cut == {"crf": 0, "preset": "veryslow", "loudness": "off", "final": "12",
                   "subtitles": False, "chapters": True}
    assert loaded.shots[0].settings.steps == 7
    assert load(tmp_path, overrides={"loudness": -23, "crf": 51})[1] == {"crf": 51, "loudness": -23.0}


@pytest.mark.parametrize("crf", [-1, 52, 20.0, "20", True])
def test_crf_is_a_whole_number_from_0_to_51(tmp_path, crf):
    assert error_of(tmp_path, overrides={"crf": crf}) == f"--set crf={crf}: expected an integer from 0 to 51"


def test_the_encoders_preset_is_one_of_x264s(tmp_path):
    assert error_of(tmp_path, overrides={"preset": "fastest"}) == (
        "--set preset=fastest: expected one of ultrafast, superfast, veryfast, faster, fast, medium, "
        "slow, slower, veryslow, placebo")
    assert load(tmp_path, overrides={"preset": "ultrafast"})[1] == {"preset": "ultrafast"}


def test_unknown_set_keys_are_named_with_every_settable_key(tmp_path):
    message = error_of(tmp_path, overrides={"zz": 1, "aa": 2, "steps": 3})
    assert message == (
        "--set: unknown key(s) aa, zz\n  hint: settable: aspect, audio_guidance, audio_negative, "
        "blocks_to_swap, cfg_batch, chapters, color_match, crf, draft, draft_loras, duration, final, "
        "fit, fp8, fp8_file, loras, loudness, preset, resolution, seed, seed_frame, shift, slg_layer, "
        "solver, step_cache, steps, subtitles, tiled_vae, transition, transition_frames, video_guidance, "
        "video_negative")


@pytest.mark.parametrize("overrides, text", [
    ({"steps": 0}, "--set steps=0: expected a value greater than or equal to 1"),
    ({"steps": 1001}, "--set steps=1001: expected a value less than or equal to 1000"),
    ({"solver": "bad"}, "--set solver=bad: expected 'unipc', 'dpm++' or 'euler'"),
    ({"solver": "bad", "seed": -1}, "--set solver=bad: expected 'unipc', 'dpm++' or 'euler'; "
                                    "--set seed=-1: expected a value greater than or equal to 0"),
    ({"loudness": "loud"}, "--set loudness=loud: expected a valid number or 'off'"),
    ({"final": "../x.mp4"}, "--set final=../x.mp4: `final: ../x.mp4` must stay inside the output "
                            "folder (no `..`, `.` or empty parts)"),
    # a rule over two keys: said once, without a key of its own
    ({"resolution": [704, 1280], "aspect": "16:9"}, "--set: give either `resolution` or `aspect`, not both"),
])
def test_a_bad_set_value_says_what_is_expected(tmp_path, overrides, text):
    assert error_of(tmp_path, overrides=overrides) == text + SCHEMA_HINT


def test_a_missing_or_odd_source_is_a_user_error(tmp_path):
    with pytest.raises(UserError) as raised:
        load_for_render(RenderOptions(source=tmp_path / "nope.yaml"))
    assert str(raised.value) == f"{tmp_path / 'nope.yaml'}: does not exist\n  hint: pass a storyboard .yaml or a prompt .csv"
    with pytest.raises(UserError) as raised:
        load_for_render(RenderOptions(source=tmp_path))
    assert str(raised.value) == f"{tmp_path}: is a folder, not a file\n  hint: pass a storyboard .yaml or a prompt .csv"


def test_a_storyboard_that_does_not_load_stops_the_render_with_its_errors(tmp_path):
    path = tmp_path / "story.yaml"
    expected = (f"{path}: the storyboard has 1 error(s) that stop it loading; nothing was rendered\n"
                f"  {path}:2:1: SB102 [error] `shots`: List should have at least 1 item after validation, "
                "not 0\n  hint: run `ovi-studio check` for details and fixes")
    assert error_of(tmp_path, "version: 1\nshots: []\n") == expected
    assert error_of(tmp_path, "version: 1\nshots: []\n", lint=False) == expected


def test_without_the_lint_gate_the_loaders_own_errors_still_stop_the_render(tmp_path):
    text = "version: 1\nshots:\n  - {id: a, prompt: x}\n  - {id: b, use: nosuch}\n"
    loaded, _ = load(tmp_path, text)  # the lint gate reports it later, with the rest
    assert [s.id for s in loaded.shots] == ["a"]
    path = tmp_path / "story.yaml"
    assert error_of(tmp_path, text, lint=False) == (
        f"{path}: the storyboard has 1 error(s) that stop it loading; nothing was rendered\n"
        f"  {path}:4:18: SB111 [error] unknown template `nosuch`; available: music-performance, "
        "sfx-broll, talking-head, two-person-dialogue\n  hint: run `ovi-studio check` for details and fixes")


def test_the_loaders_errors_are_listed_one_a_line_the_first_20(tmp_path):
    shots = "".join(f"  - {{id: s{i}, use: nosuch{i}}}\n" for i in range(21))
    message = error_of(tmp_path, "version: 1\nshots:\n  - {id: a, prompt: x}\n" + shots, lint=False)
    lines = message.splitlines()
    assert lines[0].endswith(": the storyboard has 21 error(s) that stop it loading; nothing was rendered")
    assert len(lines) == 1 + 20 + 1 and lines[-1] == "  hint: run `ovi-studio check` for details and fixes"
    assert all(line.startswith(f"  {tmp_path / 'story.yaml'}:") and f"unknown template `nosuch{i}`" in line
               for i, line in enumerate(lines[1:21]))
    assert [line.split(":")[1] for line in lines[1:21]] == [str(4 + i) for i in range(20)]  # shots s0 to s19


def test_a_prompt_csv_is_imported_into_the_output_folder_once(tmp_path):
    (tmp_path / "batch.csv").write_text('text_prompt\n"A dog barks. <AUDCAP>bark<ENDAUDCAP>"\n')
    options = RenderOptions(source=tmp_path / "batch.csv")
    loaded, _ = load_for_render(options)
    target = tmp_path / "out" / "batch" / "batch.storyboard.yaml"
    assert options.out_dir == tmp_path / "out" / "batch" and loaded.path == target
    assert [(s.id, s.prompt) for s in loaded.shots] == [("shot-001", "A dog barks. <AUDCAP>bark<ENDAUDCAP>")]
    written = target.read_text(encoding="utf-8")
    assert "version: 1\n" in written and "model: 720x720_5s\n" in written  # <AUDCAP>: the 720 model
    mtime = target.stat().st_mtime_ns
    load_for_render(RenderOptions(source=tmp_path / "batch.csv"))
    assert target.stat().st_mtime_ns == mtime  # the same text is not written again
    target.write_text("edited", encoding="utf-8")
    elsewhere = RenderOptions(source=tmp_path / "batch.csv", out_dir=tmp_path / "o")
    load_for_render(elsewhere)
    assert (tmp_path / "o" / "batch.storyboard.yaml").read_text(encoding="utf-8") == written
    load_for_render(RenderOptions(source=tmp_path / "batch.csv"))
    assert target.read_text(encoding="utf-8") == written  # an edited copy is written again


def test_a_csv_named_in_capitals_is_still_a_csv(tmp_path):
    (tmp_path / "SHOTS.CSV").write_text('text_prompt\n"Waves. Audio: surf."\n')
    loaded, _ = load_for_render(RenderOptions(source=tmp_path / "SHOTS.CSV"))
    assert loaded.path == tmp_path / "out" / "SHOTS" / "SHOTS.storyboard.yaml"


def test_the_engine_options_carry_the_device_settings():
    options = RenderOptions(device="cuda:1", dtype="bf16", preset="12gb", attention="sdpa", compile=True)
    engine = options.engine_options
    assert (engine.device, engine.dtype, engine.preset, engine.attention, engine.compile) == (
        "cuda:1", "bf16", "12gb", "sdpa", True)
