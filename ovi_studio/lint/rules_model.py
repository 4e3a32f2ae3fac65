"""OVI401-408: what the chosen model variant can do with this prompt and these settings."""
from __future__ import annotations

from collections.abc import Iterator

from engine.arch import Arch
from engine.fp8_files import check_fp8_file as check_fp8_file_layout
from engine.errors import CheckpointError
from engine.lora_keys import LoraError, LoraSpec, check_lora
from engine.variants import FP8_VARIANTS, SIDE_MULTIPLE, Variant, snap_t2v_size
from ovi_studio.diagnostics import Severity
from ovi_studio.lint.findings import Finding, PromptContext, SettingFinding
from ovi_studio.lint.registry import rule
from ovi_studio.prompt import ParsedPrompt, with_caption_form

E, W = Severity.ERROR, Severity.WARNING
AREA_TOLERANCE = 0.10  # the reference warns and snaps outside ±10 % of the model's area

rule("OVI401", W, "legacy <AUDCAP> caption with a 960 model",
     "The 960x960 models were trained with `Audio: …` at the end of the prompt. The engine "
     "rewrites <AUDCAP>X<ENDAUDCAP> to `Audio: X` in place, which is not at the end when text "
     "follows it. `--fix` converts the caption and moves it to the end.", fixable=True)
rule("OVI402", W, "`Audio:` caption with 720x720_5s",
     "The 720x720_5s model was trained with <AUDCAP>…<ENDAUDCAP>. Its formatter wraps everything "
     "from the first `Audio:` to the end of the prompt. `--fix` converts the caption.", fixable=True)
rule("OVI403", E, "duration the model cannot make",
     "Each Ovi model makes clips of one length: 720x720_5s and 960x960_5s 5 s (121 frames), "
     "960x960_10s 10 s (241 frames). Pick the model for the duration or drop `duration`.")
rule("OVI404", W, "resolution the engine will change",
     "For text-to-video the engine rescales the requested size to the model's area (720x720 or "
     "960x960; it warns outside ±10 %) and rounds both sides to multiples of 32 (so 720x720 on "
     "720x720_5s becomes 704x704). Ask for the size you will "
     "get: `--fix` writes the snapped size.", fixable=True)
rule("OVI405", W, "fp8 with a model that has no published fp8 checkpoint",
     "The only published fp8 checkpoint is a 720x720_5s model (the reference refuses fp8 with the "
     "960 models). ovi-studio converts the 960 model's bf16 weights to block-scaled fp8 at load "
     "(once; cached), which nobody has validated for quality: compare a take with `fp8: false`, "
     "or use `fp8: false` where memory allows.")

rule("OVI407", E, "a LoRA that cannot be applied",
     "Each `loras:` (and `draft_loras:`) entry must be a readable .safetensors LoRA whose keys "
     "name modules of this model, sized for it, with something for the `tower` it goes onto: a "
     "Wan2.2-TI2V-5B LoRA fits the video tower (`tower: both` puts it on the audio tower too), an "
     "Ovi LoRA names its towers itself. Fix the path, the `tower`, or use a LoRA made for this model.")
rule("OVI408", E, "an fp8 file that cannot be read as this model",
     "`fp8_file:` names a scaled-fp8 file of the fusion model made by another tool (musubi-tuner, "
     "or ComfyUI/kijai `fp8_scaled`), read instead of the checkpoint's fusion weights. It must "
     "exist, carry its fp8 scales (`scale_weight` keys) and hold every layer of this model at "
     "its size. Fix the path (relative to the storyboard), or convert the model with one of "
     "those tools; `fp8: true` alone converts the checkpoint's own weights.")


def check(parsed: ParsedPrompt, ctx: PromptContext) -> Iterator[Finding]:
    """Caption form against the variant (OVI401/402)."""
    fixed = None  # one rewrite serves every caption of the prompt
    for caption in parsed.captions:
        if caption.form == ctx.variant.caption_style:
            continue
        if fixed is None and parsed.well_formed:  # OVI103's fix first; no guessing extents
            fixed = with_caption_form(parsed.text, ctx.variant.caption_style)
        if caption.form == "audcap":
            yield Finding("OVI401", caption.start, caption.end,
                          f"<AUDCAP>…<ENDAUDCAP> with {ctx.variant.name}: write the caption as "
                          "`Audio: …` at the end of the prompt",
                          fix=fixed, fix_description="convert the caption to `Audio: …`")
        else:
            yield Finding("OVI402", caption.start, caption.end,
                          f"`Audio:` caption with {ctx.variant.name}: write it as "
                          "<AUDCAP>…<ENDAUDCAP> at the end of the prompt",
                          fix=fixed, fix_description="convert the caption to <AUDCAP>…<ENDAUDCAP>")


def check_duration(variant: Variant, duration: float | None) -> Iterator[SettingFinding]:
    if duration is not None and abs(float(duration) - variant.duration_s) > 1e-6:
        yield SettingFinding("OVI403", "duration",
                             f"{variant.name} makes {variant.duration_s} s clips, not {duration:g} s: "
                             f"set `duration: {variant.duration_s}` or choose a model for "
                             f"{duration:g} s")


def check_resolution(variant: Variant, size: tuple[int, int] | None) -> Iterator[SettingFinding]:
    """`size` is the requested (height, width) of a text-to-video shot."""
    if size is None:
        return
    height, width = size
    if height <= 0 or width <= 0:
        return  # the schema rejects it
    snapped = snap_t2v_size(height, width, variant.video_area)
    if snapped == (height, width):
        return
    ratio = height * width / variant.video_area
    if abs(ratio - 1) > AREA_TOLERANCE:
        why = f"its area is {ratio:.0%} of the model's {variant.video_area:,} pixels"
    elif height % SIDE_MULTIPLE or width % SIDE_MULTIPLE:
        why = f"the sides are not multiples of {SIDE_MULTIPLE}"
    else:
        why = "the engine rescales every request to the model's area"
    yield SettingFinding("OVI404", "resolution",
                         f"{height}x{width} will render as {snapped[0]}x{snapped[1]} ({why}): "
                         f"write `resolution: [{snapped[0]}, {snapped[1]}]`",
                         fix=[snapped[0], snapped[1]], fix_description="write the snapped size")


def check_fp8(variant: Variant, fp8: bool) -> Iterator[SettingFinding]:
    if fp8 and variant.name not in FP8_VARIANTS:
        yield SettingFinding("OVI405", "fp8",
                             f"no published fp8 checkpoint for {variant.name} (only {', '.join(FP8_VARIANTS)}): "
                             "its weights will be converted to block-scaled fp8 at load; "
                             "set `fp8: false` for the published quality")


def check_fp8_file(arch: Arch, fp8_file: str | None) -> Iterator[SettingFinding]:
    """The shot's fp8_file against the model's sizes; only the file's header is read."""
    if fp8_file is None:
        return
    try:
        check_fp8_file_layout(fp8_file, arch)
    except CheckpointError as exc:
        yield SettingFinding("OVI408", "fp8_file", f"{exc.path}: {exc.problem} ({exc.hint})")


def check_loras(arch: Arch, loras, key: str) -> Iterator[SettingFinding]:
    """Each LoRA of a shot (`key`: loras or draft_loras) against the model's sizes; only the
    files' headers are read."""
    for lora in loras:
        try:
            check_lora(LoraSpec(lora.path, lora.scale, lora.tower), arch)
        except LoraError as exc:
            yield SettingFinding("OVI407", key, f"{exc.path}: {exc.problem}"
                                 + (f" ({exc.hint})" if exc.hint else ""))
