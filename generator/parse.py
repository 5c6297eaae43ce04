"""YAML/JSON → predicate tree, keeping the file and line of every node.

Parsing never stops at the first mistake: every problem found is added to a list, and
the caller (``definitions.load_definitions``) reports them all at once.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from feedgen.generator.tree import (
    COMPARE_OPS,
    HISTORY_AGGS,
    LEAF_OPS,
    SCALAR_TYPES,
    STRING_MATCH_OPS,
    TIME_OPS,
    Always,
    And,
    Between,
    Compare,
    Contains,
    Duration,
    History,
    In,
    InSegment,
    IsNull,
    Leaf,
    Loc,
    Node,
    Not,
    Or,
    Regex,
    StringMatch,
    TimeWindow,
)

COMBINATORS = ("all", "any", "not")
CLAUSE_KEYS = ("all", "any", "not", "field", "history", "in_segment")


@dataclass(frozen=True)
class Problem:
    """One mistake in the definitions: where it is, what is wrong and how to fix it."""

    file: str
    line: int
    definition: str | None   # "feed 'google-pl'"
    path: str                 # "where.all[2].field"
    message: str
    fix: str

    def __str__(self) -> str:
        where = " ".join(p for p in (self.definition, self.path) if p)
        head = f"{self.file}:{self.line}: " + (f"{where}: " if where else "")
        return f"{head}{self.message}; {self.fix}" if self.fix else f"{head}{self.message}"


class LocDict(dict):
    """A YAML mapping that remembers its line and the line of each key (1-based)."""

    line: int = 0
    key_lines: dict

    def line_of(self, key: Any) -> int:
        return getattr(self, "key_lines", {}).get(key, self.line)


class LocList(list):
    """A YAML sequence that remembers its line and the line of each item (1-based)."""

    line: int = 0
    item_lines: list

    def line_of(self, index: int) -> int:
        lines = getattr(self, "item_lines", [])
        return lines[index] if index < len(lines) else self.line


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """PyYAML's safe loader, on libyaml when PyYAML has it (1,000 definitions parsed in 2.5 s
    instead of 25: they are read three times per run, to validate, pin and export). Nesting is
    bounded by ``survey`` before any file is composed; ``compose_node`` bounds it once more on
    the pure-Python composer, which recurses once per level (libyaml's does not call it).
    """

    _depth = 0

    def compose_node(self, parent, index):  # noqa: ANN001 (PyYAML's signature)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise FileError(mark.line + 1, f"values nested more than {MAX_DEPTH} levels deep "
                                f"(limit {MAX_DEPTH})", "flatten the structure")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LocDict:
    loader.flatten_mapping(node)
    out = LocDict()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    out.duplicates = []
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)) and key is not None:
            raise yaml.constructor.ConstructorError(None, None, "a key must be a plain value", key_node.start_mark)
        if key in out:
            out.duplicates.append((key, key_node.start_mark.line + 1))
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LocList:
    out = LocList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)


class FileError(ValueError):
    def __init__(self, line: int, message: str, fix: str = "fix the syntax at that line") -> None:
        super().__init__(message)
        self.line = line
        self.fix = fix


MAX_YAML_VALUES = 2_000_000  # values in one file once its aliases are expanded
MAX_FILE_BYTES = 10 * 1024 * 1024  # one definitions file
MAX_DEPTH = 64               # mappings and lists inside each other
MAX_SCALAR = 65_536          # characters in one text value
# libyaml, when PyYAML has it, reads events 30x faster: the survey below runs before anything is built
_EventLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class Entry:
    """One feeds:/segments: entry as the survey saw it: its id and its for_each list lengths."""

    kind: str                     # feeds | segments
    id: Any
    line: int
    for_each_line: int = 0
    sizes: dict = field(default_factory=dict)   # placeholder name -> number of values (None: unknown)


def survey(text: str) -> list[Entry]:
    """Check nesting depth and text sizes over the parser's event stream, before composing
    anything (PyYAML's composer recurses per level), and list the entries with the length of
    each for_each list, so that the number of definitions is known before any is expanded.

    FileError when a bound is passed; a malformed file is left to the loader, which says where.
    """
    stack: list[list] = []    # [kind, path, pending key or None, children]
    anchors: dict[str, int] = {}
    entries: list[Entry] = []
    try:
        for event in yaml.parse(text, Loader=_EventLoader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                path = _survey_value(stack, event, entries, anchors)
                stack.append(["map" if isinstance(event, yaml.MappingStartEvent) else "seq", path, None, 0,
                              event.anchor])
                if len(stack) > MAX_DEPTH:
                    raise FileError(event.start_mark.line + 1, f"values nested more than {MAX_DEPTH} levels deep "
                                    f"(limit {MAX_DEPTH})", "flatten the structure")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                kind, _, _, children, anchor = stack.pop()
                if anchor and kind == "seq":
                    anchors[anchor] = children
            elif isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent)):
                if isinstance(event, yaml.ScalarEvent) and len(event.value) > MAX_SCALAR:
                    raise FileError(event.start_mark.line + 1, f"a text value of {len(event.value):,} characters "
                                    f"(limit {MAX_SCALAR:,})", "shorten it; long texts belong in the data, "
                                    "not in the definitions")
                _survey_value(stack, event, entries, anchors)
    except yaml.YAMLError as err:
        if "nesting depth" in str(getattr(err, "problem", "")):  # libyaml's own bound (1,000 levels)
            mark = getattr(err, "problem_mark", None)
            raise FileError(mark.line + 1 if mark else 1, f"values nested more than {MAX_DEPTH} levels deep "
                            f"(limit {MAX_DEPTH})", "flatten the structure") from None
        return []
    return entries


def _survey_value(stack: list[list], event: yaml.Event, entries: list[Entry], anchors: dict[str, int]) -> tuple:
    """Place one value (a key, or the value of the pending key) and return its path."""
    if not stack:
        return ()
    frame = stack[-1]
    kind, path = frame[0], frame[1]
    if kind == "map" and frame[2] is None:   # a key
        frame[2] = event.value if isinstance(event, yaml.ScalarEvent) else object()
        return path
    if kind == "map":
        key, frame[2] = frame[2], None
    else:
        key = "[]"
        frame[3] += 1
    here = (*path, key)
    line = event.start_mark.line + 1
    if len(here) == 2 and here[0] in ("feeds", "segments") and isinstance(event, yaml.MappingStartEvent):
        entries.append(Entry(here[0], None, line))
    elif len(here) == 3 and here[1] == "[]" and entries and here[2] == "id" and isinstance(event, yaml.ScalarEvent):
        entries[-1].id = event.value
    elif len(here) == 3 and here[2] == "for_each" and entries:
        entries[-1].for_each_line = line
    elif len(here) == 4 and here[2] == "for_each" and entries:
        size = anchors.get(event.anchor) if isinstance(event, yaml.AliasEvent) else None
        entries[-1].sizes[here[3]] = size
    elif len(here) == 5 and here[2] == "for_each" and entries and here[4] == "[]":
        sizes = entries[-1].sizes
        sizes[here[3]] = (sizes.get(here[3]) or 0) + 1
    return here


def _expanded_size(root: yaml.Node) -> int:
    """How many values the document holds with every alias (``*name``, ``<<: *name``) expanded.

    An alias is the same node object as its anchor, so a few lines can stand for 10^9 values
    ("billion laughs"); sizes are summed per node once, without expanding anything.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()   # entered, children not summed yet: a child among them is a cycle
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, ready = stack.pop()
        children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
                    else node.value if isinstance(node, yaml.SequenceNode) else [])
        if ready:
            open_nodes.discard(id(node))
            sizes[id(node)] = min(1 + sum(sizes.get(id(c), 1) for c in children), MAX_YAML_VALUES + 1)
        elif id(node) not in sizes and id(node) not in open_nodes:
            # (a recursive alias is left to the constructor, which reports it)
            open_nodes.add(id(node))
            stack.append((node, True))
            stack.extend((c, False) for c in children)
    return sizes.get(id(root), 0)


def _load_yaml(text: str) -> Any:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node)
        if size > MAX_YAML_VALUES:
            raise FileError(node.start_mark.line + 1,
                            f"YAML aliases (&name / *name) expand this file to more than {MAX_YAML_VALUES:,} "
                            f"values (limit {MAX_YAML_VALUES:,})", "write the values out, or use fewer nested aliases")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_text(path: str | Path) -> str:
    """The file's text; FileError when it is larger than MAX_FILE_BYTES (checked before reading)."""
    size = Path(path).stat().st_size
    if size > MAX_FILE_BYTES:
        raise FileError(1, f"a definitions file of {size:,} bytes (limit {MAX_FILE_BYTES:,})",
                        "split it into several files in the definitions directory")
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise FileError(1, f"not UTF-8 text ({err.reason} at byte {err.start})", "save the file as UTF-8") from err


def load_file(path: str | Path, text: str | None = None) -> Any:
    """Parse one YAML or JSON file into LocDict/LocList values; FileError(line, message) if malformed
    or over a bound (size, nesting, text length, aliases)."""
    if text is None:
        text = read_text(path)
        survey(text)
    try:
        return _load_yaml(text)
    except yaml.YAMLError as err:
        if str(path).endswith(".json"):
            try:
                # JSON that PyYAML (YAML 1.1) rejects, e.g. tabs: no line numbers then.
                return located(json.loads(text), 1)
            except json.JSONDecodeError as jerr:
                raise FileError(jerr.lineno, f"malformed JSON: {jerr.msg}") from jerr
            except RecursionError:
                raise FileError(1, f"values nested more than {MAX_DEPTH} levels deep (limit {MAX_DEPTH})",
                                "flatten the structure") from None
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or str(err)
        raise FileError(mark.line + 1 if mark else 1, f"malformed YAML: {problem}") from err


def located(value: Any, line: int = 0, depth: int = 0) -> Any:
    """Plain dicts and lists (JSON, code) as LocDict/LocList with a fixed ``line``; FileError when
    nested more than MAX_DEPTH levels."""
    if depth > MAX_DEPTH:
        raise FileError(line, f"values nested more than {MAX_DEPTH} levels deep (limit {MAX_DEPTH})",
                        "flatten the structure")
    if isinstance(value, dict) and not isinstance(value, LocDict):
        out = LocDict((k, located(v, line, depth + 1)) for k, v in value.items())
        out.line, out.key_lines = line, {}
        return out
    if isinstance(value, (list, tuple)) and not isinstance(value, LocList):
        out = LocList(located(v, line, depth + 1) for v in value)
        out.line, out.item_lines = line, []
        return out
    return value


class Context:
    """Where problems go while parsing one definition."""

    def __init__(self, file: str, definition: str | None, problems: list[Problem]) -> None:
        self.file = file
        self.definition = definition
        self.problems = problems

    def problem(self, line: int, path: str, message: str, fix: str = "") -> None:
        self.problems.append(Problem(self.file, line, self.definition, path, message, fix))

    def loc(self, line: int, path: str) -> Loc:
        return Loc(self.file, line, path)


def did_you_mean(name: Any, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else f"use one of: {', '.join(choices)}"


def type_label(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"number {value}"
    if isinstance(value, str):
        return f"text {value!r}"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"{type(value).__name__} {value}"


def parse_where(raw: Any, ctx: Context, line: int, path: str = "where") -> Node:
    """The ``where:`` of a definition (absent: every entity). Problems go to ``ctx``."""
    if raw is None:
        return Always(True, loc=ctx.loc(line, path))
    node = parse_clause(located(raw, line), ctx, line, path, in_history=False)
    return node if node is not None else Always(False, loc=ctx.loc(line, path))


def parse_clause(raw: Any, ctx: Context, line: int, path: str, *, in_history: bool) -> Node | None:
    """One clause: a combinator, a field leaf, a history leaf or an in_segment reference."""
    if not isinstance(raw, dict):
        ctx.problem(line, path, f"a clause must be a mapping, got {type_label(raw)}",
                    "write e.g. {field: brand, eq: Sony} or {all: [...]}")
        return None
    line = getattr(raw, "line", line)
    present = [k for k in CLAUSE_KEYS if k in raw]
    if not present:
        key = next(iter(raw), "")
        ctx.problem(raw.line_of(key) if isinstance(raw, LocDict) else line, path,
                    f"not a clause: unknown key {key!r}" if key != "" else "empty clause",
                    did_you_mean(key, CLAUSE_KEYS) if key != "" else "use all, any, not, field, history or in_segment")
        return None
    head = present[0]
    if head in COMBINATORS:
        return _parse_combinator(raw, head, ctx, line, path, in_history)
    if head == "field":
        return _parse_field_leaf(raw, ctx, line, path)
    if head == "history":
        if in_history:
            ctx.problem(line, path, "a history clause inside a history's where",
                        "filter the elements with field clauses only")
            return None
        return _parse_history(raw, ctx, line, path)
    if in_history:
        ctx.problem(line, path, "in_segment inside a history's where",
                    "move the in_segment clause out of the history")
        return None
    extra = [k for k in raw if k != "in_segment"]
    if extra:
        ctx.problem(raw.line_of(extra[0]), f"{path}.{extra[0]}", f"unexpected key {extra[0]!r} beside in_segment",
                    "write in_segment alone: {in_segment: SEGMENT_ID}")
    target = raw["in_segment"]
    if not isinstance(target, str) or not target:
        ctx.problem(raw.line_of("in_segment"), f"{path}.in_segment",
                    f"in_segment needs a segment id, got {type_label(target)}", "write {in_segment: inactive-30d}")
        return None
    return InSegment(target, loc=ctx.loc(line, path))


def _parse_combinator(raw: dict, head: str, ctx: Context, line: int, path: str, in_history: bool) -> Node | None:
    extra = [k for k in raw if k != head]
    if extra:
        ctx.problem(raw.line_of(extra[0]), f"{path}.{extra[0]}",
                    f"unexpected key {extra[0]!r} beside {head!r}",
                    f"a combinator stands alone; put {extra[0]!r} in a clause of its own inside {head}")
    value = raw[head]
    key_line = raw.line_of(head)
    if head == "not":
        child = parse_clause(value, ctx, key_line, f"{path}.not", in_history=in_history)
        return Not(child, loc=ctx.loc(line, path)) if child is not None else None
    if not isinstance(value, list) or not value:
        ctx.problem(key_line, f"{path}.{head}",
                    f"{head} needs a non-empty list of clauses, got {type_label(value) if value != [] else 'an empty list'}",
                    f"write {head}: [{{field: ..., eq: ...}}, ...]")
        return None
    children = []
    for i, item in enumerate(value):
        item_line = value.line_of(i) if isinstance(value, LocList) else key_line
        child = parse_clause(item, ctx, item_line, f"{path}.{head}[{i}]", in_history=in_history)
        if child is not None:
            children.append(child)
    if not children:
        return None
    # With a broken child the tree is never run (its problem is reported), but keeping the
    # others lets validation report their problems in the same pass.
    return (And if head == "all" else Or)(tuple(children), loc=ctx.loc(line, path))


def _ops_in(raw: dict, allowed: tuple[str, ...], skip: tuple[str, ...], ctx: Context, path: str) -> list[str]:
    """The operator keys of a leaf; an unknown key is a problem with a did-you-mean."""
    ops = []
    for key in raw:
        if key in skip:
            continue
        if key in allowed:
            ops.append(key)
        else:
            ctx.problem(raw.line_of(key), f"{path}.{key}", f"unknown operator {key!r}",
                        did_you_mean(key, (*allowed, *[s for s in skip if s != "field"])))
    return ops


def _parse_field_leaf(raw: dict, ctx: Context, line: int, path: str) -> Node | None:
    name = raw["field"]
    if not isinstance(name, str) or not name.strip():
        ctx.problem(raw.line_of("field"), f"{path}.field", f"field needs a path, got {type_label(name)}",
                    "write e.g. field: price.amount")
        return None
    return parse_leaf(raw, ctx, line, path, name, LEAF_OPS)


def parse_leaf(raw: dict, ctx: Context, line: int, path: str, field: str | None,
               allowed: tuple[str, ...]) -> Leaf | None:
    """A leaf: exactly one operator (plus ``ignore_case``) on ``field`` (None: an aggregate value)."""
    ops = _ops_in(raw, allowed, ("field", "ignore_case"), ctx, path)
    before = len(ctx.problems)
    ignore_case = raw.get("ignore_case", False)
    if not isinstance(ignore_case, bool):
        ctx.problem(raw.line_of("ignore_case"), f"{path}.ignore_case",
                    f"ignore_case takes true or false, got {type_label(ignore_case)}", "write ignore_case: true")
    if not ops:
        if len(ctx.problems) == before and not any(k not in ("field", "ignore_case") for k in raw):
            ctx.problem(line, path, "no operator", f"add one of: {', '.join(allowed)}")
        return None
    if len(ops) > 1:
        ctx.problem(raw.line_of(ops[1]), f"{path}.{ops[1]}",
                    f"more than one operator in one clause ({', '.join(ops)})",
                    "use between: [low, high], or split it into all: [{...}, {...}]")
        return None
    if len(ctx.problems) != before:
        return None
    op = ops[0]
    return _build_leaf(op, raw[op], field, ignore_case, ctx, raw.line_of(op), path)


def _scalar(value: Any, op: str, ctx: Context, line: int, path: str) -> bool:
    if value is None:
        ctx.problem(line, f"{path}.{op}", f"{op} needs a value, got nothing (null)",
                    "to test for a missing value use is_null: true")
        return False
    if not isinstance(value, SCALAR_TYPES):
        ctx.problem(line, f"{path}.{op}", f"{op} needs a single value, got {type_label(value)}",
                    "use in: [a, b] for several values" if op in ("eq", "ne") else f"write {op}: VALUE")
        return False
    return True


def _build_leaf(op: str, value: Any, field: str | None, ignore_case: bool, ctx: Context, line: int,
                path: str) -> Leaf | None:
    loc = ctx.loc(line, path)
    common = {"field": field, "ignore_case": ignore_case, "loc": loc}
    if op in COMPARE_OPS:
        return Compare(op=op, value=value, **common) if _scalar(value, op, ctx, line, path) else None
    if op == "between":
        if not isinstance(value, list) or len(value) != 2:
            ctx.problem(line, f"{path}.between", f"between needs [low, high], got {type_label(value)}",
                        "write between: [10, 500]")
            return None
        if not all(_scalar(v, "between", ctx, line, path) for v in value):
            return None
        return Between(low=value[0], high=value[1], **common)
    if op in ("in", "not_in"):
        if not isinstance(value, list):
            ctx.problem(line, f"{path}.{op}", f"{op} needs a list, got {type_label(value)}",
                        f"write {op}: [a, b] (or eq: a for one value)")
            return None
        if not value:
            ctx.problem(line, f"{path}.{op}", f"empty {op} list",
                        f"list at least one value, or remove the clause ({op}: [] would match "
                        f"{'nothing' if op == 'in' else 'everything'})")
            return None
        if not all(_scalar(v, op, ctx, line, path) for v in value):
            return None
        return In(values=tuple(value), negated=op == "not_in", **common)
    if op == "is_null":
        if not isinstance(value, bool):
            ctx.problem(line, f"{path}.is_null", f"is_null takes true or false, got {type_label(value)}",
                        "write is_null: true (missing) or is_null: false (present)")
            return None
        return IsNull(expected=value, **common)
    if op in STRING_MATCH_OPS or op == "matches":
        if not isinstance(value, str):
            ctx.problem(line, f"{path}.{op}", f"{op} needs text, got {type_label(value)}",
                        f"quote the value: {op}: \"{value}\"")
            return None
        if op == "matches":
            return Regex(pattern=value, **common)
        return StringMatch(op=op, value=value, **common)
    if op == "contains":
        return Contains(value=value, **common) if _scalar(value, op, ctx, line, path) else None
    if op in TIME_OPS:
        duration = parse_duration(value, ctx, line, f"{path}.{op}")
        return TimeWindow(op=op, duration=duration, **common) if duration else None
    raise AssertionError(op)


def parse_duration(value: Any, ctx: Context, line: int, path: str) -> Duration | None:
    try:
        return Duration.parse(value)
    except ValueError:
        ctx.problem(line, path, f"bad duration {value!r}",
                    "write a whole number and a unit (s m h d w), e.g. 30d, 12h or 2w")
        return None


# What each aggregate may be tested with.
_AGG_TEST_OPS = {
    "count": (*COMPARE_OPS, "between", "in", "not_in"),
    "sum": (*COMPARE_OPS, "between", "in", "not_in"),
    "min": (*COMPARE_OPS, "between", "in", "not_in", "is_null", *TIME_OPS),
    "max": (*COMPARE_OPS, "between", "in", "not_in", "is_null", *TIME_OPS),
}
HISTORY_KEYS = ("history", "where", "within_last", *HISTORY_AGGS)


def _parse_history(raw: dict, ctx: Context, line: int, path: str) -> Node | None:
    before = len(ctx.problems)
    name = raw["history"]
    if not isinstance(name, str) or not name:
        ctx.problem(raw.line_of("history"), f"{path}.history", f"history needs a name, got {type_label(name)}",
                    "write e.g. history: orders")
    for key in raw:
        if key not in HISTORY_KEYS:
            ctx.problem(raw.line_of(key), f"{path}.{key}", f"unknown key {key!r} in a history clause",
                        did_you_mean(key, HISTORY_KEYS))
    aggs = [k for k in HISTORY_AGGS if k in raw]
    if len(aggs) != 1:
        ctx.problem(line, path, "a history clause needs exactly one of count, sum, min, max, exists"
                    + (f", got {', '.join(aggs)}" if aggs else ""),
                    "e.g. count: {gte: 3}, sum: {field: amount, gte: 500} or exists: true")
    where = within = None
    if raw.get("where") is not None:
        where = parse_clause(raw["where"], ctx, raw.line_of("where"), f"{path}.where", in_history=True)
    if "within_last" in raw:
        within = parse_duration(raw["within_last"], ctx, raw.line_of("within_last"), f"{path}.within_last")
    if len(ctx.problems) != before:
        return None
    agg = aggs[0]
    spec, spec_line, spec_path = raw[agg], raw.line_of(agg), f"{path}.{agg}"
    agg_field = None
    if agg == "exists":
        if not isinstance(spec, bool):
            ctx.problem(spec_line, spec_path, f"exists takes true or false, got {type_label(spec)}",
                        "write exists: true (or false for none)")
            return None
        test: Leaf | None = Compare(op="eq", value=spec, loc=ctx.loc(spec_line, spec_path))
    elif not isinstance(spec, dict):
        example = "{gte: 1}" if agg == "count" else "{field: amount, gte: 500}"
        ctx.problem(spec_line, spec_path, f"{agg} needs a comparison, got {type_label(spec)}", f"write {agg}: {example}")
        return None
    else:
        if agg == "count":
            if "field" in spec:
                ctx.problem(spec.line_of("field"), f"{spec_path}.field", "count takes no field",
                            "count counts elements; use sum, min or max to aggregate a field")
                return None
        else:
            agg_field = spec.get("field")
            if not isinstance(agg_field, str) or not agg_field:
                ctx.problem(spec_line, f"{spec_path}.field", f"{agg} needs the field to aggregate",
                            f"write {agg}: {{field: amount, gte: 500}}")
                return None
        test = parse_leaf(spec, ctx, spec_line, spec_path, None, _AGG_TEST_OPS[agg])
        if test is None:
            return None
    return History(name=name, agg=agg, test=test, agg_field=agg_field, where=where, within_last=within,
                   loc=ctx.loc(line, path))
