"""The render session: storyboard -> plan -> takes rendered in dependency order -> final cut.

One engine serves the whole render and is created only when a take actually needs rendering
(a render with nothing stale never loads the model). Every prompt is encoded before the first
take (through the engine's cache), then the text encoder is freed. A take that fails marks its
descendants skipped, names the reason, and independent shots still render. Finished takes are
committed by meta.json (artifacts.py), so a render killed at any point resumes with the first
unfinished take; Ctrl-C stops after the current take's files are cleaned up and writes the
report.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ovi_studio import __version__
from ovi_studio.crash import working_on
from ovi_studio.errors import UserError
from ovi_studio.lint.gate import LintSummary, lint_gate, lint_skipped
from ovi_studio.output_names import CUT_PIECES, SIDECAR_SUFFIXES, STATE
from ovi_studio.media import audio as audio_io
from ovi_studio.media import video
from ovi_studio.media.images import ImageLoadError, load_i2v_frame, save_png
from ovi_studio.render import continuity, picking, quality
from ovi_studio.plan import parent_take
from ovi_studio.render.artifacts import (ERROR, META, TakeLayout, atomic_target, begin_take,
                                         committed_meta, file_record, read_meta, work_folder,
                                         write_json_atomic, write_latents)
from ovi_studio.render.assembly import (AssemblyResult, AssemblySettings, Segment, assemble, reuse_summary,
                                        sidecar)
from ovi_studio.render.engines import OutOfMemory, ShotEngine, ShotJob, ShotOutput, memory_saving
from ovi_studio.render.inputs import (RenderOptions, dialogue_of, display_text, engine_factory,
                                      load_for_render, yaml_value)
from ovi_studio.render.outdir import OutputFolder, hold
from ovi_studio.render.progress import RenderProgress
from ovi_studio.render.report import REPORT, TakeRecord, build_report, previous_report, write_report
from ovi_studio.render.events import EVENTS_NAME, EventLog
from ovi_studio.render.scheduler import DONE, FAILED, LOCAL, Event, InlineBackend, Outcome, Task, schedule
from ovi_studio.render.timings import PREVIEW_FALLBACK_S, TimingStore, timing_key

AUDIO_RATE = 16_000
ASSEMBLY_VERSION = 3  # 2: report.json lists the cut's segments; 3: mp4 tags


@dataclass
class RenderOutcome:
    records: list[TakeRecord]
    final: dict
    report_path: Path | None
    interrupted: bool = False
    quality_failures: list[str] = dataclasses.field(default_factory=list)  # --fail-on checks that failed

    @property
    def failed_shots(self) -> list[str]:
        return sorted({r.shot for r in self.records if r.status == "failed"})

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        failed = (self.failed_shots or self.quality_failures or self.final.get("status") == "failed"
                  or self.final.get("missing"))  # a shot of the cut has no take at all
        return 1 if failed else 0


# -- the session ------------------------------------------------------------------------------

def render_sessions(sessions: list, backend=None) -> list[RenderOutcome]:
    """Render prepared sessions (one storyboard each) as one job: their takes form one DAG for
    the scheduler, each model loads once, each storyboard gets its cut and report."""
    engines: dict = {}
    for session in sessions:
        session.share_engines(engines)
    with contextlib.ExitStack() as folders:
        for session in sessions:
            folders.enter_context(session.holding())
        return _render_held(sessions, engines, backend)


def _render_held(sessions: list, engines: dict, backend) -> list[RenderOutcome]:
    tasks = [task for session in sessions for task in session.begin(load_engine=backend is None)]
    interrupted = False
    try:
        if backend is not None:
            backend.start(sessions)
        schedule(tasks, backend or InlineBackend(_render_in_process),
                 lambda event: event.task.payload[0].on_event(event))
    except KeyboardInterrupt:
        interrupted = True
        sessions[0].progress.log("interrupted: finished takes are saved; run again to resume",
                                 important=True)
    finally:
        for engine in engines.values():
            engine.close()
        if backend is not None:
            backend.close()
    for session in sessions:
        session.collect()
    return [session._finish(session._started, interrupted) for session in sessions]


def _render_in_process(task: Task) -> Outcome:
    """The in-process worker: render one scheduled take."""
    session, step = task.payload
    record = session.render_step(step)
    return Outcome(DONE if record.ok else FAILED, record, record.reason)


def shot_job(step, shot, dialogue, settings_extra: dict | None = None, loaded=None) -> ShotJob:
    settings = {**dataclasses.asdict(shot.settings), **(settings_extra or {})}
    return ShotJob(
        shot_id=shot.id, take=step.take, seed=step.seed, mode=step.mode, prompt=shot.prompt,
        height=step.height, width=step.width, frames=step.frames,
        video_negative=shot.settings.video_negative, audio_negative=shot.settings.audio_negative,
        dialogue=dialogue, scene=display_text(loaded, shot.scene) if loaded else shot.scene,
        audio_caption=shot.audio_caption, settings=settings)


class RenderSession:
    """One render. `engine_factory` replaces the engine `options.engine` selects (embedding,
    tests); it is called once, when the first take needs rendering."""

    def __init__(self, options: RenderOptions, progress: RenderProgress,
                 engine_factory: Callable[[], ShotEngine] | None = None):
        self.options = options
        self.progress = progress
        self.records: list[TakeRecord] = []
        self._by_take: dict[tuple[str, int], TakeRecord] = {}  # _take_record's index of records
        self._indexed = 0
        self._engine: ShotEngine | None = None
        self._engine_name = "preview"
        self._custom_factory = engine_factory
        self._engine_factory: Callable[[], ShotEngine] | None = None
        self._engine_identity: dict = {}
        from engine.embedding_cache import cache_root
        self.timings = TimingStore(cache_root())
        self.choices: dict[str, picking.Choice] = {}
        self.events: EventLog | None = None  # events.jsonl beside the report (the driver's)

    # planning ---------------------------------------------------------------------------
    def prepare(self):
        from ovi_studio.plan import build_plan
        loaded = load_for_render(self.options)  # usage errors (--set, --only) first: exit 2
        self.loaded = loaded
        self._check_selection(loaded)
        self.lint = self._lint()  # after the usage checks (exit 2), before planning and any engine
        self.plan = build_plan(loaded, self.options.out_dir, self.options.ckpt_dir, self.options.engine)
        self.out_dir, self.ckpt_dir = self.plan.out_dir, self.plan.ckpt_dir
        self._engine_name = self.plan.engine.name
        self._engine_factory = engine_factory(self.plan.engine, self.options, loaded, self.ckpt_dir,
                                              lambda m: self.progress.log(m, important=True))
        if self._custom_factory is not None:
            self._engine_factory = self._custom_factory
        return self.plan

    def _lint(self) -> LintSummary:
        """The lint gate: errors stop the render here, before any engine exists; warnings are
        shown and the render goes on."""
        if not self.options.lint:
            self.progress.log("lint skipped (--no-lint)", important=True)
            return lint_skipped()
        summary = lint_gate(self.options.source, self.options.ckpt_dir)
        if summary.warnings:
            self.progress.log(summary.warnings_text().rstrip(), important=True)
        return summary

    def _check_selection(self, loaded) -> None:
        from ovi_studio.checkpoints import ENGINES
        if self.options.engine is not None and self.options.engine not in ENGINES:
            raise UserError(f"--engine must be one of {', '.join(ENGINES)}, not {self.options.engine!r}")
        ids = {s.id for s in loaded.shots}
        for flag, names in (("--only", self.options.only), ("--force", self.options.force)):
            bad = [n for n in names or [] if n not in ids]
            if bad:
                raise UserError(f"{flag}: no shot named {', '.join(bad)}",
                                hint="shots: " + ", ".join(s.id for s in loaded.shots))

    @property
    def engine_name(self) -> str:
        return self._engine_name

    def takes_to_render(self) -> list:
        """The planned takes this render will run (wanted, and forced, stale, or downstream
        of one that renders)."""
        wanted = self.wanted_steps()
        return self._predict([s for s in self.plan.steps if id(s) in wanted and s.status != "blocked"])

    def wanted_steps(self) -> set[int]:
        """Steps this render is asked for: every take of the shots named by --only (all shots
        without it), and of their ancestors only the take each extension continues from —
        --only renders nothing that nothing asked for."""
        named = set(self.options.only or [s.id for s in self.loaded.shots])
        wanted: set[int] = set()
        needed: set[tuple[str, int]] = set()
        for step in reversed(self.plan.steps):  # children come after their parents
            if step.shot.id in named or (step.shot.id, step.take) in needed:
                wanted.add(id(step))
                if step.parent is not None:
                    needed.add((step.parent, step.parent_take))
        return wanted

    def _forced(self, shot_id: str) -> bool:
        force = self.options.force
        return force is not None and (not force or shot_id in force)

    # the run ----------------------------------------------------------------------------
    def run(self, backend=None) -> RenderOutcome:
        """Render every take that needs it and assemble the cut. `backend`: the workers the
        scheduler dispatches to (ray_backend.RayBackend); None renders in this process."""
        return render_sessions([self], backend)[0]

    def _holding(self, work: Callable[[], RenderOutcome]) -> RenderOutcome:
        with self.holding():
            return work()

    @contextlib.contextmanager
    def holding(self):
        """Hold the output folder (one render at a time; outdir.py), check that every file the
        session will write stays inside it, then do the work."""
        with hold(self.out_dir, storyboard=self.loaded.path, wait=self.options.wait,
                  log=lambda message: self.progress.log(message, important=True)) as folder:
            self._check_targets(folder)
            yield

    def _check_targets(self, folder: OutputFolder) -> None:
        """Refuse the render before it writes anything when a write would leave the folder."""
        final = self.final_path()
        targets = [self.out_dir / REPORT, final, *(sidecar(final, s) for s in SIDECAR_SUFFIXES)]
        targets += [step.artifact_dir / META for step in self.plan.steps]
        for target in targets:
            folder.check_target(target)

    def begin(self, load_engine: bool = True) -> list[Task]:
        """Record the takes that do not render (not selected, blocked) and return the others
        as scheduler tasks; `load_engine` starts this process's engine when one will render."""
        self._started = time.time()
        self.events = EventLog(self.out_dir / EVENTS_NAME)
        wanted = self.wanted_steps()
        will_render = self.takes_to_render()
        self._predicted = {(s.shot.id, s.take) for s in will_render}
        self.progress.start(len(will_render), sum(self.estimate(s) for s in will_render))
        if load_engine:
            self.prepare_engine(will_render)
        self._scheduled, self._outcomes = [], {}
        for step in self.plan.steps:
            if id(step) not in wanted:  # kept as it is; the cut uses it, stale or not
                self.records.append(self._kept_record(step))
            elif step.status == "blocked":
                self._record_blocked(step)
            else:
                self._scheduled.append(step)
        keys = {(s.shot.id, s.take) for s in self._scheduled}
        return [Task((self.out_dir, s.shot.id, s.take),
                     (self.out_dir, s.parent, s.parent_take) if (s.parent, s.parent_take) in keys else None,
                     (self, s)) for s in self._scheduled]

    def on_event(self, event: Event) -> None:
        """The scheduler's events: the display, and a line each in events.jsonl."""
        _, step = event.task.payload
        label = f"{step.shot.id}/take{step.take}"
        if event.kind in (DONE, FAILED, "skipped"):
            self._outcomes[event.task.key] = event.outcome
        record = event.outcome.result if event.outcome else None
        self.events.write(event.kind, shot=step.shot.id, take=step.take, worker=event.worker,
                          attempt=event.task.attempts, t=event.time,
                          status=record.status if record else None,
                          reason=event.outcome.reason if event.outcome else None)
        if event.kind == "dispatched":
            self.progress.take_started(label if event.worker in (None, LOCAL) else f"{label} on {event.worker}",
                                       self.estimate(step))
        elif event.kind == "retry":
            self.progress.log(f"{label}: the worker {event.worker} crashed ({event.outcome.reason}); "
                              "retrying", important=True)
        elif event.kind == "skipped":
            self.progress.log(f"{label}: skipped ({event.outcome.reason})")
        elif record is not None and record.status == "cached":
            if (step.shot.id, step.take) in self._predicted:
                self.progress.take_finished(label, "up to date", 0.0, self.estimate(step))
        else:
            status = "done" if event.kind == DONE else f"FAILED: {event.outcome.reason}"
            self.progress.take_finished(label, status, record.seconds if record else 0.0, self.estimate(step))

    def collect(self) -> None:
        """The scheduled takes' records, in plan order (those an interruption stopped have none)."""
        outcomes = self._outcomes
        for step in self._scheduled:
            outcome = outcomes.get((self.out_dir, step.shot.id, step.take))
            if outcome is None:
                continue
            record = outcome.result
            if record is None:  # never ran: under a failed take, or its worker kept crashing
                parent = outcomes.get((self.out_dir, step.parent, step.parent_take))
                skipped = parent is not None and parent.status == FAILED and outcome.reason.startswith("extends")
                reason = (f"extends {step.parent}, which {'skipped' if parent.result is None else 'failed'}"
                          if skipped else outcome.reason)
                record = self._record(step, "skipped" if skipped else "failed", reason)
            elif outcome.status == FAILED and record.ok:  # rendered, but reported as crashed
                record.status, record.reason = "failed", outcome.reason
            self.records.append(record)

    def assemble_existing(self) -> RenderOutcome:
        """The cut from the takes already rendered, never calling the engine (`pick`): a take
        that is not up to date stays out ("stale") and its shot is missing from the cut."""
        return self._holding(self._assemble_existing)

    def _assemble_existing(self) -> RenderOutcome:
        started = time.time()
        for step in self.plan.steps:
            meta = self._committed(step) if step.status != "blocked" else None
            if meta is None:
                reason = step.reasons[0] if step.reasons else "not up to date"
                self.records.append(self._record(step, "stale", f"{reason}; run `ovi-studio render`"))
            else:
                self.records.append(self._cached_record(step, meta))
        return self._finish(started, False)

    def _kept_record(self, step) -> TakeRecord:
        """A take --only leaves alone: cached when current; outdated (still used in the cut,
        with a warning) when an earlier render of it is complete; else it has no take."""
        meta = self._committed(step) if step.status != "blocked" else None
        if meta is not None:
            return self._cached_record(step, meta)
        layout = TakeLayout(step.artifact_dir)
        earlier = read_meta(layout.meta)
        if earlier and earlier.get("status") == "done" and committed_meta(layout, earlier.get("cache_key")):
            record = self._cached_record(step, earlier)
            record.status = "outdated"
            record.reason = (f"not re-rendered (--only): {', '.join(step.reasons) or 'out of date'}")
            return record
        return self._record(step, "not selected", "no take yet (not selected by --only)")

    def _cached_record(self, step, meta: dict) -> TakeRecord:
        record = self._record(step, "cached")
        record.files = {k: v["path"] for k, v in meta.get("files", {}).items()}
        return record

    def _finish(self, started: float, interrupted: bool) -> RenderOutcome:
        """Choose the takes, assemble and check the cut, write report.json and report.html."""
        final = {"status": "interrupted"}
        if not interrupted:
            self.choose_takes()
            final = self._assemble()
            self._check_cut(final)
        report = build_report(
            storyboard=self.loaded.path, out_dir=self.out_dir,
            engine=self._engine_identity or {"name": self._engine_name},
            status="interrupted" if interrupted else ("failed" if self._failed() else "ok"),
            records=self.records, shot_order=[s.id for s in self.loaded.shots], final=final,
            started=started, picks={k: c.to_json() for k, c in self.choices.items()},
            lint=self.lint.to_json())
        path = write_report(self.out_dir, report)
        self.write_review(report)
        fail_on = self.options.fail_on
        failures = self.quality_failures(fail_on) + [
            f"final: {c['check']}" for c in final.get("qc", []) if c["status"] == quality.FAIL and c["check"] in fail_on]
        return RenderOutcome(self.records, final, path, interrupted, failures)

    def _record_blocked(self, step) -> None:
        """A take the plan could not size: its shot's first frame is unreadable (failed), or it
        extends such a shot (skipped)."""
        status = "skipped" if step.mode == "extend" else "failed"
        record = self._record(step, status, step.reasons[0])
        self.records.append(record)
        self.progress.log(f"{step.shot.id}/take{step.take}: {status.upper()}: {record.reason}",
                          important=status == "failed")

    def _timing_key(self, step) -> str:
        device = self.options.device or ("cuda" if self._engine_name == "ovi" else "cpu")
        return timing_key(device, self._engine_name, self.loaded.variant.name, self.options.preset,
                          step.height or 0, step.width or 0)

    def estimate(self, step) -> float:
        """Seconds a take should take: measured on earlier takes of the same device, engine,
        variant, preset and size (render/timings.py), else the plan's cost model for the model
        and a flat guess for the animatic (which uses no GPU)."""
        measured = self.timings.estimate(self._timing_key(step), step.shot.settings.steps)
        if measured is not None:
            return measured
        return step.estimate_seconds if self._engine_name == "ovi" else PREVIEW_FALLBACK_S

    def _failed(self) -> bool:
        return any(r.status == "failed" for r in self.records)

    def _take_record(self, shot_id: str, take: int) -> TakeRecord | None:
        """This run's first record of a take (records only grow: the index catches up with
        them, so a whole render looks records up in linear time)."""
        for record in self.records[self._indexed:]:
            self._by_take.setdefault((record.shot, record.take), record)
        self._indexed = len(self.records)
        return self._by_take.get((shot_id, take))

    def _record(self, step, status: str, reason: str | None = None) -> TakeRecord:
        return TakeRecord(step.shot.id, step.take, step.seed, step.mode, step.artifact_dir,
                          step.cache_key, status, reason, draft=step.shot.settings.draft)

    def _predict(self, steps) -> list:
        """Takes that will render: forced, or not committed, or downstream of one that will."""
        rendering: set[str] = set()
        out = []
        for step in steps:
            upstream = step.parent is not None and step.parent in rendering
            if upstream or self._forced(step.shot.id) or self._committed(step) is None:
                out.append(step)
                if step.take == parent_take(step.shot):
                    rendering.add(step.shot.id)
        return out

    def _committed(self, step) -> dict | None:
        meta = committed_meta(TakeLayout(step.artifact_dir), step.cache_key)  # the key names the engine
        if meta is None:
            return None
        if step.parent is not None:
            parent = read_meta(self._parent_layout(step).meta) or {}
            if meta.get("parent", {}).get("frames_sha256") != parent.get("files", {}).get("frames", {}).get("sha256"):
                return None  # the parent was re-rendered since: its seed frame may differ
        return meta

    def _parent_layout(self, step) -> TakeLayout:
        return TakeLayout(step.parent_dir)

    def prepare_engine(self, will_render) -> None:
        if not will_render:
            return
        from engine.errors import CheckpointError
        try:
            self._engine = self._engine_factory()
            self._engine_identity = self._engine.identity()
            self.progress.log(f"engine: {self._engine.name}")
            self.progress.phase(f"{len(will_render)} take(s)", "encode_prompts")
            self._engine.prepare([shot_job(s, s.shot, ()) for s in will_render])
        except CheckpointError as exc:
            raise UserError(f"the {self._engine_name} engine cannot start: {exc}") from None

    def share_engines(self, engines: dict) -> None:
        """Take the engine from `engines` when another session loaded the same model there (a
        worker rendering many storyboards loads each model once)."""
        o = self.options
        key = (self._engine_name, self.loaded.variant.name, str(self.ckpt_dir), o.device, o.dtype,
               o.preset, o.attention, o.compile)
        make = self._engine_factory

        def shared() -> ShotEngine:
            if key not in engines:
                engines[key] = make()
            return engines[key]
        self._engine_factory = shared

    def render_step(self, step) -> TakeRecord:
        """Render one take whose parent is done (or reuse it when it is committed already: a
        retried or duplicated take never renders twice); its record, failed with the reason
        when it failed."""
        with working_on(f"{step.shot.id}/take{step.take}"):
            return self._render_step(step)

    def _render_step(self, step) -> TakeRecord:
        meta = None if self._forced(step.shot.id) else self._committed(step)
        if meta is not None:
            return self._cached_record(step, meta)
        if self._engine is None:  # not predicted (e.g. files deleted meanwhile): load now
            self.prepare_engine([step])
        self._current = step
        started = time.perf_counter()
        record = self._record(step, "failed")
        try:
            meta = self._render_take(step)
            timings = meta.get("timings") or {}
            self.timings.record(self._timing_key(step), step.shot.settings.steps,
                                time.perf_counter() - started, timings.get("denoise"))
            record.status = "rendered"
            record.files = {k: v["path"] for k, v in meta["files"].items()}
        except (ImageLoadError, OutOfMemory) as exc:
            record.reason = str(exc)
        except KeyboardInterrupt:
            record.status, record.reason = "interrupted", "stopped by Ctrl-C"
            self.records.append(record)
            raise
        except Exception as exc:  # a failing shot must not stop independent ones
            record.reason = f"{type(exc).__name__}: {exc}"
            record_error(step.artifact_dir, traceback.format_exc())
        record.seconds = time.perf_counter() - started
        return record

    def _on_step(self, done: int, total: int) -> None:
        self.progress.step(done, total)
        if self.events is not None:
            self.events.write("step", shot=self._current.shot.id, take=self._current.take,
                              done=done, total=total)

    # one take ---------------------------------------------------------------------------
    def _render_take(self, step) -> dict:
        shot = step.shot
        layout = TakeLayout(step.artifact_dir)
        begin_take(layout)
        first, provenance = self._first_frame(step)
        job = shot_job(step, shot, dialogue_of(self.loaded, shot),
                       {"tiled_vae": bool(yaml_value(self.options.overrides.get("tiled_vae", "false")))}, self.loaded)
        label = f"{shot.id}/take{step.take}"
        on_phase = functools.partial(self.progress.phase, label)
        try:
            output = self._engine.render(job, first, self._on_step, on_phase)
        except OutOfMemory:
            if not self.options.oom_retry:
                raise
            self.progress.log(f"{shot.id}: out of memory; retrying once with more memory saving",
                              important=True)
            job = dataclasses.replace(job, settings=memory_saving(job.settings))
            output = self._engine.render(job, first, self._on_step, on_phase)
        if step.mode == "extend" and self._engine.color_drift and shot.settings.color_match != "off":
            on_phase("color_match")
        color = self._color_match(step, output)
        on_phase("write")
        return self._write_take(step, layout, job, output, first, provenance, color)

    def _first_frame(self, step) -> tuple[Image.Image | None, dict | None]:
        shot = step.shot
        if step.mode == "i2v":
            # upright (EXIF), aspect-fitted at its own resolution: the engine's reference-exact
            # resize is the only resampling, as in the reference
            asked = shot.settings.asked_size(self.loaded.variant)
            image = load_i2v_frame(shot.first_frame, asked, shot.settings.fit)
            return image, {"source": str(shot.first_frame), "fit": shot.settings.fit,
                           "size": list(image.size), "aspect_from": asked}
        if step.mode != "extend":
            return None, None
        parent = self._parent_layout(step)
        parent_meta = read_meta(parent.meta) or {}
        size = parent_meta.get("size", {})
        if parent.plate.is_file():  # a preview: start from its picture, never its drawn captions
            with Image.open(parent.plate) as img:
                frame = img.convert("RGB")
            tail_index, total = size.get("frames", 1) - 1, size.get("frames", 1)
        elif shot.settings.seed_frame == "last":
            tail_index, total = size.get("frames", 1) - 1, size.get("frames", 1)
            with Image.open(parent.last_frame) as img:
                frame = img.convert("RGB")
        else:
            tail, total = video.read_tail(parent.frames, size["width"], size["height"],
                                          continuity.SHARPEST_WINDOW)
            pick = continuity.choose_seed_frame(tail, "sharpest")
            tail_index = total - len(tail) + pick
            frame = Image.fromarray(tail[pick])
        provenance = {"shot": step.parent, "take": step.parent_take, "index": tail_index, "of": total,
                      "mode": shot.settings.seed_frame,
                      "frames_sha256": parent_meta.get("files", {}).get("frames", {}).get("sha256")}
        return frame, provenance  # the parent's own size: an extension keeps its geometry

    def _color_match(self, step, output: ShotOutput) -> dict | None:
        mode = step.shot.settings.color_match
        if step.mode != "extend" or mode == "off" or not self._engine.color_drift:
            return None
        source = self._chain_root(step.shot.id) if mode == "first" else step.parent
        ref_take = parent_take(self.loaded.shot(source))
        ref_meta = read_meta(TakeLayout(self.out_dir / "shots" / source / f"take{ref_take}").meta) or {}
        if "color_stats" not in ref_meta:
            return None
        reference = continuity.ColorStats.from_json(ref_meta["color_stats"])
        before = continuity.color_stats(output.frames)
        output.frames = continuity.match_color(output.frames, reference)
        return {"mode": mode, "reference_shot": source, "reference": reference.to_json(),
                "before": before.to_json()}

    def _chain_root(self, shot_id: str) -> str:
        shot = self.loaded.shot(shot_id)
        while shot.extends is not None:
            shot = self.loaded.shot(shot.extends)
        return shot.id

    def _write_take(self, step, layout: TakeLayout, job: ShotJob, output: ShotOutput,
                    first: Image.Image | None, seed_frame: dict | None, color: dict | None) -> dict:
        frames = np.ascontiguousarray(output.frames, np.uint8)
        count, height, width = frames.shape[:3]
        with atomic_target(layout.frames) as tmp:
            video.write_lossless(tmp, frames)
        with atomic_target(layout.audio) as tmp:
            audio_io.write_wav(tmp, np.asarray(output.audio, np.float32), AUDIO_RATE)
        with atomic_target(layout.last_frame) as tmp:
            save_png(tmp, frames[-1])
        if output.plate is not None:
            with atomic_target(layout.plate) as tmp:
                save_png(tmp, output.plate)
        if output.latents:
            write_latents(layout.latents, output.latents)
        # no clip.mp4 here: the viewing copy is made where something shows it (render.viewing)
        files = {name: file_record(path, layout.dir) for name, path in (
            ("frames", layout.frames), ("audio", layout.audio), ("last_frame", layout.last_frame),
            ("plate", layout.plate), ("latents", layout.latents)) if path.is_file()}
        shot = step.shot
        # as the engine rendered this take: fp8 and swapping follow the shot's settings
        self._engine_identity = self._engine.identity()
        meta = {
            "schema": 1, "shot": shot.id, "take": step.take, "status": "done",
            "cache_key": step.cache_key, "key_inputs": step.key_inputs,
            "mode": step.mode, "seed": step.seed, "prompt": shot.prompt, "raw_prompt": shot.raw_prompt,
            "video_negative": shot.settings.video_negative, "audio_negative": shot.settings.audio_negative,
            "dialogue": [{"speaker": d.speaker, "text": d.text} for d in shot.dialogue],  # as written
            "settings": _jsonable(job.settings), "variant": self.loaded.variant.name,
            "planned": {"height": step.height, "width": step.width, "frames": step.frames},
            "size": {"height": height, "width": width, "frames": count},
            "audio": {"sample_rate": AUDIO_RATE, "samples": int(np.asarray(output.audio).shape[0])},
            "first_frame": (None if first is None or step.mode != "i2v" else seed_frame),
            "parent": seed_frame if step.mode == "extend" else None,
            "color_match": color, "color_stats": continuity.color_stats(frames).to_json(),
            "engine": self._engine_identity, "ckpt_dir": str(self.ckpt_dir) if self.ckpt_dir else None,
            "timings": output.info.get("timings"), "peak_memory_bytes": output.info.get("peak_memory_bytes"),
            "engine_info": _jsonable({k: v for k, v in output.info.items()
                                      if k not in ("timings", "peak_memory_bytes")}),
            "ovi_studio": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "files": files,
        }
        write_json_atomic(layout.meta, meta)  # the commit marker: last
        return meta

    def _cut_tags(self, key: str) -> dict[str, str]:
        takes = ",".join(f"{shot}:{choice.take}" for shot, choice in self.choices.items())
        return {"storyboard": str(self.loaded.path), "title": self.loaded.model.title or self.loaded.path.stem,
                "engine": self._engine_name, "takes": takes, "cache_key": key}

    # quality and the chosen takes -------------------------------------------------------
    def choose_takes(self) -> None:
        """Run the quality checks of every finished take (cached beside it), then choose each
        shot's take (render.picking)."""
        thresholds = self.loaded.model.qc
        for record in self.records:
            if record.ok:
                record.qc = quality.checks_of_take(record.dir, self.loaded.shot(record.shot),
                                                   self.out_dir, thresholds)
                for check in quality.failures(record.qc):
                    self.progress.log(f"{record.shot}/take{record.take}: quality check {check.name} "
                                      f"failed: {check.detail}")
        extended = {s.extends for s in self.loaded.shots if s.extends}
        self.choices = {
            shot.id: picking.choose(shot, shot.id in extended,
                                    {r.take: r.qc for r in self.records if r.shot == shot.id and r.ok},
                                    self.options.pick)
            for shot in self.loaded.shots}

    def _check_cut(self, final: dict) -> None:
        if final.get("status") not in ("done", "cached"):
            return
        segments, _ = self.cut_segments()
        starts = final["segment_starts"]
        facts = quality.CutFacts(
            self.out_dir / final["path"], segments[0].width, segments[0].height, final["frames"],
            [(seg.shot_id, start) for seg, start in zip(segments, starts)
             if seg.start_frame == 1 and not seg.transition_frames],
            self.assembly_settings().loudness_lufs, self._engine_name == "preview")
        try:
            checks = quality.check_cut(facts, self.loaded.model.qc)
        except Exception as exc:  # a meter failing must not lose the render
            checks = [quality.Check("durations", quality.FAIL, f"the cut could not be measured: {exc}")]
        final["qc"] = [c.to_json() for c in checks]
        for check in quality.failures(checks):
            self.progress.log(f"final cut: quality check {check.name} failed: {check.detail}",
                              important=True)

    def write_review(self, report: dict) -> None:
        """report.html beside report.json; a page that cannot be drawn never fails the render."""
        from ovi_studio.render.review import write_review
        try:
            page = write_review(self.out_dir, report, self.loaded.path)
        except Exception as exc:
            self.progress.log(f"review page not written: {type(exc).__name__}: {exc}", important=True)
            return
        self.progress.log(f"review page: {page}")

    def quality_failures(self, names: set[str]) -> list[str]:
        """`shot/takeN: check` (and `final: check`) for the chosen takes and the cut whose
        checks in `names` failed (what --fail-on turns into a non-zero exit)."""
        found = []
        for record in self.records:
            if self.choices.get(record.shot) and self.choices[record.shot].take == record.take:
                found += [f"{record.shot}/take{record.take}: {c.name}"
                          for c in quality.failures(record.qc or [], names)]
        return found

    # assembly ---------------------------------------------------------------------------
    def assembly_settings(self) -> AssemblySettings:
        o = self.options.overrides
        model = self.loaded.model.output
        loud = yaml_value(o["loudness"]) if "loudness" in o else model.loudness
        return AssemblySettings(
            loudness_lufs=None if loud in ("off", None, False) else float(loud),
            subtitles=_flag(o.get("subtitles"), model.subtitles),
            chapters=_flag(o.get("chapters"), model.chapters),
            crf=int(o.get("crf", 18)),
            preset=o.get("preset", "ultrafast" if self._engine_name == "preview" else "slow"))

    def final_path(self) -> Path:
        name = self.options.overrides.get("final") or self.loaded.model.output.final or "final.mp4"
        return self.out_dir / name

    def cut_segments(self) -> tuple[list[Segment], list[str]]:
        """Segments in storyboard order (the chosen take of each shot), and the shots that are
        missing."""
        metas, missing = {}, []
        for shot in self.loaded.shots:
            take = self.choices[shot.id].take
            meta = read_meta(self.out_dir / "shots" / shot.id / f"take{take}" / META)
            record = self._take_record(shot.id, take)
            ok = record is not None and record.ok
            if not ok or meta is None:
                missing.append(shot.id)
            metas[shot.id] = meta
        if missing:
            return [], missing
        shots = self.loaded.shots
        segments = []
        for i, shot in enumerate(shots):
            layout = TakeLayout(self.out_dir / "shots" / shot.id / f"take{self.choices[shot.id].take}")
            meta = metas[shot.id]
            prev_id = shots[i - 1].id if i else None
            nxt = shots[i + 1] if i + 1 < len(shots) else None
            start = 1 if shot.extends is not None and shot.extends == prev_id else 0
            end = None
            if nxt is not None and nxt.extends == shot.id:
                end = metas[nxt.id]["parent"]["index"] + 1  # end on the frame the next shot continues
            crossfade = shot.settings.transition == "crossfade" and i > 0
            segments.append(Segment(
                shot.id, layout.frames, layout.audio, meta["size"]["width"], meta["size"]["height"],
                meta["size"]["frames"], start, end, shot.settings.transition_frames if crossfade else 0,
                dialogue_of(self.loaded, shot), shot.id))
        return segments, []

    def _assemble(self) -> dict:
        segments, missing = self.cut_segments()
        final = self.final_path()
        if missing:
            self.progress.log(f"final cut not assembled: no usable take of {', '.join(missing)} "
                              f"(render them: --only {','.join(missing)})", important=True)
            return {"status": "skipped", "reason": "no take of: " + ", ".join(missing),
                    "missing": missing}
        outdated = [seg.shot_id for seg in segments
                    if (r := self._take_record(seg.shot_id, self.choices[seg.shot_id].take))
                    and r.status == "outdated"]
        if outdated:
            self.progress.log(f"warning: the cut uses out-of-date takes of {', '.join(outdated)} "
                              "(not re-rendered: --only)", important=True)
        settings = self.assembly_settings()
        key = assembly_key(segments, settings, final)
        old = (previous_report(self.out_dir) or {}).get("final")
        old = old if isinstance(old, dict) else {}
        if old.get("key") == key and final.is_file() and final.stat().st_size == old.get("bytes"):
            self.progress.log(f"final cut up to date: {final}")
            return {**old, "status": "cached", "outdated_shots": outdated}
        self.progress.phase("cut", "assembly")
        self.progress.log(f"assembling {len(segments)} shot(s) -> {final}"
                          + _reassembly_note(old.get("segments"), segments, self.out_dir))
        started = time.perf_counter()
        try:
            with work_folder(self.out_dir) as work:
                result = assemble(segments, final, settings, work, self._cut_tags(key),
                                  piece_cache=self.out_dir / STATE / CUT_PIECES,
                                  on_progress=self.progress.cut_encode)
        except Exception as exc:
            self.progress.log(f"assembly failed: {exc}", important=True)
            return {"status": "failed", "reason": str(exc)}
        self.progress.log(f"cut: {reuse_summary(result.pieces)}")
        return {**final_json(result, self.out_dir, key, time.perf_counter() - started, segments),
                "outdated_shots": outdated}


def _reassembly_note(old_segments: list | None, segments: list[Segment], out_dir: Path) -> str:
    """Which shots a re-assembly finds changed (the encode then says which pieces it redid)."""
    if not old_segments:
        return ""
    before = {s["shot"]: (s["take_dir"], s["start_frame"], s["end_frame"], s["transition_frames"])
              for s in old_segments}
    changed = [seg.shot_id for seg in segments
               if before.get(seg.shot_id) != (seg.frames_path.parent.relative_to(out_dir).as_posix(),
                                               seg.start_frame, seg.stop, seg.transition_frames)]
    what = f"{len(changed)} shot(s) changed ({', '.join(changed[:5])}{', …' if len(changed) > 5 else ''})" \
        if changed else "the settings or the takes' files changed"
    return f" ({what})"


def _flag(override: str | None, default: bool) -> bool:
    return default if override is None else bool(yaml_value(override))


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


def assembly_key(segments: list[Segment], settings: AssemblySettings, final: Path) -> str:
    parts = {"version": ASSEMBLY_VERSION, "settings": dataclasses.asdict(settings), "final": final.name,
             "segments": [{**{k: str(v) if isinstance(v, Path) else v
                              for k, v in dataclasses.asdict(seg).items()},
                           "frames_sha256": _meta_sha(seg.frames_path, "frames"),
                           "audio_sha256": _meta_sha(seg.audio_path, "audio")} for seg in segments]}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _meta_sha(path: Path, name: str) -> str | None:
    meta = read_meta(path.parent / META) or {}
    return meta.get("files", {}).get(name, {}).get("sha256")


def final_json(result: AssemblyResult, out_dir: Path, key: str, seconds: float,
               segments: list[Segment]) -> dict:
    rel = lambda p: p.relative_to(out_dir).as_posix() if p else None  # noqa: E731
    timeline = [{"shot": seg.shot_id, "take_dir": rel(seg.frames_path.parent), "frames": seg.total_frames,
                 "start_frame": seg.start_frame, "end_frame": seg.stop,
                 "transition_frames": seg.transition_frames, "cut_start": start,
                 "dialogue": [list(line) for line in seg.dialogue]}
                for seg, start in zip(segments, result.segment_starts)]
    return {"status": "done", "path": rel(result.final), "srt": rel(result.srt), "vtt": rel(result.vtt),
            "chapters": rel(result.chapters), "frames": result.frames,
            "duration_s": round(result.duration_s, 4), "audio_samples_48k": result.audio_samples,
            "segment_starts": result.segment_starts, "loudness": result.loudness,
            "bytes": result.final.stat().st_size, "key": key, "seconds": round(seconds, 2),
            "segments": timeline,
            "pieces": [{"shots": list(p.shots), "frames": p.frames, "reused": p.reused}
                       for p in result.pieces]}


def record_error(take_dir: Path, text: str) -> None:
    """Keep the traceback of a failed take beside its artifacts for post-mortems (when the take
    folder itself is what failed, the traceback stays in the report's reason only)."""
    try:
        with atomic_target(take_dir / ERROR) as tmp:
            tmp.write_text(text, encoding="utf-8", errors="backslashreplace")
    except (OSError, UserError):
        pass
