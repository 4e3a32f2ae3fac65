"""The library: everything the command line does, as functions over typed options.

    import ovi_studio
    board = ovi_studio.load_storyboard("story.yaml")
    problems = ovi_studio.check("story.yaml")
    plan = ovi_studio.build_plan("story.yaml", ovi_studio.RenderOptions(engine="preview"))
    outcome = ovi_studio.render("story.yaml", ovi_studio.RenderOptions(engine="preview"))
    unused = ovi_studio.collect_garbage("story.yaml", dry_run=True)

docs/python-api.md documents each with examples (run as tests). The CLI (ovi_studio.cli) only
turns flags into these options and prints the results.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from ovi_studio.diagnostics import Diagnostic
from ovi_studio.lint.runner import LintOptions
from ovi_studio.plan import Plan
from ovi_studio.render.batch import BatchRow
from ovi_studio.render.engines import ShotEngine
from ovi_studio.render.inputs import RenderOptions, load_for_render
from ovi_studio.render.progress import RenderProgress
from ovi_studio.render.session import RenderOutcome, RenderSession
from ovi_studio.store import STORE, StoredTake, unreferenced
from ovi_studio.storyboard import LoadedStoryboard
from ovi_studio.storyboard import load_storyboard as _load

Source = str | Path | LoadedStoryboard


def _with_source(source: Source, options: RenderOptions | None) -> RenderOptions:
    path = source.path if isinstance(source, LoadedStoryboard) else Path(source)
    return dataclasses.replace(options or RenderOptions(), source=path)


def load_storyboard(path: str | Path, options: RenderOptions | None = None) -> LoadedStoryboard:
    """The storyboard with every shot resolved (prompts compiled, settings merged).
    Without `options`: as written, its problems in `.diagnostics`. With `options`: as `render`
    would render it (overrides and takes applied; a storyboard with errors raises UserError)."""
    if options is None:
        return _load(path)
    return load_for_render(_with_source(path, options))[0]


def check(path: str | Path, options: LintOptions | None = None) -> list[Diagnostic]:
    """Lint a storyboard or an Ovi prompt CSV: every problem with its file, line and fix."""
    from ovi_studio.lint.runner import lint_path
    return lint_path(path, options or LintOptions())


def build_plan(storyboard: Source, options: RenderOptions | None = None) -> Plan:
    """What `render(storyboard, options)` would do, take by take, and why (plan.py). The lint
    gate is not applied: `check` reports those problems."""
    return RenderSession(_with_source(storyboard, options), RenderProgress(quiet=True)).plan_render(lint=False)


def collect_garbage(storyboard: Source, out_dir: str | Path | None = None,
                    dry_run: bool = False) -> list[StoredTake]:
    """The stored takes of the storyboard's output folder that no shot points at any more
    (store.py: what an undo would re-link), removed unless `dry_run`. Waits for nothing: a
    render holding the folder makes it a UserError."""
    import shutil
    from ovi_studio.errors import UserError, at
    from ovi_studio.plan import default_out_dir
    from ovi_studio.render.outdir import hold
    if out_dir is None:
        loaded = storyboard if isinstance(storyboard, LoadedStoryboard) else _load(storyboard)
        if loaded.model is None:
            raise UserError("the storyboard has errors, so its output folder is unknown",
                            location=at(loaded.path), hint="pass -o OUT, or fix it (`ovi-studio check`)")
        out_dir = default_out_dir(loaded)
    out_dir = Path(out_dir)
    if dry_run or not (out_dir / STORE).is_dir():
        return unreferenced(out_dir)
    with hold(out_dir, storyboard=getattr(storyboard, "path", storyboard), wait=False):
        found = unreferenced(out_dir)
        for take in found:
            shutil.rmtree(take.path)
    return found


def pick(storyboard: str | Path, shot: str, take: int, out_dir: str | Path | None = None, *,
         progress: RenderProgress | None = None) -> RenderOutcome:
    """Choose the take of `shot` that goes in the cut: writes `pick: TAKE` on the shot in the
    storyboard (comments and layout kept) and re-assembles the cut from the takes already
    rendered, never making an engine. Shots that extend `shot` start from the picked take, so
    they become stale (their records say so). Shots without a pick are chosen as the last render
    chose them (its `--pick`)."""
    from ovi_studio.errors import UserError
    from ovi_studio.plan import default_out_dir
    from ovi_studio.render.picking import record_pick
    from ovi_studio.render.report import previous_report

    def no_engine():
        raise UserError("pick never renders; a take it needs is not rendered",
                        hint="run `ovi-studio render` for the shots the plan lists as stale")
    path = Path(storyboard)
    if not path.is_file():
        raise UserError(f"{path} does not exist", hint="pass the storyboard you rendered")
    record_pick(path, shot, take)
    folder = Path(out_dir) if out_dir else default_out_dir(_load(path))
    policy = (previous_report(folder) or {}).get("pick_policy") or RenderOptions.pick
    session = RenderSession(RenderOptions(source=path, out_dir=folder, pick=policy),
                            progress or RenderProgress(quiet=True), no_engine)
    session.prepare()
    with session.progress:
        return session.assemble_existing()


def batch(paths: list[str | Path], options: RenderOptions | None = None, *,
          progress: RenderProgress | None = None, backend=None) -> list[BatchRow]:
    """Render many storyboards (files, or folders of them) as one job, each into its own
    output folder as `render` would, with the same `options` (their `source` is each file)."""
    from ovi_studio.render.batch import render_batch
    return render_batch([Path(p) for p in paths], lambda path: _with_source(path, options),
                        progress or RenderProgress(quiet=True), backend)


def render(storyboard: Source, options: RenderOptions | None = None, *,
           progress: RenderProgress | None = None,
           engine_factory: Callable[[], ShotEngine] | None = None,
           backend=None, on_plan: Callable[[Plan], bool] | None = None) -> RenderOutcome | None:
    """Render every take the plan says to, then assemble the cut. `on_plan` sees the plan
    (after the lint gate, before anything renders) and returns whether to go on; None is
    returned when it stops the render (a dry run). `engine_factory` replaces the engine the
    options choose (embedding ovi-studio in another renderer, tests); `backend` is where takes
    render (None: this process; render.ray_backend.RayBackend: a Ray cluster)."""
    session = RenderSession(_with_source(storyboard, options), progress or RenderProgress(quiet=True),
                            engine_factory)
    plan = session.prepare()
    if on_plan is not None and not on_plan(plan):
        return None
    with session.progress:
        return session.run(backend)
