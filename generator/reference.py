"""A plain-Python evaluator of the predicate tree over dict rows: the semantics, for tests.

Rows are dicts as the aggregate holds them: structs and maps are dicts, arrays are lists,
timestamps are aware datetimes, money is Decimal. Kept small on purpose: it states what
the Spark compiler must do, one node kind at a time.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pyspark.sql import types as T

from feedgen.generator.fields import coerce, get_path, resolve, to_utc
from feedgen.generator.tree import (
    Always,
    And,
    Between,
    Compare,
    Contains,
    History,
    In,
    InSegment,
    IsNull,
    Node,
    Not,
    Or,
    Regex,
    StringMatch,
    TimeWindow,
)

_OPS = {"eq": operator.eq, "lt": operator.lt, "lte": operator.le, "gt": operator.gt, "gte": operator.ge}
_MISSING = object()


def evaluate(node: Node, row: Mapping[str, Any], schema: T.StructType, as_of: datetime,
             segments: Mapping[str, Any] | None = None) -> bool:
    """Whether ``row`` satisfies ``node`` (True or False, never None)."""
    return _Evaluator(schema, to_utc(as_of), segments or {}).eval(node, row, schema, _MISSING)


def members(node: Node, rows: list[Mapping[str, Any]], key: str, schema: T.StructType, as_of: datetime,
            segments: Mapping[str, Any] | None = None) -> list[Any]:
    """Sorted keys of the rows that satisfy ``node``."""
    return sorted(r[key] for r in rows if evaluate(node, r, schema, as_of, segments))


class _Evaluator:
    def __init__(self, schema: T.StructType, as_of: datetime, segments: Mapping[str, Any]) -> None:
        self.schema = schema
        self.as_of = as_of
        self.segments = segments

    def eval(self, node: Node, row: Any, schema: T.StructType, value: Any) -> bool:
        """``value`` is (aggregate, type) that a History test compares (else _MISSING)."""
        if isinstance(node, Always):
            return node.value
        if isinstance(node, And):
            return all(self.eval(c, row, schema, value) for c in node.items)
        if isinstance(node, Or):
            return any(self.eval(c, row, schema, value) for c in node.items)
        if isinstance(node, Not):
            return not self.eval(node.child, row, schema, value)
        if isinstance(node, InSegment):
            return self.eval(self.segments[node.segment_id].where, row, schema, value)
        if isinstance(node, History):
            return self.history(node, row, schema)
        got, dtype = value if node.field is None else self.get(row, schema, node.field)
        if isinstance(node, IsNull):
            return (got is None) == node.expected
        return self.leaf(node, got, dtype)

    def get(self, row: Any, schema: T.StructType, path: str) -> tuple[Any, T.DataType]:
        ref = resolve(schema, path)
        return get_path(row, ref), ref.dtype

    def leaf(self, node: Node, got: Any, dtype: T.DataType | None) -> bool:
        def lit(v: Any) -> Any:
            target = dtype.elementType if isinstance(dtype, T.ArrayType) else dtype
            v = coerce(v, target)
            return v.lower() if node.ignore_case else v

        if isinstance(got, datetime):
            got = to_utc(got)
        if node.ignore_case and isinstance(got, str):
            got = got.lower()
        if isinstance(node, Compare):
            if node.op == "ne":
                return not (got is not None and got == lit(node.value))
            return got is not None and _OPS[node.op](got, lit(node.value))
        if isinstance(node, Between):
            return got is not None and lit(node.low) <= got <= lit(node.high)
        if isinstance(node, In):
            found = got is not None and got in [lit(v) for v in node.values]
            return not found if node.negated else found
        if got is None:
            return False
        if isinstance(node, StringMatch):
            return got.startswith(lit(node.value)) if node.op == "starts_with" else got.endswith(lit(node.value))
        if isinstance(node, Contains):
            if isinstance(got, list):
                items = [x.lower() if node.ignore_case and isinstance(x, str) else x for x in got]
                return lit(node.value) in items
            return lit(node.value) in got
        if isinstance(node, Regex):
            return re.search(node.pattern, got, re.IGNORECASE if node.ignore_case else 0) is not None
        if isinstance(node, TimeWindow):
            start = self.as_of - node.duration.delta
            return got < start if node.op == "older_than" else start <= got <= self.as_of
        raise TypeError(f"unknown node {node.kind}")

    def history(self, node: History, row: Any, schema: T.StructType) -> bool:
        items, dtype = self.get(row, schema, node.name)
        element: T.StructType = dtype.elementType
        kept = []
        for item in items or []:
            if item is None:
                continue
            if node.where is not None and not self.eval(node.where, item, element, _MISSING):
                continue
            if node.within_last is not None:
                ts = item.get("ts")
                if ts is None or not (self.as_of - node.within_last.delta <= to_utc(ts) <= self.as_of):
                    continue
            kept.append(item)
        if node.agg == "count":
            value: Any = (len(kept), T.LongType())
        elif node.agg == "exists":
            value = (bool(kept), T.BooleanType())
        else:
            dtype = resolve(element, node.agg_field).dtype
            values = [v for v in (self.get(i, element, node.agg_field)[0] for i in kept) if v is not None]
            if node.agg == "sum":
                value = (sum(values, start=0), dtype)
            else:
                value = ((min if node.agg == "min" else max)(values) if values else None, dtype)
        return self.eval(node.test, row, schema, value)
