"""Check definitions against the aggregate schemas and the registry, collecting every problem.

``validate_definitions`` returns the list; ``check_definitions`` raises one DefinitionError
holding all of them. Each problem names file:line, the definition, the path inside it,
what is wrong and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pyspark.sql import types as T

from feedgen.aggregator.schemas import AGGREGATE_SCHEMAS
from feedgen.generator.definitions import Definition
from feedgen.generator.fields import FieldNotFound, coerce, describe, kind_of, leaf_paths, resolve
from feedgen.generator.parse import Problem, did_you_mean, type_label
from feedgen.generator.registry import AUDIENCE_EXPORTS, FEED_TEMPLATES, TEMPLATE_ENTITY
from feedgen.generator.tree import (
    Between,
    Compare,
    Contains,
    Duration,
    History,
    In,
    InSegment,
    IsNull,
    Leaf,
    Node,
    Regex,
    StringMatch,
    TimeWindow,
)
from feedgen.jobs.errors import DefinitionError

ID_PATTERN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_ORDERED = ("eq", "ne", "lt", "lte", "gt", "gte", "between", "in", "not_in", "is_null")
OPS_BY_KIND: dict[str, tuple[str, ...]] = {
    "string": (*_ORDERED, "starts_with", "ends_with", "contains", "matches"),
    "number": _ORDERED,
    "boolean": ("eq", "ne", "is_null"),
    "timestamp": ("eq", "ne", "lt", "lte", "gt", "gte", "between", "is_null", "within_last", "older_than"),
    "list": ("contains", "is_null"),
    "map": ("is_null",),
    "struct": ("is_null",),
    "history": ("is_null",),
}
_SORTABLE = ("string", "number", "boolean", "timestamp")
GENERIC_TEMPLATES = ("generic_csv", "generic_tsv")  # their columns are options.fields


def check_definitions(definitions: Iterable[Definition]) -> None:
    """Raise DefinitionError listing every problem; return quietly when there is none."""
    problems = validate_definitions(list(definitions))
    if problems:
        raise DefinitionError(problems)


def validate_definitions(definitions: list[Definition]) -> list[Problem]:
    problems: list[Problem] = []
    first_seen: dict[str, Definition] = {}
    for d in definitions:
        _Checker(d, problems).check()
        other = first_seen.get(d.id)
        if other is not None:
            problems.append(Problem(d.file, d.line, d.label, "id",
                                    f"duplicate id {d.id!r}, also defined at {other.file}:{other.line}",
                                    "give each feed and segment its own id"))
        else:
            first_seen[d.id] = d
    problems.extend(_segment_references(definitions, first_seen))
    return problems


class _Checker:
    """The checks of one definition."""

    def __init__(self, definition: Definition, problems: list[Problem]) -> None:
        self.d = definition
        self.problems = problems
        self.schema: T.StructType = AGGREGATE_SCHEMAS[definition.entity]

    def problem(self, line: int, path: str, message: str, fix: str = "") -> None:
        self.problems.append(Problem(self.d.file, line, self.d.label, path, message, fix))

    def node_problem(self, node: Node, suffix: str, message: str, fix: str = "") -> None:
        loc = node.loc
        line = loc.line if loc else self.d.line
        path = (loc.path if loc else "where") + (f".{suffix}" if suffix else "")
        self.problem(line, path, message, fix)

    def check(self) -> None:
        d = self.d
        if not ID_PATTERN.fullmatch(d.id):
            self.problem(d.line_of("id"), "id", f"bad id {d.id!r}",
                         "use lower-case letters, digits and single dashes, e.g. google-electronics-pl")
        self._check_outputs()
        self._check_ordering()
        self._check_sections()
        stack = [d.where]
        while stack:
            node = stack.pop()
            if isinstance(node, History):
                self._check_history(node)  # its where addresses the elements, not the entity
            elif isinstance(node, Leaf):
                self._check_leaf(node, self.schema)
            else:
                stack.extend(reversed(node.children()))

    # -- outputs, ordering, options ------------------------------------------------------

    def _check_outputs(self) -> None:
        d = self.d
        if d.kind == "feed" and d.template is not None:
            if d.template not in FEED_TEMPLATES:
                hint = (f"{d.template!r} is an audience export; feeds use a template"
                        if d.template in AUDIENCE_EXPORTS else did_you_mean(d.template, tuple(FEED_TEMPLATES)))
                self.problem(d.line_of("template"), "template", f"unknown template {d.template!r}", hint)
            elif TEMPLATE_ENTITY[d.template] != d.entity:
                self.problem(d.line_of("template"), "template",
                             f"template {d.template!r} renders {TEMPLATE_ENTITY[d.template]}s, not {d.entity}s",
                             f"use entity: {TEMPLATE_ENTITY[d.template]} or another template")
        for i, name in enumerate(d.exports):
            if name not in AUDIENCE_EXPORTS:
                hint = (f"{name!r} is a feed template; segments use exports"
                        if name in FEED_TEMPLATES else did_you_mean(name, tuple(AUDIENCE_EXPORTS)))
                self.problem(d.line_of("exports"), f"exports[{i}]", f"unknown export {name!r}", hint)
            elif TEMPLATE_ENTITY[name] != d.entity:
                self.problem(d.line_of("exports"), f"exports[{i}]",
                             f"export {name!r} is for {TEMPLATE_ENTITY[name]}s, not {d.entity}s",
                             "use an offer feed with a template instead")

    def _scalar_field(self, path: str, line: int, where: str, what: str) -> None:
        try:
            ref = resolve(self.schema, path)
        except FieldNotFound as err:
            self.problem(line, where, err.problem, _field_fix(err))
            return
        if kind_of(ref.dtype) not in _SORTABLE:
            self.problem(line, where, f"{what} needs a single value, but {path!r} is a {describe(ref.dtype)}",
                         "use a text, number, boolean or timestamp field")

    def _check_ordering(self) -> None:
        d = self.d
        if d.pick_one_per:
            self._scalar_field(d.pick_one_per, d.line_of("pick_one_per"), "pick_one_per", "pick_one_per")
        for i, item in enumerate(d.order_by):
            self._scalar_field(item.removeprefix("-"), d.line_of("order_by"), f"order_by[{i}]", "order_by")

    def _check_sections(self) -> None:
        d = self.d
        fields = d.options.get("fields")
        if fields is None and d.template in GENERIC_TEMPLATES:
            self.problem(d.line_of("template"), "options.fields", f"template {d.template!r} needs the fields to write",
                         "add options: {fields: [offer_id, title, price.amount]}")
        if fields is not None:
            if not isinstance(fields, list) or not fields or not all(isinstance(f, str) for f in fields):
                self.problem(d.line_of("options"), "options.fields", "fields must be a non-empty list of field paths",
                             "write fields: [offer_id, title, price.amount]")
            else:
                for i, f in enumerate(fields):
                    try:
                        resolve(self.schema, f)
                    except FieldNotFound as err:
                        self.problem(d.line_of("options"), f"options.fields[{i}]", err.problem, _field_fix(err))
        for key in ("max_file_bytes", "max_file_items"):
            value = d.options.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                self.problem(d.line_of("options"), f"options.{key}", f"{key} must be a whole number > 0, got {type_label(value)}",
                             f"write {key}: 100000")
        events = d.delivery.get("events")
        if events is not None and not isinstance(events, bool):
            self.problem(d.line_of("delivery"), "delivery.events", f"events takes true or false, got {type_label(events)}",
                         "write events: true")
        dests = d.delivery.get("destinations")
        if dests is not None and (not isinstance(dests, list) or not all(
                isinstance(x, str) and re.fullmatch(r"[a-z0-9_-]+", x) for x in dests)):
            self.problem(d.line_of("delivery"), "delivery.destinations",
                         "destinations must be a list of connector names", "write destinations: [meta_catalog_batch]")
        for key, value in d.gates.items():
            if key in ("enabled", "allow_empty"):
                ok, fix = isinstance(value, bool), f"write {key}: true or {key}: false"
            elif key == "refresh_after":
                ok, fix = isinstance(value, str) and _is_duration(value), "write refresh_after: 28d"
            else:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
                fix = f"write {key}: 0.2 (a share: 0.2 is 20%)"
            if not ok:
                self.problem(d.line_of("gates"), f"gates.{key}", f"bad {key}: {type_label(value)}", fix)

    # -- predicates ------------------------------------------------------------------------

    def _resolve(self, node: Node, schema: T.StructType, path: str, suffix: str = "field") -> T.DataType | None:
        try:
            return resolve(schema, path).dtype
        except FieldNotFound as err:
            self.node_problem(node, suffix, err.problem, _field_fix(err))
            return None

    def _check_leaf(self, leaf: Leaf, schema: T.StructType, value_type: T.DataType | None = None,
                    label: str | None = None) -> None:
        """A leaf on a field of ``schema``, or (``value_type``) on an aggregate value named ``label``."""
        if value_type is None:
            if leaf.field is None:
                return  # a History test: checked by _check_history
            dtype = self._resolve(leaf, schema, leaf.field)
            if dtype is None:
                return
            label = leaf.field
        else:
            dtype = value_type
        kind = kind_of(dtype)
        allowed = OPS_BY_KIND.get(kind, ())
        if leaf.op not in allowed:
            self.node_problem(leaf, leaf.op, f"operator {leaf.op!r} is not valid for {label!r} ({describe(dtype)})",
                              _op_fix(kind, dtype, label, allowed))
            return
        if leaf.ignore_case and not (kind == "string" or (kind == "list" and kind_of(dtype.elementType) == "string")):
            self.node_problem(leaf, "ignore_case", f"ignore_case applies to text, and {label!r} is {describe(dtype)}",
                              "remove ignore_case")
        if isinstance(leaf, (Compare, Contains)):
            self._check_value(leaf, leaf.op, leaf.value, dtype, label)
        elif isinstance(leaf, Between):
            low = self._check_value(leaf, "between", leaf.low, dtype, label)
            high = self._check_value(leaf, "between", leaf.high, dtype, label)
            if low is not None and high is not None and low > high:
                self.node_problem(leaf, "between", f"between [{leaf.low}, {leaf.high}] is empty: low > high",
                                  f"write between: [{leaf.high}, {leaf.low}]")
        elif isinstance(leaf, In):
            for v in leaf.values:
                self._check_value(leaf, leaf.op, v, dtype, label)
        elif isinstance(leaf, StringMatch):
            self._check_value(leaf, leaf.op, leaf.value, dtype, label)
        elif isinstance(leaf, Regex):
            try:
                re.compile(leaf.pattern)
            except re.error as err:
                self.node_problem(leaf, "matches", f"bad regex {leaf.pattern!r}: {err}",
                                  "fix the pattern (escape special characters like . ( [ with a backslash)")
        elif isinstance(leaf, (IsNull, TimeWindow)):
            pass

    def _check_value(self, leaf: Leaf, op: str, value: Any, dtype: T.DataType, label: str) -> Any:
        target = dtype.elementType if kind_of(dtype) == "list" else dtype
        try:
            return coerce(value, target)
        except ValueError as err:
            fix = f"write {err}"
            if kind_of(target) == "string" and isinstance(value, bool):
                fix = f"quote it: \"{'yes' if value else 'no'}\" (YAML reads yes/no/on/off as true/false)"
            elif kind_of(target) == "string" and value is not None:
                fix = f"quote it: \"{value}\""
            self.node_problem(leaf, op, f"wrong value type: {label!r} is {describe(target)}, got {type_label(value)}", fix)
            return None

    def _check_history(self, node: History) -> None:
        dtype = self._resolve(node, self.schema, node.name, "history")
        if dtype is None:
            return
        if kind_of(dtype) != "history":
            arrays = [p for p in leaf_paths(self.schema) if kind_of(resolve(self.schema, p).dtype) == "history"]
            self.node_problem(node, "history", f"{node.name!r} is {describe(dtype)}, not a history",
                              f"history works on {', '.join(arrays)}; use a field clause for {node.name!r}")
            return
        element: T.StructType = dtype.elementType
        if node.within_last is not None:
            ts = next((f for f in element.fields if f.name == "ts"), None)
            if ts is None or kind_of(ts.dataType) != "timestamp":
                self.node_problem(node, "within_last", f"{node.name!r} elements have no ts timestamp",
                                  "filter on one of their timestamps in where: {field: ..., within_last: 30d}")
        if node.where is not None:
            for inner in node.where.walk():
                if isinstance(inner, Leaf):
                    self._check_leaf(inner, element)
        value_type: T.DataType | None
        if node.agg == "count":
            value_type = T.LongType()
        elif node.agg == "exists":
            value_type = T.BooleanType()
        else:
            value_type = self._resolve(node, element, node.agg_field, f"{node.agg}.field")
            if value_type is None:
                return
            kind = kind_of(value_type)
            wanted = ("number",) if node.agg == "sum" else ("number", "timestamp", "string")
            if kind not in wanted:
                self.node_problem(node, f"{node.agg}.field",
                                  f"{node.agg} of {node.agg_field!r} ({describe(value_type)}) is not possible",
                                  f"{node.agg} works on {' or '.join(wanted)} fields")
                return
        self._check_leaf(node.test, element, value_type, f"{node.name} {node.agg}")


def _is_duration(text: str) -> bool:
    try:
        Duration.parse(text)
    except ValueError:
        return False
    return True


def _field_fix(err: FieldNotFound) -> str:
    if err.suggestions:
        return f"did you mean {err.suggestions[0]!r}?"
    return "check the field name against the aggregate schema (aggregator/schemas.py)"


def _op_fix(kind: str, dtype: T.DataType, label: str, allowed: tuple[str, ...]) -> str:
    if kind == "struct":
        inner = ", ".join(f"{label}.{f.name}" for f in dtype.fields[:4])
        return f"use one of its fields: {inner}"
    if kind == "history":
        return f"use a history clause: {{history: {label}, count: {{gte: 1}}}}"
    if kind == "list":
        return "use contains: VALUE to test membership"
    if kind == "map":
        return f"address a key: field: {label}.KEY"
    return f"use one of: {', '.join(allowed)}"


def _segment_references(definitions: list[Definition], by_id: Mapping[str, Definition]) -> list[Problem]:
    """Unknown targets, wrong entities and cycles of ``in_segment``."""
    problems: list[Problem] = []
    edges: dict[str, list[str]] = {}
    for d in definitions:
        for node in d.where.walk():
            if not isinstance(node, InSegment):
                continue
            loc = node.loc
            line, path = (loc.line, loc.path) if loc else (d.line, "where")
            target = by_id.get(node.segment_id)
            if target is None or target.kind != "segment":
                segment_ids = [x.id for x in definitions if x.kind == "segment"]
                what = "a feed, not a segment" if target is not None else "unknown segment"
                problems.append(Problem(d.file, line, d.label, f"{path}.in_segment", f"{what} {node.segment_id!r}",
                                        did_you_mean(node.segment_id, segment_ids) if segment_ids else "define the segment first"))
            elif target.entity != d.entity:
                problems.append(Problem(d.file, line, d.label, f"{path}.in_segment",
                                        f"segment {node.segment_id!r} is of {target.entity}s, not {d.entity}s",
                                        "refer to a segment of the same entity"))
            else:
                edges.setdefault(d.id, []).append(node.segment_id)
    reported: set[frozenset[str]] = set()
    for start in edges:
        cycle = _find_cycle(start, edges)
        if cycle and frozenset(cycle) not in reported:
            reported.add(frozenset(cycle))
            d = by_id[cycle[0]]
            problems.append(Problem(d.file, d.line, d.label, "where", "in_segment cycle: " + " → ".join([*cycle, cycle[0]]),
                                    "remove one of these in_segment references"))
    return problems


def _find_cycle(start: str, edges: Mapping[str, list[str]]) -> list[str] | None:
    """A cycle through ``start`` as a list of ids, or None."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in edges.get(node, []):
            if nxt == start:
                return path
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None
