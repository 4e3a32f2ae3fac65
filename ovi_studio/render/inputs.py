"""What a render starts from: its options, the storyboard as the session will render it
(CSV imported, `--set`/`--takes` applied), how speakers and characters are named on screen,
and the engine the plan chose (ovi_studio.checkpoints.choose_engine)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from ovi_studio.checkpoints import EngineChoice
from ovi_studio.errors import UserError, at
from ovi_studio.prompt import spoken_lines
from ovi_studio.render.artifacts import atomic_target
from ovi_studio.render.engines import DTYPES, ShotEngine
from ovi_studio.render.outdir import prepare_folder
from ovi_studio.textfile import not_a_regular_file


@dataclass
class RenderOptions:
    source: Path  # a storyboard (.yaml) or an Ovi prompt CSV
    out_dir: Path | None = None
    engine: str | None = None  # auto | ovi | preview; None: the storyboard's `engine:`
    device: str | None = None
    dtype: str | None = None
    ckpt_dir: Path | None = None
    overrides: dict[str, str] = field(default_factory=dict)  # --set key=value
    force: list[str] | None = None  # None: nothing forced; []: every shot
    only: list[str] | None = None
    takes: int | None = None
    dry_run: bool = False
    oom_retry: bool = False
    quiet: bool = False
    preset: str | None = None  # a memory preset of engine.presets (80gb, 24gb, 16gb, 12gb, 8gb)
    attention: str = "auto"  # auto or one of engine.attention.BACKENDS
    compile: bool = False  # torch.compile the fusion layers
    pick: str = "best"  # render.picking.POLICIES: the best take by quality checks, or take 0
    fail_on: set[str] = field(default_factory=set)  # quality checks that make the exit code 1
    lint: bool = True  # the lint gate (--no-lint: render despite lint errors; recorded in the report)
    wait: bool = True  # for another render holding the output folder (False: exit naming it)


# -- inputs -----------------------------------------------------------------------------------

OUTPUT_KEYS = {"loudness", "subtitles", "chapters", "final"}
ASSEMBLY_KEYS = {"crf", "preset"}  # the final encode's x264 settings
ENGINE_KEYS = {"tiled_vae"}


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects key=value, got {pair!r}", hint="e.g. --set steps=20")
        out[key.strip()] = value.strip()
    return out


def yaml_value(text: str):
    """A --set value as the storyboard would read it (YAML 1.2, ovi_studio.source)."""
    from ovi_studio.source import parse_scalar
    return parse_scalar(text)


def load_for_render(options: RenderOptions):
    """Load the storyboard (importing a CSV on the fly), refuse one with errors, apply --set
    and --takes to every shot."""
    from ovi_studio.storyboard import Settings, load_storyboard, merge_settings
    from ovi_studio.diagnostics import Severity
    source = Path(options.source)
    kind = not_a_regular_file(source)
    if kind is not None:
        raise UserError("does not exist" if kind == "missing" else f"is {kind}, not a file",
                        location=at(source), hint="pass a storyboard .yaml or a prompt .csv")
    if source.suffix.lower() == ".csv":
        source = _import_csv(source, options)
    loaded = load_storyboard(source)
    errors = [d for d in loaded.diagnostics if d.severity == Severity.ERROR]
    if loaded.model is None or (errors and not options.lint):  # --no-lint cannot skip what fails to load
        listing = "\n".join(f"  {d}" for d in errors[:20])
        raise UserError(f"the storyboard has {len(errors)} error(s) that stop it loading; nothing was "
                        f"rendered\n{listing}",
                        location=at(loaded.path), hint="run `ovi-studio check` for details and fixes")
    overrides = {**_preset_settings(options.preset), **options.overrides}
    setting_keys = {k: v for k, v in overrides.items() if k in Settings.model_fields}
    unknown = set(options.overrides) - set(setting_keys) - OUTPUT_KEYS - ASSEMBLY_KEYS - ENGINE_KEYS
    if unknown:
        raise UserError(f"--set: unknown key(s) {', '.join(sorted(unknown))}",
                        hint="settable: " + ", ".join(sorted(set(Settings.model_fields) | OUTPUT_KEYS
                                                             | ASSEMBLY_KEYS | ENGINE_KEYS)))
    _check_output_overrides(options.overrides)
    if setting_keys:
        values = {k: yaml_value(v) for k, v in setting_keys.items()}
        try:
            Settings.model_validate(values)
        except ValidationError as exc:
            raise UserError(_describe_invalid(exc, setting_keys),
                            hint="`ovi-studio schema` lists every setting and its values") from None
        extended = {s.extends for s in loaded.model.shots if s.extends}
        for model_shot, shot in zip(loaded.model.shots, loaded.shots):
            in_chain = shot.extends is not None or shot.id in extended
            # Command-line values are the top layer: they beat the storyboard's own keys.
            shot.settings = merge_settings(loaded.model.defaults, model_shot.model_copy(update=values),
                                           loaded.variant, in_chain, loaded.folder.absolute())
    if options.takes is not None:
        for shot in loaded.shots:
            shot.takes = options.takes
    return loaded


X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                "slower", "veryslow", "placebo")


def _describe_invalid(exc: ValidationError, given: dict[str, str]) -> str:
    """One line per bad --set value: `key=value: expected A or B` (pydantic reports each
    alternative of a union apart), or our own validator's sentence."""
    expected: dict[str, list[str]] = {}
    for error in exc.errors():
        key = str(error["loc"][0])
        msg = error["msg"].removeprefix("Input should be ")
        if not msg.startswith("Value error, "):
            msg = "a value " + msg if msg.startswith(("greater", "less")) else msg
        expected.setdefault(key, []).append(msg)

    def describe(msgs: list[str]) -> str:
        sentences = [m.removeprefix("Value error, ") for m in msgs if m.startswith("Value error, ")]
        alternatives = [m for m in msgs if not m.startswith("Value error, ")]
        parts = sentences + ([f"expected {' or '.join(dict.fromkeys(alternatives))}"] if alternatives else [])
        return "; ".join(parts)
    return "; ".join(f"--set {key}={given.get(key, '')}: {describe(msgs)}" for key, msgs in expected.items())


def _preset_settings(preset: str | None) -> dict[str, str]:
    """The shot settings a memory preset implies (`--set` beats them): its fp8, which changes
    the output and so belongs in every take's cache key."""
    if preset is None:
        return {}
    from engine.presets import PRESETS, resolve_memory
    if preset not in PRESETS:
        raise UserError(f"unknown memory preset {preset!r}",
                        hint=f"choose one of {', '.join(PRESETS)} (`ovi-studio doctor` suggests one)")
    return {"fp8": "true"} if resolve_memory(preset, free_bytes=0).fp8 else {}


def _check_output_overrides(overrides: dict[str, str]) -> None:
    """Values of the non-shot --set keys, checked before anything renders."""
    def bad(key: str, expected: str) -> UserError:
        return UserError(f"--set {key}={overrides[key]}: expected {expected}")
    if "crf" in overrides and not (overrides["crf"].isdigit() and 0 <= int(overrides["crf"]) <= 51):
        raise bad("crf", "an integer from 0 to 51")
    if "preset" in overrides and overrides["preset"] not in X264_PRESETS:
        raise bad("preset", "one of " + ", ".join(X264_PRESETS))
    _check_output_settings(overrides)
    if "tiled_vae" in overrides and not isinstance(yaml_value(overrides["tiled_vae"]), bool):
        raise bad("tiled_vae", "true or false")


def _check_output_settings(overrides: dict[str, str]) -> None:
    """`--set` values of `output:` keys, judged by the storyboard's own `output:` schema."""
    from ovi_studio.storyboard import Output
    values = {key: yaml_value(overrides[key]) for key in OUTPUT_KEYS - {"final"} if key in overrides}
    if values.get("loudness", True) is False:  # YAML 1.1 reads `off` as false
        values["loudness"] = "off"
    if "final" in overrides:
        values["final"] = overrides["final"]  # a file name, as written
    try:
        Output.model_validate(values)
    except ValidationError as exc:
        raise UserError(_describe_invalid(exc, {k: overrides[k] for k in values}),
                        hint="`ovi-studio schema` lists every setting and its values") from None


def _import_csv(path: Path, options: RenderOptions) -> Path:
    """Write the storyboard an Ovi prompt CSV stands for into the output folder and load that.
    The output folder defaults to out/<csv name> beside the CSV (set on `options`)."""
    from ovi_studio.importer import import_csv
    if options.out_dir is None:
        options.out_dir = path.parent / "out" / path.stem
    prepare_folder(Path(options.out_dir))
    target = Path(options.out_dir) / f"{path.stem}.storyboard.yaml"
    text = import_csv(path, target).yaml_text
    if not target.is_file() or target.read_text(encoding="utf-8") != text:
        with atomic_target(target) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return target


def default_device() -> str:
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def engine_factory(choice: EngineChoice, options: RenderOptions, loaded, ckpt_dir: Path | None,
                   log: Callable[[str], None]) -> Callable[[], ShotEngine]:
    """A factory for the engine the plan chose (the model loads only when a take needs it);
    a fallback to the preview is announced loudly."""
    if options.dtype is not None and options.dtype not in DTYPES:
        raise UserError(f"--dtype must be one of {', '.join(DTYPES)}, not {options.dtype!r}")
    if options.device is not None and options.device.split(":")[0] not in ("cuda", "cpu"):
        raise UserError(f"--device must be cuda, cuda:N or cpu, not {options.device!r}")
    if choice.fell_back:
        missing = choice.missing
        log("=" * 72)
        log("engine: PREVIEW (no model) — checkpoints not found: " + missing[0]
            + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
        log("this renders an animatic for pacing; pass --engine ovi (or `engine: ovi`) to require the model")
        log("=" * 72)
    if choice.name == "preview":
        return _preview_factory

    if options.device and options.device.startswith("cuda") and default_device() != "cuda":
        raise UserError(f"--device {options.device}: no CUDA device is available here",
                        hint="use --device cpu (slow), or --engine preview for an animatic")

    def make_ovi() -> ShotEngine:
        from engine.layout import fp8_weights
        from ovi_studio.render.engines import OviEngine
        device = options.device or default_device()
        _check_attention(options.attention, device)
        return OviEngine(ckpt_dir, loaded.variant.name, device=device, dtype=options.dtype,
                         fp8_weights=fp8_weights(ckpt_dir, loaded.variant),
                         preset=options.preset, attention=options.attention,
                         compile=options.compile)  # embedding cache: $OVI_STUDIO_CACHE or default
    return make_ovi


def _check_attention(requested: str, device: str) -> None:
    import torch
    from engine.attention import resolve_attention_backend
    try:
        resolve_attention_backend(requested, torch.device(device))
    except ValueError as exc:
        raise UserError(f"--attention: {exc}", hint="--attention auto picks the fastest one installed") from None


def _preview_factory() -> ShotEngine:
    from ovi_studio.render.preview import PreviewEngine
    return PreviewEngine()


def speaker_label(loaded, speaker: str | None) -> str | None:
    """How captions name a speaker: a character's `name`, else the character key capitalised,
    else the speaker as written."""
    if speaker is None:
        return None
    key = speaker.strip().strip("{}")
    character = loaded.model.characters.get(key) if loaded.model else None
    if character is None:
        return speaker.strip()
    return character.name or key.capitalize()


def display_text(loaded, text: str | None) -> str | None:
    """Scene text for captions and cards: `{anna}` becomes Anna's name (her look when she has
    none), `{anna.voice}` her voice."""
    from ovi_studio.compile import CHARACTER_REF
    if text is None or loaded.model is None:
        return text

    def expand(match):
        character = loaded.model.characters.get(match[1])
        if character is None:
            return match[0]
        if match[2] == "voice":
            return character.voice or ""
        return character.look if match[2] == "look" else (character.name or character.look)
    return CHARACTER_REF.sub(expand, text)


def dialogue_of(loaded, shot) -> tuple[tuple[str | None, str], ...]:
    """(speaker, words) of each speech span of the compiled prompt, whatever form the shot was
    written in (raw `prompt:`, structured, template, CSV import). Speakers are known only where
    the structured form names them; a raw prompt's lines have none."""
    lines = spoken_lines(shot.raw_prompt)
    speakers = [d.speaker for d in shot.dialogue]
    if len(speakers) != len(lines):
        speakers = [None] * len(lines)
    return tuple((speaker_label(loaded, who), text) for who, text in zip(speakers, lines))
