"""The scheduler without Ray: a fake backend of N workers whose takes finish when the test says
(readiness, spreading over workers, crash retries, failures blocking only descendants)."""
from __future__ import annotations

import itertools

import pytest

from ovi_studio.render.scheduler import (CRASHED, DONE, FAILED, InlineBackend, Outcome, Task,
                                         schedule)


class FakeBackend:
    """`results[key]`: the outcomes of successive attempts (default: done). Each wait finishes
    the oldest running task; `log` records (event, key, worker) in order."""

    def __init__(self, workers: int, results: dict | None = None):
        self.names = [f"w{i}" for i in range(workers)]
        self.results = {k: list(v) for k, v in (results or {}).items()}
        self.running: dict[int, tuple[str, Task]] = {}
        self.handles = itertools.count()
        self.log: list[tuple[str, str, str]] = []
        self.max_concurrent = 0

    def workers(self):
        return self.names

    def submit(self, worker, task):
        handle = next(self.handles)
        self.running[handle] = (worker, task)
        self.log.append(("start", task.key, worker))
        self.max_concurrent = max(self.max_concurrent, len(self.running))
        return handle

    def wait(self, handles):
        handle = min(handles)
        worker, task = self.running.pop(handle)
        attempts = self.results.get(task.key) or [Outcome(DONE, f"{task.key} ok")]
        outcome = attempts.pop(0) if len(attempts) > 1 else attempts[0]
        self.log.append(("end", task.key, worker))
        return [(handle, outcome)]


def chains() -> list[Task]:
    """a -> a2 -> a3 and b -> b2, plus a lone c."""
    return [Task("a", (), None), Task("a2", ("a",), None), Task("a3", ("a2",), None),
            Task("b", (), None), Task("b2", ("b",), None), Task("c", (), None)]


def starts(backend) -> list[str]:
    return [key for event, key, _ in backend.log if event == "start"]


def test_a_take_starts_only_after_its_parent_finished_and_work_spreads_over_workers():
    backend = FakeBackend(workers=2)
    outcomes = schedule(chains(), backend)
    assert {k: o.status for k, o in outcomes.items()} == dict.fromkeys("a a2 a3 b b2 c".split(), DONE)
    for child, parent in (("a2", "a"), ("a3", "a2"), ("b2", "b")):
        assert backend.log.index(("end", parent, next(w for e, k, w in backend.log if k == parent))) < \
            next(i for i, (e, k, _) in enumerate(backend.log) if e == "start" and k == child)
    assert backend.max_concurrent == 2
    assert starts(backend)[:2] == ["a", "b"]  # independent chains start together
    assert {w for e, _, w in backend.log if e == "start"} == {"w0", "w1"}


def test_one_worker_runs_in_plan_order():
    backend = FakeBackend(workers=1)
    schedule(chains(), backend)
    assert starts(backend) == ["a", "a2", "a3", "b", "b2", "c"]
    assert backend.max_concurrent == 1


def test_a_crash_is_retried_then_gives_up_with_the_reason():
    crash = Outcome(CRASHED, None, "worker died")
    events = []
    backend = FakeBackend(2, {"a2": [crash, Outcome(DONE, "ok")], "b": [crash]})
    outcomes = schedule(chains(), backend, events.append, max_attempts=2)
    assert outcomes["a2"].status == DONE and outcomes["a3"].status == DONE
    assert starts(backend).count("a2") == 2
    assert outcomes["b"].status == FAILED and "worker died (crashed 2 times)" == outcomes["b"].reason
    assert starts(backend).count("b") == 2
    assert sorted(e.task.key for e in events if e.kind == "retry") == ["a2", "b"]
    assert outcomes["b2"].status == FAILED and "b2" not in starts(backend)


def test_a_failing_take_blocks_only_its_descendants():
    events = []
    backend = FakeBackend(2, {"a": [Outcome(FAILED, None, "bad prompt")]})
    outcomes = schedule(chains(), backend, events.append)
    assert outcomes["a"].reason == "bad prompt" and starts(backend).count("a") == 1  # not retried
    assert outcomes["a2"].reason == "extends a, which failed"
    assert outcomes["a3"].reason == "extends a2, which failed"
    assert not {"a2", "a3"} & set(starts(backend))
    assert {k for k in "b b2 c".split() if outcomes[k].status == DONE} == {"b", "b2", "c"}
    assert sorted(e.task.key for e in events if e.kind == "skipped") == ["a2", "a3"]


def test_workers_only_get_takes_they_can_hold():
    class Pools(FakeBackend):
        def can_run(self, worker, task):
            return (worker == "w0") == task.key.startswith("a")
    backend = Pools(2)
    schedule(chains(), backend)
    assert {k for e, k, w in backend.log if e == "start" and w == "w0"} == {"a", "a2", "a3"}
    with pytest.raises(RuntimeError, match="no worker"):
        schedule([Task("x", (), None)], type("NoWorker", (FakeBackend,), {"workers": lambda self: []})(1))


def test_the_inline_backend_is_the_one_worker_case():
    ran = []
    outcomes = schedule(chains(), InlineBackend(lambda task: ran.append(task.key) or Outcome(DONE)))
    assert ran == ["a", "a2", "a3", "b", "b2", "c"] and len(outcomes) == 6


def test_when_the_only_worker_is_restarting_the_scheduler_waits_for_it():
    class Restarting(FakeBackend):
        down = False

        def workers(self):
            return [] if self.down else self.names

        def wait(self, handles):
            finished = super().wait(handles)
            self.down = finished[0][1].status == CRASHED
            return finished

        def wait_for_workers(self):
            was, self.down = self.down, False
            return was

    backend = Restarting(1, {"a": [Outcome(CRASHED, None, "died"), Outcome(DONE)]})
    outcomes = schedule([Task("a", (), None), Task("a2", ("a",), None)], backend)
    assert outcomes["a"].status == DONE and starts(backend) == ["a", "a", "a2"]


def test_a_task_of_several_parents_waits_for_all_and_needs_one_to_succeed():
    """An extension whose parent take is chosen once every take of its parent shot finished."""
    takes = [Task("p0", (), None), Task("p1", (), None), Task("x", ("p0", "p1"), None),
             Task("q0", (), None), Task("q1", (), None), Task("y", ("q0", "q1"), None),
             Task("y2", ("y",), None)]
    backend = FakeBackend(2, {"p0": [Outcome(FAILED, None, "bad")], "q0": [Outcome(FAILED, None, "bad")],
                              "q1": [Outcome(CRASHED, None, "died")]})
    ready = []  # (task, the tasks that had finished when it was about to be dispatched)
    outcomes = schedule(takes, backend, max_attempts=2, on_ready=lambda task: ready.append(
        (task.key, {key for event, key, _ in backend.log if event == "end"})))
    assert outcomes["x"].status == DONE  # p0 failed, p1 succeeded
    assert {"p0", "p1"} <= dict(ready)["x"]
    assert outcomes["y"].reason == "extends q1, which failed" and "y" not in starts(backend)
    assert outcomes["y2"].reason == "extends y, which failed"
    assert starts(backend).count("q1") == 2  # a retried task is ready once
    assert [key for key, _ in ready] == list(dict.fromkeys(starts(backend)))
