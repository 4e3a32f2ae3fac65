"""Whatever is in the file, loading ends in diagnostics or a UserError, never another exception."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from ruamel.yaml import YAML

from ovi_studio.errors import UserError
from ovi_studio.plan import build_plan
from ovi_studio.storyboard import load_storyboard

KEYS = ["version", "title", "model", "defaults", "output", "characters", "shots", "id", "prompt",
        "scene", "dialogue", "audio", "speaker", "line", "extends", "seed", "takes", "use", "with",
        "resolution", "aspect", "steps", "solver", "first_frame", "look", "voice", "color_match",
        "loudness", "fp8", "blocks_to_swap", "transition", "x"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                    st.text(max_size=30), st.sampled_from(["{anna}", "talking-head", "a", "16:9",
                                                           "unipc", "Audio: x", "<S>hi<E>", "off"]))
TREES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)), max_leaves=25)
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _load(path: Path):
    try:
        loaded = load_storyboard(path)
    except UserError:
        return None
    for d in loaded.diagnostics:
        assert d.line >= 1 and d.column >= 1 and d.code.startswith("SB")
    for shot in loaded.shots:
        for offset in range(0, len(shot.raw_prompt) + 1, 7):
            line, col = shot.origin.locate(offset)
            assert line >= 1 and col >= 1
    if loaded.model is not None and not loaded.diagnostics:
        try:
            build_plan(loaded, out_dir=path.parent / "out")
        except UserError:
            pass
    return loaded


@FUZZ
@given(tree=TREES)
def test_random_documents(tmp_path_factory, tree):
    buffer = io.StringIO()
    YAML(typ="rt").dump(tree, buffer)
    path = tmp_path_factory.mktemp("fuzz") / "story.yaml"
    path.write_text(buffer.getvalue(), encoding="utf-8")
    _load(path)


@pytest.mark.slow
@FUZZ
@given(shots=st.lists(st.dictionaries(st.sampled_from(KEYS), TREES, max_size=6), max_size=4))
def test_random_shots_in_a_valid_frame(tmp_path_factory, shots):
    buffer = io.StringIO()
    YAML(typ="rt").dump({"version": 1, "characters": {"anna": {"look": "a woman"}}, "shots": shots}, buffer)
    path = tmp_path_factory.mktemp("fuzz") / "story.yaml"
    path.write_text(buffer.getvalue(), encoding="utf-8")
    _load(path)


@FUZZ
@given(text=st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"#\n \t?,%@`\\1")), max_size=80))
def test_random_yaml_like_text(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "story.yaml"
    path.write_text(text, encoding="utf-8")
    _load(path)


@FUZZ
@given(data=st.binary(max_size=200))
def test_random_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "story.yaml"
    path.write_bytes(data)
    _load(path)
