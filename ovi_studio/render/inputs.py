"""What a render starts from: its options (typed values, as the library takes them; the CLI
parses its strings in cli/options.py) and the storyboard as the session will render it (CSV
imported, overrides and `takes` applied to every shot, each value checked)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ovi_studio.errors import UserError, at
from ovi_studio.render.artifacts import atomic_target
from ovi_studio.render.engines import EngineOptions
from ovi_studio.render.outdir import prepare_folder
from ovi_studio.textfile import not_a_regular_file


@dataclass
class RenderOptions:
    source: Path | None = None  # a storyboard (.yaml) or an Ovi prompt CSV (the library's functions set it)
    out_dir: Path | None = None
    engine: str | None = None  # auto | ovi | preview; None: the storyboard's `engine:`
    device: str | None = None
    dtype: str | None = None
    ckpt_dir: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # key: value over every shot (typed, as YAML reads it)
    force: list[str] | None = None  # None: nothing forced; []: every shot
    only: list[str] | None = None
    takes: int | None = None
    oom_retry: bool = False
    preset: str | None = None  # a memory preset of engine.presets (80gb, 24gb, 16gb, 12gb, 8gb)
    attention: str = "auto"  # auto or one of engine.attention.BACKENDS
    compile: bool = False  # torch.compile the fusion layers
    pick: str = "best"  # take_choice.POLICIES: the best take by quality checks, or take 0
    fail_on: set[str] = field(default_factory=set)  # quality checks that make the exit code 1
    lint: bool = True  # the lint gate (--no-lint: render despite lint errors; recorded in the report)
    wait: bool = True  # for another render holding the output folder (False: exit naming it)

    @property
    def engine_options(self) -> EngineOptions:
        return EngineOptions(self.device, self.dtype, self.preset, self.attention, self.compile)


# -- inputs -----------------------------------------------------------------------------------

OUTPUT_KEYS = {"loudness", "subtitles", "chapters", "final"}
ASSEMBLY_KEYS = {"crf", "preset"}  # the final encode's x264 settings


def load_for_render(options: RenderOptions):
    """Load the storyboard (importing a CSV on the fly), refuse one with errors, apply the
    overrides and `takes` to every shot. Returns it and the checked values of the cut's keys
    (OUTPUT_KEYS, ASSEMBLY_KEYS) among the overrides."""
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
    unknown = set(options.overrides) - set(setting_keys) - OUTPUT_KEYS - ASSEMBLY_KEYS
    if unknown:
        raise UserError(f"--set: unknown key(s) {', '.join(sorted(unknown))}",
                        hint="settable: " + ", ".join(sorted(set(Settings.model_fields) | OUTPUT_KEYS
                                                             | ASSEMBLY_KEYS)))
    cut_overrides = _check_output_overrides(options.overrides)
    if setting_keys:
        try:  # typed as the storyboard's own values are (e.g. a LoRA list of mappings)
            checked = Settings.model_validate(setting_keys)
        except ValidationError as exc:
            raise UserError(_describe_invalid(exc, setting_keys),
                            hint="`ovi-studio schema` lists every setting and its values") from None
        values = {key: getattr(checked, key) for key in setting_keys}
        extended = {s.extends for s in loaded.model.shots if s.extends}
        for model_shot, shot in zip(loaded.model.shots, loaded.shots):
            in_chain = shot.extends is not None or shot.id in extended
            # Command-line values are the top layer: they beat the storyboard's own keys.
            shot.settings = merge_settings(loaded.model.defaults, model_shot.model_copy(update=values),
                                           loaded.variant, in_chain, loaded.folder.absolute())
    if options.takes is not None:
        for shot in loaded.shots:
            shot.takes = options.takes
    return loaded, cut_overrides


X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                "slower", "veryslow", "placebo")


def _describe_invalid(exc: ValidationError, given: dict[str, Any]) -> str:
    """One line per bad --set value: `key=value: expected A or B` (pydantic reports each
    alternative of a union apart), or our own validator's sentence."""
    expected: dict[str, list[str]] = {}
    for error in exc.errors():
        key = str(error["loc"][0]) if error["loc"] else ""  # "": a rule over several keys
        msg = error["msg"].removeprefix("Input should be ")
        if not msg.startswith("Value error, "):
            msg = "a value " + msg if msg.startswith(("greater", "less")) else msg
        expected.setdefault(key, []).append(msg)

    def describe(msgs: list[str]) -> str:
        sentences = [m.removeprefix("Value error, ") for m in msgs if m.startswith("Value error, ")]
        alternatives = [m for m in msgs if not m.startswith("Value error, ")]
        parts = sentences + ([f"expected {' or '.join(dict.fromkeys(alternatives))}"] if alternatives else [])
        return "; ".join(parts)
    return "; ".join(f"--set {key}={given.get(key, '')}: {describe(msgs)}" if key else f"--set: {describe(msgs)}"
                     for key, msgs in expected.items())


def _preset_settings(preset: str | None) -> dict[str, Any]:
    """The shot settings a memory preset implies (overrides beat them): its fp8 and tiled VAE,
    which change the output and so belong in every take's cache key."""
    if preset is None:
        return {}
    from engine.presets import PRESETS, resolve_memory
    if preset not in PRESETS:
        raise UserError(f"unknown memory preset {preset!r}",
                        hint=f"choose one of {', '.join(PRESETS)} (`ovi-studio doctor` suggests one)")
    memory = resolve_memory(preset, free_bytes=0)
    return {**({"fp8": True} if memory.fp8 else {}), **({"tiled_vae": True} if memory.tiled_vae else {})}


def _check_output_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """The values of the cut's keys, checked before anything renders."""
    def bad(key: str, expected: str) -> UserError:
        return UserError(f"--set {key}={overrides[key]}: expected {expected}")
    crf = overrides.get("crf", 0)
    if not (isinstance(crf, int) and not isinstance(crf, bool) and 0 <= crf <= 51):
        raise bad("crf", "an integer from 0 to 51")
    if "preset" in overrides and overrides["preset"] not in X264_PRESETS:
        raise bad("preset", "one of " + ", ".join(X264_PRESETS))
    return {**{k: overrides[k] for k in ASSEMBLY_KEYS if k in overrides}, **_check_output_settings(overrides)}


def _check_output_settings(overrides: dict[str, Any]) -> dict[str, Any]:
    """Values of `output:` keys, judged (and typed) by the storyboard's own `output:` schema."""
    from ovi_studio.storyboard import Output
    values = {key: overrides[key] for key in OUTPUT_KEYS if key in overrides}
    if values.get("loudness", True) is False:  # `off` read as YAML 1.1 reads it
        values["loudness"] = "off"
    if "final" in values:
        values["final"] = str(values["final"])  # a file name, whatever it looks like
    try:
        checked = Output.model_validate(values)
    except ValidationError as exc:
        raise UserError(_describe_invalid(exc, values),
                        hint="`ovi-studio schema` lists every setting and its values") from None
    return {key: getattr(checked, key) for key in values}


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
