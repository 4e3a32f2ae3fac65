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
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ovi_studio.crash import working_on
from ovi_studio.errors import UserError
from ovi_studio.lint.gate import LintSummary, lint_gate, lint_skipped
from ovi_studio.output_names import SIDECAR_SUFFIXES
from ovi_studio.media.images import ImageLoadError
from ovi_studio import take_choice
from ovi_studio.render import quality
from ovi_studio.plan import build_plan, check_selection, seeded_from, start_extension, take_state
from ovi_studio.render.artifacts import META, TakeLayout, link_take, read_meta
from ovi_studio.render.assembly import sidecar
from ovi_studio.render.cut import Cut, assemble_cut
from ovi_studio.render.engines import OutOfMemory, ShotEngine, engine_factory
from ovi_studio.render.inputs import RenderOptions, load_for_render
from ovi_studio.render.take import TakeContext, record_error, render_take, shot_job
from ovi_studio.render.outdir import OutputFolder, hold
from ovi_studio.render.progress import RenderProgress
from ovi_studio.render.report import CUT_MADE, REPORT, TakeRecord, build_report, write_report
from ovi_studio.render.events import EVENTS_NAME, EventLog
from ovi_studio.render.scheduler import DONE, FAILED, LOCAL, Event, InlineBackend, Outcome, Task, schedule
from ovi_studio.render.timings import PREVIEW_FALLBACK_S, TimingStore, timing_key

@dataclass
class RenderOutcome:
    records: list[TakeRecord]
    final: dict
    report_path: Path | None
    interrupted: bool = False
    quality_failures: list[str] = dataclasses.field(default_factory=list)  # --fail-on checks that failed
    out_dir: Path | None = None  # the output folder the paths of `final` are relative to
    chosen: dict[str, int] = dataclasses.field(default_factory=dict)  # shot -> the take in the cut

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
                 lambda event: event.task.payload[0].on_event(event),
                 on_ready=lambda task: task.payload[0].choose_parent_take(task.payload[1]))
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
        self.choices: dict[str, take_choice.Choice] = {}
        self.events: EventLog | None = None  # events.jsonl beside the report (the driver's)

    # planning ---------------------------------------------------------------------------
    def prepare(self):
        """Load, check, lint and plan, and get the engine ready to be made when a take needs
        it (nothing is written yet)."""
        plan = self.plan_render()
        self._engine_factory = engine_factory(self.plan.engine, self.options.engine_options, self.loaded,
                                              self.ckpt_dir, lambda m: self.progress.log(m, important=True))
        if self._custom_factory is not None:
            self._engine_factory = self._custom_factory
        return plan

    def plan_render(self, lint: bool = True):
        """Load, check and plan; `lint`: apply the lint gate (`plan` shows the findings)."""
        loaded, cut_overrides = load_for_render(self.options)  # usage errors (--set, --only) first: exit 2
        self.loaded = loaded
        self._check_engine()
        check_selection(loaded, self.options.only, self.options.force)
        take_choice.check_policy(self.options.pick)
        # after the usage checks (exit 2), before planning and any engine
        self.lint = self._lint() if lint else lint_skipped()
        self.plan = build_plan(loaded, self.options.out_dir, self.options.ckpt_dir, self.options.engine,
                               only=self.options.only, force=self.options.force, pick=self.options.pick)
        self.out_dir, self.ckpt_dir = self.plan.out_dir, self.plan.ckpt_dir
        self._engine_name = self.plan.engine.name
        self.cut = Cut(loaded, self.out_dir, cut_overrides, self._engine_name)
        self.take_context = TakeContext(loaded, self.out_dir, self.ckpt_dir, self.options.oom_retry)
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

    def _check_engine(self) -> None:
        from ovi_studio.checkpoints import ENGINES
        if self.options.engine is not None and self.options.engine not in ENGINES:
            raise UserError(f"--engine must be one of {', '.join(ENGINES)}, not {self.options.engine!r}")

    @property
    def engine_name(self) -> str:
        return self._engine_name

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
        final = self.cut.final_path()
        targets = [self.out_dir / REPORT, final, *(sidecar(final, s) for s in SIDECAR_SUFFIXES)]
        targets += [step.artifact_dir / META for step in self.plan.steps]
        for target in targets:
            folder.check_target(target)

    def begin(self, load_engine: bool = True) -> list[Task]:
        """Record the takes that do not render (not selected, blocked) and return the others
        as scheduler tasks; `load_engine` starts this process's engine when one will render."""
        self._started = time.time()
        self.events = EventLog(self.out_dir / EVENTS_NAME)
        will_render = self.plan.to_render
        self._predicted = {(s.shot.id, s.take) for s in will_render}
        self.progress.start(len(will_render), sum(self.estimate(s) for s in will_render))
        if load_engine:
            self.prepare_engine(will_render)
        self._scheduled, self._outcomes = [], {}
        for step in self.plan.steps:
            if not step.wanted:  # kept as it is; the cut uses it, stale or not
                self.records.append(self._kept_record(step))
            elif step.status == "blocked":
                self._record_blocked(step)
            else:
                self._scheduled.append(step)
        keys = {(s.shot.id, s.take) for s in self._scheduled}
        return [Task((self.out_dir, s.shot.id, s.take),
                     tuple((self.out_dir, s.parent, t) for t in self._may_start_from(s) if (s.parent, t) in keys),
                     (self, s)) for s in self._scheduled]

    def _may_start_from(self, step) -> list[int]:
        """The parent takes an extension may continue: the chosen one, or all of them while
        the best is to be chosen (choose_parent_take)."""
        if step.parent is None:
            return []
        return [step.parent_take] if step.parent_take is not None else [t.take for t in self.plan.takes_of[step.parent]]

    def choose_parent_take(self, step) -> None:
        """When an extension is dispatched whose parent take the plan left to choose: check
        the parent's takes that finished, choose the best (take_choice, as the cut will) and
        key the extension from it (plan.start_extension): it then renders, or is reused when
        a take of that key is stored."""
        if step.parent is None or step.parent_take is not None:
            return
        parent_takes = self.plan.takes_of[step.parent]
        shot = self.loaded.shot(step.parent)
        checks = {}
        for take in parent_takes:
            record = self._finished(take)
            if record is not None and record.ok:
                record.qc = quality.checks_of_take(record.dir, shot, self.out_dir, self.loaded.model.qc)
                checks[take.take] = record.qc
        choice = take_choice.choose(shot, checks, self.options.pick)
        start_extension(step, parent_takes[choice.take], parent_takes, choice)

    def _finished(self, step) -> TakeRecord | None:
        """This run's record of a take that finished or was kept as it is."""
        outcome = self._outcomes.get((self.out_dir, step.shot.id, step.take))
        return outcome.result if outcome is not None else self._take_record(step.shot.id, step.take)

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
            if (step.shot.id, step.take) not in self._predicted:
                return  # up to date: checked, not rendered, so not shown as a take starting
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
            if record is None:  # never ran: under failed takes, or its worker kept crashing
                parents = [outcomes.get((self.out_dir, step.parent, t)) for t in self._may_start_from(step)]
                parents = [p for p in parents if p is not None and p.status == FAILED]
                skipped = bool(parents) and outcome.reason.startswith("extends")
                reason = (f"extends {step.parent}, which "
                          f"{'skipped' if all(p.result is None for p in parents) else 'failed'}"
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
            meta = self._committed(step) if step.status in ("fresh", "stored") else None
            if meta is None:
                reason = step.reasons[0] if step.reasons else "not up to date"
                self.records.append(self._record(step, "stale", f"{reason}; run `ovi-studio render`"))
            else:
                self.records.append(self._cached_record(step, meta))
        return self._finish(started, False)

    def _kept_record(self, step) -> TakeRecord:
        """A take --only leaves alone: cached when current; outdated (still used in the cut,
        with a warning) when an earlier render of it is complete; else it has no take."""
        meta = self._committed(step, relink=False) if step.status == "fresh" else None
        if meta is not None:
            return self._cached_record(step, meta)
        layout = TakeLayout(step.artifact_dir)
        earlier = read_meta(layout.meta)
        if (earlier and earlier.get("status") == "done"
                and not take_state(layout.dir, earlier["cache_key"], earlier)[1]):
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
            lint=self.lint.to_json(), pick_policy=self.options.pick)
        path = write_report(self.out_dir, report)
        self.write_review(report)
        fail_on = self.options.fail_on
        failures = self.quality_failures(fail_on) + [
            f"final: {c['check']}" for c in final.get("qc", []) if c["status"] == take_choice.FAIL and c["check"] in fail_on]
        return RenderOutcome(self.records, final, path, interrupted, failures, self.out_dir,
                             self.chosen_takes())

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
        extends = ({"shot": step.parent, **step.parent_choice.to_json()}
                   if step.parent is not None and step.parent_choice is not None else None)
        return TakeRecord(step.shot.id, step.take, step.seed, step.mode, step.artifact_dir,
                          step.cache_key, status, reason, draft=step.shot.settings.draft,
                          extends=extends)

    def _committed(self, step, relink: bool = True) -> dict | None:
        """The take's meta.json when the shot's take is, now, a complete render of the planned
        take (plan.take_state; the parent's frames as they are now, since the parent may have
        rendered in this run); with `relink`, also when the take store holds one, which is
        then linked. The check before rendering a take the plan scheduled, which a retried or
        duplicated task, or another shot with the same key, may have committed already."""
        meta = self._complete(step, step.artifact_dir)
        if meta is None and relink:
            meta = self._complete(step, step.stored_dir)
            if meta is not None:
                link_take(self.out_dir, step.shot.id, step.take, step.cache_key)
        return meta

    def _complete(self, step, folder: Path) -> dict | None:
        meta = read_meta(TakeLayout(folder).meta)  # a broken meta.json is set aside
        if meta is None or take_state(folder, step.cache_key, meta)[1]:
            return None
        if step.parent is not None:
            parent = read_meta(TakeLayout(step.parent_dir).meta) or {}
            if not seeded_from(meta, parent.get("files", {}).get("frames", {}).get("sha256")):
                return None
        return meta

    def prepare_engine(self, will_render) -> None:
        """Make the engine and encode the prompts of the takes that will render. Extensions
        whose parent take is still to be chosen (no key yet) may turn out to be stored: alone,
        they load nothing (the engine is made when one of them does render)."""
        if not any(step.cache_key for step in will_render):
            return
        from engine.errors import CheckpointError
        try:
            self._engine = self._engine_factory()
            self._engine_identity = self._engine.identity()
            self.progress.log(f"engine: {self._engine.name}")
            self.progress.phase(f"{len(will_render)} take(s)", "encode_prompts")
            self._engine.prepare([shot_job(s, self.loaded) for s in will_render])
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
        meta = None if step.forced else self._committed(step)
        if meta is not None:
            return self._cached_record(step, meta)
        if self._engine is None:  # not predicted (e.g. files deleted meanwhile): load now
            self.prepare_engine([step])
        self._current = step
        started = time.perf_counter()
        record = self._record(step, "failed")
        try:
            meta = render_take(self.take_context, step, self._engine, self._on_step, self.progress.phase,
                               lambda message: self.progress.log(message, important=True))
            self._engine_identity = meta["engine"]
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
            record_error(step.stored_dir, traceback.format_exc())
        record.seconds = time.perf_counter() - started
        return record

    def _on_step(self, done: int, total: int) -> None:
        self.progress.step(done, total)
        if self.events is not None:
            self.events.write("step", shot=self._current.shot.id, take=self._current.take,
                              done=done, total=total)

    # quality and the chosen takes -------------------------------------------------------
    def choose_takes(self) -> None:
        """Run the quality checks of every finished take (cached beside it), then choose each
        shot's take (take_choice: the extensions started from the same)."""
        thresholds = self.loaded.model.qc
        for record in self.records:
            if record.ok:
                if record.qc is None:  # else checked when an extension of it was dispatched
                    record.qc = quality.checks_of_take(record.dir, self.loaded.shot(record.shot),
                                                       self.out_dir, thresholds)
                for check in take_choice.failures(record.qc):
                    self.progress.log(f"{record.shot}/take{record.take}: quality check {check.name} "
                                      f"failed: {check.detail}")
        self.choices = {
            shot.id: take_choice.choose(shot, {r.take: r.qc for r in self.records if r.shot == shot.id and r.ok},
                                        self.options.pick)
            for shot in self.loaded.shots}

    def _check_cut(self, final: dict) -> None:
        if final.get("status") not in CUT_MADE:
            return
        segments, _ = self.cut_segments()
        starts = final["segment_starts"]
        facts = quality.CutFacts(
            self.out_dir / final["path"], segments[0].width, segments[0].height, final["frames"],
            [(seg.shot_id, start) for seg, start in zip(segments, starts)
             if seg.start_frame == 1 and not seg.transition_frames],
            self.cut.settings().loudness_lufs, self._engine_name == "preview")
        try:
            checks = quality.check_cut(facts, self.loaded.model.qc)
        except Exception as exc:  # a meter failing must not lose the render
            checks = [take_choice.Check("durations", take_choice.FAIL, f"the cut could not be measured: {exc}")]
        final["qc"] = [c.to_json() for c in checks]
        for check in take_choice.failures(checks):
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
                          for c in take_choice.failures(record.qc or [], names)]
        return found

    # assembly ---------------------------------------------------------------------------
    def chosen_takes(self) -> dict[str, int]:
        return {shot: choice.take for shot, choice in self.choices.items()}

    def cut_segments(self):
        """The cut's segments from the chosen takes this run has usable records of, and the
        shots that have none."""
        def usable(shot_id: str, take: int) -> bool:
            record = self._take_record(shot_id, take)
            return record is not None and record.ok
        return self.cut.segments(self.chosen_takes(), usable)

    def _assemble(self) -> dict:
        segments, missing = self.cut_segments()
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
        final = assemble_cut(self.cut, segments, self.chosen_takes(),
                             lambda message: self.progress.log(message, important=message.startswith("assembly failed")),
                             self.progress.phase, self.progress.cut_encode)
        return {**final, "outdated_shots": outdated}
