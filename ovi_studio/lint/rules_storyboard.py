"""SB1xx: the storyboard as a whole — the shot graph, negatives, suppressions — plus the codes
the loader itself reports (registered here so selection and SARIF know them)."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ovi_studio.diagnostics import Severity
from ovi_studio.lint.registry import rule
from ovi_studio.prompt import parse_prompt

E, W, I = Severity.ERROR, Severity.WARNING, Severity.INFO
MAX_CHAIN = 3  # extensions in a row before drift and colour shift show

rule("OVI001", I, "unused noqa code",
     "A code in a shot's `noqa:` list suppresses nothing (like ruff's RUF100). Remove it so the "
     "list keeps saying what is really being ignored.")
rule("SB101", E, "bad shot reference",
     "Shot ids must be unique, `extends` must name another shot of the storyboard, and extensions "
     "must not form a cycle.")
rule("SB102", E, "schema violation",
     "The storyboard does not match its schema (unknown key, wrong type, missing value). "
     "`ovi-studio schema` prints the JSON Schema for editor completion.")
rule("SB103", W, "extension chain too deep",
     f"More than {MAX_CHAIN} extensions in a row: every extension starts from the previous shot's "
     "last frame, so blur, drift and colour shift accumulate. Re-anchor the chain with a fresh "
     "`first_frame`.")
rule("SB107", W, "tags inside a negative prompt",
     "Negative prompts are passed to the text encoder as they are; `<S>`, `<E>`, caption tags or "
     "`Audio:` in them only add noise. Write negatives as plain comma-separated words.")
rule("SB110", E, "unknown character",
     "`{name}` or a dialogue speaker names no entry of `characters:`.")
rule("SB111", E, "unknown or unusable template",
     "`use:` names a template that is not in templates/ next to the storyboard or in the "
     "project's templates/, or the template file is invalid.")
rule("SB112", E, "template parameter missing or unknown",
     "A template needs every parameter without a default under `with:`, and takes no others.")
rule("SB113", E, "`extends` together with `first_frame`",
     "An extension starts from its parent's last frame; a `first_frame` on the same shot "
     "contradicts it. Keep one of the two.")


@dataclass(frozen=True)
class GraphFinding:
    code: str
    index: int  # the shot's position in the list given to check_graph
    key: str  # the shot key the finding points at
    message: str
    severity: Severity | None = None


@dataclass(frozen=True)
class ShotRef:
    id: str
    extends: str | None
    has_first_frame: bool


def check_graph(shots: list[ShotRef]) -> Iterator[GraphFinding]:
    first_index: dict[str, int] = {}
    for index, shot in enumerate(shots):
        if shot.id in first_index:
            yield GraphFinding("SB101", index, "id", f"duplicate shot id `{shot.id}` (first used by "
                               f"shot #{first_index[shot.id] + 1}): give every shot its own id")
        else:
            first_index[shot.id] = index
    parents = {s.id: s.extends for s in shots}
    for index, shot in enumerate(shots):
        if shot.extends is None:
            continue
        if shot.extends not in parents:
            yield GraphFinding("SB101", index, "extends",
                               f"`extends: {shot.extends}` names no shot of this storyboard")
        elif shot.extends == shot.id:
            yield GraphFinding("SB101", index, "extends", "a shot cannot extend itself")
        if shot.has_first_frame:
            yield GraphFinding("SB113", index, "first_frame",
                               f"`first_frame` on a shot that extends `{shot.extends}`: an extension "
                               "starts from its parent's last frame — remove one of the two")
    yield from _chains(shots, parents)


def _chains(shots: list[ShotRef], parents: dict[str, str | None]) -> Iterator[GraphFinding]:
    """Extension cycles (each reported once, at its first shot in the file) and chains deeper
    than MAX_CHAIN; one walk up from every shot, each link followed once overall."""
    links = _walk_links(parents)
    reported_cycles: set[str] = set()
    for index, shot in enumerate(shots):
        link = links.get(shot.id)
        if link is None:  # leads into a cycle it is not part of
            continue
        if isinstance(link, _Cycle):
            if len(link.members) == 1 or link.members[0] in reported_cycles:
                continue
            reported_cycles.add(link.members[0])
            at = link.members.index(shot.id)
            loop = " → ".join(link.members[at:] + link.members[:at + 1])
            yield GraphFinding("SB101", index, "extends",
                               f"extension cycle {loop}: one shot of the cycle must start from a "
                               "first frame or text instead")
        elif link[0] > MAX_CHAIN:
            depth, root = link
            yield GraphFinding("SB103", index, "extends",
                               f"this shot is extension #{depth} of `{root}` (more than "
                               f"{MAX_CHAIN}): start a fresh chain with a `first_frame`")


@dataclass(frozen=True)
class _Cycle:
    members: list[str]  # in `extends` order, starting anywhere on the cycle


def _walk_links(parents: dict[str, str | None]) -> dict[str, "tuple[int, str] | _Cycle | None"]:
    """For every shot id: (extensions above it, the chain's first shot) — or its _Cycle, or
    None when its ancestors run into a cycle. An `extends` naming no shot ends the chain there
    (that error is reported on its own)."""
    links: dict[str, tuple[int, str] | _Cycle | None] = {}
    for start in parents:
        path, on_path, node = [], set(), start
        while node in parents and node not in links and node not in on_path:
            path.append(node)
            on_path.add(node)
            node = parents[node]
        if node in links:
            above = links[node]
        elif node in parents:  # the walk came back to itself: a new cycle
            cycle = _Cycle(path[path.index(node):])
            for member in cycle.members:
                links[member] = cycle
            path = path[:path.index(node)]
            above = cycle
        else:  # the chain's top: no parent, or one that names no shot
            above = (-1, path[-1]) if path else None
        for offset, node in enumerate(reversed(path)):
            if above is None or isinstance(above, _Cycle):
                links[node] = None
            else:
                links[node] = (above[0] + offset + 1, above[1])
    return links


def negative_has_tags(text: str) -> str | None:
    """The first tag or `Audio:` label in a negative prompt, or None."""
    parsed = parse_prompt(text)
    marks = [t.raw for t in parsed.tags] + (["Audio:"] if parsed.audio_labels else [])
    return marks[0] if marks else None
