"""The predicate language as a small typed tree.

Every node is a frozen dataclass: its fields are its arguments, ``loc`` (where it was
written) is left out of equality, so two clauses written in different files are the same
node when they mean the same thing. Each node checks its arguments when built
(sqlglot's ``arg_types``): a malformed tree cannot exist, whatever built it.

Leaves address a ``field`` by dotted path; inside a ``History`` test the field is None,
meaning "the aggregate value" (the count, the sum, ...).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

COMPARE_OPS = ("eq", "ne", "lt", "lte", "gt", "gte")
STRING_MATCH_OPS = ("starts_with", "ends_with")
TIME_OPS = ("within_last", "older_than")
HISTORY_AGGS = ("count", "sum", "min", "max", "exists")
# Every operator a field leaf may carry, in the order they are documented.
LEAF_OPS = (*COMPARE_OPS, "between", "in", "not_in", "is_null", *STRING_MATCH_OPS,
            "contains", "matches", *TIME_OPS)

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
SCALAR_TYPES = (str, int, float, bool, Decimal, date, datetime)


@dataclass(frozen=True)
class Loc:
    """Where a node was written: file, line and the path inside the definition."""

    file: str
    line: int
    path: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Duration:
    """A span like ``30d``: a count and a unit among s m h d w."""

    amount: int
    unit: str

    def __post_init__(self) -> None:
        _require(isinstance(self.amount, int) and self.amount >= 0, self, "amount must be an int >= 0")
        _require(self.unit in _UNIT_SECONDS, self, f"unit must be one of {' '.join(_UNIT_SECONDS)}")

    @classmethod
    def parse(cls, text: Any) -> Duration:
        """``30d`` → Duration(30, 'd'); ValueError for anything else."""
        m = _DURATION.match(text.strip()) if isinstance(text, str) else None
        if not m:
            raise ValueError(f"bad duration {text!r}")
        return cls(int(m.group(1)), m.group(2))

    @property
    def delta(self) -> timedelta:
        return timedelta(seconds=self.amount * _UNIT_SECONDS[self.unit])

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"


def _require(ok: bool, node: Any, message: str) -> None:
    if not ok:
        raise TypeError(f"{type(node).__name__}: {message}")


def _is_scalar(value: Any) -> bool:
    return isinstance(value, SCALAR_TYPES)


@dataclass(frozen=True)
class Node:
    """Base of every node. Subclasses name their child-node arguments in ``child_args``."""

    child_args: ClassVar[tuple[str, ...]] = ()
    loc: Loc | None = field(default=None, compare=False, repr=False, kw_only=True)

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise TypeError when an argument is not what this node takes."""

    @property
    def kind(self) -> str:
        return type(self).__name__

    def children(self) -> tuple[Node, ...]:
        out: list[Node] = []
        for name in self.child_args:
            value = getattr(self, name)
            if isinstance(value, Node):
                out.append(value)
            elif isinstance(value, tuple):
                out.extend(value)
        return tuple(out)

    def walk(self) -> Iterator[Node]:
        """This node and every node under it, depth first."""
        yield self
        for child in self.children():
            yield from child.walk()

    def with_loc(self, loc: Loc | None) -> Node:
        return replace(self, loc=loc)


def _check_field(node: Node, name: str | None) -> None:
    _require(name is None or (isinstance(name, str) and name != ""), node, "field must be a non-empty path")


def _check_nodes(node: Node, children: Any, at_least: int) -> None:
    _require(isinstance(children, tuple) and len(children) >= at_least
             and all(isinstance(c, Node) for c in children), node,
             f"children must be a tuple of at least {at_least} nodes")


@dataclass(frozen=True)
class Always(Node):
    """A constant: every entity (True) or none (False). A definition without ``where``."""

    value: bool = True

    def check(self) -> None:
        _require(isinstance(self.value, bool), self, "value must be a bool")


@dataclass(frozen=True)
class And(Node):
    items: tuple[Node, ...] = ()
    child_args: ClassVar[tuple[str, ...]] = ("items",)

    def check(self) -> None:
        _check_nodes(self, self.items, 1)


@dataclass(frozen=True)
class Or(Node):
    items: tuple[Node, ...] = ()
    child_args: ClassVar[tuple[str, ...]] = ("items",)

    def check(self) -> None:
        _check_nodes(self, self.items, 1)


@dataclass(frozen=True)
class Not(Node):
    child: Node = None  # type: ignore[assignment]
    child_args: ClassVar[tuple[str, ...]] = ("child",)

    def check(self) -> None:
        _require(isinstance(self.child, Node), self, "child must be a node")


@dataclass(frozen=True)
class Leaf(Node):
    """A test on one field (or, inside a History, on the aggregate value: field None)."""

    field: str | None = None
    ignore_case: bool = False

    op: ClassVar[str] = ""

    @property
    def operand(self) -> Any:
        """What the leaf compares with, as written (for messages and explain)."""
        raise NotImplementedError

    def check(self) -> None:
        _check_field(self, self.field)
        _require(isinstance(self.ignore_case, bool), self, "ignore_case must be a bool")
        self.check_operand()

    def check_operand(self) -> None:
        pass


@dataclass(frozen=True)
class Compare(Leaf):
    """``eq ne lt lte gt gte``. ``ne`` is ``not eq``: true when the field is missing."""

    op: str = "eq"  # type: ignore[misc]
    value: Any = None

    @property
    def operand(self) -> Any:
        return self.value

    def check_operand(self) -> None:
        _require(self.op in COMPARE_OPS, self, f"op must be one of {COMPARE_OPS}")
        _require(_is_scalar(self.value), self, "value must be a scalar")


@dataclass(frozen=True)
class Between(Leaf):
    """``low <= field <= high``."""

    low: Any = None
    high: Any = None

    op: ClassVar[str] = "between"

    @property
    def operand(self) -> Any:
        return [self.low, self.high]

    def check_operand(self) -> None:
        _require(_is_scalar(self.low) and _is_scalar(self.high), self, "low and high must be scalars")


@dataclass(frozen=True)
class In(Leaf):
    """``in`` (or ``not_in`` when negated: true when the field is missing)."""

    values: tuple = ()
    negated: bool = False

    @property
    def op(self) -> str:
        return "not_in" if self.negated else "in"

    @property
    def operand(self) -> Any:
        return list(self.values)

    def check_operand(self) -> None:
        _require(isinstance(self.values, tuple) and all(_is_scalar(v) for v in self.values), self,
                 "values must be a tuple of scalars")
        _require(isinstance(self.negated, bool), self, "negated must be a bool")


@dataclass(frozen=True)
class IsNull(Leaf):
    """``is_null: true`` (missing) or ``is_null: false`` (present)."""

    expected: bool = True

    op: ClassVar[str] = "is_null"

    @property
    def operand(self) -> Any:
        return self.expected

    def check_operand(self) -> None:
        _require(isinstance(self.expected, bool), self, "expected must be a bool")


@dataclass(frozen=True)
class StringMatch(Leaf):
    """``starts_with`` / ``ends_with``."""

    op: str = "starts_with"  # type: ignore[misc]
    value: str = ""

    @property
    def operand(self) -> Any:
        return self.value

    def check_operand(self) -> None:
        _require(self.op in STRING_MATCH_OPS, self, f"op must be one of {STRING_MATCH_OPS}")
        _require(isinstance(self.value, str), self, "value must be a string")


@dataclass(frozen=True)
class Contains(Leaf):
    """Substring of a string field, or member of an array field."""

    value: Any = None

    op: ClassVar[str] = "contains"

    @property
    def operand(self) -> Any:
        return self.value

    def check_operand(self) -> None:
        _require(_is_scalar(self.value), self, "value must be a scalar")


@dataclass(frozen=True)
class Regex(Leaf):
    """``matches``: the pattern is found anywhere in the string (anchor with ^ and $)."""

    pattern: str = ""

    op: ClassVar[str] = "matches"

    @property
    def operand(self) -> Any:
        return self.pattern

    def check_operand(self) -> None:
        _require(isinstance(self.pattern, str), self, "pattern must be a string")


@dataclass(frozen=True)
class TimeWindow(Leaf):
    """``within_last: D`` (as_of - D <= ts <= as_of) or ``older_than: D`` (ts < as_of - D)."""

    op: str = "within_last"  # type: ignore[misc]
    duration: Duration = None  # type: ignore[assignment]

    @property
    def operand(self) -> Any:
        return str(self.duration)

    def check_operand(self) -> None:
        _require(self.op in TIME_OPS, self, f"op must be one of {TIME_OPS}")
        _require(isinstance(self.duration, Duration), self, "duration must be a Duration")


@dataclass(frozen=True)
class History(Node):
    """An aggregate over a nested array of structs (``orders``, ``events``, ``campaigns``).

    The elements kept are those matching ``where`` (fields relative to the element) and,
    with ``within_last``, whose ``ts`` lies in the window. ``agg`` of them (``count``,
    ``sum``/``min``/``max`` of ``agg_field``, ``exists``) is then tested by ``test``, a leaf
    whose field is None.
    """

    name: str = ""
    agg: str = "count"
    test: Leaf = None  # type: ignore[assignment]
    agg_field: str | None = None
    where: Node | None = None
    within_last: Duration | None = None
    child_args: ClassVar[tuple[str, ...]] = ("where", "test")

    def check(self) -> None:
        _check_field(self, self.name)
        _require(self.agg in HISTORY_AGGS, self, f"agg must be one of {HISTORY_AGGS}")
        _require(isinstance(self.test, Leaf) and self.test.field is None, self,
                 "test must be a leaf on the aggregate value (field None)")
        needs_field = self.agg in ("sum", "min", "max")
        _require((self.agg_field is not None) == needs_field, self,
                 "agg_field is needed by sum, min and max, and only by them")
        _check_field(self, self.agg_field)
        _require(self.where is None or isinstance(self.where, Node), self, "where must be a node")
        _require(self.within_last is None or isinstance(self.within_last, Duration), self,
                 "within_last must be a Duration")


@dataclass(frozen=True)
class InSegment(Node):
    """Members of another segment (its predicate is inlined when compiled)."""

    segment_id: str = ""

    def check(self) -> None:
        _require(isinstance(self.segment_id, str) and self.segment_id != "", self,
                 "segment_id must be a non-empty string")


def leaf_fields(node: Node) -> Iterator[tuple[Leaf, str | None]]:
    """Every leaf under ``node`` with the history name whose elements it addresses (or None)."""
    stack: list[tuple[Node, str | None]] = [(node, None)]
    while stack:
        current, history = stack.pop()
        if isinstance(current, History):
            if current.where is not None:
                stack.append((current.where, current.name))
            continue
        if isinstance(current, Leaf):
            yield current, history
        stack.extend((child, history) for child in reversed(current.children()))


def node_args(node: Node) -> dict[str, Any]:
    """The arguments of a node by name (without loc), for explain and debugging."""
    return {f.name: getattr(node, f.name) for f in fields(node) if f.name != "loc"}
