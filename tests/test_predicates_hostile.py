"""Hostile values and field names are data or errors, never part of the query."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pyspark.sql import types as T

from feedgen.aggregator.schemas import OFFER_AGGREGATE_SCHEMA
from feedgen.core.errors import DefinitionError
from feedgen.generator.compile import MATCHES, add_membership, compile_predicate
from feedgen.generator.definitions import Definition, definitions_from_mapping
from feedgen.generator.fields import FieldNotFound
from feedgen.generator.tree import Compare, Regex
from tests.predicate_support import dataframe, rows_for

AS_OF = datetime(2026, 11, 22, tzinfo=UTC)
HOSTILE = [
    "'; DROP TABLE offers; --",
    "x' OR '1'='1",
    'quote " and \\" escaped',
    "back\\slash\\",
    "`title` = `title`",
    "${jndi:ldap://127.0.0.1/a}",
    "') OR true --",
    "\u0000nul and \n newline",
]


@pytest.fixture(scope="module")
def offers(spark):
    rows = rows_for(OFFER_AGGREGATE_SCHEMA, [{"offer_id": f"o{i}", "title": t, "brand": "B"} for i, t in enumerate(HOSTILE)]
                    + [{"offer_id": "plain", "title": "plain", "brand": "B"}])
    return dataframe(spark, OFFER_AGGREGATE_SCHEMA, rows)


def test_hostile_values_match_only_the_row_holding_them(offers):
    definitions = [Definition(id=f"d{i}", kind="feed", entity="offer", where=Compare(field="title", op="eq", value=v))
                   for i, v in enumerate(HOSTILE)]
    got = {r["offer_id"]: r[MATCHES] for r in add_membership(offers, definitions, AS_OF).collect()}
    assert got == {**{f"o{i}": [i] for i in range(len(HOSTILE))}, "plain": []}


def test_hostile_ne_and_contains_keep_every_other_row(offers):
    tree = Compare(field="title", op="ne", value="'; DROP TABLE offers; --")
    kept = offers.where(compile_predicate(tree, offers.schema, AS_OF)).select("offer_id").collect()
    assert sorted(r[0] for r in kept) == sorted([f"o{i}" for i in range(1, len(HOSTILE))] + ["plain"])


def test_hostile_regex_is_a_pattern_value_not_sql(offers):
    tree = Regex(field="title", pattern="^'; DROP")
    kept = offers.where(compile_predicate(tree, offers.schema, AS_OF)).select("offer_id").collect()
    assert [r[0] for r in kept] == ["o0"]


@pytest.mark.parametrize("name", ["title) OR (1=1", "title`, `brand", "price.amount; DROP", "`offer_id`", "a b"])
def test_hostile_field_names_are_rejected_by_validation(name):
    mapping = {"feeds": [{"id": "f", "template": "google_merchant_rss", "where": {"field": name, "eq": "x"}}]}
    with pytest.raises(DefinitionError) as err:
        definitions_from_mapping(mapping, "hostile.yaml")
    assert "unknown field" in str(err.value) or "has no field" in str(err.value)


@pytest.mark.parametrize("name", ["title) OR (1=1", "`offer_id`", "nope"])
def test_hostile_field_names_cannot_be_compiled(offers, name):
    with pytest.raises(FieldNotFound):
        compile_predicate(Compare(field=name, op="eq", value="x"), offers.schema, AS_OF)


def test_a_real_column_with_a_backtick_in_its_name_is_quoted(spark):
    schema = T.StructType([T.StructField("id", T.StringType()), T.StructField("we`ird", T.StringType())])
    df = spark.createDataFrame([("1", "a"), ("2", "b")], schema)
    kept = df.where(compile_predicate(Compare(field="we`ird", op="eq", value="b"), schema, AS_OF)).collect()
    assert [r["id"] for r in kept] == ["2"]


def test_map_keys_are_data(spark):
    mapping = {"feeds": [{"id": "f", "template": "google_merchant_rss",
                          "where": {"field": "attributes.x'] OR 1=1 --", "eq": "v"}}]}
    tree = definitions_from_mapping(mapping).definitions[0].where
    rows = rows_for(OFFER_AGGREGATE_SCHEMA, [{"offer_id": "a", "attributes": {"x'] OR 1=1 --": "v"}},
                                             {"offer_id": "b", "attributes": {"x": "v"}}])
    df = dataframe(spark, OFFER_AGGREGATE_SCHEMA, rows)
    assert [r["offer_id"] for r in df.where(compile_predicate(tree, df.schema, AS_OF)).collect()] == ["a"]
