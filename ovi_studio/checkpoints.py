"""Where the Ovi checkpoints are, what their arch.json makes of a model variant, and which
engine a render uses — decided here once for `check`, `plan`, `render` and `doctor`.

Pure Python (engine.layout / engine.arch / engine.variants only, no torch): `check` and `plan`
import it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine import layout
from engine.arch import ArchError, load_arch
from engine.variants import Variant
from ovi_studio.errors import UserError

CKPT_ENV = "OVI_CKPT_DIR"
DEFAULT_CKPT_DIR = Path("ckpts")
ENGINES = ("auto", "ovi", "preview")


def find_ckpt_dir(explicit: str | Path | None = None, storyboard_setting: str | None = None,
                  storyboard_folder: Path | None = None) -> Path | None:
    """--ckpt-dir, else the storyboard's `ckpt_dir` (relative to the storyboard), else
    $OVI_CKPT_DIR, else ./ckpts when it exists."""
    if explicit:
        return Path(explicit)
    if storyboard_setting:
        return Path(storyboard_folder or ".") / storyboard_setting
    if os.environ.get(CKPT_ENV):
        return Path(os.environ[CKPT_ENV])
    return DEFAULT_CKPT_DIR if DEFAULT_CKPT_DIR.is_dir() else None


def storyboard_ckpt_dir(loaded, explicit: str | Path | None = None) -> Path | None:
    """`find_ckpt_dir` for a loaded storyboard."""
    model = loaded.model
    return find_ckpt_dir(explicit, model.ckpt_dir if model is not None else None, loaded.folder)


def checkpoint_variant(variant: Variant, ckpt_dir: Path | None) -> Variant:
    """The variant as the checkpoint folder's arch.json overrides it (frames, area), so that
    planned sizes are the sizes the engine renders; unchanged without a folder or arch.json."""
    if ckpt_dir is None or not Path(ckpt_dir).is_dir():
        return variant
    try:
        return load_arch(ckpt_dir).variant.apply(variant)
    except ArchError as exc:
        raise UserError(str(exc), hint="fix or remove arch.json (published checkpoints have none)") from None


def missing_checkpoints(ckpt_dir: Path | None, variant: Variant, fp8: bool) -> list[str]:
    """Missing checkpoint files, each with where it comes from; empty when all are present."""
    if ckpt_dir is None:
        return [f"no checkpoint folder: pass --ckpt-dir, set {CKPT_ENV} or `ckpt_dir:` in the storyboard"]
    return [f"{Path(ckpt_dir) / rel} (from huggingface.co/{layout.source_of(rel)})"
            for rel in layout.missing_files(ckpt_dir, variant,
                                            layout.reads_published_fp8(ckpt_dir, variant, fp8))]


@dataclass(frozen=True)
class EngineChoice:
    name: str  # "ovi" | "preview": what renders
    requested: str  # "auto" | "ovi" | "preview": what was asked for
    missing: tuple[str, ...] = ()  # checkpoint files not found (why auto chose the preview)

    @property
    def fell_back(self) -> bool:
        return self.requested == "auto" and self.name == "preview"


def choose_engine(flag: str | None, loaded, ckpt_dir: Path | None) -> EngineChoice:
    """The engine of a render: `--engine`, else the storyboard's `engine:`; `auto` is the model
    when its checkpoints are complete, else the preview. Demanding `ovi` without complete
    checkpoints is an error, never a silent fallback."""
    requested = flag or (loaded.model.engine if loaded.model is not None else "auto")
    if requested not in ENGINES:
        raise UserError(f"--engine must be one of {', '.join(ENGINES)}, not {requested!r}")
    if requested == "preview":
        return EngineChoice("preview", requested)
    fp8 = any(shot.settings.fp8 for shot in loaded.shots)
    missing = missing_checkpoints(ckpt_dir, loaded.variant, fp8)
    if missing and requested == "ovi":
        raise UserError("the Ovi checkpoints are incomplete; missing:\n"
                        + "\n".join(f"  - {m}" for m in missing),
                        hint=f"`ovi-studio fetch{f' --ckpt-dir {ckpt_dir}' if ckpt_dir else ''} "
                             f"--models {loaded.variant.name}{' --fp8' if fp8 else ''}` downloads them; "
                             "or render an animatic with --engine preview")
    return EngineChoice("preview" if missing else "ovi", requested, tuple(missing))
