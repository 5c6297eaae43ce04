"""Why an entity is or is not in a definition: every clause of its tree with its value.

The clauses are compiled by the same compiler as the generator and evaluated together
on the entity's one row, so explain shows exactly what a run would decide.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from feedgen.aggregator.schemas import ENTITY_KEYS
from feedgen.generator.compile import Compiler, Scope, quote
from feedgen.generator.definitions import Definition
from feedgen.generator.fields import to_utc
from feedgen.generator.tree import Always, And, History, InSegment, Leaf, Node, Not, Or

_NO_VALUE = object()


@dataclass
class Explained:
    """One clause: what it says, whether it holds, and the value it looked at."""

    label: str
    value: bool
    actual: Any = _NO_VALUE
    children: list[Explained] = field(default_factory=list)


def describe(node: Node) -> str:
    """A clause as one line of text, as a marketer wrote it."""
    if isinstance(node, Always):
        return "every entity" if node.value else "no entity"
    if isinstance(node, And):
        return "all"
    if isinstance(node, Or):
        return "any"
    if isinstance(node, Not):
        return "not"
    if isinstance(node, InSegment):
        return f"in_segment {node.segment_id}"
    if isinstance(node, History):
        parts = [f"history {node.name}"]
        if node.where is not None:
            parts.append(f"where ({_inline(node.where)})")
        if node.within_last is not None:
            parts.append(f"within_last {node.within_last}")
        agg = node.agg if node.agg_field is None else f"{node.agg} of {node.agg_field}"
        return " ".join(parts) + f": {agg} {_test(node.test)}"
    return _test(node)


def _test(leaf: Leaf) -> str:
    text = f"{leaf.field + ' ' if leaf.field else ''}{leaf.op} {_show(leaf.operand)}"
    return text + (" (ignore_case)" if leaf.ignore_case else "")


def _inline(node: Node) -> str:
    if isinstance(node, (And, Or)):
        joiner = " and " if isinstance(node, And) else " or "
        return joiner.join(f"({_inline(c)})" if isinstance(c, (And, Or)) else _inline(c) for c in node.items)
    if isinstance(node, Not):
        return f"not {_inline(node.child)}"
    return describe(node)


def _show(value: Any) -> str:
    if value is _NO_VALUE:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return to_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if hasattr(value, "asDict"):
        return json.dumps(value.asDict(recursive=True), default=str, ensure_ascii=False)
    if isinstance(value, dict):
        return json.dumps(value, default=str, ensure_ascii=False)
    return "null" if value is None else str(value)


def explain_entity(df: DataFrame, definition: Definition, key: str, as_of: datetime,
                   segments: Mapping[str, Definition] | None = None) -> Explained | None:
    """The explained tree of ``definition`` for the entity ``key`` of ``df``, or None if absent."""
    return explain_entities(df, [definition], key, as_of, segments)[0]


def explain_entities(df: DataFrame, definitions: list[Definition], key: str, as_of: datetime,
                     segments: Mapping[str, Definition] | None = None, *,
                     plan: ExplainPlan | None = None) -> list[Explained | None]:
    """The explained trees of ``definitions`` (all of one entity) for the entity ``key``,
    evaluated together in one Spark job; None for each when the entity is absent.

    ``plan`` is the same definitions compiled before (``ExplainPlan``), to reuse."""
    if not definitions:
        return []
    key_column = ENTITY_KEYS[definitions[0].entity]
    row_df = df.where(F.col(quote(key_column)) == F.lit(key)).limit(1)
    plan = plan or ExplainPlan(df.schema, definitions, as_of, segments)
    rows = row_df.select(*plan.columns).collect()
    if not rows:
        return [None] * len(definitions)
    return plan.explained(rows[0].asDict())


class ExplainPlan:
    """Definitions' clauses compiled for explain: each distinct leaf (a field test or a
    history test) is one boolean column and one column of the value it looked at, computed
    by the generator's compiler; ``all``/``any``/``not``/``in_segment`` are combined here
    from them. Leaves compile to true or false, never null (``compile._true``), so the
    combination is the one Spark makes. Build once per definitions, schema and ``as_of``."""

    def __init__(self, schema: Any, definitions: list[Definition], as_of: datetime,
                 segments: Mapping[str, Definition] | None = None) -> None:
        self._compiler = Compiler(schema, as_of, segments)
        self._schema = schema
        self._segments = segments or {}
        self._index: dict[Any, int] = {}
        self.columns: list = []
        self._roots = [self._visit(d.where) for d in definitions]

    def _leaf(self, node: Node) -> int:
        try:
            found = self._index.get(node)
        except TypeError:  # an operand that does not hash: compile this one on its own
            found, node = None, _Unhashable(node)
        if found is not None:
            return found
        index = len(self._index)
        self._index[node] = index
        leaf = node.node if isinstance(node, _Unhashable) else node
        self.columns.append(self._compiler.compile(leaf).alias(f"_x{index}"))
        if isinstance(leaf, History):
            value, _ = self._compiler.history_value(leaf, Scope(self._schema))
        else:
            value, _ = Scope(self._schema).field(leaf.field)
        self.columns.append(value.alias(f"_v{index}"))
        return index

    def _visit(self, node: Node) -> tuple:
        if isinstance(node, (Leaf, History)):
            return (node, self._leaf(node), ())
        if isinstance(node, InSegment):
            return (node, None, (self._visit(self._segments[node.segment_id].where),))
        return (node, None, tuple(self._visit(c) for c in node.children()))

    def explained(self, row: Mapping[str, Any]) -> list[Explained]:
        """The explained tree of each definition, from one row of ``columns``."""
        return [self._build(root, row) for root in self._roots]

    def _build(self, planned: tuple, row: Mapping[str, Any]) -> Explained:
        node, index, children = planned
        if index is not None:
            return Explained(describe(node), bool(row[f"_x{index}"]), row[f"_v{index}"])
        built = [self._build(c, row) for c in children]
        if isinstance(node, Always):
            value = node.value
        elif isinstance(node, And):
            value = all(c.value for c in built)
        elif isinstance(node, Or):
            value = any(c.value for c in built)
        elif isinstance(node, Not):
            value = not built[0].value
        else:  # in_segment: the segment's own tree
            value = built[0].value
        return Explained(describe(node), value, children=built)


@dataclass(frozen=True, eq=False)
class _Unhashable:
    """A leaf whose operands cannot be hashed: compiled on its own (compared by identity)."""

    node: Node


def format_explanation(definition: Definition, key: str, as_of: datetime, result: Explained,
                       source: str = "") -> str:
    """The explained tree as text: one clause a line, its value first, what it saw last."""
    verdict = "IS a member" if result.value else "is NOT a member"
    head = [f"{definition.label} ({definition.file}:{definition.line})",
            f"{definition.entity} {key} {verdict} at as_of {_show(as_of)}" + (f" ({source})" if source else "")]
    lines: list[tuple[str, str, str]] = []

    def walk(node: Explained, depth: int) -> None:
        seen = "" if node.actual is _NO_VALUE else f"value: {_show(node.actual)}"
        lines.append(("true " if node.value else "false", "  " * depth + node.label, seen))
        for child in node.children:
            walk(child, depth + 1)

    walk(result, 0)
    width = min(max(len(label) for _, label, _ in lines), 70)
    body = [f"  {flag}  {label:<{width}}  {seen}".rstrip() for flag, label, seen in lines]
    notes = []
    if definition.pick_one_per and result.value:
        notes.append(f"note: pick_one_per {definition.pick_one_per} keeps one {definition.entity} per "
                     f"{definition.pick_one_per} (order_by {', '.join(definition.order_by)}), which may be another one")
    return "\n".join([*head, *body, *notes])
