"""Predicate tree → Spark Column, and the membership of many definitions in one pass.

Only the Column API is used: a value is always a literal (``F.lit``) and a field is always
resolved against the schema first, so nothing a user writes becomes SQL text.

Null semantics (ARCHITECTURE.md, "Predicate semantics"): every clause is true or false,
never null. A comparison with a missing value is false, except ``ne`` and ``not_in``
(``not eq``, ``not in``); history aggregates over a missing array are 0 / false / missing.
"""

from __future__ import annotations

import json
import operator
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation, localcontext
from functools import reduce
from typing import TYPE_CHECKING, Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.functions import ArrowUDFType, arrow_udf

from feedgen.generator.fields import FieldRef, coerce, resolve, to_utc
from feedgen.generator.regex import java_pattern
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
    Leaf,
    Node,
    Not,
    Or,
    Regex,
    StringMatch,
    TimeWindow,
)

if TYPE_CHECKING:
    from feedgen.generator.definitions import Definition

MATCHES = "_matches"
_COMPARE: dict[str, Callable[[Column, Column], Column]] = {
    "eq": operator.eq, "lt": operator.lt, "lte": operator.le, "gt": operator.gt, "gte": operator.ge,
}
_BARRIER = "_fg_barrier"
WORD_BITS = 16  # clauses packed into each long column handed to the Arrow UDF
# An `in` list up to this long is split into `eq` clauses, so that `brand in [A, B]` and
# `brand in [B, C]` share the `brand eq B` work; longer lists stay one hash-set lookup.
_SPLIT_IN_UP_TO = 8


def quote(name: str) -> str:
    """A top-level column name as an identifier Spark will not parse further."""
    return "`" + name.replace("`", "``") + "`"


def _empty() -> Column:
    return F.array().cast(T.ArrayType(T.IntegerType()))


def _true(column: Column) -> Column:
    return F.coalesce(column, F.lit(False))


@dataclass(frozen=True)
class Scope:
    """What a field path means here: the entity's columns, one history element, or an aggregate value."""

    schema: T.StructType
    element: Column | None = None        # the lambda variable inside a history
    value: Column | None = None          # the aggregate value a History test compares
    value_type: T.DataType | None = None

    def field(self, path: str | None) -> tuple[Column, T.DataType]:
        if path is None:
            if self.value is None:
                raise ValueError("a leaf without a field outside a history test")
            return self.value, self.value_type
        ref = resolve(self.schema, path)
        return _column(ref, self.element), ref.dtype


def _column(ref: FieldRef, element: Column | None) -> Column:
    column = element
    for kind, name in ref.steps:
        if column is None:
            column = F.col(quote(name))
        elif kind == "field":
            column = column.getField(name)
        else:
            column = column.getItem(name)  # a map key: a literal, never parsed
    return column


class Compiler:
    """Compiles one node at a time; one tiny method per node kind."""

    def __init__(self, schema: T.StructType, as_of: datetime,
                 segments: Mapping[str, Definition] | None = None) -> None:
        self.schema = schema
        self.as_of = to_utc(as_of)
        self.segments = segments or {}

    def compile(self, node: Node, scope: Scope | None = None) -> Column:
        scope = scope or Scope(self.schema)
        return getattr(self, f"_{node.kind.lower()}")(node, scope)

    # -- combinators ------------------------------------------------------------------------

    def _always(self, node: Always, scope: Scope) -> Column:
        return F.lit(node.value)

    def _and(self, node: And, scope: Scope) -> Column:
        return reduce(operator.and_, (self.compile(c, scope) for c in node.items))

    def _or(self, node: Or, scope: Scope) -> Column:
        return reduce(operator.or_, (self.compile(c, scope) for c in node.items))

    def _not(self, node: Not, scope: Scope) -> Column:
        return ~self.compile(node.child, scope)

    def _insegment(self, node: InSegment, scope: Scope) -> Column:
        return self.compile(self.segments[node.segment_id].where, scope)

    # -- leaves -----------------------------------------------------------------------------

    def _operands(self, leaf: Leaf, scope: Scope, *values) -> tuple[Column, list[Column]]:
        column, dtype = scope.field(leaf.field)
        target = dtype.elementType if isinstance(dtype, T.ArrayType) else dtype
        lits = [F.lit(coerce(v, target)) for v in values]
        if leaf.ignore_case:
            column = column if isinstance(dtype, T.ArrayType) else F.lower(column)
            lits = [F.lower(v) for v in lits]
        return column, lits

    def _compare(self, node: Compare, scope: Scope) -> Column:
        column, (value,) = self._operands(node, scope, node.value)
        if node.op == "ne":
            return ~_true(column == value)
        return _true(_COMPARE[node.op](column, value))

    def _between(self, node: Between, scope: Scope) -> Column:
        column, (low, high) = self._operands(node, scope, node.low, node.high)
        return _true((column >= low) & (column <= high))

    def _in(self, node: In, scope: Scope) -> Column:
        column, values = self._operands(node, scope, *node.values)
        found = _true(column.isin(*values))
        return ~found if node.negated else found

    def _isnull(self, node: IsNull, scope: Scope) -> Column:
        column, _ = scope.field(node.field)
        return column.isNull() if node.expected else column.isNotNull()

    def _stringmatch(self, node: StringMatch, scope: Scope) -> Column:
        column, (value,) = self._operands(node, scope, node.value)
        return _true(column.startswith(value) if node.op == "starts_with" else column.endswith(value))

    def _contains(self, node: Contains, scope: Scope) -> Column:
        column, (value,) = self._operands(node, scope, node.value)
        _, dtype = scope.field(node.field)
        if not isinstance(dtype, T.ArrayType):
            return _true(column.contains(value))
        if node.ignore_case:
            return _true(F.exists(column, lambda x: F.lower(x) == value))
        return _true(F.array_contains(column, value))

    def _regex(self, node: Regex, scope: Scope) -> Column:
        column, _ = scope.field(node.field)
        # the validator's Python meaning written out for Java (generator/regex.py)
        return _true(column.rlike(java_pattern(node.pattern, node.ignore_case)))

    def _timewindow(self, node: TimeWindow, scope: Scope) -> Column:
        column, _ = scope.field(node.field)
        start = F.lit(self.as_of - node.duration.delta)
        if node.op == "older_than":
            return _true(column < start)
        return _true((column >= start) & (column <= F.lit(self.as_of)))

    # -- histories --------------------------------------------------------------------------

    def history_value(self, node: History, scope: Scope) -> tuple[Column, T.DataType]:
        """The aggregate a History tests (count, sum, min, max or exists) and its type."""
        array, dtype = scope.field(node.name)
        element: T.StructType = dtype.elementType
        inner = Scope(element)

        def keep(x: Column) -> Column:
            scoped = replace(inner, element=x)
            conditions = []
            if node.where is not None:
                conditions.append(self.compile(node.where, scoped))
            if node.within_last is not None:
                ts, _ = scoped.field("ts")
                start = F.lit(self.as_of - node.within_last.delta)
                conditions.append(_true((ts >= start) & (ts <= F.lit(self.as_of))))
            return reduce(operator.and_, conditions)

        kept = F.filter(array, keep) if node.where is not None or node.within_last is not None else array
        if node.agg == "count":
            return F.coalesce(F.size(kept), F.lit(0)), T.IntegerType()
        if node.agg == "exists":
            return _true(F.size(kept) > 0), T.BooleanType()
        ref = resolve(element, node.agg_field)
        values = F.transform(kept, lambda x: _column(ref, x))
        if node.agg == "min":
            return F.array_min(values), ref.dtype
        if node.agg == "max":
            return F.array_max(values), ref.dtype
        acc_type = _sum_type(ref.dtype)
        zero = F.lit(0).cast(acc_type)
        total = F.aggregate(values, zero, lambda acc, v: (acc + F.coalesce(v.cast(acc_type), zero)).cast(acc_type))
        return F.coalesce(total, zero), acc_type

    def _history(self, node: History, scope: Scope) -> Column:
        value, value_type = self.history_value(node, scope)
        return self.compile(node.test, Scope(self.schema, value=value, value_type=value_type))


def _sum_type(dtype: T.DataType) -> T.DataType:
    if isinstance(dtype, T.DecimalType):
        return T.DecimalType(38, dtype.scale)
    if isinstance(dtype, (T.FloatType, T.DoubleType)):
        return T.DoubleType()
    return T.LongType()


def compile_predicate(tree: Node, schema: T.StructType, as_of: datetime,
                      segments: Mapping[str, Definition] | None = None) -> Column:
    """One predicate as a boolean Column over rows of ``schema`` (never null)."""
    return Compiler(schema, as_of, segments).compile(tree)


# -- normalisation ----------------------------------------------------------------------------

def inline_segments(node: Node, segments: Mapping[str, Definition]) -> Node:
    """``node`` with every ``in_segment`` replaced by the referenced segment's predicate."""
    if isinstance(node, InSegment):
        return inline_segments(segments[node.segment_id].where, segments)
    if isinstance(node, (And, Or)):
        return replace(node, items=tuple(inline_segments(c, segments) for c in node.items))
    if isinstance(node, Not):
        return replace(node, child=inline_segments(node.child, segments))
    return node


def normalize(node: Node) -> Node:
    """An equivalent tree in canonical form, so equal meanings give equal nodes.

    And/Or are flattened, deduplicated and sorted; ``ne``, ``not_in`` and ``between`` become
    ``not``/``and`` of simpler clauses, and short ``in`` lists become ``or`` of ``eq``, so that
    definitions share the most work. Locations are dropped.
    """
    if isinstance(node, (And, Or)):
        return _junction(type(node), [normalize(c) for c in node.items])
    if isinstance(node, Not):
        child = normalize(node.child)
        if isinstance(child, Not):
            return child.child
        if isinstance(child, Always):
            return Always(not child.value)
        return Not(child)
    if isinstance(node, Compare) and node.op == "ne":
        return Not(replace(node, op="eq", loc=None))
    if isinstance(node, Between):
        return _junction(And, [Compare(field=node.field, ignore_case=node.ignore_case, op="gte", value=node.low),
                               Compare(field=node.field, ignore_case=node.ignore_case, op="lte", value=node.high)])
    if isinstance(node, In):
        positive = (_junction(Or, [Compare(field=node.field, ignore_case=node.ignore_case, op="eq", value=v)
                                   for v in node.values])
                    if len(node.values) <= _SPLIT_IN_UP_TO else
                    In(field=node.field, ignore_case=node.ignore_case, values=tuple(sorted(set(node.values), key=repr))))
        return normalize(Not(positive)) if node.negated else positive
    if isinstance(node, History):
        return replace(node, where=normalize(node.where) if node.where is not None else None,
                       test=replace(node.test, loc=None), loc=None)
    return node.with_loc(None)


def _junction(cls: type, items: list[Node]) -> Node:
    flat: list[Node] = []
    for item in items:
        flat.extend(item.items if isinstance(item, cls) else [item])
    absorbing = cls is Or  # True absorbs an Or, False absorbs an And
    if any(isinstance(i, Always) and i.value == absorbing for i in flat):
        return Always(absorbing)
    unique = sorted({i for i in flat if not isinstance(i, Always)}, key=repr)
    if not unique:
        return Always(not absorbing)
    return unique[0] if len(unique) == 1 else cls(tuple(unique))


def atoms_of(node: Node) -> list[Node]:
    """The clauses of a normalised tree below its And/Or/Not structure, in order."""
    if isinstance(node, (And, Or)):
        return [a for c in node.items for a in atoms_of(c)]
    if isinstance(node, Not):
        return atoms_of(node.child)
    if isinstance(node, Always):
        return []
    return [node]


# -- one pass over many definitions ------------------------------------------------------------

def add_membership(df: DataFrame, definitions: Sequence[Definition], as_of: datetime, *,
                   all_segments: Mapping[str, Definition] | None = None, jvm: bool = True) -> DataFrame:
    """Return df plus one column `_matches: array<int>`: indices into `definitions` of those the row satisfies.

    Each distinct clause (after normalisation) is compiled once, whatever the number of
    definitions sharing it, and evaluated by Spark's generated code; the clauses' results
    travel as bits packed in a few ``long`` columns. The definitions themselves, and/or/not
    of those bits, are a ``Program`` of straight-line code, each distinct sub-expression one
    instruction, evaluated in the JVM per row by generator/jvm/Members.java (no row goes to
    Python); without a JDK, or with ``jvm=False``, by one Arrow UDF on whole batches with
    numpy (``Program.__call__``). So the code Spark generates and compiles grows with the distinct
    clauses, not with the definitions (1,000 definitions as Spark expressions took longer to
    compile with Janino than to run, and ran several times slower than this).

    With many distinct clauses, run Spark with ``spark.sql.codegen.hugeMethodLimit=8000``:
    one whole-stage method evaluating them all is then too big for HotSpot to JIT-compile
    and runs interpreted (3x slower at 115 clauses), while past the limit Spark gives each
    column its own method. benchmarks/predicates.py measures both.
    """
    segments = dict(all_segments) if all_segments is not None else {
        d.id: d for d in definitions if d.kind == "segment"}
    trees = [normalize(inline_segments(d.where, segments)) for d in definitions]
    atoms: dict[Node, int] = {}
    for tree in trees:
        for atom in atoms_of(tree):
            atoms.setdefault(atom, len(atoms))
    originals = [F.col(quote(c)) for c in df.columns]
    if not atoms:  # only constants: no per-row work at all
        constant = [F.lit(i) for i, tree in enumerate(trees) if tree == Always(True)]
        matches = F.array(*constant).cast(T.ArrayType(T.IntegerType())) if constant else _empty()
        return df.select(*originals, matches.alias(MATCHES))
    compiler = Compiler(df.schema, as_of, segments)
    program = Program.build(trees, atoms)
    if jvm:
        from feedgen.generator.jvm import members_column, members_ready

        if members_ready(df.sparkSession):
            leaves = JvmLeaves(df.schema, as_of)
            sources = [leaves.add(atom) for atom in atoms]   # per atom: its leaf, or None (a bit)
            in_spark = [atom for atom, source in zip(atoms, sources, strict=True) if source is None]
            bits = iter(range(len(in_spark)))
            table = [{"bit": next(bits)} if source is None else source for source in sources]
            words = _pack([compiler.compile(atom) for atom in in_spark])
            # The words as columns of their own projection, which the optimizer must not merge
            # into the one that reads them (a barrier column it cannot inline: a non-deterministic
            # id): merged, every clause would be one expression of the array the UDF reads, in one
            # generated method far beyond the JVM's 64 KB (Janino ran out of heap at 2,500 clauses).
            names = [f"_fg_w{n}" for n in range(len(words))]
            staged = df.select(*originals, *words, F.monotonically_increasing_id().alias(_BARRIER))
            members = members_column(df.sparkSession, program.as_json(table, leaves.types),
                                     [F.col(n) for n in names], leaves.struct(), F.col(_BARRIER))
            return staged.select(*originals, members.alias(MATCHES))
    words = _pack([compiler.compile(atom) for atom in atoms])
    with warnings.catch_warnings():  # "prefer type hints": a Program instance has none to give
        warnings.simplefilter("ignore", UserWarning)
        membership = arrow_udf(program, returnType=T.ArrayType(T.IntegerType()), functionType=ArrowUDFType.SCALAR)
    return df.select(*originals, membership(*words).alias(MATCHES))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INTEGRAL = (T.ByteType, T.ShortType, T.IntegerType, T.LongType)


class JvmLeaves:
    """The clauses generator/jvm/Members.java evaluates itself, from the row's field values,
    with Spark's meaning: comparisons, ranges, ``in``, ``starts_with``/``ends_with``,
    ``contains`` and ``is_null`` on string, integral, floating, decimal, boolean and timestamp
    fields (case-sensitive; ordering of strings, ``ignore_case``, regexes, lists of
    non-strings, map keys and histories stay Spark expressions). A clause Java evaluates costs
    nothing until a definition asks for it: ``and`` stops at its first false operand, so of a
    thousand feeds each scoped by its own clause, a row pays for the scopes and the few feeds
    it falls in, not for every clause of every feed.

    ``add`` returns a clause's leaf (op, field index, typed values as text) or None;
    ``struct()`` is the column of the fields the leaves read, in ``types`` order: strings,
    ``long``, ``double``, ``decimal``, ``bool``, ``micros`` (unix_micros of a
    timestamp), ``strings`` (a list of strings).
    """

    def __init__(self, schema: T.StructType, as_of: datetime) -> None:
        self.schema = schema
        self.as_of = to_utc(as_of)
        self.types: list[str] = []
        self._columns: list[Column] = []
        self._index: dict[str, int] = {}

    def struct(self) -> Column:
        if not self._columns:
            return F.struct(F.lit(None).cast("string").alias("f0"))
        return F.struct(*[c.alias(f"f{i}") for i, c in enumerate(self._columns)])

    def add(self, atom: Node) -> dict | None:
        try:
            return self._leaf(atom)
        except (ValueError, TypeError, OverflowError):
            return None

    def _field(self, path: str, want_list: bool = False) -> tuple[int, str, T.DataType] | None:
        try:
            ref = resolve(self.schema, path)
        except LookupError:
            return None
        if any(kind != "field" for kind, _ in ref.steps):
            return None
        dtype = ref.dtype
        if want_list:
            if not (isinstance(dtype, T.ArrayType) and isinstance(dtype.elementType, T.StringType)):
                return None
            kind = "strings"
        elif isinstance(dtype, T.StringType):
            kind = "string"
        elif isinstance(dtype, _INTEGRAL):
            kind = "long"
        elif isinstance(dtype, (T.FloatType, T.DoubleType)):
            kind = "double"
        elif isinstance(dtype, T.DecimalType):
            kind = "decimal"
        elif isinstance(dtype, T.BooleanType):
            kind = "bool"
        elif type(dtype) is T.TimestampType:
            kind = "micros"
        else:
            return None
        key = f"{kind}:{path}"
        if key not in self._index:
            column = _column(ref, None)
            if kind == "micros":
                column = F.unix_micros(column)
            self._index[key] = len(self._columns)
            self._columns.append(column)
            self.types.append(kind)
        return self._index[key], kind, dtype

    def _value(self, value: Any, kind: str, dtype: T.DataType | None = None) -> str:
        """A literal as the text Members.java parses for a field of ``kind`` (coerced as Spark compares)."""
        if kind == "string":
            if not isinstance(value, str):
                raise TypeError(value)
            return value
        if kind == "bool":
            if not isinstance(value, bool):
                raise TypeError(value)
            return "true" if value else "false"
        if kind == "long":
            value = coerce(value, T.LongType())
            if not isinstance(value, int) or not -(1 << 63) <= value < (1 << 63):
                raise ValueError(value)  # a fraction: Spark compares as doubles
            return str(value)
        if kind == "double":
            value = float(coerce(value, T.DoubleType()))
            return "NaN" if value != value else "Infinity" if value == float("inf") else \
                "-Infinity" if value == float("-inf") else repr(value)
        if kind == "decimal":
            value = coerce(value, T.DecimalType(38, 18))
            if not value.is_finite():
                raise ValueError(value)
            if isinstance(dtype, T.DecimalType):
                # at the field's scale when exact: Java then compares two longs, not two scales
                with localcontext() as ctx:
                    ctx.prec = 60
                    try:
                        exact = value.quantize(Decimal(1).scaleb(-dtype.scale))
                    except InvalidOperation:
                        exact = None
                if exact == value:
                    value = exact
            return str(value)
        if kind == "micros":
            return str((coerce(value, T.TimestampType()) - _EPOCH) // timedelta(microseconds=1))
        raise ValueError(kind)

    def _leaf(self, atom: Node) -> dict | None:
        if isinstance(atom, (History, Regex)) or not isinstance(atom, Leaf) or atom.field is None:
            return None
        if atom.ignore_case:
            return None
        if isinstance(atom, Contains):
            found = self._field(atom.field, want_list=True)
            if found is not None:
                return {"op": "has", "field": found[0], "values": [self._value(atom.value, "string")]}
            found = self._field(atom.field)
            if found is None or found[1] != "string":
                return None
            return {"op": "contains", "field": found[0], "values": [self._value(atom.value, "string")]}
        found = self._field(atom.field)
        if found is None:
            return None
        field, kind, dtype = found
        if isinstance(atom, IsNull):
            return {"op": "null" if atom.expected else "not_null", "field": field, "values": []}
        if isinstance(atom, TimeWindow):
            if kind != "micros":
                return None
            start, end = self.as_of - atom.duration.delta, self.as_of
            values = [self._value(start, kind, dtype)] if atom.op == "older_than" else [
                self._value(start, kind, dtype), self._value(end, kind, dtype)]
            return {"op": "lt" if atom.op == "older_than" else "between", "field": field, "values": values}
        ordered = kind in ("long", "double", "decimal", "micros")
        if isinstance(atom, Compare):
            if atom.op not in ("eq", "ne") and not ordered:
                return None  # strings order by UTF-8 bytes in Spark: left to Spark
            return {"op": atom.op, "field": field, "values": [self._value(atom.value, kind, dtype)]}
        if isinstance(atom, Between):
            if not ordered:
                return None
            return {"op": "between", "field": field, "values": [self._value(atom.low, kind, dtype), self._value(atom.high, kind, dtype)]}
        if isinstance(atom, In):
            return {"op": "not_in" if atom.negated else "in", "field": field,
                    "values": [self._value(v, kind, dtype) for v in atom.values]}
        if isinstance(atom, StringMatch):
            if kind != "string":
                return None
            return {"op": atom.op, "field": field, "values": [self._value(atom.value, kind, dtype)]}
        return None


def _pack(columns: list[Column]) -> list[Column]:
    """Boolean columns as bits of ``long`` words: bit b of word w is column WORD_BITS * w + b.

    Words are kept short so each is a small expression: when Spark falls back from one
    huge whole-stage method (see ``spark.sql.codegen.hugeMethodLimit``), each output column
    becomes its own method, small enough for the JVM to compile.
    """
    words = []
    for start in range(0, len(columns), WORD_BITS):
        bits = [F.shiftleft(c.cast("long"), b) for b, c in enumerate(columns[start:start + WORD_BITS])]
        words.append(reduce(lambda a, b: a.bitwiseOR(b), bits).alias(f"_fg_w{start // WORD_BITS}"))
    return words


class Program:
    """The definitions as straight-line code over the clause bits, evaluated with numpy.

    Each distinct sub-expression of the normalised trees is one instruction, computed once
    per batch; ``outputs[i]`` is the slot holding definition i.
    """

    def __init__(self, instructions: list[tuple], outputs: list[int], atom_count: int) -> None:
        self.instructions = instructions
        self.outputs = outputs
        self.atom_count = atom_count

    @classmethod
    def build(cls, trees: Sequence[Node], atoms: Mapping[Node, int]) -> Program:
        slots: dict[Node, int] = {}
        instructions: list[tuple] = []

        def emit(node: Node) -> int:
            if node in slots:
                return slots[node]
            if isinstance(node, (And, Or)):
                op = ("and" if isinstance(node, And) else "or", tuple(emit(c) for c in node.items))
            elif isinstance(node, Not):
                op = ("not", emit(node.child))
            elif isinstance(node, Always):
                op = ("const", node.value)
            else:
                op = ("atom", atoms[node])
            instructions.append(op)
            slots[node] = len(instructions) - 1
            return slots[node]

        outputs = [emit(tree) for tree in trees]
        return cls(instructions, outputs, len(atoms))

    def as_json(self, atoms: list[dict], fields: list[str]) -> str:
        """The program for generator/jvm/Members.java: ``instructions`` as [opcode, operands...]
        (0 clause, 1 and, 2 or, 3 not, 4 constant), ``outputs``; per clause ``atoms[i]``, its
        bit in the packed words (``{"bit": n}``, ``bits`` per word) or a ``JvmLeaves`` leaf
        over the struct of ``fields`` (their types)."""
        codes = {"atom": 0, "and": 1, "or": 2, "not": 3, "const": 4}
        instructions = [[codes[op], *(arg if isinstance(arg, tuple) else [int(arg)])]
                        for op, arg in self.instructions]
        return json.dumps({"bits": WORD_BITS, "instructions": instructions, "outputs": self.outputs,
                           "atoms": atoms, "fields": fields}, separators=(",", ":"))

    def evaluate(self, words: Sequence) -> Any:
        """Packed row bitsets: (definitions, ceil(rows / 64)) uint64, bit r of word w = row 64 * w + r.

        ``words`` are the UDF's inputs as numpy int64 arrays (one per WORD_BITS clauses). Rows are
        transposed into bitsets first, so every and/or/not works on 64 rows per machine word.
        """
        import numpy as np

        rows = len(words[0])
        padded = -(-rows // 64) * 64
        # (rows, 64 * words) clause bits → (clauses, padded rows) → 64 rows per uint64.
        by_row = np.zeros((padded, len(words)), dtype="<u8")
        for i, w in enumerate(words):
            by_row[:rows, i] = w.view("<u8")
        bits = np.unpackbits(by_row.view(np.uint8), axis=1, bitorder="little")
        clauses = np.ascontiguousarray(np.packbits(bits.T, axis=1, bitorder="little")).view("<u8")
        full = np.full(padded // 64, np.uint64(0xFFFFFFFFFFFFFFFF))
        values: list = []
        for op, arg in self.instructions:
            if op == "atom":
                values.append(clauses[(arg // WORD_BITS) * 64 + arg % WORD_BITS])
            elif op == "and":
                values.append(reduce(np.bitwise_and, (values[a] for a in arg)))
            elif op == "or":
                values.append(reduce(np.bitwise_or, (values[a] for a in arg)))
            elif op == "not":
                values.append(~values[arg])
            else:
                values.append(full if arg else np.zeros_like(full))
        return np.stack([values[slot] for slot in self.outputs]) if self.outputs else np.zeros((0, len(full)), "<u8")

    def __call__(self, *words):
        """The Arrow UDF: packed words in, ``array<int>`` of matching definition indices out."""
        import numpy as np
        import pyarrow as pa

        arrays = [w.to_numpy(zero_copy_only=False).astype(np.int64, copy=False) for w in words]
        rows = len(arrays[0])
        matrix = self.evaluate(arrays).view(np.uint8)        # (definitions, padded rows / 8)
        definition, byte = np.nonzero(matrix)                 # few bytes are non-zero
        row, definition = _set_bits(matrix[definition, byte], byte, definition)
        keep = row < rows                                     # drop the padding rows
        row, definition = row[keep], definition[keep]
        # Stable by row keeps definitions ascending within a row; uint16 sorts by radix.
        order = np.argsort(row.astype(np.uint16) if rows <= 0xFFFF else row, kind="stable")
        values = definition[order].astype(np.int32)
        offsets = np.zeros(rows + 1, dtype=np.int32)
        np.cumsum(np.bincount(row, minlength=rows), out=offsets[1:])
        # from_buffers: no copy and no per-element validation (from_arrays took 50 ms a batch).
        child = pa.Array.from_buffers(pa.int32(), len(values), [None, pa.py_buffer(values)])
        return pa.ListArray.from_buffers(pa.list_(pa.int32()), rows, [None, pa.py_buffer(offsets)], children=[child])


def _set_bits(values, byte, definition):
    """(row, definition) of every set bit of ``values`` (bytes at row-byte ``byte``)."""
    import numpy as np

    counts = _POPCOUNT[values]
    starts = np.cumsum(counts) - counts
    within = np.arange(int(counts.sum())) - np.repeat(starts, counts)
    bit = _BIT_POSITIONS[np.repeat(_BIT_START[values], counts) + within]
    return np.repeat(byte.astype(np.int64), counts) * 8 + bit, np.repeat(definition, counts)


def _bit_tables():
    import numpy as np

    positions = [[b for b in range(8) if v >> b & 1] for v in range(256)]
    counts = np.array([len(p) for p in positions], dtype=np.int64)
    return counts, np.cumsum(counts) - counts, np.array([b for p in positions for b in p], dtype=np.int64)


_POPCOUNT, _BIT_START, _BIT_POSITIONS = _bit_tables()
