"""Safe YAML loading that remembers where every value came from.

A storyboard is parsed once, by libyaml (PyYAML's C parser): one pass over its events builds
the document as ruamel round-trip containers carrying the line/column of every key and item,
records each scalar's exact span (so an offset inside a prompt maps back to the file,
`TextOrigin`, and `check --fix` can rewrite a value in place), and refuses what a storyboard
never needs and what could hurt: explicit tags (`!anything`), absurd nesting and alias bombs.

All positions handed out by this module are 1-based (line, column), like editors show them.
"""
from __future__ import annotations

import re

import bisect
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedKeyMap, CommentedKeySeq, CommentedMap, CommentedSeq
from ruamel.yaml.error import StreamMark
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.resolver import VersionedResolver

from ovi_studio.textfile import read_user_text
from ovi_studio.errors import UserError, at

MAX_BYTES = 2 << 20  # a storyboard of thousands of shots is still far below this
MAX_DEPTH = 64
MAX_EXPANDED_NODES = 200_000  # after following aliases; stops "billion laughs" documents
MAX_EXPANDED_CHARS = 4 * MAX_BYTES  # scalar text after following aliases

Position = tuple[int, int]  # (line, column), 1-based
ALIGN_WINDOW = 16  # how far ahead in the file a scalar's next character is looked for
_NEWLINE = re.compile("\n")
_RUNS = re.compile(r"\s+|\S+")  # a value as alternating runs of spaces and of other characters


class ScalarSpan(NamedTuple):  # a tuple: one is made for every scalar of the file
    """Where one scalar's text sits in the file (0-based character indices)."""
    start: int
    end: int
    style: str | None  # None plain, "'" or '"' quoted, "|" literal, ">" folded


class LineIndex:
    """Character index in the file <-> 1-based (line, column)."""

    def __init__(self, text: str):
        self.text = text
        self._starts = [0, *(m.end() for m in _NEWLINE.finditer(text))]

    def position(self, index: int) -> Position:
        index = max(0, min(index, len(self.text)))
        line = bisect.bisect_right(self._starts, index) - 1
        return line + 1, index - self._starts[line] + 1

    def index(self, line: int, column: int) -> int:
        return self._starts[line - 1] + column - 1


@dataclass
class SourceDocument:
    """A loaded YAML file: the round-trip document plus what is needed to point into it."""
    path: Path
    text: str
    data: object  # CommentedMap for a storyboard; anything YAML can hold otherwise
    lines: LineIndex
    scalars: dict[Position, ScalarSpan] = field(default_factory=dict)
    _sources: dict[Position, "ScalarSource"] = field(default_factory=dict, repr=False)

    # -- positions of keys, values and items ---------------------------------------------
    def key_position(self, mapping: CommentedMap, key) -> Position:
        try:
            line, col = mapping.lc.key(key)
            return line + 1, col + 1
        except (KeyError, AttributeError, TypeError):
            return self.node_position(mapping)

    def value_position(self, mapping: CommentedMap, key) -> Position:
        try:
            line, col = mapping.lc.value(key)
            return line + 1, col + 1
        except (KeyError, AttributeError, TypeError):
            return self.key_position(mapping, key)

    def item_position(self, seq: CommentedSeq, index: int) -> Position:
        try:
            line, col = seq.lc.item(index)
            return line + 1, col + 1
        except (KeyError, IndexError, AttributeError, TypeError):
            return self.node_position(seq)

    def node_position(self, node) -> Position:
        lc = getattr(node, "lc", None)
        if lc is not None and lc.line is not None:
            return lc.line + 1, lc.col + 1
        return 1, 1

    def path_position(self, path: tuple) -> Position:
        """Position of the deepest node along `path` (keys and indices) that exists in the
        document: an error about a value that came from a template points at the shot."""
        node, position = self.data, (1, 1)
        for part in path:
            if isinstance(node, CommentedMap) and part in node:
                position = self.key_position(node, part)
                node = node[part]
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
                position = self.item_position(node, part)
                node = node[part]
            else:
                break
        return position

    # -- text inside scalars -------------------------------------------------------------
    def scalar_source(self, mapping: CommentedMap, key) -> "ScalarSource | None":
        value = mapping.get(key) if isinstance(mapping, CommentedMap) else None
        if not isinstance(value, str):
            return None
        return self._scalar_source_at(self.value_position(mapping, key), value)

    def item_scalar_source(self, seq: CommentedSeq, index: int) -> "ScalarSource | None":
        value = seq[index] if isinstance(seq, CommentedSeq) and 0 <= index < len(seq) else None
        if not isinstance(value, str):
            return None
        return self._scalar_source_at(self.item_position(seq, index), value)

    def _scalar_source_at(self, position: Position, value: str) -> "ScalarSource | None":
        """One ScalarSource per scalar and value, so its character map is built once however
        many prompts and findings point into it."""
        span = self.scalars.get(position)
        if span is None:
            return None
        source = self._sources.get(position)
        if source is None or source.value != value:
            source = self._sources[position] = ScalarSource(self, span, value)
        return source


class ScalarSource:
    """Maps an offset inside a scalar's value to its (line, column) in the file.

    Exact for block literals (`|`), whose lines are copied verbatim after the indentation;
    best effort for plain, quoted and folded scalars, whose line breaks and escapes the YAML
    parser rewrites: non-space characters are matched in order against the source text."""

    def __init__(self, document: SourceDocument, span: ScalarSpan, value: str):
        self.document = document
        self.span = span
        self.value = value
        self._map: list[int] | None = None

    @property
    def start(self) -> Position:
        return self.document.lines.position(self.span.start)

    @property
    def exact(self) -> bool:
        return self.span.style == "|"

    def locate(self, offset: int) -> Position:
        offset = max(0, min(offset, len(self.value)))
        if self._map is None:
            self._map = self._literal_map() if self.exact else self._aligned_map()
        return self.document.lines.position(self._map[offset])

    def _content_start(self) -> int:
        """Block scalars: the text starts on the line after the `|` / `>` header."""
        text = self.document.text
        newline = text.find("\n", self.span.start, self.span.end)
        return self.span.end if newline < 0 else newline + 1

    def _literal_map(self) -> list[int]:
        text, begin = self.document.text, self._content_start()
        lines = text[begin:self.span.end].split("\n")
        indent = next((len(ln) - len(ln.lstrip(" ")) for ln in lines if ln.strip()), 0)
        mapping, index = [], begin
        for number, value_line in enumerate(self.value.split("\n")):
            source_line = lines[number] if number < len(lines) else ""
            line_indent = min(indent, len(source_line))
            mapping.extend(index + line_indent + i for i in range(len(value_line) + 1))
            index += len(source_line) + 1
        return mapping[:len(self.value) + 1]

    def _aligned_map(self) -> list[int]:
        text = self.document.text
        begin = self._content_start() if self.span.style == ">" else self.span.start
        if self.span.style in ("'", '"'):
            begin += 1
        end, cursor, mapping = self.span.end, begin, []
        for run in _RUNS.finditer(self.value):
            word = run.group()
            if word[0].isspace():  # spaces and line breaks stay where the cursor is
                mapping.extend([cursor] * len(word))
                continue
            found = text.find(word[0], cursor, min(end, cursor + ALIGN_WINDOW))
            if found >= 0 and found + len(word) <= end and text.startswith(word, found):
                mapping.extend(range(found, found + len(word)))  # the word as written: one step
                cursor = found + len(word)
                continue
            for ch in word:  # an escape or a folded break inside the word: character by character
                found = text.find(ch, cursor, min(end, cursor + ALIGN_WINDOW))
                if found >= 0:
                    cursor = found
                mapping.append(cursor)
                if cursor < end and text[cursor] == ch:
                    cursor += 1
        mapping.append(cursor)
        return mapping


class TextOrigin:
    """Maps offsets in a compiled prompt to positions in the storyboard file.

    A compiled prompt is a sequence of pieces: text copied from a scalar of the file (mapped
    character by character) and glue the compiler wrote (attribution cues, a character's look,
    template text), which maps to the position of the key it came from."""

    def __init__(self, file: Path, fallback: Position):
        self.file = file
        self.fallback = fallback
        self._pieces: list[tuple[int, int, ScalarSource | None, int, Position]] = []
        self._length = 0

    def add(self, length: int, source: "ScalarSource | None" = None, source_offset: int = 0,
            anchor: Position | None = None) -> None:
        """Append `length` characters; copied from `source` at `source_offset`, or glue that
        points at `anchor` (default: the origin's fallback position)."""
        if length <= 0:
            return
        self._pieces.append((self._length, length, source, source_offset, anchor or self.fallback))
        self._length += length

    @property
    def exact(self) -> bool:
        return all(source is not None and source.exact for _, _, source, _, _ in self._pieces)

    def locate(self, offset: int) -> Position:
        for start, length, source, source_offset, anchor in self._pieces:
            if start <= offset < start + length or (offset == start + length == self._length):
                if source is None:
                    return anchor
                return source.locate(source_offset + offset - start)
        return self.fallback


def load_yaml(path: str | Path, *, what: str = "storyboard") -> SourceDocument:
    """Read and parse a YAML file safely; every problem is a UserError with a position."""
    path = Path(path)
    text = read_user_text(path, what=f"YAML {what}", max_bytes=MAX_BYTES)
    composer = _Composer(path)
    try:
        try:
            data = composer.compose(text, _FAST_PARSER)
        except yaml.scanner.ScannerError as exc:
            if "escape" not in str(exc.problem):
                raise
            # libyaml refuses `\ud800`-style escapes; the Python parser reads them, and the
            # loader then reports the lone surrogate on its shot (the other shots still load).
            composer = _Composer(path)
            data = composer.compose(text, yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(exc, path) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        line, column = LineIndex(text).position(exc.position)
        raise UserError(f"cannot read the YAML: {_first_line(exc)}",
                        location=at(path, line, column)) from None
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
        raise UserError(f"cannot read the YAML: {_first_line(exc)}", location=at(path)) from None
    return SourceDocument(path, text, data, LineIndex(text), composer.scalars)


def parse_scalar(text: str):
    """A value typed outside a file (`--set key=value`) read exactly as the same text is read
    in a storyboard (the same composer, YAML 1.2: `yes` and `16:9` are text, `true` and `20`
    are not). Text that is not valid YAML stays the text; an empty value is null."""
    if text.strip() == "":
        return None
    try:
        return to_plain(_Composer(Path("--set")).compose(text, _FAST_PARSER))
    except (yaml.YAMLError, UserError, ValueError, TypeError, RecursionError):
        return text


def to_plain(node):
    """Round-trip objects (CommentedMap, LiteralScalarString, ScalarFloat, ...) as plain
    Python values, so validation sees exactly dict/list/str/int/float/bool/None."""
    if isinstance(node, dict):
        return {_plain_key(k): to_plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [to_plain(item) for item in node]
    if isinstance(node, bool) or type(node).__name__ == "ScalarBoolean":
        return bool(node)
    for kind in (str, int, float):
        if isinstance(node, kind):
            return kind(node)
    return node


def _plain_key(key):
    key = to_plain(key)
    return str(key) if isinstance(key, (list, dict)) else key  # `? [a, b]` complex keys


def new_yaml() -> YAML:
    """The round-trip YAML used to read and write storyboards (keeps comments and order)."""
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    return yaml


_FAST_PARSER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML has it
# ruamel's YAML 1.2 table for plain scalars (`16:9` and `yes` are text): first character ->
# [(tag, pattern)]
_IMPLICIT = VersionedResolver(version=(1, 2)).versioned_resolver
_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_PLAIN_TEXT = ("tag:yaml.org,2002:value",)  # a lone `=`: text, not ruamel's TaggedScalar


class _Composer:
    """Builds the document from libyaml's event stream in one pass: round-trip containers
    (CommentedMap/CommentedSeq, with the line and column of every key, value and item, as
    ruamel's round-trip loader sets them) and the span of every scalar. The same pass refuses
    tags, nesting deeper than MAX_DEPTH and alias bombs. Plain scalars are typed by the YAML
    1.2 core schema; numbers, booleans and dates are built by ruamel's round-trip constructor,
    so values are the ones ruamel gives. Comments are not kept: nothing reads them (`--fix`
    edits the text at the recorded spans)."""

    def __init__(self, path: Path):
        self.path = path
        self.scalars: dict[Position, ScalarSpan] = {}
        self._anchors: dict[str, tuple[object, tuple[int, int], _Expanded]] = {}  # value, mark, size
        self._open_anchors: set[str] = set()
        self._constructor = YAML(typ="rt").constructor
        self._expanded = _Expanded(0, 0)  # so far, aliases counted at their expanded size

    def compose(self, text: str, parser_class):
        # Each open collection: [container, mark, anchor, size, pending key, its mark, merges]
        stack: list[list] = []
        root, documents = None, 0
        parser = parser_class(text)
        try:
            while parser.check_event():
                event = parser.get_event()
                kind = type(event)
                if kind is yaml.DocumentStartEvent:
                    documents += 1
                    if documents > 1:
                        raise UserError("a storyboard is one YAML document; this file has more "
                                        "(a second `---`)", location=_event_location(self.path, event))
                    continue
                if kind in _SKIPPED_EVENTS:
                    continue
                if kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                    container, mark, anchor, size, _, _, merges = stack.pop()
                    if merges:
                        _merge_into(container, merges)
                    if anchor:
                        self._anchors[anchor] = (container, mark, size)
                        self._open_anchors.discard(anchor)
                    value, size = container, size
                elif getattr(event, "tag", None) is not None:
                    raise UserError(f"YAML tags such as `{event.tag}` are not allowed in a storyboard",
                                    location=_event_location(self.path, event),
                                    hint="remove the `!…` tag; write plain values")
                elif kind is yaml.ScalarEvent:
                    mark = (event.start_mark.line, event.start_mark.column)
                    style = event.style or None
                    self.scalars[(mark[0] + 1, mark[1] + 1)] = ScalarSpan(
                        event.start_mark.index, event.end_mark.index, style)
                    value, size = self._scalar(event, style, mark), _Expanded(1, len(event.value))
                    if event.anchor:
                        self._anchors[event.anchor] = (value, mark, size)
                    self._count(size, event)
                elif kind is yaml.AliasEvent:
                    if event.anchor in self._open_anchors or event.anchor not in self._anchors:
                        raise UserError(f"alias `*{event.anchor}` refers to no finished anchor "
                                        f"`&{event.anchor}` above it",
                                        location=_event_location(self.path, event))
                    value, mark, size = self._anchors[event.anchor]
                    self._count(size, event)
                else:  # a mapping or a sequence starts
                    if len(stack) + 1 > MAX_DEPTH:
                        raise UserError(f"the YAML is nested more than {MAX_DEPTH} levels deep",
                                        location=_event_location(self.path, event))
                    mark = (event.start_mark.line, event.start_mark.column)
                    container = CommentedMap() if kind is yaml.MappingStartEvent else CommentedSeq()
                    container._yaml_set_line_col(*mark)
                    if event.anchor:
                        self._open_anchors.add(event.anchor)
                    stack.append([container, mark, event.anchor, _Expanded(1, 0), _NO_KEY, None, None])
                    self._count(_Expanded(1, 0), event)
                    continue
                if not stack:
                    root = value
                    continue
                self._attach(stack[-1], value, mark, size)
        finally:
            parser.dispose()
        return root

    def _scalar(self, event, style: str | None, mark: tuple[int, int]):
        text = event.value
        if style is not None:
            return text
        tag = next((tag for tag, pattern in _IMPLICIT.get(text[:1], ()) if pattern.match(text)), _STR)
        if tag == _STR or tag in _PLAIN_TEXT:
            return text
        if tag == _MERGE:
            return _MERGE_KEY
        start = StreamMark(str(self.path), event.start_mark.index, *mark)
        return self._constructor.construct_object(ScalarNode(tag, text, start, start), deep=True)

    def _attach(self, parent: list, value, mark: tuple[int, int], size: "_Expanded") -> None:
        container = parent[0]
        parent[3] = parent[3] + size
        if isinstance(container, CommentedSeq):
            container._yaml_set_idx_line_col(len(container), list(mark))
            container.append(value)
            return
        key = parent[4]
        if key is _NO_KEY:  # this value is a key
            if isinstance(value, CommentedSeq):
                value = CommentedKeySeq(value)
            elif isinstance(value, CommentedMap):
                value = CommentedKeyMap(value)
            parent[4], parent[5] = value, mark
            return
        parent[4] = _NO_KEY
        if key is _MERGE_KEY:
            parent[6] = (parent[6] or []) + (value if isinstance(value, list) else [value])
            return
        if key in container:
            line, column = parent[5]
            raise UserError(f"duplicate key `{key}` in this mapping (each key may appear once)",
                            location=at(self.path, line + 1, column + 1))
        container[key] = value
        container._yaml_set_kv_line_col(key, [*parent[5], *mark])

    def _count(self, size: "_Expanded", event) -> None:
        """Bound the document by what it expands to, in values and in bytes of scalar text (a
        long string repeated by aliases is as much a bomb as a deep tree of short ones)."""
        self._expanded = self._expanded + size
        if self._expanded.nodes > MAX_EXPANDED_NODES or self._expanded.chars > MAX_EXPANDED_CHARS:
            raise UserError("the YAML expands to too many values or too much text (aliases "
                            "repeated inside aliases?)", location=_event_location(self.path, event))


class _Expanded(NamedTuple):  # a tuple: several are made for every node of the file
    """What a node becomes once every alias in it is followed."""
    nodes: int
    chars: int  # of scalar text

    def __add__(self, other: "_Expanded") -> "_Expanded":
        return _Expanded(self.nodes + other.nodes, self.chars + other.chars)


_NO_KEY = object()  # a mapping waiting for its next key
_MERGE_KEY = object()  # `<<`: merge the value's keys into this mapping
_SKIPPED_EVENTS = (yaml.StreamStartEvent, yaml.StreamEndEvent, yaml.DocumentEndEvent)


def _merge_into(container, merges: list) -> None:
    """`<<: *base` (or a list of them): keys the mapping does not set itself, first merge first."""
    if not isinstance(container, CommentedMap):
        return
    for source in merges:
        if not isinstance(source, CommentedMap):
            raise ValueError("`<<` merges a mapping (or a list of mappings) into this one")
        for key, value in source.items():
            if key not in container:
                container[key] = value
                if key in source.lc.data:
                    container._yaml_set_kv_line_col(key, source.lc.data[key])


def _event_location(path: Path, event):
    return at(path, event.start_mark.line + 1, event.start_mark.column + 1)


def _yaml_error(exc: yaml.MarkedYAMLError, path: Path) -> UserError:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or "malformed YAML"
    if exc.context and exc.problem:
        problem = f"{exc.problem} ({exc.context})"
    location = at(path, mark.line + 1, mark.column + 1) if mark else at(path)
    return UserError(f"invalid YAML: {problem}", location=location,
                     hint=_colon_in_plain_scalar(exc, mark, path))


_PLAIN_VALUE = re.compile(r"^\s*(?:-\s+)?([\w-]+):\s+[^\s\"'|>]")


def _colon_in_plain_scalar(exc: yaml.MarkedYAMLError, mark, path: Path) -> str | None:
    """The usual cause of "mapping values are not allowed here" in a storyboard: a prompt or
    scene written unquoted with `: ` inside it (`Audio: …`), which YAML reads as a new key."""
    if mark is None or "mapping values are not allowed" not in (exc.problem or ""):
        return None
    try:
        line = read_user_text(path, what="YAML file", max_bytes=MAX_BYTES).split("\n")[mark.line]
    except (UserError, IndexError):
        line = ""
    found = _PLAIN_VALUE.match(line)
    key = found[1] if found else "the value"
    return (f"line {mark.line + 1}: the text of `{key}` contains `: `, which YAML reads as a new "
            f"key — quote it (`{key}: \"…\"`) or write it as a block: `{key}: |` (or `>-`) "
            "with the text indented on the next lines")


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
