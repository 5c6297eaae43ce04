"""Field paths against an aggregate schema: resolve ``category.path``, name types, coerce values.

Shared by the validator, the compiler, the reference evaluator and explain, so all four
agree on what a path means and what a value becomes.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

from pyspark.sql import types as T

NUMERIC = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType, T.DecimalType)


@dataclass(frozen=True)
class FieldRef:
    """A resolved path: ``steps`` are ('field', name) into structs or ('key', key) into maps."""

    path: str
    steps: tuple[tuple[str, str], ...]
    dtype: T.DataType


class FieldNotFound(LookupError):
    def __init__(self, path: str, problem: str, suggestions: list[str]) -> None:
        super().__init__(problem)
        self.path = path
        self.problem = problem
        self.suggestions = suggestions


def kind_of(dtype: T.DataType) -> str:
    """The type family a marketer sees: string number boolean timestamp list map struct history."""
    if isinstance(dtype, T.StringType):
        return "string"
    if isinstance(dtype, NUMERIC):
        return "number"
    if isinstance(dtype, T.BooleanType):
        return "boolean"
    if isinstance(dtype, (T.TimestampType, T.TimestampNTZType, T.DateType)):
        return "timestamp"
    if isinstance(dtype, T.ArrayType):
        return "history" if isinstance(dtype.elementType, T.StructType) else "list"
    if isinstance(dtype, T.MapType):
        return "map"
    if isinstance(dtype, T.StructType):
        return "struct"
    return dtype.simpleString()


def describe(dtype: T.DataType) -> str:
    kind = kind_of(dtype)
    if kind == "list":
        return f"list of {kind_of(dtype.elementType)}"
    if kind == "history":
        return "list of records (use history:)"
    return kind


def leaf_paths(schema: T.StructType, prefix: str = "") -> list[str]:
    """Every addressable path under ``schema`` (structs expanded; maps and arrays are leaves)."""
    out = []
    for f in schema.fields:
        path = f"{prefix}{f.name}"
        out.append(path)
        if isinstance(f.dataType, T.StructType):
            out.extend(leaf_paths(f.dataType, path + "."))
    return out


def suggest(name: str, candidates: list[str]) -> list[str]:
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    if not close:
        # "prise" should find "price.amount": match on the last segment too.
        tails = {c.rsplit(".", 1)[-1]: c for c in candidates}
        close = [tails[t] for t in difflib.get_close_matches(name.rsplit(".", 1)[-1], list(tails), n=3, cutoff=0.75)]
    return close


def resolve(schema: T.StructType, path: str) -> FieldRef:
    """Resolve a dotted path; a segment after a map is a key. FieldNotFound otherwise."""
    parts = path.split(".")
    steps: list[tuple[str, str]] = []
    dtype: T.DataType = schema
    for i, part in enumerate(parts):
        so_far = ".".join(parts[: i + 1])
        if isinstance(dtype, T.MapType):
            if part == "":
                raise FieldNotFound(path, f"empty map key in {path!r}", [])
            steps.append(("key", part))
            dtype = dtype.valueType
            continue
        if not isinstance(dtype, T.StructType):
            parent = ".".join(parts[:i])
            raise FieldNotFound(path, f"{parent!r} is a {describe(dtype)} and has no field {part!r}", [])
        match = next((f for f in dtype.fields if f.name == part), None)
        if match is None:
            raise FieldNotFound(path, f"unknown field {so_far!r}", suggest(path, leaf_paths(schema)))
        steps.append(("field", part))
        dtype = match.dataType
    return FieldRef(path, tuple(steps), dtype)


def get_path(row: Any, ref: FieldRef) -> Any:
    """The value at ``ref`` in a plain-Python row (dicts for structs and maps)."""
    value = row
    for _kind, name in ref.steps:
        if value is None:
            return None
        value = value.get(name) if isinstance(value, dict) else getattr(value, name, None)
    return value


def to_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def coerce(value: Any, dtype: T.DataType) -> Any:
    """``value`` as the Python type Spark compares ``dtype`` with; ValueError when it cannot be."""
    kind = kind_of(dtype)
    if kind == "list":
        return coerce(value, dtype.elementType)
    if kind == "string":
        if isinstance(value, str):
            return value
        raise ValueError("a string")
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        raise ValueError("true or false")
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
            raise ValueError("a number")
        if isinstance(dtype, T.DecimalType):
            try:
                return Decimal(str(value))
            except InvalidOperation as err:
                raise ValueError("a number") from err
        if isinstance(dtype, (T.FloatType, T.DoubleType)):
            return float(value)
        if isinstance(value, float) and not value.is_integer():
            return value  # stock > 4.5: compared as a double, as Spark does
        return int(value)
    if kind == "timestamp":
        if isinstance(value, datetime):
            return to_utc(value)
        if isinstance(value, date):
            return datetime.combine(value, time(), tzinfo=UTC)
        if isinstance(value, str):
            try:
                return to_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
            except ValueError as err:
                raise ValueError("an ISO-8601 instant like 2026-11-01T00:00:00Z") from err
        raise ValueError("an ISO-8601 instant like 2026-11-01T00:00:00Z")
    raise ValueError(f"not comparable ({describe(dtype)})")
