"""Scaling of the Ray backend: N independent preview shots rendered by 1, 2 and 4 actors (and
in process, for reference), through the same scheduler.

    .venv/bin/python bench/bench_ray.py                   # 12 shots, 1/2/4 actors
    .venv/bin/python bench/bench_ray.py --shots 24 --actors 1 2 4 8 --address auto

Columns (from each run's events.jsonl): the render window (first take dispatched to last take
done, so cluster and actor start-up are apart, printed as `start s`), shots per minute over
that window, the mean seconds an actor spent in a take, and the scheduler's overhead per shot:
(window - take seconds / actors) / shots, the time a shot costs beyond its own rendering when
the actors are evenly loaded (dispatch, the object store, progress, idle gaps).

A local cluster (no --address) gets one CPU per actor and no GPUs; the preview engine is CPU
work, so on a machine with fewer cores than actors the added actors cannot speed it up.
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ovi_studio.render.events import EVENTS_NAME, read_events  # noqa: E402
from ovi_studio.render.inputs import RenderOptions  # noqa: E402
from ovi_studio.render.progress import RenderProgress  # noqa: E402
from ovi_studio.render.session import RenderSession  # noqa: E402


def storyboard(folder: Path, shots: int) -> Path:
    lines = ["version: 1", "model: 720x720_5s", "output:", "  loudness: off", "shots:"]
    for i in range(shots):
        lines += [f"  - id: s{i:03d}", f"    scene: Shot number {i} of a quiet harbour.", "    audio: gulls"]
    path = folder / "bench.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(source: Path, out: Path, backend) -> dict:
    session = RenderSession(RenderOptions(source=source, out_dir=out, engine="preview", lint=False),
                            RenderProgress(quiet=True))
    session.prepare()
    started = time.perf_counter()
    outcome = session.run(backend)
    wall = time.perf_counter() - started
    if outcome.failed_shots:
        raise SystemExit(f"failed: {outcome.failed_shots}")
    events = read_events(out / EVENTS_NAME)
    first = min(e["t"] for e in events if e["event"] == "dispatched")
    last = max(e["t"] for e in events if e["event"] == "done")
    seconds = [r.seconds for r in outcome.records if r.status == "rendered"]
    return {"window": last - first, "wall": wall, "take_s": sum(seconds), "shots": len(seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=12)
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--address", default=None, help="an existing cluster (default: start one)")
    args = parser.parse_args()

    import ray
    from ovi_studio.render.ray_backend import RayBackend
    ray.init(address=args.address, include_dashboard=False, log_to_driver=False,
             **({} if args.address else {"num_cpus": max(args.actors), "num_gpus": 0}))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        source = storyboard(Path(tmp), args.shots)
        configs = [("in process", 1, None)] + [(f"ray x{k}", k, k) for k in args.actors]
        for name, actors, workers in configs:
            backend = RayBackend(workers=workers) if workers else None
            result = run(source, Path(tmp) / name.replace(" ", "-"), backend)
            window, shots = result["window"], result["shots"]
            overhead = (window - result["take_s"] / actors) / shots
            rows.append((name, shots, window, result["wall"] - window, 60 * shots / window,
                         result["take_s"] / shots, overhead))
    print(f"{args.shots} independent preview shots; {platform.node()}, {platform.processor() or platform.machine()}, "
          f"Ray {ray.__version__}, {time.strftime('%Y-%m-%d')}")
    print(f"| {'backend':<10} | shots | window s | start s | shots/min | take s | overhead s/shot |")
    print("|---|---|---|---|---|---|---|")
    for name, shots, window, start, rate, take, overhead in rows:
        print(f"| {name:<10} | {shots} | {window:.1f} | {start:.1f} | {rate:.1f} | {take:.2f} | {overhead:.3f} |")
    ray.shutdown()


if __name__ == "__main__":
    main()
