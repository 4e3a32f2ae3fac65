"""How check, plan, preview render and assembly grow with the number of shots.

    .venv/bin/python bench/bench_scale.py                      # check/plan 10 … 5,000 shots
    .venv/bin/python bench/bench_scale.py --chain 3000         # one 3,000-shot extension chain
    .venv/bin/python bench/bench_scale.py --render 30,100,300  # preview render + assembly
    .venv/bin/python bench/bench_scale.py --assembly 30,100,300  # assembly alone

Storyboards are generated (`write_storyboard`): raw prompts with speech and audio tags,
structured scene/dialogue/audio shots, shots from a template, two-shot extension chains and
first frames shared by many shots. Every measurement runs in a fresh Python process, so the
peak memory (max RSS) is that of one command; for render + assembly the resident memory of the
whole process tree (Python and every ffmpeg it runs) is sampled every 0.1 s and its peak listed.
Each table ends with the fitted growth exponent: time ∝ shots^k over the sizes measured
(1 is linear; an accidental quadratic step shows as k → 2 at the large sizes). check and plan
also list their CPU seconds, which a machine shared with other work does not inflate.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CHECK_SIZES = (10, 100, 500, 1000, 2000, 5000)
RENDER_SIZES = (30, 100, 300)
SHARED_FRAMES = 2  # distinct first-frame images, each used by many shots
TAKE_FILES = 4  # lossless takes the assembly bench cuts in turn

_HEADER = """\
version: 1
title: Scale test, {shots} shots
model: 720x720_5s
defaults:
  aspect: "16:9"
  seed: 7
characters:
  anna:
    name: Anna
    look: a woman in her thirties with curly dark hair and a green raincoat
    voice: A warm, low female voice.
  ben:
    name: Ben
    look: a tall man with a grey beard and a brown leather jacket
    voice: A gravelly male voice, slow and calm.
output:
  final: scale.mp4
shots:
"""


def _shot(index: int, chain: bool) -> str:
    """One shot in one of five forms, by index."""
    sid = f"s{index:05d}"
    if chain:
        parent = f"\n    extends: s{index - 1:05d}" if index else ""
        return (f"  - id: {sid}{parent}\n    scene: \"{{anna}} walks on along the pier, step "
                f"{index}, as gulls circle overhead.\"\n    audio: Waves, gulls, footsteps on wood.\n")
    form = index % 5
    if form == 0:
        return (f"  - id: {sid}\n    prompt: >-\n      A fisherman mends a net on the quay at dawn, "
                f"shot {index}. He says <S>The tide turns at six.<E> and looks up.\n"
                f"      <AUDCAP>Gulls, lapping water, a distant engine.<ENDAUDCAP>\n")
    if form == 1:
        return (f"  - id: {sid}\n    scene: \"{{anna}} and {{ben}} sit at a kitchen table in shot "
                f"{index}, morning light through the window.\"\n    dialogue:\n"
                f"      - speaker: anna\n        line: Did you sleep at all?\n"
                f"      - speaker: ben\n        line: Not much. The storm kept me up.\n"
                f"    audio: A kettle starting to whistle, rain on the window.\n")
    if form == 2:
        return (f"  - id: {sid}\n    use: talking-head\n    with:\n      who: \"{{anna}}\"\n"
                f"      line: Welcome back to part {index} of the series.\n")
    if form == 3:
        return (f"  - id: {sid}\n    first_frame: frame{index % SHARED_FRAMES}.png\n"
                f"    scene: The harbour at dusk, boats rocking gently, shot {index}.\n"
                f"    audio: Rigging clinking, soft waves.\n")
    return (f"  - id: {sid}\n    extends: s{index - 1:05d}\n    scene: The camera drifts up over "
            f"the harbour roofs, shot {index}.\n    audio: Soft waves, a far bell.\n")


def write_storyboard(folder: Path, shots: int, chain: bool = False) -> Path:
    """A storyboard of `shots` shots (one extension chain when `chain`) with its first-frame
    images; returns its path."""
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(SHARED_FRAMES):
        Image.new("RGB", (1280, 720), (40 + 90 * k, 80, 120)).save(folder / f"frame{k}.png")
    path = folder / f"scale-{shots}{'-chain' if chain else ''}.yaml"
    path.write_text(_HEADER.format(shots=shots) + "".join(_shot(i, chain) for i in range(shots)),
                    encoding="utf-8")
    return path


# -- one measurement, in its own process ------------------------------------------------------

def _measure(what: str, path: Path, out: Path) -> dict:
    started, cpu = time.perf_counter(), time.process_time()
    if what == "check":
        from ovi_studio.lint.runner import lint_path
        lint_path(path)
    elif what == "plan":
        from ovi_studio.plan import build_plan
        from ovi_studio.storyboard import load_storyboard
        build_plan(load_storyboard(path), out, engine="preview")
    elif what == "assembly":
        return _measure_assembly(int(path.name), out)
    else:
        return _measure_render(path, out)
    return {"seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu,
            "peak_mb": _peak_mb()}


def _measure_assembly(shots: int, out: Path) -> dict:
    """Assembly alone, of `shots` preview-sized takes (121 frames of 456x256, 5 s of audio):
    TAKE_FILES lossless takes written once and cut in turn, every fifth shot crossfading in and every
    seventh dropping a seam frame; loudness, subtitles and chapters on, as a render has them.
    Then the middle shot is re-picked and the cut assembled again, reusing the encoded pieces."""
    from dataclasses import replace

    import numpy as np
    from ovi_studio.media import audio, video
    from ovi_studio.render.assembly import AssemblySettings, Segment, assemble
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(TAKE_FILES + 1):  # the last one is only the re-picked take
        frames = np.repeat(rng.integers(0, 256, (1, 256, 456, 3), dtype=np.uint8), 121, axis=0)
        frames[:, :, :, k % 3] = np.arange(121, dtype=np.uint8)[:, None, None] * 2
        video.write_lossless(out / f"take{k}.mkv", frames)
        t = np.arange(80_000) / 16_000
        audio.write_wav(out / f"take{k}.wav", (0.2 * np.sin(2 * np.pi * (200 + 50 * k) * t)).astype(np.float32), 16_000)
    segments = [Segment(f"s{i}", out / f"take{i % TAKE_FILES}.mkv", out / f"take{i % TAKE_FILES}.wav",
                        456, 256, 121,
                        start_frame=1 if i % 7 == 6 else 0,
                        transition_frames=12 if i % 5 == 4 else 0,
                        dialogue=(("Anna", "One line for this shot."),)) for i in range(shots)]
    settings, pieces = AssemblySettings(preset="ultrafast"), out / "pieces"
    started = time.perf_counter()
    with TreeMemory() as tree:
        assemble(segments, out / "cut.mp4", settings, out / "work", piece_cache=pieces)
    seconds = time.perf_counter() - started
    # one shot re-picked (another take): its own frames and any crossfade touching it are new
    middle = shots // 2
    segments[middle] = replace(segments[middle], frames_path=out / f"take{TAKE_FILES}.mkv")
    started = time.perf_counter()
    again = assemble(segments, out / "cut.mp4", settings, out / "work", piece_cache=pieces)
    return {"seconds": seconds, "peak_mb": _peak_mb(), "tree_peak_mb": tree.peak_mb,
            "repick_seconds": time.perf_counter() - started,
            "repick_encoded": sum(not p.reused for p in again.pieces), "pieces": len(again.pieces)}


def _measure_render(path: Path, out: Path) -> dict:
    from ovi_studio.render.inputs import RenderOptions
    from ovi_studio.render.progress import RenderProgress
    from ovi_studio.render.session import RenderSession
    session = RenderSession(RenderOptions(path, out_dir=out, engine="preview"),
                            RenderProgress(quiet=True))
    started = time.perf_counter()
    session.prepare()
    with TreeMemory() as tree:
        outcome = session.run()
    total = time.perf_counter() - started
    final = outcome.final
    return {"seconds": total, "assembly_seconds": final.get("seconds"),
            "status": final.get("status"), "peak_mb": _peak_mb(), "tree_peak_mb": tree.peak_mb}


class TreeMemory(threading.Thread):
    """Samples the summed resident memory of this process and all its descendants (the ffmpeg
    processes of render and assembly) and keeps the peak."""

    def __init__(self, interval: float = 0.1):
        super().__init__(daemon=True)
        self.interval, self.peak_mb, self._done = interval, 0.0, threading.Event()

    def __enter__(self) -> "TreeMemory":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self.join()

    def run(self) -> None:
        while not self._done.wait(self.interval):
            self.peak_mb = max(self.peak_mb, _tree_rss_mb(os.getpid()))


def _tree_rss_mb(root: int) -> float:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * resource.getpagesize()
        except OSError:
            pass
    return total / (1 << 20)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(what: str, shots: int, chain: bool = False) -> dict:
    """Generate a storyboard (or, for `assembly`, takes) and measure `what` on it in a fresh
    interpreter."""
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        path = Path(str(shots)) if what == "assembly" else write_storyboard(Path(tmp), shots, chain)
        proc = subprocess.run([sys.executable, __file__, "--measure", what, str(path),
                               str(Path(tmp) / "out")], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{what} of {shots} shots failed:\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])


def growth_exponent(sizes: list[int], seconds: list[float]) -> float:
    """Least-squares slope of log(time) against log(shots)."""
    xs, ys = [math.log(s) for s in sizes], [math.log(max(t, 1e-6)) for t in seconds]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def lint_plan_table(sizes: list[int], chain: bool) -> None:
    rows = {what: [run_one(what, n, chain) for n in sizes] for what in ("check", "plan")}
    kind = "one extension chain" if chain else "mixed shots"
    print(f"\n{kind}: check and plan\n")
    print("| shots | check s | check CPU s | CPU ms/shot | peak MB | plan s | plan CPU s | CPU ms/shot | peak MB |")
    print("|------:|--------:|------------:|------------:|--------:|-------:|-----------:|------------:|--------:|")
    for n, c, p in zip(sizes, rows["check"], rows["plan"]):
        print(f"| {n} | {c['seconds']:.2f} | {c['cpu_seconds']:.2f} | {1000 * c['cpu_seconds'] / n:.2f} "
              f"| {c['peak_mb']:.0f} | {p['seconds']:.2f} | {p['cpu_seconds']:.2f} "
              f"| {1000 * p['cpu_seconds'] / n:.2f} | {p['peak_mb']:.0f} |")
    if len(sizes) > 1:
        tail = slice(-3, None)
        for what in ("check", "plan"):
            k = growth_exponent(sizes[tail], [r["cpu_seconds"] for r in rows[what][tail]])
            print(f"\n{what}: CPU time ∝ shots^{k:.2f} over {sizes[tail][0]}…{sizes[-1]} shots")


def render_table(sizes: list[int]) -> None:
    rows = [run_one("render", n) for n in sizes]
    print("\npreview render + assembly\n")
    print("| shots | render+assembly s | assembly s | assembly s/shot | Python peak MB | whole tree peak MB |")
    print("|------:|------------------:|-----------:|----------------:|---------------:|-------------------:|")
    for n, r in zip(sizes, rows):
        print(f"| {n} | {r['seconds']:.1f} | {r['assembly_seconds']:.1f} | "
              f"{r['assembly_seconds'] / n:.3f} | {r['peak_mb']:.0f} | {r['tree_peak_mb']:.0f} |")
    if len(sizes) > 1:
        k = growth_exponent(sizes, [r["assembly_seconds"] for r in rows])
        per_shot = [r["assembly_seconds"] / n for n, r in zip(sizes, rows)]
        print(f"\nassembly: time ∝ shots^{k:.2f}; s/shot at {sizes[-1]} vs {sizes[0]} shots: "
              f"{per_shot[-1] / per_shot[0]:.2f}x")


def assembly_table(sizes: list[int]) -> None:
    rows = [run_one("assembly", n) for n in sizes]
    print("\nassembly alone (preview-sized takes); then one shot re-picked and the cut assembled again\n")
    print("| shots | assembly s | s/shot | Python peak MB | whole tree peak MB | re-pick s | pieces encoded again |")
    print("|------:|-----------:|-------:|---------------:|-------------------:|----------:|---------------------:|")
    for n, r in zip(sizes, rows):
        print(f"| {n} | {r['seconds']:.1f} | {r['seconds'] / n:.3f} | {r['peak_mb']:.0f} | {r['tree_peak_mb']:.0f} "
              f"| {r['repick_seconds']:.1f} | {r['repick_encoded']} of {r['pieces']} |")
    if len(sizes) > 1:
        k = growth_exponent(sizes, [r["seconds"] for r in rows])
        per_shot = [r["seconds"] / n for n, r in zip(sizes, rows)]
        print(f"\nassembly: time ∝ shots^{k:.2f}; s/shot at {sizes[-1]} vs {sizes[0]} shots: "
              f"{per_shot[-1] / per_shot[0]:.2f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, CHECK_SIZES)),
                        help="storyboard sizes for check/plan (comma-separated)")
    parser.add_argument("--chain", type=int, default=None, help="also one chain of this many shots")
    parser.add_argument("--render", default="", help="sizes for preview render + assembly (e.g. 30,100,300)")
    parser.add_argument("--assembly", default="", help="sizes for assembly alone (e.g. 30,100,300)")
    parser.add_argument("--measure", nargs=3, metavar=("WHAT", "STORYBOARD", "OUT"),
                        help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    if args.measure:
        what, path, out = args.measure
        print(json.dumps(_measure(what, Path(path), Path(out))))
        return
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if sizes:
        lint_plan_table(sizes, chain=False)
    if args.chain:
        lint_plan_table([args.chain], chain=True)
    if args.render:
        render_table([int(s) for s in args.render.split(",")])
    if args.assembly:
        assembly_table([int(s) for s in args.assembly.split(",")])


if __name__ == "__main__":
    main()
