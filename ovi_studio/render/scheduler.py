"""The one place that decides what renders next, for every backend: a DAG of takes, each
dispatched only when the takes it may extend have finished (their last frames exist), to
whichever worker is idle. An extension lists one parent take when its take is chosen already,
or every take of its parent shot when the best of them is chosen once they are checked (the
`on_ready` hook, just before its first dispatch). The in-process backend is the one-worker
case; the Ray backend has one worker per GPU (ray_backend.py).

A worker reports one `Outcome` per attempt: done, failed (the take's own error: not retried,
its descendants are skipped), or crashed (the worker died under it: retried on a worker that
is alive, up to `max_attempts`, then failed with the reason). Out-of-memory retries happen
inside a take's render (session.py), so a worker reports them as done or failed.
"""
from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol

DONE, FAILED, CRASHED = "done", "failed", "crashed"
DEFAULT_MAX_ATTEMPTS = 3  # a crashed take runs at most three times
LOCAL = "local"  # the in-process backend's one worker


@dataclass
class Task:
    key: Hashable
    parents: tuple[Hashable, ...]  # the tasks this one may start from (): independent); it runs
    # when all of them have finished and one succeeded, and is skipped when none did
    payload: Any  # what the backend renders (a planned take and its session)
    attempts: int = 0


@dataclass(frozen=True)
class Outcome:
    status: str  # DONE | FAILED | CRASHED
    result: Any = None  # the backend's small record of the take
    reason: str | None = None


@dataclass
class Event:
    """What the scheduler tells the display and the event log."""
    kind: str  # dispatched | done | failed | retry | skipped
    task: Task
    worker: str | None = None
    outcome: Outcome | None = None
    time: float = field(default_factory=time.time)


class Backend(Protocol):
    def workers(self) -> list[str]:
        """The idle workers available now (names)."""

    def submit(self, worker: str, task: Task) -> Hashable:
        """Start `task` on `worker`; returns a handle."""

    def wait(self, handles: list[Hashable]) -> list[tuple[Hashable, Outcome]]:
        """Block until at least one handle finished; return the finished ones."""

    # optional: def can_run(self, worker, task) -> bool  (a worker holds the task's model)
    # optional: def wait_for_workers(self) -> bool  (block until a restarting worker is back;
    #           False when none will come back)


def schedule(tasks: list[Task], backend: Backend, on_event: Callable[[Event], None] = lambda e: None,
             max_attempts: int = DEFAULT_MAX_ATTEMPTS,
             on_ready: Callable[[Task], None] = lambda task: None) -> dict[Hashable, Outcome]:
    """Run every task that has a parent that succeeded (or none); return each task's final
    outcome (a task whose parents all failed gets FAILED with reason "extends <key>, which
    failed" and never runs). Of the ready tasks, the earliest in `tasks` goes first (one worker
    renders in plan order). `on_ready(task)` runs once per task, just before its first
    dispatch, when all its parents have finished."""
    by_key = {task.key: task for task in tasks}
    order = {task.key: index for index, task in enumerate(tasks)}
    children: dict[Hashable, list[Task]] = {}
    waiting: dict[Hashable, int] = {}  # parents of a task that have not finished yet
    for task in tasks:
        parents = [parent for parent in task.parents if parent in by_key]
        waiting[task.key] = len(parents)
        for parent in parents:
            children.setdefault(parent, []).append(task)
    ready = [task for task in tasks if not waiting[task.key]]
    succeeded: set[Hashable] = set()  # tasks with a parent that succeeded
    outcomes: dict[Hashable, Outcome] = {}

    def settle(task: Task, outcome: Outcome) -> None:
        """A task finished: its children whose parents have all finished run, or are skipped
        (with their descendants) when none of their parents succeeded."""
        stack = [(task, outcome)]
        while stack:
            parent, result = stack.pop()
            for child in children.get(parent.key, ()):
                waiting[child.key] -= 1
                if result.status == DONE:
                    succeeded.add(child.key)
                if waiting[child.key]:
                    continue
                if child.key in succeeded:
                    ready.append(child)
                    continue
                skipped = Outcome(FAILED, None, f"extends {parent.key}, which failed")
                outcomes[child.key] = skipped
                on_event(Event("skipped", child, None, skipped))
                stack.append((child, skipped))
    running: dict[Hashable, tuple[Task, str]] = {}  # handle -> task, worker
    while ready or running:
        busy = {worker for _, worker in running.values()}
        can_run = getattr(backend, "can_run", lambda worker, task: True)
        for worker in [w for w in backend.workers() if w not in busy]:
            fits = [t for t in ready if can_run(worker, t)]
            if not fits:
                continue
            task = min(fits, key=lambda t: order[t.key])
            ready.remove(task)
            if not task.attempts:
                on_ready(task)
            task.attempts += 1
            running[backend.submit(worker, task)] = (task, worker)
            on_event(Event("dispatched", task, worker))
        if not running:
            if getattr(backend, "wait_for_workers", lambda: False)():
                continue  # a restarted worker is back
            raise RuntimeError("no worker is available for the remaining takes")
        for handle, outcome in backend.wait(list(running)):
            task, worker = running.pop(handle)
            if outcome.status == CRASHED and task.attempts < max_attempts:
                on_event(Event("retry", task, worker, outcome))
                ready.append(task)
                continue
            if outcome.status == CRASHED:
                outcome = Outcome(FAILED, outcome.result,
                                  f"{outcome.reason} (crashed {task.attempts} times)")
            outcomes[task.key] = outcome
            on_event(Event(outcome.status, task, worker, outcome))
            settle(task, outcome)
    return outcomes


class InlineBackend:
    """One worker, this process: a submitted task runs when the scheduler waits for it."""

    def __init__(self, run: Callable[[Task], Outcome], name: str = LOCAL):
        self._run, self._name = run, name
        self._pending: dict[int, Task] = {}
        self._handles = itertools.count()

    def workers(self) -> list[str]:
        return [self._name]

    def submit(self, worker: str, task: Task) -> int:
        handle = next(self._handles)
        self._pending[handle] = task
        return handle

    def wait(self, handles: list[int]) -> list[tuple[int, Outcome]]:
        handle = handles[0]
        return [(handle, self._run(self._pending.pop(handle)))]
