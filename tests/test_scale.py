"""Work that grows with the storyboard grows linearly: one YAML parse per file, graph walks
(chains, cycles, execution order) linear in shots, a shared first frame read once.

The growth tests double the input and compare CPU times (best of a few runs): a linear step
takes about twice as long, a quadratic one four times; the bound sits between the two. The
sizes are small enough for a few seconds in all, large enough that a quadratic step shows.
"""
from __future__ import annotations

import gc
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from ovi_studio import source
from ovi_studio.lint import rules_storyboard
from ovi_studio.lint.rules_storyboard import ShotRef, check_graph
from ovi_studio.lint.runner import lint_path
from ovi_studio.media import images
from ovi_studio.plan import build_plan, execution_order
from ovi_studio.storyboard import LoadedStoryboard, load_storyboard

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import bench_scale  # noqa: E402

LINEAR_BOUND = 3.0  # time(2n) / time(n): ~2 when linear, ~4 when quadratic


def cpu_seconds(work, repeats: int = 5) -> float:
    best = float("inf")
    gc.disable()  # a collection landing in one run only is noise, not growth
    try:
        for _ in range(repeats):
            started = time.thread_time()  # this thread only: threads other tests left behind
            work()                         # (a Ray client, say) do not count
            best = min(best, time.thread_time() - started)
    finally:
        gc.enable()
    return best


def assert_linear(make_work, n: int) -> None:
    """make_work(size) -> a callable doing the work for `size`; time n and 2n."""
    small, large = make_work(n), make_work(2 * n)
    small()  # warm caches and imports
    ratios = []
    for _ in range(3):  # a busy machine can spoil one comparison; a quadratic step spoils all
        ratios.append(cpu_seconds(large) / max(cpu_seconds(small), 1e-4))
        if ratios[-1] < LINEAR_BOUND:
            return
    raise AssertionError(f"doubling the input took {min(ratios):.1f}x as long")


def chain(n: int) -> list[ShotRef]:
    return [ShotRef(f"s{i}", f"s{i - 1}" if i else None, False) for i in range(n)]


def test_chain_lint_is_linear():
    assert_linear(lambda n: (lambda refs=chain(n): list(check_graph(refs))), 5_000)


def test_cycle_detection_is_linear():
    def cycle(n):  # one long cycle, then a tail hanging off it
        refs = [ShotRef(f"c{i}", f"c{(i + 1) % n}", False) for i in range(n)]
        refs += [ShotRef(f"t{i}", f"t{i - 1}" if i else "c0", False) for i in range(n)]
        return lambda: list(check_graph(refs))
    assert_linear(cycle, 5_000)


def test_graph_findings():
    refs = [ShotRef("a", "c", False), ShotRef("b", "a", False), ShotRef("c", "b", False),
            ShotRef("x", "b", False), ShotRef("y", "x", False), ShotRef("self", "self", False)]
    refs += chain(6)
    found = [(f.code, f.index, f.message) for f in check_graph(refs)]
    cycles = [f for f in found if "cycle" in f[2]]
    assert cycles == [("SB101", 0, cycles[0][2])]  # reported once, at the cycle's first shot
    assert "a → c → b → a" in cycles[0][2]
    deep = [(index, message) for code, index, message in found if code == "SB103"]
    assert [index for index, _ in deep] == [6 + 4, 6 + 5]  # the chain's 4th and 5th extensions
    assert "extension #4 of `s0`" in deep[0][1]


class _Shot:
    """What execution_order reads of a resolved shot."""
    origin = SimpleNamespace(file="story.yaml")
    line = column = 1

    def __init__(self, id, extends):
        self.id, self.extends = id, extends


def reversed_chain(n: int) -> LoadedStoryboard:
    """Children before their parents in the file: the worst order for a naive placement."""
    shots = [_Shot(f"s{i}", f"s{i - 1}" if i else None) for i in range(n)][::-1]
    return LoadedStoryboard(Path("story.yaml"), None, None, [], shots, None)


def test_execution_order_is_linear_and_parents_first():
    order = [s.id for s in execution_order(reversed_chain(5))]
    assert order == ["s0", "s1", "s2", "s3", "s4"]
    assert_linear(lambda n: (lambda loaded=reversed_chain(n): execution_order(loaded)), 5_000)


def test_execution_order_keeps_file_order_otherwise():
    shots = [_Shot("b", "a"), _Shot("z", None), _Shot("a", None), _Shot("c", "b"), _Shot("y", None)]
    loaded = LoadedStoryboard(Path("story.yaml"), None, None, [], shots, None)
    assert [s.id for s in execution_order(loaded)] == ["z", "a", "b", "c", "y"]


def test_one_yaml_parse_per_file(tmp_path, monkeypatch):
    parsed: list[str] = []
    real = source._FAST_PARSER

    def counting(text):
        parsed.append(text[:40])
        return real(text)
    monkeypatch.setattr(source, "_FAST_PARSER", counting)
    path = bench_scale.write_storyboard(tmp_path, 20)  # shots from a template too
    lint_path(path)
    assert len(parsed) == 2  # the storyboard and the one template it uses
    parsed.clear()
    build_plan(load_storyboard(path), tmp_path / "out", engine="preview")
    assert len(parsed) == 2


def test_a_shared_first_frame_is_read_once(tmp_path, monkeypatch):
    path = bench_scale.write_storyboard(tmp_path, 40)  # 8 shots start from each of 2 images
    decoded = []
    real_load = Image.Image.load
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(self) or real_load(self))
    images._first_frame_file.cache_clear()
    plan = build_plan(load_storyboard(path), tmp_path / "out", engine="preview")
    assert images._first_frame_file.cache_info().misses == bench_scale.SHARED_FRAMES
    assert not decoded  # the size comes from the header
    i2v = [step for step in plan.steps if step.mode == "i2v"]
    assert len(i2v) == 8 and all(step.key_inputs["first_frame"].startswith("sha256:") for step in i2v)
    # a new version of the file is read again
    frame = tmp_path / "frame0.png"
    Image.new("RGB", (640, 480)).save(frame)
    build_plan(load_storyboard(path), tmp_path / "out", engine="preview")
    assert images._first_frame_file.cache_info().misses == bench_scale.SHARED_FRAMES + 1


@pytest.mark.slow
@pytest.mark.parametrize("chain_form", [False, True])
def test_check_and_plan_of_a_storyboard_grow_linearly(tmp_path, chain_form):
    def work(n):
        path = bench_scale.write_storyboard(tmp_path / f"{n}-{chain_form}", n, chain=chain_form)

        def run():
            lint_path(path)
            build_plan(load_storyboard(path), tmp_path / "out", engine="preview")
        return run
    assert_linear(work, 150)


def test_chain_walk_limits(monkeypatch):
    monkeypatch.setattr(rules_storyboard, "MAX_CHAIN", 1)
    found = list(check_graph(chain(3)))
    assert [(f.code, f.index) for f in found] == [("SB103", 2)]


# -- assembly -----------------------------------------------------------------------------------

def _segments(n: int, frames: int = 12):
    from ovi_studio.render.assembly import Segment
    return [Segment(f"s{i}", Path(f"s{i}.mkv"), Path(f"s{i}.wav"), 32, 32, frames,
                    start_frame=1 if i % 7 == 6 else 0, transition_frames=3 if i % 5 == 4 else 0)
            for i in range(n)]


def test_programme_audio_is_written_in_linear_time(tmp_path, monkeypatch):
    """One pass: doubling the shots doubles the time (a concatenation per shot would not)."""
    import numpy as np
    from ovi_studio.render import assembly
    monkeypatch.setattr(assembly, "segment_audio",  # no resampling: time the accumulation only
                        lambda seg: np.full(seg.kept_frames * assembly.SAMPLES_PER_FRAME, 0.1, np.float32))

    def work(n):
        segments = _segments(n)
        return lambda: assembly.write_programme_audio(segments, assembly.AssemblySettings(),
                                                      tmp_path / f"{n}.wav")
    assert_linear(work, 300)
    segments = _segments(300)
    written = assembly.write_programme_audio(segments, assembly.AssemblySettings(), tmp_path / "p.wav")
    assert written == assembly.segment_starts(segments)[1] * assembly.SAMPLES_PER_FRAME


def test_each_ffmpeg_process_of_an_assembly_opens_a_bounded_number_of_inputs():
    """One process per piece, at most two takes open in it (a crossfade), and the join reads
    the encoded pieces one after another: nothing grows with the number of shots."""
    from ovi_studio.render import assembly
    for n in (10, 100, 1000):
        segments = _segments(n)
        pieces = assembly.cut_pieces(segments)
        assert sum(p.frames for p in pieces) == assembly.segment_starts(segments)[1]
        for piece in pieces:
            command = assembly._piece_command(segments, piece, 32, 32, assembly.AssemblySettings(),
                                              Path("piece.mp4"))
            assert 1 <= command.count("-i") <= 2
        assert len(pieces) <= 2 * n  # linear in shots


def test_the_cut_audio_is_read_block_by_block(tmp_path, monkeypatch):
    """The cut's checks count and scan its audio a block at a time (a feature's audio as
    float is hundreds of megabytes), and the blocks add up to the whole stream."""
    import numpy as np
    from ovi_studio.media import audio, probe
    audio.write_wav(tmp_path / "a.wav", np.linspace(-1, 1, 10_001, dtype=np.float32), 16_000)
    monkeypatch.setattr(probe, "AUDIO_BLOCK_SAMPLES", 1000)
    blocks = list(probe.audio_blocks(tmp_path / "a.wav"))
    assert [b.size for b in blocks] == [1000] * 10 + [1]
    assert np.array_equal(np.concatenate(blocks), probe.decode_audio(tmp_path / "a.wav"))
    assert probe.count_audio_samples(tmp_path / "a.wav") == 10_001
