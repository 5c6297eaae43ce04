"""Identical clauses across definitions are computed once; 1,000 definitions in one pass."""

from __future__ import annotations

from datetime import UTC, datetime

from feedgen.aggregator.schemas import OFFER_AGGREGATE_SCHEMA
from feedgen.generator.compile import MATCHES, Program, add_membership, atoms_of, normalize
from feedgen.generator.definitions import definitions_from_mapping
from feedgen.generator.parse import Context, parse_where
from feedgen.generator.reference import evaluate
from tests.predicate_support import dataframe, rows_for

AS_OF = datetime(2026, 11, 22, tzinfo=UTC)


def tree(raw):
    return parse_where(raw, Context("t.yaml", None, []), 1)


def test_equal_meanings_normalise_to_equal_trees():
    a = tree({"all": [{"field": "brand", "in": ["A", "B"]}, {"field": "stock", "gt": 0}]})
    b = tree({"all": [{"field": "stock", "gt": 0}, {"any": [{"field": "brand", "eq": "B"}, {"field": "brand", "eq": "A"}]}]})
    assert normalize(a) == normalize(b)
    assert normalize(tree({"field": "brand", "ne": "A"})) == normalize(tree({"not": {"field": "brand", "eq": "A"}}))
    assert normalize(tree({"not": {"not": {"field": "stock", "gt": 0}}})) == normalize(tree({"field": "stock", "gt": 0}))


def test_shared_clauses_are_one_instruction_each():
    shared = [{"field": "category.top", "eq": "Electronics"}, {"field": "stock", "gt": 0},
              {"any": [{"field": "seller.rating", "gte": 4.5}, {"field": "campaign_ids", "contains": "black-friday"}]}]
    feeds = [{"id": f"f{i}", "template": "google_merchant_rss",
              "where": {"all": [*shared, {"field": "price.amount", "lt": 100 + i % 5}]}} for i in range(50)]
    trees = [normalize(d.where) for d in definitions_from_mapping({"feeds": feeds})]
    atoms = {}
    for t in trees:
        for a in atoms_of(t):
            atoms.setdefault(a, len(atoms))
    assert len(atoms) == 4 + 5  # the shared clauses once, plus the five price bounds
    program = Program.build(trees, atoms)
    ops = [op for op, _ in program.instructions]
    assert ops.count("atom") == 9 and ops.count("or") == 1  # the `any` is computed once for all 50
    assert len(set(program.outputs)) == 5                    # 50 feeds, 5 distinct predicates


def test_a_thousand_definitions_in_one_pass_match_the_reference(spark):
    feeds = [{"id": f"f{i}", "template": "google_merchant_rss",
              "where": {"all": [{"field": "category.top", "eq": ["Electronics", "Books", "Toys"][i % 3]},
                                {"field": "price.amount", "between": [i % 7, 10 + i % 13]},
                                {"not": {"field": "brand", "in": [f"b{i % 4}", f"b{i % 5}"]}}]}} for i in range(1000)]
    definitions = definitions_from_mapping({"feeds": feeds}).definitions
    rows = rows_for(OFFER_AGGREGATE_SCHEMA, [
        {"offer_id": f"o{j}", "category": {"top": ["Electronics", "Books", "Toys", None][j % 4]},
         "price": {"amount": j % 23}, "brand": [f"b{j % 6}", None][j % 2]} for j in range(40)])
    df = dataframe(spark, OFFER_AGGREGATE_SCHEMA, rows)
    out = add_membership(df, definitions, AS_OF)
    plan = out._jdf.queryExecution().executedPlan().toString()
    assert "ArrowEvalPython" not in plan and plan.count("feedgen_members_") == 1  # one JVM call for all 1,000
    in_python = add_membership(df, definitions, AS_OF, jvm=False)  # no JDK: one Arrow UDF call instead
    assert in_python._jdf.queryExecution().executedPlan().toString().count("ArrowEvalPython") == 1
    got = {r["offer_id"]: r[MATCHES] for r in out.collect()}
    assert {r["offer_id"]: r[MATCHES] for r in in_python.collect()} == got
    for row in rows:
        expected = [i for i, d in enumerate(definitions) if evaluate(d.where, row, OFFER_AGGREGATE_SCHEMA, AS_OF)]
        assert got[row["offer_id"]] == expected


def test_definitions_without_clauses_need_no_udf(spark):
    definitions = definitions_from_mapping({"feeds": [{"id": "all", "template": "google_merchant_rss"}]}).definitions
    df = dataframe(spark, OFFER_AGGREGATE_SCHEMA, rows_for(OFFER_AGGREGATE_SCHEMA, [{"offer_id": "a"}]))
    assert [r[MATCHES] for r in add_membership(df, definitions, AS_OF).collect()] == [[0]]
    assert [r[MATCHES] for r in add_membership(df, [], AS_OF).collect()] == [[]]
