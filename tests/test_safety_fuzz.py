"""A seeded, generated corpus of hostile inputs — storyboards, prompts, CSVs, first-frame images,
`--set` values, state files and caches — through `check`, `plan` and `render`: never a
traceback or an internal error, exit codes in {0, 1, 2}, every error names its file, and `check`
passes nothing `render` refuses as bad input."""
from __future__ import annotations

import csv
import io
import json
import random
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ovi_studio.cli import app

runner = CliRunner()
SEED = 1010
CASES = 200

BASE_SHOT = {"id": "a", "scene": "A quiet street at night.", "dialogue": ["Hello there."],
             "audio": "distant traffic"}
HOSTILE_NUMBERS = [float("nan"), float("inf"), float("-inf"), -1, 0, 1e308, -1e308, 2**70, 0.5, 10**6]
HOSTILE_TEXT = ["", " ", "../../escape.mp4", "/etc/passwd", "a/../../b", "[red]x[/]", "[bold]",
                "\x07bell", "\x1b[31m", "-draft", "take:2", "file:x", "\u202e", "\\x.mp4",
                "x" * 5000, "shots/a.mp4", "report.json", ".ovi-studio/x", "<S>hi<E>", "{nobody}",
                "0:1", "100:1", "16:9", "1e400:1", "1:0.0"]
SETTING_KEYS = ["resolution", "aspect", "duration", "steps", "solver", "shift", "seed",
                "video_guidance", "audio_guidance", "slg_layer", "fp8", "blocks_to_swap",
                "seed_frame", "color_match", "fit", "transition", "transition_frames", "takes",
                "first_frame", "extends"]
OUTPUT_KEYS = ["final", "loudness", "subtitles", "chapters", "dir"]


@dataclass
class Case:
    kind: str
    files: dict[str, bytes | str | None] = field(default_factory=dict)  # None: a folder
    target: str = "story.yaml"
    sets: list[str] = field(default_factory=list)
    takes: str | None = None
    state: dict[str, bytes | None] = field(default_factory=dict)  # files in the output folder


def _hostile_value(rng: random.Random):
    pick = rng.random()
    if pick < 0.35:
        return rng.choice(HOSTILE_NUMBERS)
    if pick < 0.7:
        return rng.choice(HOSTILE_TEXT)
    if pick < 0.8:
        return [rng.choice(HOSTILE_NUMBERS), rng.choice(HOSTILE_NUMBERS)]
    if pick < 0.9:
        return {"x": rng.choice(HOSTILE_TEXT)}
    return rng.choice([True, False, None, [], {}])


def _yaml_scalar(value) -> str:
    """JSON is YAML (NaN and infinities spelled the YAML way)."""
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("NaN", ".nan").replace("-Infinity", "-.inf").replace("Infinity", ".inf")


def _storyboard(shots: list[dict], extra: dict | None = None) -> str:
    lines = ["version: 1", "model: 720x720_5s"]
    for key, value in (extra or {}).items():
        lines.append(f"{key}: {_yaml_scalar(value)}")
    lines.append("shots:")
    for shot in shots:
        lines.append("  - " + "\n    ".join(f"{k}: {_yaml_scalar(v)}" for k, v in shot.items()))
    return "\n".join(lines) + "\n"


def _png(width: int, height: int, text_chunk: int = 0, truncate: bool = False) -> bytes:
    """A PNG whose header declares width x height (pixels are one black row: a declared size
    far beyond the data is what a decompression bomb looks like to a reader)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    body = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    if text_chunk:
        body += chunk(b"zTXt", b"comment\x00\x00" + zlib.compress(b"a" * text_chunk))
    body += chunk(b"IDAT", zlib.compress(b"\x00" + b"\x00" * 3 * min(width, 64)))
    data = b"\x89PNG\r\n\x1a\n" + body + chunk(b"IEND", b"")
    return data[: len(data) // 2] if truncate else data


def _good_png() -> bytes:
    from PIL import Image
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (90, 40, 20)).save(buffer, "PNG")
    return buffer.getvalue()


IMAGES = {
    "bomb.png": lambda: _png(100_000, 100_000),
    "wide-bomb.png": lambda: _png(1 << 20, 64),
    "text-bomb.png": lambda: _png(64, 64, text_chunk=8 << 20),
    "truncated.png": lambda: _good_png()[:60],
    "empty.png": lambda: b"",
    "noise.png": lambda: bytes(random.Random(3).getrandbits(8) for _ in range(512)),
    "good.png": _good_png,
    "folder.png": lambda: None,
    "video.mp4": lambda: b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64,
}


def _case(rng: random.Random, index: int) -> Case:
    kind = ["settings", "output", "prompt", "image", "csv", "set", "state", "yaml"][index % 8]
    shot = dict(BASE_SHOT)
    if kind == "settings":
        for _ in range(rng.randint(1, 3)):
            shot[rng.choice(SETTING_KEYS)] = _hostile_value(rng)
        return Case(kind, {"story.yaml": _storyboard([shot, {"id": "b", "prompt": "A dog. Audio: bark."}])})
    if kind == "output":
        output = {rng.choice(OUTPUT_KEYS): _hostile_value(rng) for _ in range(rng.randint(1, 2))}
        return Case(kind, {"story.yaml": _storyboard([shot], {"output": output,
                                                               "title": rng.choice(HOSTILE_TEXT)})})
    if kind == "prompt":
        alphabet = "ab <S><E>Audio:<AUDCAP><ENDAUDCAP>{}[]/\\\x07\u2028é😀\t\n"
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120)))
        prompt_shot = {"id": rng.choice(["a", "[red]a", "a-b", "x" * 200]), "prompt": text}
        return Case(kind, {"story.yaml": _storyboard([prompt_shot])})
    if kind == "image":
        name = rng.choice(sorted(IMAGES))
        shot.update(first_frame=name)
        return Case(kind, {"story.yaml": _storyboard([shot]), name: IMAGES[name]()})
    if kind == "csv":
        alphabet = "ab ,\"\n\r<S><E>Audio:<AUDCAP>\x01\x0c\x85\u2028\ufeff|&*!%@`'#:-"
        rows = [["text_prompt", "image_path"]] + [
            ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))),
             rng.choice(["", "missing.png", "../x.png", "good.png"])] for _ in range(rng.randint(0, 3))]
        buffer = io.StringIO(newline="")
        csv.writer(buffer).writerows(rows)
        return Case(kind, {"prompts.csv": buffer.getvalue(), "good.png": _good_png()}, "prompts.csv")
    if kind == "set":
        key = rng.choice(SETTING_KEYS[:-3] + OUTPUT_KEYS[:-1] + ["crf", "preset", "tiled_vae", "nope"])
        value = rng.choice([str(v) for v in HOSTILE_NUMBERS] + HOSTILE_TEXT + ["[1, 2]", "{a: 1}", "*x", "&a b"])
        takes = rng.choice([None, None, "0", "-1", "65", "abc", "2"])
        return Case(kind, {"story.yaml": _storyboard([shot])}, sets=[f"{key}={value}"], takes=takes)
    if kind == "state":
        garbage = rng.choice([b"{", b"[1, 2]", b'{"cache_key": 5, "files": "x"}', b"\xff\xfe",
                              b'{"final": [1], "shots": 3}', b'{"files": {"x": {"path": "../../x"}}}', None])
        name = rng.choice(["report.json", "shots/a/take0/meta.json", ".ovi-studio/lock",
                           ".ovi-studio/tmp/1-dead/x.mkv", ".ovi-studio"])
        return Case(kind, {"story.yaml": _storyboard([shot])}, state={name: garbage})
    # raw YAML oddities: aliases, tags, deep nesting, odd scalars
    raw = rng.choice([
        "version: 1\nshots: &s [*s]\n", "a: &a [" + ",".join(["x" * 1000] * 10) + "]\nb: [" + ",".join(["*a"] * 900) + "]\n",
        "version: !!python/object:os.system 1\n", "[" * 200 + "]" * 200, "version: 1\nshots:\n  - id: a\n    prompt: |\n  bad",
        "\ufeffversion: 1\nshots: [{id: a, prompt: x}]\n", "version: 1\nmodel: 720x720_5s\nshots: [{id: a, scene: x, takes: 1e9}]\n",
        "version: 1\nshots: [{id: a, prompt: '\\ud800'}]\n", ":\n:\n- - -\n", "version: 1\nshots: {}\n",
    ])
    return Case("yaml", {"story.yaml": raw})


def _write(folder: Path, case: Case) -> None:
    for name, data in case.files.items():
        path = folder / name
        if data is None:
            path.mkdir()
        else:
            path.write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    for name, data in case.state.items():
        path = folder / "out" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir() if data is None else path.write_bytes(data)


def _invoke(*args: str):
    return runner.invoke(app, list(args))


def _assert_clean(result, case: Case, what: str, folder: Path) -> None:
    where = f"{what} on {case.kind} case {case.files} {case.sets} {case.takes} {case.state}"
    assert result.exit_code in (0, 1, 2), where + "\n" + result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), where
    assert "Traceback" not in result.output and "internal error" not in result.output, where + result.output
    if result.exit_code == 2 and "Usage:" in result.output:  # a bad option value (typer's own)
        assert "--takes" in result.output, where + "\n" + result.output
    elif result.exit_code == 2:
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert errors, where + "\n" + result.output
        named = (case.target, *case.files, "--set", "out")
        assert any(name in line for line in errors for name in named), where + "\n" + result.output


@pytest.fixture
def corpus_env(tmp_path, monkeypatch):
    monkeypatch.setenv("OVI_STUDIO_LOG_DIR", str(tmp_path / "crash-logs"))
    monkeypatch.setenv("OVI_STUDIO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("OVI_CKPT_DIR", raising=False)
    return tmp_path


@pytest.mark.slow
def test_generated_corpus_never_crashes_and_check_comes_first(corpus_env, monkeypatch):
    rng = random.Random(SEED)
    passed_check = []
    for index in range(CASES):
        case = _case(rng, index)
        folder = corpus_env / f"case{index}"
        folder.mkdir()
        _write(folder, case)
        monkeypatch.chdir(folder)
        target = case.target
        checked = _invoke("check", target)
        _assert_clean(checked, case, "check", folder)
        if target.endswith(".yaml"):
            _assert_clean(_invoke("plan", target, "--engine", "preview", "--out", "out"), case, "plan", folder)
        args = ["render", target, "-o", "out", "--engine", "preview", "--dry-run"]
        args += [f"--set={s}" for s in case.sets] + ([f"--takes={case.takes}"] if case.takes else [])
        planned = _invoke(*args)
        _assert_clean(planned, case, "render --dry-run", folder)
        if checked.exit_code == 0 and not case.sets and not case.takes:
            assert planned.exit_code != 2, f"check passed what render refuses: {case}\n{planned.output}"
            passed_check.append((folder, case))
    assert len(passed_check) > 10  # the corpus also holds inputs that are fine
    assert not (corpus_env / "crash-logs").exists()
    for folder, case in random.Random(SEED).sample(passed_check, 3):  # real renders of a few
        monkeypatch.chdir(folder)
        rendered = _invoke("render", case.target, "-o", "out", "--engine", "preview", "-q")
        _assert_clean(rendered, case, "render", folder)
        assert rendered.exit_code != 2, rendered.output


def test_corrupt_caches_are_rebuilt_and_cleared(corpus_env):
    rng = random.Random(SEED)
    for index in range(6):
        cache = corpus_env / f"cache{index}"
        store = cache / "text-embeddings"
        store.mkdir(parents=True)
        (store / "cache.db").write_bytes(b"garbage" + bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 4096))))
        (cache / "fp8").mkdir()
        (cache / "fp8" / "model-x-b64-v1.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{")
        with pytest.warns(UserWarning, match="damaged"):
            for command in ("info", "clear"):
                result = _invoke("cache", command, "--cache-dir", str(cache))
                assert result.exit_code == 0, result.output
                assert "Traceback" not in result.output and "internal error" not in result.output
        assert sorted(p.name for p in cache.iterdir()) == ["text-embeddings"]
