"""What a render will do: shots in execution order, the geometry and seed of every take, a cache
key over everything that changes the output, and whether the output folder already holds it.

This module owns the one answer to "is this take up to date, and why not", like `dvc status`;
`plan`, `render --dry-run` and `render` all act on it. The render writes
`<out>/shots/<id>/take<k>/meta.json` with the `cache_key` and the `key_inputs` it was hashed
from, and the size and hash of every file. A take is stale when its key differs (comparing the
stored inputs field by field says why: "prompt changed", "upstream shot a changed"), when a file
is missing or changed since it was committed, when the take it extends renders or was rendered
again since, or when `--force` names it. The engine that renders is one of the key's inputs: an
animatic is never mistaken for a model take. `--only` narrows what renders (`wanted`) without
changing what is stale. Takes live once in the take store (store.py): a take whose link points
elsewhere but whose key finds a complete stored take is "stored" and is re-linked, not
rendered (an undone edit costs nothing).

An extension continues the chosen take of its parent shot (take_choice.py: the pick, else the
best by the quality checks, else take 0 with `--pick first`). When the best must be chosen and
every take of the parent is already rendered and checked, the plan chooses it and keys the
extension as usual; otherwise the extension has no key yet ("the best of pier's 2 takes,
chosen after they render"): the render session chooses once those takes are checked and keys
it then through `start_extension`, the same freshness decision.

A shot whose first frame cannot be read is planned as "blocked" (with the reason and the fix),
and so is every shot extending it; the rest of the plan is unaffected.
"""
from __future__ import annotations

import hashlib
import heapq
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from engine import layout
from engine.fingerprint import folder_fingerprint, stat_cache
from engine.variants import Variant, best_i2v_size, snap_t2v_size
from ovi_studio import cost
from ovi_studio.checkpoints import (EngineChoice, checkpoint_variant, choose_engine,
                                    storyboard_ckpt_dir)
from ovi_studio.errors import UserError, at
from ovi_studio.media.images import ImageLoadError, aspect_fitted_size, first_frame_file
from ovi_studio.counting import CountProgress
from ovi_studio.store import stored_dir, take_dir
from ovi_studio.storyboard import LoadedStoryboard, ResolvedShot
from ovi_studio.take_choice import Choice, check_policy, choose, fixed_choice, stored_checks

# Bump when the engine or post-processing changes what a given key renders to.
ENGINE_VERSION = "1"
META_FILE = "meta.json"
NO_CHECKPOINT = "no-checkpoint"
FIRST_FRAME_FIX = "point `first_frame` at a readable image (PNG, JPEG, …) or video"

SAMPLER_FIELDS = ("steps", "solver", "shift", "video_guidance", "audio_guidance", "slg_layer")
# Shot settings that cannot change a take's pictures or sound, and why; every other field of
# ShotSettings must reach the cache key (tests/test_settings_keyed.py edits each one).
OUTPUT_NEUTRAL = {
    "blocks_to_swap": "where fusion layers live while sampling; the same bits are computed",
    "transition": "how the cut joins shots (the cut's own key covers it)",
    "transition_frames": "how the cut joins shots (the cut's own key covers it)",
    "draft_loras": "used only in drafts, where they are added to `loras` (keyed there)",
}
OPT_IN_FIELDS = ("step_cache", "cfg_batch")  # sampler speed modes, off by default
_REASONS = {
    "prompt": "prompt changed",
    "video_negative": "negative prompt changed",
    "audio_negative": "negative prompt changed",
    "seed": "seed changed",
    "first_frame": "first-frame image changed",
    "first_frame_aspect": "first-frame aspect (resolution/aspect) changed",
    "checkpoint": "checkpoint changed",
    "model": "model changed",
    "engine_version": "engine version changed",
    "height": "resolution changed",
    "width": "resolution changed",
    "frames": "duration changed",
    "fp8": "fp8 setting changed",
    "fp8_file": "fp8 file changed",
    "tiled_vae": "tiled VAE setting changed",
}


def check_pick(shot: ResolvedShot) -> None:
    """A pick beyond the takes that will render (`--takes` lowered them) is a user error."""
    if shot.pick is not None and shot.pick >= shot.takes:
        raise UserError(f"shot {shot.id} picks take {shot.pick}, but only takes 0 to {shot.takes - 1} "
                        f"are rendered", location=at(shot.origin.file, shot.line, shot.column),
                        hint=f"render more takes (--takes {shot.pick + 1}) or change `pick:`")


@dataclass
class PlannedTake:
    shot: ResolvedShot
    take: int
    seed: int
    mode: str  # "t2v" | "i2v" | "extend"
    parent: str | None  # an extension continues from the parent shot's chosen take (parent_take)
    height: int | None  # None when blocked: the size depends on an unreadable first frame
    width: int | None
    frames: int
    cache_key: str  # "" when blocked
    key_inputs: dict
    status: str  # "fresh" | "stored" (complete in the take store, to be linked) | "stale" | "blocked"
    reasons: list[str]
    estimate_seconds: float
    out_dir: Path = field(repr=False, default=Path("."))
    parent_take: int | None = 0  # which take of `parent` this extension starts from (None: chosen
    # once the parent's takes are rendered and checked; the take has no cache key until then)
    parent_choice: Choice | None = None  # why that take (take_choice)
    wanted: bool = True  # asked for by this render (--only names its shot, or a wanted take extends it)
    forced: bool = False  # --force: renders even when up to date
    frames_sha256: str | None = field(repr=False, default=None)  # of a fresh take's frames

    @property
    def renders(self) -> bool:
        return self.wanted and self.status == "stale"

    @property
    def action(self) -> str:
        """What a render does with this take: render, reuse (link the stored take), up to
        date, not selected, blocked."""
        if self.status == "blocked":
            return "blocked"
        if not self.wanted:
            return "not selected"
        return {"stale": "render", "stored": "reuse"}.get(self.status, "up to date")

    @property
    def parent_dir(self) -> Path | None:
        """The parent take's folder (None: not an extension, or its parent take is not chosen yet)."""
        return None if self.parent is None or self.parent_take is None else take_dir(
            self.out_dir, self.parent, self.parent_take)

    @property
    def artifact_dir(self) -> Path:
        """Where the shot's take is read (a link into the take store)."""
        return take_dir(self.out_dir, self.shot.id, self.take)

    @property
    def stored_dir(self) -> Path:
        """Where this take lives in the take store once rendered."""
        return stored_dir(self.out_dir, self.cache_key)

    def to_json(self) -> dict:
        return {
            "shot": self.shot.id, "take": self.take, "seed": self.seed, "mode": self.mode,
            "parent": self.parent, "height": self.height, "width": self.width,
            "parent_take": self.parent_take if self.parent else None,
            "parent_choice": self.parent_choice.to_json() if self.parent_choice else None,
            "frames": self.frames, "status": self.status, "reasons": self.reasons,
            "action": self.action,
            "estimate_seconds": round(self.estimate_seconds, 1), "cache_key": self.cache_key,
            "artifact_dir": str(self.artifact_dir), "key_inputs": self.key_inputs,
        }


@dataclass
class Plan:
    storyboard: LoadedStoryboard
    steps: list[PlannedTake]
    out_dir: Path
    engine: EngineChoice
    variant: Variant  # the storyboard's, with the checkpoint's arch.json overrides
    ckpt_dir: Path | None = None
    checkpoint: str = NO_CHECKPOINT

    @cached_property
    def takes_of(self) -> dict[str, list[PlannedTake]]:
        """Each shot's planned takes, by take number."""
        takes: dict[str, list[PlannedTake]] = {}
        for step in self.steps:
            takes.setdefault(step.shot.id, []).append(step)
        return takes

    @property
    def blocked(self) -> list[PlannedTake]:
        return [step for step in self.steps if step.status == "blocked"]

    @property
    def to_render(self) -> list[PlannedTake]:
        return [step for step in self.steps if step.renders]

    @property
    def total_seconds_estimate(self) -> float:
        """The cost model's GPU time for the takes that render."""
        return sum(step.estimate_seconds for step in self.to_render)

    def to_json(self) -> dict:
        return {
            "storyboard": str(self.storyboard.path), "model": self.storyboard.variant.name,
            "out_dir": str(self.out_dir), "checkpoint": self.checkpoint,
            "engine": self.engine.name, "engine_version": ENGINE_VERSION,
            "total_seconds_estimate": round(self.total_seconds_estimate, 1),
            "to_render": len(self.to_render),
            "takes": [step.to_json() for step in self.steps],
        }


def default_out_dir(loaded: LoadedStoryboard) -> Path:
    output = loaded.model.output.dir if loaded.model else None
    return Path(os.path.normpath(loaded.folder / (output or f"out/{loaded.path.stem}")))


def execution_order(loaded: LoadedStoryboard) -> list[ResolvedShot]:
    """Parents before their extensions; otherwise file order."""
    by_id: dict[str, ResolvedShot] = {}
    for shot in loaded.shots:
        if shot.id in by_id:
            raise _graph_error(shot, f"shot id `{shot.id}` is used twice")
        by_id[shot.id] = shot
    for shot in loaded.shots:
        if shot.extends is not None and shot.extends not in by_id:
            raise _graph_error(shot, f"shot `{shot.id}` extends `{shot.extends}`, which is not a "
                                     f"(valid) shot of this storyboard")
    # The earliest shot in the file whose parent is placed goes next: a heap of ready indices.
    children: dict[str, list[int]] = {}
    ready = []
    for index, shot in enumerate(loaded.shots):
        if shot.extends is None:
            ready.append(index)
        else:
            children.setdefault(shot.extends, []).append(index)
    order = []
    while ready:
        shot = loaded.shots[heapq.heappop(ready)]
        order.append(shot)
        for child in children.pop(shot.id, ()):
            heapq.heappush(ready, child)
    if len(order) < len(loaded.shots):
        placed = {shot.id for shot in order}
        pending = [shot for shot in loaded.shots if shot.id not in placed]
        raise _graph_error(pending[0], "these shots extend each other in a cycle: "
                           + ", ".join(s.id for s in pending))
    return order


def check_selection(loaded: LoadedStoryboard, only: list[str] | None, force: list[str] | None) -> None:
    """--only and --force name shots of this storyboard."""
    ids = {s.id for s in loaded.shots}
    for flag, names in (("--only", only), ("--force", force)):
        bad = [n for n in names or [] if n not in ids]
        if bad:
            raise UserError(f"{flag}: no shot named {', '.join(bad)}",
                            hint="shots: " + ", ".join(s.id for s in loaded.shots))


def build_plan(loaded: LoadedStoryboard, out_dir: Path | None = None,
               ckpt_dir: Path | None = None, engine: str | None = None, *,
               only: list[str] | None = None, force: list[str] | None = None,
               pick: str = "best") -> Plan:
    """`ckpt_dir` and `engine` are the command-line values (None: the storyboard's, then the
    defaults), resolved exactly as `render` resolves them. `only`: the shots to render (and of
    their ancestors the takes they continue from); `force`: shots to render again even when up
    to date ([]: every shot); `pick`: the take_choice policy for shots without `pick:`."""
    if loaded.model is None:
        raise UserError("the storyboard has errors; nothing to plan", location=at(loaded.path),
                        hint="run `ovi-studio check` to see them")
    check_selection(loaded, only, force)
    check_policy(pick)
    wanted = wanted_takes(loaded, only)
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(loaded)
    ckpt = storyboard_ckpt_dir(loaded, ckpt_dir)
    choice = choose_engine(engine, loaded, ckpt)
    variant = checkpoint_variant(loaded.variant, ckpt)
    identities: dict[bool, str] = {}

    def checkpoint_identity(fp8: bool) -> str:
        if ckpt is None or not ckpt.is_dir():
            return NO_CHECKPOINT
        if fp8 not in identities:
            published = layout.reads_published_fp8(ckpt, variant, fp8)
            identities[fp8] = folder_fingerprint(ckpt, layout.required_files(variant, published))
        return identities[fp8]

    steps: list[PlannedTake] = []
    takes_of: dict[str, list[PlannedTake]] = {}
    shots = execution_order(loaded)
    progress = CountProgress("plan", len(shots))
    for shot in shots:
        progress.advance()
        check_pick(shot)
        parent_takes = takes_of.get(shot.extends, [])  # every take of the parent shot
        chosen = (parent_choice(loaded.shot(shot.extends), parent_takes, pick, loaded.model.qc)
                  if shot.extends else None)
        parent = parent_takes[chosen.take] if chosen else None  # None: chosen after they render
        pending = shot.extends is not None and chosen is None
        s = shot.settings
        try:  # every take of a shot has the same size: any of them sizes an extension
            mode, (height, width), image_hash = _geometry(variant, shot, parent or next(iter(parent_takes), None))
        except ImageLoadError as exc:
            mode, (height, width), image_hash = "i2v", (None, None), None
            blocked = f"{exc}; {FIRST_FRAME_FIX} ({shot.origin.file}:{shot.line})"
        else:  # an extension of a blocked shot has no size either
            blocked = f"extends {shot.extends}, which is blocked" if height is None else None
        # GPU time: the preview engine uses none
        per_take = 0.0 if blocked or choice.name == "preview" else cost.take_seconds(height, width, variant, s.steps)
        forced = force is not None and (not force or shot.id in force)
        for take in range(shot.takes):
            inputs = {
                "engine_version": ENGINE_VERSION, "engine": choice.name, "model": variant.name,
                # an fp8_file replaces the fusion weights: the published fp8 file is not read
                "checkpoint": checkpoint_identity(s.fp8 and not s.fp8_file), "prompt": shot.prompt,
                "video_negative": s.video_negative, "audio_negative": s.audio_negative,
                **{name: getattr(s, name) for name in SAMPLER_FIELDS},
                "seed": s.seed + take, "take": take, "height": height, "width": width,
                "frames": variant.frames, "fp8": s.fp8, "first_frame": image_hash,
                "parent": parent.cache_key if parent else None, "parent_shot": shot.extends,
                "seed_frame": s.seed_frame, "color_match": s.color_match, "fit": s.fit,
                # only when used, so that takes without them keep their keys
                **({"loras": _lora_identities(s.loras)} if _lora_identities(s.loras) else {}),
                **({"fp8_file": _file_identity(s.fp8_file)} if s.fp8_file else {}),
                **({"draft": True} if s.draft else {}),
                **({"tiled_vae": True} if s.tiled_vae else {}),
                # opt-in speed modes that change the output: keyed only when on, so that takes
                # rendered before they existed keep their keys
                **{name: getattr(s, name) for name in OPT_IN_FIELDS if getattr(s, name)},
            }
            if mode == "i2v":  # the first frame's pixels reach the engine unresampled, aspect-fitted
                asked = s.asked_size(variant)
                inputs["first_frame_aspect"] = list(asked) if asked else None
            planned = PlannedTake(shot, take, s.seed + take, mode, shot.extends, height, width,
                                  variant.frames, "" if blocked or pending else cache_key(inputs),
                                  inputs, "blocked", [blocked] if blocked else [], per_take, out_dir,
                                  None if pending else chosen.take if chosen else 0, chosen,
                                  wanted=wanted is None or (shot.id, take) in wanted, forced=forced)
            if pending and not blocked:  # no key yet: it renders unless a stored take matches
                planned.status, planned.reasons = "stale", [
                    "forced (--force)" if forced else _choice_pending(shot.extends, parent_takes)]
            elif not blocked:
                planned.status, planned.reasons = _freshness(planned, parent, parent_takes)
            steps.append(planned)
            takes_of.setdefault(shot.id, []).append(planned)
    return Plan(loaded, steps, out_dir, choice, variant, ckpt, checkpoint_identity(False))


def wanted_takes(loaded: LoadedStoryboard, only: list[str] | None) -> set[tuple[str, int]] | None:
    """--only: every take of the named shots, and of their ancestors only the take each one
    continues from (nothing that nothing asked for renders): its `pick:`, else take 0 under any
    --pick policy (the best is then chosen among the takes that exist). None: everything is
    wanted."""
    if not only:
        return None
    wanted = {(name, take) for name in only for take in range(loaded.shot(name).takes)}
    for name in only:
        shot = loaded.shot(name)
        while shot.extends is not None:
            shot = loaded.shot(shot.extends)
            needed = (shot.id, shot.pick if shot.pick is not None else 0)
            if needed in wanted:
                break
            wanted.add(needed)
    return wanted


def parent_choice(shot: ResolvedShot, takes: list[PlannedTake], policy: str, thresholds) -> Choice | None:
    """The take of `shot` its extensions start from, when the plan can know it: picked, the
    only one, take 0 (`--pick first`), or the best of takes that are all rendered and checked
    (qc.json). None: the best is chosen once the takes render and are checked."""
    fixed = fixed_choice(shot, policy)
    if fixed is not None:
        return fixed
    checks = {}
    for take in takes:
        if take.status not in ("fresh", "stored"):
            return None
        folder = take.artifact_dir if take.status == "fresh" else take.stored_dir
        meta, _ = read_take_meta(folder)
        checks[take.take] = stored_checks(folder, meta or {}, shot, thresholds)
        if checks[take.take] is None:
            return None
    return choose(shot, checks, policy)


def _choice_pending(parent: str, takes: list[PlannedTake]) -> str:
    when = "after they render" if any(t.renders for t in takes) else "once they are checked"
    return f"extends the best of {parent}'s {len(takes)} takes, chosen {when}"


def start_extension(step: PlannedTake, parent: PlannedTake, parent_takes: list[PlannedTake],
                    choice: Choice) -> None:
    """Key an extension planned without a parent take (parent_choice was None) as continuing
    `parent`, chosen now, and decide its freshness as the plan decides every take's."""
    extend_take(step, parent.take, parent.cache_key, choice)
    step.status, step.reasons = _freshness(step, parent, parent_takes)


def extend_take(step: PlannedTake, parent_take: int, parent_key: str, choice: Choice) -> None:
    """The key of extension `step` when it continues take `parent_take` (cache key
    `parent_key`) of its parent shot."""
    step.parent_take, step.parent_choice = parent_take, choice
    step.key_inputs = {**step.key_inputs, "parent": parent_key}
    step.cache_key = cache_key(step.key_inputs)


def cache_key(key_inputs: dict) -> str:
    canonical = json.dumps(key_inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _geometry(variant: Variant, shot: ResolvedShot, parent: PlannedTake | None):
    """(mode, (height, width), hash of the first-frame file). Raises ImageLoadError for a first
    frame that cannot be read — the same reading (a video's last frame) the render does."""
    if parent is not None:
        return "extend", (parent.height, parent.width), None
    if shot.first_frame is not None:
        s = shot.settings  # sized as load_i2v_frame makes it, from the header
        frame = first_frame_file(shot.first_frame)
        width, height = aspect_fitted_size((frame.width, frame.height), s.asked_size(variant), s.fit)
        return "i2v", best_i2v_size(height, width, variant.video_area), frame.sha256
    return "t2v", snap_t2v_size(*shot.settings.requested_size(variant), variant.video_area), None


def _lora_identities(loras) -> list[dict]:
    """What of a LoRA changes the output: its content (a missing file is `check`'s error),
    scale and towers. Scale 0 is the model without it, so it keys nothing."""
    return [{"file": _file_identity(lora.path), "scale": lora.scale, "tower": lora.tower}
            for lora in loras if lora.scale != 0]


def _file_identity(path: str) -> str:
    """A weights file by its whole content (hashed once per size/mtime/inode: the stat cache);
    a missing file is `check`'s error."""
    return "sha256:" + stat_cache().sha256(path) if Path(path).is_file() else "missing"


def _freshness(take: PlannedTake, parent: PlannedTake | None,
               parent_takes: list[PlannedTake]) -> tuple[str, list[str]]:
    """(status, reasons) of an unblocked take: the one freshness decision (module docstring).
    `parent_takes`: every take of the parent shot (another of them as the parent is a re-pick)."""
    if take.forced:
        return "stale", ["forced (--force)"]
    status = "fresh"
    meta, reasons = take_state(take.artifact_dir, take.cache_key)
    if reasons:
        linked = meta
        if linked is not None and linked.get("cache_key") != take.cache_key:
            picked = {p.cache_key: p.take for p in parent_takes}
            stored = linked.get("key_inputs")
            if isinstance(stored, dict):  # without it, every input would read as changed
                reasons = explain_changes(stored, take.key_inputs, picked) or reasons
        meta, missing = take_state(take.stored_dir, take.cache_key)
        if missing:
            return "stale", reasons
        status = "stored"
    if parent is not None:
        problem = parent_problem(meta, parent)
        if problem:
            return "stale", [problem]
    take.frames_sha256 = meta["files"]["frames"]["sha256"]
    if status == "stored":
        return "stored", reasons + ["a stored take matches: re-linked, no render"]
    return "fresh", []


def read_take_meta(take_dir: Path) -> tuple[dict | None, str | None]:
    """A take's meta.json as an object, or None and why not."""
    path = take_dir / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, "not rendered yet"
    except (OSError, ValueError):
        return None, f"{META_FILE} is unreadable"
    if not isinstance(meta, dict):
        return None, f"{META_FILE} is unreadable"
    return meta, None


def take_state(take_dir: Path, cache_key: str, meta: dict | None = None) -> tuple[dict | None, list[str]]:
    """(meta.json, why the take is not a complete render for `cache_key`: [] when it is).
    `meta`: the take's meta.json when the caller read it already."""
    if meta is None:
        meta, problem = read_take_meta(take_dir)
        if problem:
            return None, [problem]
    if meta.get("cache_key") != cache_key:
        return meta, ["cache key changed"]
    changed = changed_files(take_dir, meta)
    if changed:
        return meta, [f"file changed since render ({', '.join(changed)})"]
    if "frames" not in meta.get("files", {}):
        return meta, [f"{META_FILE} records no frames"]
    return meta, []


def parent_problem(meta: dict, parent: PlannedTake) -> str | None:
    """Why an extension is stale although its own take is complete: the take it continues
    from renders now, is out of date, or was rendered again since (its seed frame may differ)."""
    if parent.renders:
        return f"upstream shot {parent.shot.id} renders"
    if parent.status not in ("fresh", "stored"):
        return f"upstream shot {parent.shot.id} is out of date"
    if not seeded_from(meta, parent.frames_sha256):
        return f"upstream shot {parent.shot.id} was rendered again since"
    return None


def seeded_from(meta: dict, parent_frames_sha256: str | None) -> bool:
    """Whether an extension's take was rendered from the parent frames with this hash."""
    return (meta.get("parent") or {}).get("frames_sha256") == parent_frames_sha256


def changed_files(take_dir: Path, meta: dict) -> list[str]:
    """The take's files that no longer match what its meta.json recorded at commit: missing, of
    another size, or of other content. Content is re-hashed only for a file whose size, mtime or
    inode changed since it was last hashed (the stat cache); otherwise one stat suffices."""
    files = meta.get("files", {})
    if not isinstance(files, dict) or not all(isinstance(r, dict) and "path" in r for r in files.values()):
        return [META_FILE]
    changed = []
    for record in files.values():
        path = take_dir / record["path"]
        if (not path.is_file() or path.stat().st_size != record.get("bytes")
                or stat_cache().sha256(path) != record.get("sha256")):
            changed.append(record["path"])
    return changed


def explain_changes(old: dict, new: dict, parent_takes: dict[str, int] | None = None) -> list[str]:
    """Human reasons for the differences between two key_inputs objects. `parent_takes` maps
    the cache keys of the parent shot's takes to their numbers: a parent key that is another
    take of the same parent means the parent was re-picked."""
    parent_takes = parent_takes or {}
    reasons: list[str] = []
    for name in sorted(set(old) | set(new), key=lambda n: list(new).index(n) if n in new else 999):
        if old.get(name) == new.get(name) or name == "parent_shot":
            continue
        if name == "parent" and old.get("parent") in parent_takes and new.get("parent") in parent_takes:
            reason = (f"parent {new.get('parent_shot')} re-picked (take {parent_takes[old['parent']]} "
                      f"-> take {parent_takes[new['parent']]})")
        elif name == "parent":
            reason = f"upstream shot {new.get('parent_shot') or old.get('parent_shot')} changed"
        elif name == "engine":
            reason = (f"rendered by {old.get('engine') or 'an older ovi-studio'}; "
                      f"this render uses {new.get('engine')}")
        elif name in SAMPLER_FIELDS or name in OPT_IN_FIELDS:
            reason = f"sampler settings changed ({name})"
        else:
            reason = _REASONS.get(name, f"{name} changed")
        if reason not in reasons:
            reasons.append(reason)
    return reasons


def _graph_error(shot: ResolvedShot, message: str) -> UserError:
    return UserError(message, location=at(shot.origin.file, shot.line, shot.column),
                     hint="run `ovi-studio check` for every problem at once")
