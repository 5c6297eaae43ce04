"""Membership evaluated in the JVM (generator/jvm/Members.java, compile.JvmLeaves) selects the
same rows as Spark's own expressions (``jvm=False``: every clause a Spark expression, the
definitions evaluated by the Arrow UDF), on the values where Java and Spark could disagree:
NaN, -0.0, infinities, decimals of another scale, integers against fractions, null structs,
non-ASCII text, lists with nulls, timestamps on a window's edges."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from pyspark.sql import types as T

from feedgen.generator.compile import MATCHES, JvmLeaves, add_membership
from feedgen.generator.definitions import Definition
from feedgen.generator.tree import (
    And,
    Between,
    Compare,
    Contains,
    Duration,
    In,
    IsNull,
    Not,
    Or,
    Regex,
    StringMatch,
    TimeWindow,
)
from tests.predicate_support import dataframe

AS_OF = datetime(2026, 11, 1, 6, tzinfo=UTC)
SCHEMA = T.StructType([
    T.StructField("id", T.StringType()),
    T.StructField("s", T.StringType()),
    T.StructField("n", T.IntegerType()),
    T.StructField("big", T.LongType()),
    T.StructField("x", T.DoubleType()),
    T.StructField("f", T.FloatType()),
    T.StructField("m", T.DecimalType(12, 2)),
    T.StructField("b", T.BooleanType()),
    T.StructField("t", T.TimestampType()),
    T.StructField("tags", T.ArrayType(T.StringType())),
    T.StructField("st", T.StructType([T.StructField("a", T.StringType()), T.StructField("k", T.LongType())])),
])
NAN, INF = math.nan, math.inf
VALUES = {
    "s": [None, "", "a", "A", "ab", "żółw", "zo\u0301", "😀x", "x😀", "a\u0000b"],
    "n": [None, -3, 0, 4, 5, 2_000_000_000],
    "big": [None, -(1 << 63), 0, 1 << 40, (1 << 63) - 1],
    "x": [None, NAN, -0.0, 0.0, 0.1, 1.5, -INF, INF, 1e308],
    "f": [None, 0.1, -0.0, 1.5, NAN],
    "m": [None, Decimal("0.00"), Decimal("10.00"), Decimal("10.01"), Decimal("-1.50")],
    "b": [None, True, False],
    "t": [None, AS_OF, AS_OF - timedelta(days=30), AS_OF - timedelta(days=30, microseconds=1),
          AS_OF + timedelta(microseconds=1), datetime(1960, 1, 1, tzinfo=UTC)],
    "tags": [None, [], ["a"], ["b", None], [None], ["A", "a"]],
    "st": [None, {"a": None, "k": None}, {"a": "a", "k": 7}, {"a": "żółw", "k": -1}],
}


def _rows(count: int = 60) -> list[dict]:
    rows = []
    for i in range(count):
        row = {"id": f"r{i}"}
        for name, values in VALUES.items():
            row[name] = values[(i * (len(name) + 3) + i // len(values)) % len(values)]
        rows.append(row)
    return rows


LEAVES = [
    Compare(field="s", op="eq", value="a"), Compare(field="s", op="ne", value="żółw"),
    In(field="s", values=("a", "😀x", "")), In(field="s", values=("ab", "A"), negated=True),
    StringMatch(field="s", op="starts_with", value="x"), StringMatch(field="s", op="ends_with", value="\u0301"),
    StringMatch(field="s", op="ends_with", value=""), Contains(field="s", value="ół"),
    Compare(field="n", op="gt", value=4), Compare(field="n", op="lt", value=4),
    Between(field="n", low=-3, high=4), In(field="n", values=(0, 5)), Compare(field="n", op="ne", value=0),
    Compare(field="big", op="lte", value=0), Compare(field="big", op="gt", value=1 << 40),
    Compare(field="x", op="eq", value=0.0), Compare(field="x", op="gt", value=1e300), Compare(field="x", op="eq", value=NAN),
    Compare(field="x", op="gte", value=INF), Between(field="x", low=-0.0, high=1.5), In(field="x", values=(0.0, 0.1)),
    Compare(field="x", op="lt", value=0), Compare(field="f", op="eq", value=0.1), Compare(field="f", op="gte", value=0.0),
    Compare(field="m", op="eq", value=10), Compare(field="m", op="gt", value=Decimal("10.005")),
    Between(field="m", low=0, high=10.0), In(field="m", values=(Decimal("10.0"), 0)), Compare(field="m", op="ne", value=-1.5),
    Compare(field="b", op="eq", value=True), Compare(field="b", op="ne", value=True), In(field="b", values=(False,)),
    Compare(field="t", op="gte", value="2026-10-02T06:00:00Z"), Compare(field="t", op="lt", value=AS_OF),
    TimeWindow(field="t", op="within_last", duration=Duration(30, "d")),
    TimeWindow(field="t", op="older_than", duration=Duration(30, "d")),
    Contains(field="tags", value="a"), Contains(field="tags", value="b"),
    IsNull(field="s"), IsNull(field="x", expected=False), IsNull(field="st.a"), IsNull(field="st.k", expected=False),
    Compare(field="st.a", op="eq", value="żółw"), Compare(field="st.k", op="gte", value=0),
    In(field="st.a", values=("a",), negated=True),
]



def _java_agrees_with_spark(spark, trees: list, rows: int = 60) -> dict:
    """Each tree a definition, evaluated over ``rows`` rows by Members.java and by Spark: the
    same definitions, in the same order, for every row; Spark's per row id."""
    definitions = [Definition(id=f"d{i}", kind="segment", entity="customer", where=t) for i, t in enumerate(trees)]
    df = dataframe(spark, SCHEMA, _rows(rows))
    in_java = {r["id"]: r[MATCHES] for r in add_membership(df, definitions, AS_OF).collect()}
    in_spark = {r["id"]: r[MATCHES] for r in add_membership(df, definitions, AS_OF, jvm=False).collect()}
    differ = [(trees[d], k) for k in in_spark for d in set(in_java[k]) ^ set(in_spark[k])]
    assert not differ, differ[:5]
    assert in_java == in_spark
    return in_spark

def test_every_leaf_the_jvm_takes_matches_spark(spark):
    leaves = JvmLeaves(SCHEMA, AS_OF)
    assert all(leaves.add(leaf) is not None for leaf in LEAVES)  # each of them evaluated in Java
    trees = [*LEAVES, *(Not(leaf) for leaf in LEAVES),
             *(And((a, b)) for a, b in zip(LEAVES, LEAVES[7:], strict=False)),
             *(Or((a, Not(b))) for a, b in zip(LEAVES, LEAVES[3:], strict=False)),
             # a mix with clauses Spark keeps: ignore_case, a regex
             And((Compare(field="s", op="eq", value="A", ignore_case=True), Regex(field="s", pattern="^a"))),
             Or((Regex(field="s", pattern="b$"), Compare(field="n", op="gt", value=0)))]
    in_spark = _java_agrees_with_spark(spark, trees)
    assert any(in_spark.values()) and not all(len(v) == len(trees) for v in in_spark.values())


def test_clauses_spark_keeps_are_not_leaves():
    leaves = JvmLeaves(SCHEMA, AS_OF)
    kept = [Compare(field="s", op="eq", value="a", ignore_case=True), Regex(field="s", pattern="a"),
            Compare(field="s", op="gt", value="a"), Compare(field="n", op="gt", value=4.5),
            IsNull(field="st"), Contains(field="s", value="a", ignore_case=True)]
    assert [leaves.add(leaf) for leaf in kept] == [None] * len(kept)


def test_definitions_guarded_by_a_looked_up_clause_match_spark(spark):
    """Feeds scoped by their own value list, id suffix or prefix (Members.java looks the row's
    value up and evaluates only the feeds it finds), next to unguarded ones, on every row."""
    trees = []
    for i in range(40):
        other = [Compare(field="n", op="gt", value=0), Not(Compare(field="b", op="eq", value=True)),
                 Between(field="m", low=0, high=10)][i % 3]
        scope = [In(field="s", values=tuple(VALUES["s"][1 + i % 5:3 + i % 5])),
                 StringMatch(field="id", op="ends_with", value=str(i % 10)),
                 StringMatch(field="st.a", op="starts_with", value=["ż", "a", ""][i % 3]),
                 Compare(field="n", op="eq", value=VALUES["n"][1 + i % 5]),
                 In(field="b", values=(i % 2 == 0,)),
                 StringMatch(field="id", op="ends_with", value=f"{i % 10}{i % 3}")][i % 6]
        trees.append(And((other, scope)) if i % 4 else scope)
    trees += [Or((trees[0], trees[1])), Not(trees[2]), Compare(field="x", op="gt", value=0)]
    in_spark = _java_agrees_with_spark(spark, trees, 120)
    assert sum(map(len, in_spark.values())) > 100


def test_definitions_guarded_by_a_range_match_spark(spark):
    """Price bands and other intervals (Members.java finds the row's slot among the bounds and
    evaluates only the definitions whose interval covers it): open and closed ends, bounds
    shared by neighbours, NaN, -0.0 and infinities, decimals of another scale, a second range
    field in the same definition, and an empty interval."""
    bounds = {"x": [-INF, -0.0, 0.0, 0.1, 1.5, 1e308, INF, NAN], "n": [-3, 0, 4, 5, 2_000_000_000],
              "m": [Decimal("-1.5"), 0, Decimal("10.0"), Decimal("10.005"), Decimal("10.01")],
              "big": [-(1 << 63), 0, 1 << 40], "t": ["1960-01-01T00:00:00Z", "2026-10-02T06:00:00Z", AS_OF]}
    trees = []
    for name, points in bounds.items():
        for i, low in enumerate(points):
            for high in points[i:i + 3]:
                trees.append(And((Compare(field=name, op=["gte", "gt"][len(trees) % 2], value=low),
                                  Compare(field=name, op=["lt", "lte"][len(trees) // 2 % 2], value=high))))
                trees.append(Between(field=name, low=low, high=high))
            trees.append(Compare(field=name, op=["gt", "gte", "lt", "lte"][i % 4], value=low))
    trees += [And((Compare(field="x", op="gte", value=0), Compare(field="x", op="gt", value=-1),
                   Compare(field="n", op="lt", value=5), Compare(field="x", op="lte", value=1.5))),
              Between(field="n", low=5, high=4),
              And((Compare(field="x", op="lt", value=1.5), Compare(field="x", op="gte", value=1.5)))]
    in_spark = _java_agrees_with_spark(spark, trees, 120)
    assert sum(map(len, in_spark.values())) > 500


def test_definitions_sharing_a_common_value_are_guarded_by_their_own_range_or_suffix_and_match_spark(spark):
    """Thirty feeds each "b is true" and its own band or id suffix: Members.java guards each
    by the clause whose values the fewest definitions share (its band, past SHARED_GUARD
    sharers of the equality; its suffix), not by the equality every one of them lists; the
    rows they take are Spark's."""
    common = Compare(field="b", op="eq", value=True)
    bands = [Between(field="m", low=Decimal(i), high=Decimal(i) + Decimal("2.5")) for i in range(-2, 10)]
    trees = [And((common, band)) for band in bands]
    trees += [And((common, StringMatch(field="id", op="ends_with", value=str(i)))) for i in range(10)]
    trees += [And((common, Compare(field="n", op="lt", value=i), Not(In(field="s", values=tuple(VALUES["s"][2:4])))))
              for i in range(6)]
    trees += [common, And((common, Compare(field="x", op="gt", value=0.5)))]
    in_spark = _java_agrees_with_spark(spark, trees, 120)
    assert sum(map(len, in_spark.values())) > 100
