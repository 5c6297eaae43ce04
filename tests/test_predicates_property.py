"""Property: random predicates over random rows select the same rows in Spark as in the reference.

Each hypothesis example is one batch (a few dozen predicates over a dozen rows) evaluated
in one Spark job, both through add_membership (the shared single pass) and through
compile_predicate (one column per predicate), so few examples cover many predicates.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql import types as T

from feedgen.generator.compile import MATCHES, add_membership, compile_predicate
from feedgen.generator.definitions import Definition
from feedgen.generator.reference import evaluate
from feedgen.generator.tree import (
    And,
    Between,
    Compare,
    Contains,
    Duration,
    History,
    In,
    IsNull,
    Not,
    Or,
    Regex,
    StringMatch,
    TimeWindow,
)
from tests.predicate_support import dataframe

AS_OF = datetime(2026, 11, 22, tzinfo=UTC)
EVENT = T.StructType([T.StructField("kind", T.StringType()), T.StructField("amount", T.DecimalType(18, 2)),
                      T.StructField("ts", T.TimestampType())])
SCHEMA = T.StructType([
    T.StructField("id", T.StringType()),
    T.StructField("s", T.StringType()),
    T.StructField("n", T.IntegerType()),
    T.StructField("x", T.DoubleType()),
    T.StructField("m", T.DecimalType(18, 2)),
    T.StructField("b", T.BooleanType()),
    T.StructField("t", T.TimestampType()),
    T.StructField("tags", T.ArrayType(T.StringType())),
    T.StructField("attrs", T.MapType(T.StringType(), T.StringType())),
    T.StructField("st", T.StructType([T.StructField("a", T.StringType()), T.StructField("k", T.IntegerType())])),
    T.StructField("hist", T.ArrayType(EVENT)),
])

WORDS = ["", "a", "A", "ab", "abc", "Ab C", "żółw", "ŻÓŁW", "x'y", "b\\c"]
INTS = [-3, 0, 1, 2, 7]
FLOATS = [-1.5, 0.0, 0.25, 2.0, 7.0]
MONEY = [Decimal("0.00"), Decimal("0.99"), Decimal("10.00"), Decimal("10.01"), Decimal("250.50")]
# Instants around the edges of 1d and 30d windows before AS_OF, and after it.
TIMES = [AS_OF - timedelta(days=d, seconds=s) for d, s in ((0, 0), (1, 0), (1, 1), (29, 0), (30, 0), (30, 1), (400, 0))] \
    + [AS_OF + timedelta(hours=1)]
DURATIONS = [Duration(1, "d"), Duration(30, "d"), Duration(24, "h"), Duration(4, "w")]
PATTERNS = ["^a", "b$", "a.c", "[0-9]", "ż", "^$", "C"]


def maybe(values):
    return st.one_of(st.none(), st.sampled_from(values))


events = st.builds(lambda k, a, t: {"kind": k, "amount": a, "ts": t}, maybe(["buy", "view", "Buy"]),
                   maybe(MONEY), maybe(TIMES))
rows = st.fixed_dictionaries({
    "s": maybe(WORDS), "n": maybe(INTS), "x": maybe(FLOATS), "m": maybe(MONEY), "b": st.one_of(st.none(), st.booleans()),
    "t": maybe(TIMES), "tags": st.one_of(st.none(), st.lists(maybe(WORDS[:5]), max_size=3)),
    "attrs": st.one_of(st.none(), st.dictionaries(st.sampled_from(["k", "color"]), maybe(WORDS[:4]), max_size=2)),
    "st": st.one_of(st.none(), st.fixed_dictionaries({"a": maybe(WORDS), "k": maybe(INTS)})),
    "hist": st.one_of(st.none(), st.lists(events, max_size=4)),
})


def string_leaf(field: str) -> st.SearchStrategy:
    word = st.sampled_from(WORDS)
    case = st.booleans()
    return st.one_of(
        st.builds(lambda op, v, c: Compare(field=field, op=op, value=v, ignore_case=c),
                  st.sampled_from(["eq", "ne", "lt", "gte"]), word, case),
        st.builds(lambda v, c: In(field=field, values=tuple(v), ignore_case=c), st.lists(word, min_size=1, max_size=3), case),
        st.builds(lambda v: In(field=field, values=tuple(v), negated=True), st.lists(word, min_size=1, max_size=3)),
        st.builds(lambda op, v, c: StringMatch(field=field, op=op, value=v, ignore_case=c),
                  st.sampled_from(["starts_with", "ends_with"]), word, case),
        st.builds(lambda v, c: Contains(field=field, value=v, ignore_case=c), word, case),
        st.builds(lambda p, c: Regex(field=field, pattern=p, ignore_case=c), st.sampled_from(PATTERNS), case),
        st.builds(lambda lo, hi: Between(field=field, low=min(lo, hi), high=max(lo, hi)), word, word),
    )


def ordered_leaf(field: str, values: list) -> st.SearchStrategy:
    value = st.sampled_from(values)
    return st.one_of(
        st.builds(lambda op, v: Compare(field=field, op=op, value=v), st.sampled_from(["eq", "ne", "lt", "lte", "gt", "gte"]), value),
        st.builds(lambda lo, hi: Between(field=field, low=min(lo, hi), high=max(lo, hi)), value, value),
        st.builds(lambda v, neg: In(field=field, values=tuple(v), negated=neg), st.lists(value, min_size=1, max_size=3), st.booleans()),
    )


def time_leaf(field: str | None) -> st.SearchStrategy:
    return st.one_of(
        st.builds(lambda op, d: TimeWindow(field=field, op=op, duration=d), st.sampled_from(["within_last", "older_than"]),
                  st.sampled_from(DURATIONS)),
        st.builds(lambda op, v: Compare(field=field, op=op, value=v), st.sampled_from(["lt", "gte", "eq"]), st.sampled_from(TIMES)),
    )


def history() -> st.SearchStrategy:
    where = st.one_of(st.none(), string_leaf("kind"), ordered_leaf("amount", MONEY), time_leaf("ts"))
    within = st.one_of(st.none(), st.sampled_from(DURATIONS))
    count = st.builds(lambda op, v: Compare(op=op, value=v), st.sampled_from(["eq", "gte", "lt"]), st.sampled_from([0, 1, 2]))
    money = st.builds(lambda op, v: Compare(op=op, value=v), st.sampled_from(["gte", "lt", "eq"]), st.sampled_from(MONEY))
    return st.one_of(
        st.builds(lambda w, d, c: History(name="hist", agg="count", test=c, where=w, within_last=d), where, within, count),
        st.builds(lambda w, d, c: History(name="hist", agg="sum", agg_field="amount", test=c, where=w, within_last=d), where, within, money),
        st.builds(lambda agg, w, c: History(name="hist", agg=agg, agg_field="amount", test=c, where=w), st.sampled_from(["min", "max"]), where, money),
        st.builds(lambda w, c: History(name="hist", agg="max", agg_field="ts", test=c, where=w), where, time_leaf(None)),
        st.builds(lambda w, e: History(name="hist", agg="exists", test=Compare(op="eq", value=e), where=w), where, st.booleans()),
    )


leaves = st.one_of(
    string_leaf("s"), string_leaf("st.a"), string_leaf("attrs.color"),
    ordered_leaf("n", INTS), ordered_leaf("x", FLOATS), ordered_leaf("m", MONEY), ordered_leaf("st.k", INTS),
    st.builds(lambda op, v: Compare(field="b", op=op, value=v), st.sampled_from(["eq", "ne"]), st.booleans()),
    time_leaf("t"),
    st.builds(lambda v, c: Contains(field="tags", value=v, ignore_case=c), st.sampled_from(WORDS[:5]), st.booleans()),
    st.builds(lambda f, e: IsNull(field=f, expected=e), st.sampled_from(["s", "n", "m", "t", "tags", "attrs", "st", "st.a", "hist"]), st.booleans()),
    history(),
)
predicates = st.recursive(leaves, lambda inner: st.one_of(
    st.builds(lambda xs: And(tuple(xs)), st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda xs: Or(tuple(xs)), st.lists(inner, min_size=1, max_size=3)),
    st.builds(Not, inner),
), max_leaves=6)


@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
@given(data=st.lists(rows, min_size=1, max_size=12), trees=st.lists(predicates, min_size=1, max_size=30))
def test_random_predicates_select_the_same_rows_in_spark_and_reference(spark, data, trees):
    full = [{f.name: None for f in SCHEMA.fields} | row | {"id": f"r{i}"} for i, row in enumerate(data)]
    definitions = [Definition(id=f"p{i}", kind="segment", entity="customer", where=tree) for i, tree in enumerate(trees)]
    df = dataframe(spark, SCHEMA, full)
    out = add_membership(df, definitions, AS_OF)
    singles = [compile_predicate(tree, SCHEMA, AS_OF).alias(f"_single{i}") for i, tree in enumerate(trees)]
    got = {r["id"]: r for r in out.select("id", MATCHES, *singles).collect()}
    # the program evaluated by the Arrow UDF (no JDK) and by Members.java agree row by row
    in_python = {r["id"]: r[MATCHES] for r in add_membership(df, definitions, AS_OF, jvm=False).collect()}
    assert in_python == {k: r[MATCHES] for k, r in got.items()}
    for i, tree in enumerate(trees):
        expected = sorted(row["id"] for row in full if evaluate(tree, row, SCHEMA, AS_OF))
        shared = sorted(k for k, r in got.items() if i in r[MATCHES])
        single = sorted(k for k, r in got.items() if r[f"_single{i}"])
        assert shared == expected, f"add_membership differs for {tree}"
        assert single == expected, f"compile_predicate differs for {tree}"
        assert all(r[f"_single{i}"] is not None for r in got.values()), f"a clause was null for {tree}"
