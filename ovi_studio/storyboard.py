"""The storyboard format (pydantic models) and `load_storyboard`, which reads a file into
validated models plus positioned diagnostics and resolved shots (templates expanded, prompts
compiled, settings merged).

Loading never stops at the first problem: a shot with a bad key is reported and left out,
the rest still resolve, so `check` can report everything in one run.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import (BaseModel, ConfigDict, Field, StringConstraints, ValidationError,
                      field_validator, model_validator)
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from engine.variants import DEFAULT_VARIANT, Variant, format_prompt, get_variant
from ovi_studio.compile import (CharacterInfo, Compiled, DialogueLine, Text, compile_raw,
                                compile_structured)
from ovi_studio.collector import collector_paused
from ovi_studio.diagnostics import Diagnostic, Fix, Severity
from ovi_studio.errors import UserError
from ovi_studio.output_names import output_name_problem
from ovi_studio.source import Position, SourceDocument, TextOrigin, load_yaml, to_plain
from ovi_studio import templates as tpl

ModelName = Literal["720x720_5s", "960x960_5s", "960x960_10s"]
SHOT_ID_PATTERN = r"^[A-Za-z0-9_-]+$"
MAX_TAKES = 64  # per shot, in the file and on the command line
MAX_ASPECT = 8.0  # longest side over shortest: beyond it a side snaps to a sliver of 32 px
MIN_SIDE, MAX_SIDE = 32, 8192  # requested resolution, pixels
LOUDNESS_RANGE = (-70.0, -5.0)  # LUFS targets ffmpeg's loudnorm accepts
MAX_GUIDANCE = 50.0  # classifier-free guidance scale; Ovi's defaults are 3-4
MAX_SHIFT = 100.0
MAX_DURATION = 600.0  # seconds; the models make 5 or 10 (OVI403 says which)
CharacterName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")]

SB_SCHEMA = "SB102"
RENAME_CUTOFF = 0.75  # similarity above which a misspelt key is renamed by --fix (when alone)
SB_UNKNOWN_CHARACTER = "SB110"
SB_UNKNOWN_TEMPLATE = "SB111"
SB_TEMPLATE_PARAMETER = "SB112"


NOT_A_CHARACTER = (", which is not a character; write the character itself or its "
                   "\\U00XXXXXX escape")


class _Strict(BaseModel):
    # NaN and infinities are never a setting: refused wherever a number is written
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    @field_validator("*")
    @classmethod
    def _whole_characters(cls, value):
        """YAML escapes like "\\ud800" make lone surrogates: not text T5, JSON or a terminal
        can take, so they are refused where they are written."""
        found = _lone_surrogate(value)
        if found is not None:
            raise ValueError(f"contains the lone surrogate \\u{ord(found):04x}{NOT_A_CHARACTER}")
        return value


class LoraEntry(_Strict):
    """One LoRA: its file (relative to the storyboard), strength, and the towers it goes onto."""
    path: str = Field(min_length=1, description="a LoRA .safetensors file (kohya/musubi, ComfyUI or PEFT/diffusers)")
    scale: float = Field(1.0, description="strength; 0 leaves the model as it is")
    tower: Literal["video", "audio", "both"] | None = Field(
        None, description="default: by its key names (a Wan2.2-TI2V-5B LoRA: video; an Ovi LoRA: both)")


class Settings(_Strict):
    """Keys allowed under `defaults:` and, as overrides, on every shot. Unset means inherit."""
    resolution: list[int] | None = Field(None, min_length=2, max_length=2,
                                         description="[height, width] requested for t2v; snapped to the model's area")
    aspect: str | None = Field(None, pattern=r"^\s*\d+(\.\d+)?\s*:\s*\d+(\.\d+)?\s*$",
                               description='aspect ratio "W:H" (e.g. "16:9") instead of a resolution')
    duration: float | None = Field(None, gt=0, le=MAX_DURATION,
                                   description="seconds; must be one the model produces (5 or 10)")
    steps: int | None = Field(None, ge=1, le=1000)
    solver: Literal["unipc", "dpm++", "euler"] | None = None
    shift: float | None = Field(None, gt=0, le=MAX_SHIFT)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    video_guidance: float | None = Field(None, ge=0, le=MAX_GUIDANCE)
    audio_guidance: float | None = Field(None, ge=0, le=MAX_GUIDANCE)
    slg_layer: int | None = Field(None, ge=-1, le=29, description="skip-layer guidance layer; -1 disables")
    video_negative: str | None = None
    audio_negative: str | None = None
    fp8: bool | None = Field(None, description="fp8 fusion weights: the published fp8 file "
                             "(720x720_5s) when present, else the bf16 weights converted at load")
    fp8_file: str | None = Field(
        None, min_length=1, description="a musubi-tuner or ComfyUI/kijai fp8_scaled file of the "
        "fusion model (relative to the storyboard), read instead of the checkpoint's fusion "
        "weights; implies `fp8: true`")
    tiled_vae: bool | None = Field(
        None, description="decode the video in tiles: less memory, slightly different pixels at "
        "the tile seams (so keyed); default: tiles only where an untiled decode would not fit")
    blocks_to_swap: int | Literal["auto"] | None = Field(
        None, description="DiT blocks kept in CPU memory and streamed in; placement only")
    loras: list[LoraEntry] | None = Field(
        None, description="LoRAs merged into the model for these shots; a shot's list replaces "
        "the defaults' (`loras: []` for none)")
    draft: bool | None = Field(None, description="draft tier: fewer steps (guidance-free with "
                               "`draft_loras`), the same seeds as finals; keyed apart")
    draft_loras: list[LoraEntry] | None = Field(
        None, description="distillation LoRAs (e.g. a Wan2.2-5B few-step LoRA) added in drafts only")
    step_cache: float | None = Field(
        None, ge=0, le=1, description="opt-in feature caching: skip a denoising step's fusion pass "
        "while its inputs changed less than this (relative L1, summed since the last full pass); "
        "0 disables. Faster, not identical")
    cfg_batch: bool | None = Field(
        None, description="run both guidance branches as one batch of two (faster on large GPUs; "
        "the same maths, bf16 rounding of batched kernels)")
    seed_frame: Literal["last", "sharpest"] | None = Field(
        None, description="which of the parent's final frames starts an extension")
    color_match: Literal["first", "previous", "off"] | None = Field(
        None, description="colour anchoring of chained shots; default first in chains, else off")
    fit: Literal["crop", "pad"] | None = Field(None, description="how a first frame of another aspect is fitted")
    transition: Literal["cut", "crossfade"] | None = Field(None, description="the cut INTO this shot")
    transition_frames: int | None = Field(None, ge=0, le=240)

    @model_validator(mode="after")
    def _one_size(self):
        if self.resolution is not None and self.aspect is not None:
            raise ValueError("give either `resolution` or `aspect`, not both")
        if self.resolution is not None:
            if not all(MIN_SIDE <= side <= MAX_SIDE for side in self.resolution):
                raise ValueError(f"resolution sides must be between {MIN_SIDE} and {MAX_SIDE} pixels")
            _check_aspect(*self.resolution, "resolution")
        if self.aspect is not None:
            width, height = (float(part) for part in self.aspect.split(":"))
            _check_aspect(height, width, "aspect")
        return self


class DialogueItem(_Strict):
    speaker: str = Field(description="a character name, or who speaks in words")
    line: str


class Shot(Settings):
    id: str = Field(pattern=SHOT_ID_PATTERN, max_length=128)
    prompt: str | None = Field(None, description="raw Ovi prompt: speech in <S>…<E>, caption `Audio: …` last")
    scene: str | None = Field(None, description="structured form: what we see ({name} inserts a character's look)")
    dialogue: list[Union[str, DialogueItem]] | None = None
    audio: str | None = Field(None, description="structured form: the audio caption (voices are added)")
    first_frame: str | None = Field(None, description="image path, relative to the storyboard")
    extends: str | None = Field(None, pattern=SHOT_ID_PATTERN, description="shot whose last frame starts this one")
    takes: int = Field(1, ge=1, le=MAX_TAKES, description="variants with seeds seed, seed+1, …")
    pick: int | None = Field(None, ge=0, description="the take that goes in the cut and that "
                             "extensions start from (`ovi-studio pick` writes it)")
    noqa: list[str] | None = Field(None, description="lint codes to ignore for this shot")
    use: str | None = Field(None, description="template name (templates/<name>.yaml)")
    with_: dict[str, str | int | float | bool] | None = Field(None, alias="with")

    @model_validator(mode="after")
    def _one_form(self):
        structured = any(v is not None for v in (self.scene, self.dialogue, self.audio))
        if self.prompt is not None and structured:
            raise ValueError("give either `prompt` or `scene`/`dialogue`/`audio`, not both")
        if self.with_ is not None and self.use is None:
            raise ValueError("`with` gives template parameters; add `use: <template>`")
        if self.pick is not None and self.pick >= self.takes:
            raise ValueError(f"`pick: {self.pick}` but the shot has {self.takes} take(s), "
                             f"numbered 0 to {self.takes - 1}")
        if self.prompt is None and not structured and self.use is None:
            raise ValueError("a shot needs a `prompt`, or `scene`/`dialogue`/`audio`, or `use`")
        return self


class Character(_Strict):
    look: str = Field(description="how they look; inserted wherever {name} appears")
    voice: str | None = Field(None, description="how they sound; added to the audio caption when they speak")
    name: str | None = Field(None, description="how a speech cue refers to them (default: the look)")


class Output(_Strict):
    dir: str | None = Field(None, description="output folder, relative to the storyboard (default out/<stem>)")
    final: str | None = Field(None, description="file name of the assembled cut, inside the output folder")
    loudness: Annotated[float, Field(ge=LOUDNESS_RANGE[0], le=LOUDNESS_RANGE[1])] | Literal["off"] = Field(
        -16.0, description="integrated loudness target in LUFS (-70 to -5), or off")
    subtitles: bool = True
    chapters: bool = True

    @field_validator("final")
    @classmethod
    def _inside_the_output_folder(cls, value):
        problem = None if value is None else output_name_problem(value)
        if problem:
            raise ValueError(f"`final: {value}` {problem}")
        return value


class QcThresholds(_Strict):
    """`qc:` — thresholds of the quality checks run after each take and on the cut."""
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    av_tolerance_ms: float = Field(42.0, ge=0, description="cut: audio/video start and end within this (one frame)")
    take_av_tolerance_ms: float = Field(50.0, ge=0, description="take: |audio - video| length (Ovi: ~18 ms at 5 s)")
    loudness_tolerance_lu: float = Field(1.0, ge=0, description="cut: integrated loudness within this of output.loudness")
    true_peak_max_db: float = Field(-1.0, description="cut: true peak ceiling in dBTP")
    black_min_s: float = Field(0.5, gt=0, description="black stretches this long or longer fail")
    black_pixel_threshold: float = Field(0.10, ge=0, le=1, description="a pixel darker than this (0..1) is black")
    freeze_min_s: float = Field(2.0, gt=0, description="frozen stretches this long or longer fail")
    freeze_noise_db: float = Field(-60.0, description="frame difference below this counts as frozen")
    speech_min_s: float = Field(0.5, ge=0, description="a take with dialogue needs this much voiced audio")
    speech_floor_db: float = Field(-45.0, description="voice-band level (dBFS) that counts as voiced")
    seam_max_delta_e: float = Field(8.0, ge=0, description="extension seams: mean colour jump (delta E 1976)")
    clip_max_fraction: float = Field(0.001, ge=0, le=1, description="share of samples at full scale allowed")


class Storyboard(_Strict):
    version: Literal[1]
    title: str | None = None
    model: ModelName = DEFAULT_VARIANT
    ckpt_dir: str | None = None
    engine: Literal["auto", "ovi", "preview"] = Field(
        "auto", description="auto: the model when its checkpoints are found, else the preview; "
                            "ovi: the model or an error; `render --engine` overrides it")
    defaults: Settings = Field(default_factory=Settings)
    output: Output = Field(default_factory=Output)
    characters: dict[CharacterName, Character] = Field(
        default_factory=dict, description="name -> look and voice; write {name} in any text to insert the look")
    qc: QcThresholds = Field(default_factory=QcThresholds)
    shots: list[Shot] = Field(min_length=1)


def _check_aspect(height: float, width: float, what: str) -> None:
    if height <= 0 or width <= 0:
        raise ValueError(f"{what} sides must be greater than zero")
    if max(height, width) / min(height, width) > MAX_ASPECT:
        raise ValueError(f"{what} is {width:g}:{height:g}; the longest side may be at most "
                         f"{MAX_ASPECT:g} times the shortest")


def storyboard_schema() -> dict:
    schema = Storyboard.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "ovi-studio storyboard"
    return schema


# -- resolved shots --------------------------------------------------------------------------

BUILTIN_SETTINGS = dict(  # Ovi's inference defaults
    steps=50, solver="unipc", shift=5.0, seed=100, video_guidance=4.0, audio_guidance=3.0,
    slg_layer=11, video_negative="jitter, bad hands, blur, distortion",
    audio_negative="robotic, muffled, echo, distorted", fp8=False, fp8_file=None, tiled_vae=False, blocks_to_swap=0,
    loras=[], draft=False, draft_loras=[], step_cache=0.0, cfg_batch=False, seed_frame="last",
    fit="crop", transition="cut",
)
CROSSFADE_FRAMES = 12  # half a second at 24 fps when a crossfade gives no length
# Draft tier: steps without and with a distillation LoRA (a few-step LoRA is trained for ~4
# steps without guidance, so its drafts also skip the negative branch).
DRAFT_STEPS = 12
DISTILLED_DRAFT_STEPS = 4


@dataclass(frozen=True)
class LoraUse:
    """A LoRA as a shot uses it: an absolute path (resolved against the storyboard's folder)."""
    path: str
    scale: float
    tower: str | None


@dataclass(frozen=True)
class ShotSettings:
    duration: float
    resolution: tuple[int, int] | None
    aspect: str | None
    steps: int
    solver: str
    shift: float
    seed: int
    video_guidance: float
    audio_guidance: float
    slg_layer: int
    video_negative: str
    audio_negative: str
    fp8: bool  # True also where an fp8_file is given
    fp8_file: str | None  # an absolute path (resolved against the storyboard's folder)
    tiled_vae: bool
    blocks_to_swap: int | str
    loras: tuple[LoraUse, ...]  # in a draft, the draft LoRAs are already added
    draft: bool
    draft_loras: tuple[LoraUse, ...]
    step_cache: float
    cfg_batch: bool
    seed_frame: str
    color_match: str
    fit: str
    transition: str
    transition_frames: int

    def asked_size(self, variant: Variant) -> tuple[int, int] | None:
        """(height, width) the storyboard asks for with `resolution`/`aspect`; None when it
        asks nothing (an i2v shot then keeps its image's aspect)."""
        if self.resolution is None and self.aspect is None:
            return None
        return self.requested_size(variant)

    def requested_size(self, variant: Variant) -> tuple[int, int]:
        """(height, width) asked for, before snapping: resolution, else the aspect ratio,
        else a square of the model's area."""
        if self.resolution is not None:
            return self.resolution
        if self.aspect is not None:
            w, h = (float(part) for part in self.aspect.split(":"))
            side = (variant.video_area / (w * h)) ** 0.5
            return max(1, round(h * side)), max(1, round(w * side))
        side = round(variant.video_area ** 0.5)
        return side, side


@dataclass
class ResolvedShot:
    id: str
    index: int  # position in the file's `shots` list
    line: int
    column: int
    raw_prompt: str  # compiled, not yet variant-formatted
    prompt: str  # format_prompt(raw_prompt, variant): what T5 gets
    origin: TextOrigin
    structured: bool
    dialogue: list[DialogueLine]
    scene: str | None
    audio_caption: str | None
    first_frame: Path | None
    extends: str | None
    settings: ShotSettings
    takes: int
    noqa: list[str]
    pick: int | None = None  # the take chosen in the storyboard
    template: str | None = None
    node: CommentedMap | None = None  # the shot's mapping in `LoadedStoryboard.document`


@dataclass
class LoadedStoryboard:
    path: Path
    model: Storyboard | None
    document: object
    diagnostics: list[Diagnostic]
    shots: list[ResolvedShot]
    variant: Variant
    source: SourceDocument | None = None
    _by_id: dict | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def folder(self) -> Path:
        return self.path.parent

    def shot(self, shot_id: str) -> ResolvedShot | None:
        """The first shot with this id (a dict lookup: chain walks call this once per link)."""
        if self._by_id is None:
            self._by_id = {}
            for shot in self.shots:
                self._by_id.setdefault(shot.id, shot)
        return self._by_id.get(shot_id)


def load_storyboard(path: str | Path) -> LoadedStoryboard:
    """Read a storyboard. Raises UserError only when the file cannot be read or is not YAML;
    everything else is a positioned diagnostic."""
    with collector_paused():
        return _Loader(load_yaml(Path(path))).run()


# -- loading ---------------------------------------------------------------------------------

_KNOWN_KEYS = {
    "storyboard": list(Storyboard.model_fields),
    "defaults": list(Settings.model_fields),
    "output": list(Output.model_fields),
    "qc": list(QcThresholds.model_fields),
    "character": list(Character.model_fields),
    "shot": [f.alias or name for name, f in Shot.model_fields.items()],
    "dialogue": list(DialogueItem.model_fields),
}


@dataclass
class _ShotInput:
    index: int
    node: object  # the shot's node in the document
    data: dict  # plain data, template expanded
    template: str | None = None
    use_position: Position | None = None


@dataclass
class _Loader:
    source: SourceDocument
    diagnostics: list[Diagnostic] = field(default_factory=list)
    _templates: dict = field(default_factory=dict)
    _invalid_characters: set = field(default_factory=set)

    @property
    def file(self) -> str:
        return str(self.source.path)

    def report(self, code: str, message: str, position: Position, shot: str | None = None,
               severity: Severity = Severity.ERROR, fix: Fix | None = None) -> None:
        line, col = position
        message = message.encode("utf-8", "backslashreplace").decode("utf-8")  # printable
        self.diagnostics.append(Diagnostic(self.file, line, col, line, col, code, severity, message,
                                           shot, fix))

    def run(self) -> LoadedStoryboard:
        data = self.source.data
        if not isinstance(data, CommentedMap):
            what = _describe(data)
            self.report(SB_SCHEMA, f"a storyboard is a mapping with `version: 1` and `shots:`; "
                        f"this file is {what}", (1, 1))
            return LoadedStoryboard(self.source.path, None, data, self.diagnostics, [],
                                    get_variant(DEFAULT_VARIANT), self.source)
        shots = self._shot_inputs(data)
        model, kept = self._validate(data, shots)
        variant = get_variant(model.model if model else DEFAULT_VARIANT)
        resolved = self._resolve(model, kept, variant) if model else []
        return LoadedStoryboard(self.source.path, model, data, self.diagnostics, resolved,
                                variant, self.source)

    # templates -------------------------------------------------------------------------
    def _shot_inputs(self, data: CommentedMap) -> list[_ShotInput]:
        nodes = data.get("shots")
        if not isinstance(nodes, CommentedSeq):
            return []
        inputs = []
        for index, node in enumerate(nodes):
            plain = to_plain(node)
            if isinstance(node, CommentedMap) and "use" in node:
                expanded = self._expand_template(node, plain)
                if expanded is not None:
                    inputs.append(_ShotInput(index, node, *expanded))
                continue
            inputs.append(_ShotInput(index, node, plain))
        return inputs

    def _expand_template(self, node: CommentedMap, plain: dict):
        name = plain.get("use")
        use_at = self.source.value_position(node, "use")
        shot_id = _shot_id(plain)
        if not isinstance(name, str):
            self.report(SB_SCHEMA, "`use` takes a template name", use_at, shot_id)
            return None
        template = self._template(name, use_at, shot_id)
        if template is None:
            return None
        args = plain.get("with", {}) or {}
        if not isinstance(args, dict):
            self.report(SB_SCHEMA, "`with` takes a mapping of template parameters",
                        self.source.value_position(node, "with"), shot_id)
            return None
        fragment, missing, unknown = tpl.expand(template, args)
        for param in unknown:
            close = difflib.get_close_matches(param, list(template.params), n=1)
            hint = f"; did you mean `{close[0]}`?" if close else ""
            self.report(SB_TEMPLATE_PARAMETER, f"template `{name}` has no parameter `{param}`{hint}",
                        self.source.key_position(node["with"], param), shot_id)
        for param in missing:
            self.report(SB_TEMPLATE_PARAMETER, f"template `{name}` needs parameter `{param}` "
                        f"(add it under `with:`)", use_at, shot_id)
        if missing or unknown:
            return None
        merged = {**fragment, **{k: v for k, v in plain.items() if k not in ("use", "with")}}
        return merged, name, use_at

    def _template(self, name: str, use_at: Position, shot_id: str | None):
        if name in self._templates:
            return self._templates[name]
        template = None
        found = tpl.find_template(name, self.source.path.parent)
        if found is None:
            known = tpl.available_templates(self.source.path.parent)
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean `{close[0]}`?" if close else f"available: {', '.join(known) or 'none'}"
            self.report(SB_UNKNOWN_TEMPLATE, f"unknown template `{name}`; {hint}", use_at, shot_id)
        else:
            try:
                template = tpl.load_template(found)
            except UserError as exc:
                self.report(SB_UNKNOWN_TEMPLATE, f"template `{name}` cannot be used: {exc}",
                            use_at, shot_id)
        self._templates[name] = template
        return template

    # schema ------------------------------------------------------------------------------
    def _validate(self, data: CommentedMap, shots: list[_ShotInput]):
        plain = {key: to_plain(value) for key, value in data.items() if key != "shots"}
        plain["shots"] = [s.data for s in shots] if isinstance(data.get("shots"), CommentedSeq) \
            else to_plain(data.get("shots"))
        if "shots" not in data:
            plain.pop("shots")
        try:
            return Storyboard.model_validate(plain), shots
        except ValidationError as exc:
            errors = exc.errors()
        if not shots and data.get("shots"):  # every shot already failed and was reported
            errors = [e for e in errors if tuple(e["loc"]) != ("shots",)]
        self._report_schema_errors(errors, shots)
        bad_shots = {e["loc"][1] for e in errors if e["loc"][:1] == ("shots",) and len(e["loc"]) > 1}
        bad_characters = {e["loc"][1] for e in errors if e["loc"][:1] == ("characters",) and len(e["loc"]) > 1}
        bad_top = {e["loc"][0] for e in errors if len(e["loc"]) == 1 or e["loc"][0] not in ("shots", "characters")}
        self._invalid_characters = {str(name) for name in bad_characters}
        kept = []
        for i, shot in enumerate(shots):
            if i in bad_shots:
                shot = _without_bad_keys(shot, [tuple(e["loc"][2:]) for e in errors
                                                 if tuple(e["loc"][:2]) == ("shots", i)])
            if shot is not None:
                kept.append(shot)
        repaired = {k: v for k, v in plain.items() if k not in bad_top and k in Storyboard.model_fields}
        repaired["version"] = 1
        repaired["shots"] = [s.data for s in kept]
        if isinstance(repaired.get("characters"), dict):
            repaired["characters"] = {k: v for k, v in repaired["characters"].items() if k not in bad_characters}
        try:
            return Storyboard.model_validate(repaired), kept
        except ValidationError:
            # nothing valid is left to build (e.g. every shot was invalid)
            return None, []

    def _report_schema_errors(self, errors: list[dict], shots: list[_ShotInput]) -> None:
        seen = set()
        for error in errors:
            loc = self._document_loc(tuple(error["loc"]), shots)
            position, shot_id = self._error_position(loc, shots)
            message = self._schema_message(error, loc, shot_id)
            if (position, message) in seen:
                continue
            seen.add((position, message))
            self.report(SB_SCHEMA, message, position, shot_id, fix=self._key_rename(error, loc))

    def _key_rename(self, error: dict, loc: tuple) -> Fix | None:
        """`--fix` for a misspelt key, when the intended key is unambiguous: exactly one known
        key is close, and the mapping does not already have it."""
        if error["type"] != "extra_forbidden" or not isinstance(loc[-1], str):
            return None
        node = self.source.data
        for part in loc[:-1]:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                return None
        key = loc[-1]
        if not isinstance(node, CommentedMap) or key not in node:
            return None
        close = difflib.get_close_matches(key, _KNOWN_KEYS[_container(loc[:-1])], n=2,
                                          cutoff=RENAME_CUTOFF)
        if len(close) != 1 or close[0] in node:
            return None
        return Fix(f"rename `{key}` to `{close[0]}`", close[0], key=key, rename=True)

    def _document_loc(self, loc: tuple, shots: list[_ShotInput]) -> tuple:
        """pydantic's loc with union-member tags dropped and shot indices mapped back to the
        shot's index in the file (template-failed shots are not in the validated list)."""
        parts = [p for p in loc if not (isinstance(p, str) and p in ("str", "DialogueItem", "int",
                                                                     "float", "bool", "literal['auto']"))]
        if parts[:1] == ["shots"] and len(parts) > 1 and isinstance(parts[1], int) and parts[1] < len(shots):
            parts[1] = shots[parts[1]].index
        return tuple(parts)

    def _error_position(self, loc: tuple, shots: list[_ShotInput]) -> tuple[Position, str | None]:
        shot_id = None
        if loc[:1] == ("shots",) and len(loc) > 1:
            match = next((s for s in shots if s.index == loc[1]), None)
            if match is not None:
                shot_id = _shot_id(match.data)
                if match.template is not None and not self._in_document(match.node, loc[2:]):
                    return match.use_position, shot_id
        return self.source.path_position(loc), shot_id

    @staticmethod
    def _in_document(node, loc: tuple) -> bool:
        for part in loc:
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                return False
        return True

    def _schema_message(self, error: dict, loc: tuple, shot_id: str | None = None) -> str:
        where = _loc_name(loc, shot_id)
        if error["type"] == "extra_forbidden":
            key = str(loc[-1])
            candidates = _KNOWN_KEYS[_container(loc[:-1])]
            close = difflib.get_close_matches(key, candidates, n=1)
            hint = f"; did you mean `{close[0]}`?" if close else ""
            return f"unknown key `{key}`{hint}"
        if error["type"] == "string_pattern_mismatch" and loc[-1] == "[key]":
            return f"character name `{loc[-2]}`: use only letters, digits, `-` and `_` (it is written as {{name}})"
        if error["type"] == "string_pattern_mismatch" and loc[-1] in ("id", "extends"):
            return f"`{where}`: shot ids use only letters, digits, `-` and `_`"
        if error["type"] == "missing":
            return f"`{where}` is required"
        if error["type"] == "string_unicode":  # pydantic met a lone surrogate before we could
            return f"`{where}`: contains a lone surrogate{NOT_A_CHARACTER}"
        message = error["msg"].removeprefix("Value error, ")
        return f"`{where}`: {message}"

    # resolution --------------------------------------------------------------------------
    def _resolve(self, model: Storyboard, shots: list[_ShotInput], variant: Variant) -> list[ResolvedShot]:
        characters = {name: CharacterInfo(c.look, c.voice, c.name) for name, c in model.characters.items()}
        extended = {shot.extends for shot in model.shots if shot.extends}
        resolved = []
        for shot, given in zip(model.shots, shots):
            in_chain = shot.extends is not None or shot.id in extended
            compiled = self._compile(shot, given, characters, variant)
            for unknown in compiled.unknown:
                if unknown.name in self._invalid_characters:
                    continue  # its definition is already reported
                self.report(SB_UNKNOWN_CHARACTER, unknown.message, unknown.position, shot.id)
            line, col = self.source.item_position(self.source.data["shots"], given.index)
            first_frame = (self.source.path.absolute().parent / shot.first_frame) if shot.first_frame else None
            resolved.append(ResolvedShot(
                id=shot.id, index=given.index, line=line, column=col,
                raw_prompt=compiled.text, prompt=format_prompt(compiled.text, variant),
                origin=compiled.origin, structured=shot.prompt is None,
                dialogue=compiled.dialogue, scene=compiled.scene, audio_caption=compiled.audio_caption,
                first_frame=first_frame, extends=shot.extends,
                settings=merge_settings(model.defaults, shot, variant, in_chain,
                                        self.source.path.absolute().parent),
                takes=shot.takes, noqa=list(shot.noqa or []), pick=shot.pick, template=given.template,
                node=given.node if isinstance(given.node, CommentedMap) else None))
        return resolved

    def _compile(self, shot: Shot, given: _ShotInput, characters, variant: Variant) -> Compiled:
        node = given.node if isinstance(given.node, CommentedMap) else CommentedMap()
        fallback = given.use_position or self.source.path_position(("shots", given.index))

        def text(key: str, value: str, container=node) -> Text:
            if given.template is not None and key not in container:
                return Text(value, given.use_position)
            return Text(value, self.source.value_position(container, key),
                        self.source.scalar_source(container, key))

        if shot.prompt is not None:
            origin = TextOrigin(self.source.path, text("prompt", shot.prompt).anchor)
            return compile_raw(text("prompt", shot.prompt), characters, origin)

        first_key = next((k for k in ("scene", "dialogue", "audio") if k in node), None)
        origin = TextOrigin(self.source.path, self.source.key_position(node, first_key)
                            if first_key else fallback)
        scene = text("scene", shot.scene) if shot.scene is not None else None
        audio = text("audio", shot.audio) if shot.audio is not None else None
        return compile_structured(scene, self._dialogue(shot, given, node, fallback), audio,
                                  characters, variant.caption_style, origin)

    def _dialogue(self, shot: Shot, given: _ShotInput, node: CommentedMap, fallback: Position):
        items = node.get("dialogue")
        from_file = isinstance(items, CommentedSeq)  # else it came from a template
        lines = []
        for index, item in enumerate(shot.dialogue or []):
            speaker, value = (None, item) if isinstance(item, str) else (item.speaker, item.line)
            if not from_file:
                lines.append((speaker, Text(value, fallback), fallback))
                continue
            item_node = items[index]
            if isinstance(item_node, CommentedMap):
                line = Text(value, self.source.value_position(item_node, "line"),
                            self.source.scalar_source(item_node, "line"))
                speaker_at = self.source.value_position(item_node, "speaker")
            else:
                item_at = self.source.item_position(items, index)
                line = Text(value, item_at, self.source.item_scalar_source(items, index))
                speaker_at = item_at
            lines.append((speaker, line, speaker_at))
        return lines


def _without_bad_keys(shot: _ShotInput, problems: list[tuple]) -> _ShotInput | None:
    """A shot whose reported problems are all bad keys or values, with those keys left out, so
    the rest of it (prompt, lengths, references) is still checked; None when that leaves no
    valid shot (its id is bad, or a rule spans the whole shot)."""
    keys = {loc[0] for loc in problems if loc}
    if any(not loc for loc in problems) or "id" in keys:
        return None
    data = {k: v for k, v in shot.data.items() if k not in keys}
    try:
        Shot.model_validate(data)
    except ValidationError:
        return None
    return _ShotInput(shot.index, shot.node, data, shot.template, shot.use_position)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _lone_surrogate(value) -> str | None:
    """The first lone surrogate in a value (strings, lists and dict keys and values)."""
    if isinstance(value, str):
        found = _SURROGATE.search(value)
        return found.group() if found else None
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if isinstance(value, (list, tuple)):
        return next((found for item in value if (found := _lone_surrogate(item)) is not None), None)
    return None


def _shot_id(data) -> str | None:
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def _loc_name(loc: tuple, shot_id: str | None) -> str:
    """A validation location as the user reads it: `shots[storm].takes` (the shot by its id,
    never by a 0-based index), `dialogue[2].line` (items 1-based), `defaults.steps`."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            named = i == 1 and loc[0] == "shots" and shot_id and re.match(SHOT_ID_PATTERN, shot_id)
            label = shot_id if named else f"#{part + 1}"
            out += f"[{label}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "storyboard"


def _describe(value) -> str:
    if value is None:
        return "empty"
    kinds = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
             int: "a number", float: "a number"}
    return next((name for kind, name in kinds.items() if isinstance(value, kind)), "not a mapping")


def _container(loc: tuple) -> str:
    if not loc:
        return "storyboard"
    if loc[0] == "shots":
        return "dialogue" if "dialogue" in loc else "shot"
    if loc[0] == "characters":
        return "character"
    return {"defaults": "defaults", "output": "output", "qc": "qc"}.get(loc[0], "storyboard")


def merge_settings(defaults: Settings, shot: Shot, variant: Variant, in_chain: bool,
                   folder: Path = Path(".")) -> ShotSettings:
    """Ovi's defaults < the storyboard's `defaults` < the shot's own keys. `resolution` and
    `aspect` are one setting: a shot giving either replaces both. LoRA and fp8_file paths are
    resolved against `folder` (the storyboard's). A draft gets its fewer steps and draft LoRAs
    here."""
    merged: dict = {name: None for name in Settings.model_fields}
    merged.update(BUILTIN_SETTINGS)
    for layer in (defaults, shot):
        given = {name: getattr(layer, name) for name in Settings.model_fields
                 if getattr(layer, name) is not None}
        if "resolution" in given or "aspect" in given:
            merged["resolution"] = merged["aspect"] = None
        merged.update(given)
    if merged["duration"] is None:
        merged["duration"] = float(variant.duration_s)
    if merged["color_match"] is None:
        merged["color_match"] = "first" if in_chain else "off"
    if merged["transition_frames"] is None:
        merged["transition_frames"] = CROSSFADE_FRAMES if merged["transition"] == "crossfade" else 0
    if merged["resolution"] is not None:
        merged["resolution"] = tuple(merged["resolution"])
    if merged["fp8_file"] is not None:  # another tool's fp8 weights: fp8 whatever `fp8` says
        merged["fp8_file"] = str((folder / Path(merged["fp8_file"]).expanduser()).absolute())
        merged["fp8"] = True
    for key in ("loras", "draft_loras"):  # (--set gives plain mappings)
        entries = [LoraEntry.model_validate(e) if isinstance(e, dict) else e for e in merged[key]]
        merged[key] = tuple(LoraUse(str((folder / Path(e.path).expanduser()).absolute()),
                                    e.scale, e.tower) for e in entries)
    if merged["draft"]:
        _as_draft(merged)
    return ShotSettings(**merged)


def _as_draft(merged: dict) -> None:
    """The draft tier: fewer steps; with distillation LoRAs, those LoRAs and no guidance."""
    if merged["draft_loras"]:
        merged["loras"] += merged["draft_loras"]
        merged["steps"] = min(merged["steps"], DISTILLED_DRAFT_STEPS)
        merged["video_guidance"] = merged["audio_guidance"] = 1.0
        merged["slg_layer"] = -1
    else:
        merged["steps"] = min(merged["steps"], DRAFT_STEPS)


__all__ = [
    "Character", "DialogueItem", "DialogueLine", "LoadedStoryboard", "Output", "QcThresholds", "ResolvedShot",
    "Settings", "Shot", "ShotSettings", "Storyboard", "load_storyboard",
    "merge_settings", "storyboard_schema",
]
