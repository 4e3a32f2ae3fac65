"""Rendering on a Ray cluster: the scheduler's workers are long-lived Ray actors, one per GPU,
each holding a loaded engine and rendering many takes (the model never loads per take).

Only small things travel through Ray: render options (paths), a take's (shot, take, cache key,
and for an extension the parent take the driver chose) and its `TakeRecord` back. Frames, audio and latents are written by the actor straight into the
storyboard's output folder (shared storage on a cluster) under the same content-hash keys as a
local render, atomically (session.py), so retries and duplicates never corrupt anything.

- Resources: an actor asks for one GPU where the cluster has GPUs, a fraction of a CPU, and for
  the model a custom resource `ovi_<variant>` (e.g. `ovi_960x960_10s`) that a node advertises
  when it can hold that model (`ray start --resources '{"ovi_960x960_10s": 8}'`). A local cluster
  started here advertises it for every GPU.
- Faults: an actor that dies is restarted by Ray (`max_restarts`); the driver retries its take
  (scheduler.py, bounded). Out-of-memory takes retry once with more memory saving (session.py).
- Prompt embeddings: the first actor of a storyboard encodes every prompt into the embedding
  cache (on shared storage) before any take renders; the others read them from there.
- Progress: actors put step events on a Ray queue; the driver drains it into its display and
  events.jsonl.
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from ovi_studio.errors import UserError
from ovi_studio.render.progress import RenderProgress
from ovi_studio.render.scheduler import CRASHED, DONE, FAILED, Outcome, Task

ACTOR_CPUS = 0.5  # rendering is GPU work; two actors fit a 1-core slot
MAX_RESTARTS = 3
WAIT_S = 0.2  # how often the driver drains progress while takes render
ACTOR_START_S = 600.0  # how long actors may take to be placed and started
FORWARDED_ENV = ("OVI_STUDIO_CACHE", "OVI_CKPT_DIR", "HF_HOME", "PYTHONPATH")


def engine_resource(engine_name: str, variant: str) -> str | None:
    """The custom resource a node advertises for each model it can hold (None: the preview)."""
    return f"ovi_{variant}" if engine_name == "ovi" else None


class QueueProgress(RenderProgress):
    """An actor's progress: step events and important messages onto the driver's queue."""

    def __init__(self, queue, worker: str, out_dir: Path):
        super().__init__(quiet=True)
        self.queue, self.worker, self.out_dir = queue, worker, str(out_dir)
        self.current: tuple[str, int] | None = None

    def step(self, done: int, total: int) -> None:
        shot, take = self.current or (None, None)
        self.queue.put_nowait({"kind": "step", "out_dir": self.out_dir, "shot": shot, "take": take,
                               "done": done, "total": total, "worker": self.worker})

    def log(self, message: str, *, important: bool = False) -> None:
        if important and self.current is not None:  # while rendering (the driver planned and linted)
            self.queue.put_nowait({"kind": "log", "out_dir": self.out_dir, "message": message,
                                   "worker": self.worker})


class RenderWorker:
    """The actor: render sessions per storyboard (planned from the same files as the driver's)
    sharing one engine per model."""

    def __init__(self, name: str, queue, engine_factory=None):
        import ray
        self.name = f"{name}@{ray.util.get_node_ip_address()}"
        gpus = ray.get_gpu_ids()
        if gpus:
            self.name += f":gpu{','.join(map(str, gpus))}"
        self.queue, self.engine_factory = queue, engine_factory
        self.sessions: dict[str, object] = {}
        self.engines: dict[tuple, object] = {}

    def ping(self) -> str:
        return self.name

    def prepare(self, options) -> None:
        """Encode every prompt of the storyboard into the embedding cache."""
        session = self._session(options)
        session.prepare_engine(session.plan.to_render)

    def render(self, options, shot: str, take: int, cache_key: str, start: tuple | None = None):
        """Render one take as the driver planned it; `start`: an extension's (parent take, its
        cache key, take_choice.Choice), as the driver chose them when it dispatched the take."""
        from ovi_studio.plan import extend_take
        session = self._session(options)
        step = next(s for s in session.plan.steps if s.shot.id == shot and s.take == take)
        if start is not None:
            extend_take(step, *start)
        if step.cache_key != cache_key:
            raise RuntimeError(f"{shot}/take{take}: the storyboard or its inputs changed during the "
                               "render (the worker plans another take than the driver)")
        session.progress.current = (shot, take)
        return session.render_step(step)

    def _session(self, options):
        from ovi_studio.render.session import RenderSession
        key = str(options.out_dir)
        if key not in self.sessions:
            session = RenderSession(options, QueueProgress(self.queue, self.name, options.out_dir),
                                    engine_factory=self.engine_factory)
            session.prepare()
            session.share_engines(self.engines)
            self.sessions[key] = session
        return self.sessions[key]


class RayBackend:
    """The scheduler's backend over Ray actors (see the module docstring)."""

    def __init__(self, address: str | None = None, workers: int | None = None, engine_factory=None):
        self.address, self.count, self.engine_factory = address, workers, engine_factory
        self.actors: dict[str, object] = {}  # name -> handle (ready ones)
        self.pool_of: dict[str, tuple] = {}  # worker name -> (engine, variant)
        self.reviving: dict[object, str] = {}  # ping ref -> worker name, after a crash
        self.refs: dict[object, tuple[str, Task]] = {}
        self.sessions: dict[str, object] = {}  # out_dir -> driver session
        self.owns_cluster = False  # started here: shut down by close()

    # starting ------------------------------------------------------------------------------
    def start(self, sessions: list) -> None:
        """Connect to (or start) the cluster, start the actors and encode every prompt once."""
        ray = _import_ray()
        from ray.util.queue import Queue
        if not ray.is_initialized():
            env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
            kwargs = {"runtime_env": {"env_vars": env}, "include_dashboard": False,
                      "log_to_driver": False}
            self.owns_cluster = not self.address
            if self.address:
                ray.init(address=self.address, **kwargs)
            else:
                gpus = _local_gpus()
                pools = {_pool(s) for s in sessions}
                ray.init(num_gpus=gpus, resources={r: max(gpus, 1) for r in
                                                   (engine_resource(*p) for p in pools) if r}, **kwargs)
        self.queue = Queue(actor_options={"num_cpus": 0})
        for session in sessions:
            self.sessions[str(session.out_dir)] = session
        for pool in dict.fromkeys(_pool(s) for s in sessions):
            self._start_pool(ray, pool)
        from ray.exceptions import RayTaskError
        for session in sessions:
            if session.plan.to_render:
                worker = next(n for n, p in self.pool_of.items() if p == _pool(session))
                try:
                    ray.get(self.actors[worker].prepare.remote(remote_options(session)))
                except RayTaskError as exc:
                    raise UserError(f"{session.loaded.path}: the worker {worker} cannot start the "
                                    f"{session.engine_name} engine: {exc.cause}",
                                    hint="every node needs the checkpoints and the storyboard's files "
                                         "at the same paths (shared storage)") from None

    def _start_pool(self, ray, pool: tuple) -> None:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        custom = engine_resource(*pool)
        if custom and custom not in resources:
            raise UserError(f"no node of the Ray cluster advertises the resource {custom!r}, so none "
                            f"may hold the {pool[1]} model",
                            hint=f"start the GPU nodes with `ray start ... --resources '{{\"{custom}\": "
                                 f"<GPUs>}}'` (see README: Rendering on a Ray cluster)")
        count = self.count or (min(gpus, int(resources[custom])) if custom else gpus) or 1
        actor = ray.remote(RenderWorker).options(
            num_cpus=ACTOR_CPUS, num_gpus=1 if gpus else 0,
            resources={custom: 1} if custom else None, max_restarts=MAX_RESTARTS, max_task_retries=0)
        handles = [actor.remote(f"{pool[0]}-{len(self.pool_of) + i}", self.queue, self.engine_factory)
                   for i in range(count)]
        pings = {h.ping.remote(): h for h in handles}
        started, waiting = ray.wait(list(pings), num_returns=len(pings), timeout=ACTOR_START_S)
        for ref in waiting:  # never placed: the cluster has fewer GPUs or model slots than asked
            ray.kill(pings[ref])
        if not started:
            raise UserError(f"no {pool[0]} worker could start within {ACTOR_START_S:.0f}s",
                            hint="the cluster lacks free GPUs/CPUs or the resource "
                                 f"{custom or 'GPU'}; see `ray status`")
        for ref in started:
            name = ray.get(ref)
            self.actors[name] = pings[ref]
            self.pool_of[name] = pool

    # the scheduler's protocol ------------------------------------------------------------
    def workers(self) -> list[str]:
        self._revive(timeout=0)
        return [name for name in self.actors if name not in self.reviving.values()]

    def can_run(self, worker: str, task: Task) -> bool:
        session, _ = task.payload
        return self.pool_of[worker] == _pool(session)

    def submit(self, worker: str, task: Task):
        session, step = task.payload
        start = (step.parent_take, step.key_inputs["parent"], step.parent_choice) if step.parent else None
        ref = self.actors[worker].render.remote(remote_options(session), step.shot.id, step.take,
                                                step.cache_key, start)
        self.refs[ref] = (worker, task)
        return ref

    def wait(self, handles: list) -> list[tuple[object, Outcome]]:
        ray = _import_ray()
        while True:
            self._drain()
            self._revive(timeout=0)
            done, _ = ray.wait(handles, num_returns=1, timeout=WAIT_S)
            if done:
                break
        finished = []
        for ref in done:
            worker, task = self.refs.pop(ref)
            finished.append((ref, self._outcome(ray, ref, worker)))
        self._drain()
        return finished

    def wait_for_workers(self) -> bool:
        """Wait until a restarting worker answers (False: none was restarting, or none came back)."""
        before = set(self.workers())
        while self.reviving:
            self._drain()
            self._revive(timeout=WAIT_S)
            if set(self.workers()) - before:
                return True
        return bool(set(self.workers()) - before)

    def _outcome(self, ray, ref, worker: str) -> Outcome:
        from ray.exceptions import RayActorError, RayTaskError
        try:
            record = ray.get(ref)
        except RayActorError as exc:  # the actor died under the take: Ray restarts it
            self.reviving[self.actors[worker].ping.remote()] = worker
            return Outcome(CRASHED, None, f"worker {worker} died: {type(exc).__name__}")
        except RayTaskError as exc:
            return Outcome(FAILED, None, f"{type(exc.cause).__name__}: {exc.cause}")
        return Outcome(DONE if record.ok else FAILED, record, record.reason)

    def _revive(self, timeout: float) -> None:
        """A restarted actor is idle again once it answers; one that cannot restart is gone."""
        if not self.reviving:
            return
        ray = _import_ray()
        from ray.exceptions import RayActorError
        ready, _ = ray.wait(list(self.reviving), num_returns=len(self.reviving), timeout=timeout)
        for ref in ready:
            worker = self.reviving.pop(ref)
            try:
                ray.get(ref)
            except RayActorError:
                del self.actors[worker]

    def _drain(self) -> None:
        """Progress from the actors into each storyboard's display and event log."""
        while not self.queue.empty():
            message = self.queue.get_nowait()
            session = self.sessions.get(message["out_dir"])
            if session is None:
                continue
            if message["kind"] == "step":
                session.progress.step(message["done"], message["total"])
                session.events.write("step", shot=message["shot"], take=message["take"],
                                     worker=message["worker"], done=message["done"], total=message["total"])
            else:
                session.progress.log(f"{message['worker']}: {message['message']}", important=True)

    def close(self) -> None:
        ray = _import_ray()
        for handle in self.actors.values():
            ray.kill(handle)
        self.actors.clear()
        if self.owns_cluster:
            ray.shutdown()


def remote_options(session):
    """The session's options as an actor needs them: absolute paths, the driver's resolved
    output and checkpoint folders, OOM retries on, no second lint (the driver's gate passed)."""
    options = session.options
    return replace(options, source=Path(options.source).resolve(), out_dir=Path(session.out_dir).resolve(),
                   ckpt_dir=Path(session.ckpt_dir).resolve() if session.ckpt_dir else None, oom_retry=True,
                   lint=False)


def _pool(session) -> tuple[str, str]:
    return session.engine_name, session.loaded.variant.name


def _local_gpus() -> int:
    try:
        import torch
        return torch.cuda.device_count()
    except Exception:
        return 0


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UserError("--backend ray needs Ray, which is not installed",
                        hint="pip install 'ovi-studio[ray]' (./ovi-studio installs it on first use)") from None
    return ray

