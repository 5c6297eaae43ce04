"""Golden fixtures: each case's members, in Spark (one pass per fixture file) and in the reference."""

from __future__ import annotations

from datetime import datetime
from functools import cache

import pytest

from feedgen.aggregator.schemas import AGGREGATE_SCHEMAS, ENTITY_KEYS
from feedgen.generator.compile import MATCHES, add_membership
from feedgen.generator.definitions import definitions_from_mapping
from feedgen.generator.reference import members as reference_members
from tests.predicate_support import FIXTURES, dataframe, load_fixture, rows_for


@cache
def fixture(name: str) -> dict:
    """The fixture file with its cases as definitions (one segment or feed per case)."""
    data = load_fixture(FIXTURES / f"{name}.yaml")
    entity = data["entity"]
    kind, extra = ("segments", {"exports": ["ids_csv"]}) if entity == "customer" else ("feeds", {"template": "google_merchant_rss"})
    mapping = {kind: [{"id": case["name"].replace("_", "-"), "entity": entity, "where": case["where"], **extra}
                      for case in data["cases"]]}
    data["definitions"] = definitions_from_mapping(mapping, f"{name}.yaml").definitions
    data["schema"] = AGGREGATE_SCHEMAS[entity]
    data["full_rows"] = rows_for(data["schema"], data["rows"])
    data["as_of_dt"] = datetime.fromisoformat(data["as_of"].replace("Z", "+00:00"))
    return data


_spark_members: dict[str, dict[str, list[str]]] = {}


def spark_members(spark, name: str) -> dict[str, list[str]]:
    """Members of every case of the file, from one add_membership pass."""
    if name not in _spark_members:
        data = fixture(name)
        key = ENTITY_KEYS[data["entity"]]
        df = dataframe(spark, data["schema"], data["full_rows"])
        out = add_membership(df, data["definitions"], data["as_of_dt"]).select(key, MATCHES).collect()
        found: dict[str, list[str]] = {d.id: [] for d in data["definitions"]}
        for row in out:
            for index in row[MATCHES]:
                found[data["definitions"][index].id].append(row[key])
        _spark_members[name] = {k: sorted(v) for k, v in found.items()}
    return _spark_members[name]


def cases() -> list:
    return [pytest.param(name, case, id=f"{name}-{case['name']}")
            for name in ("offers", "customers") for case in load_fixture(FIXTURES / f"{name}.yaml")["cases"]]


@pytest.mark.parametrize(("name", "case"), cases())
def test_golden_members_in_spark_and_reference(spark, name, case):
    data = fixture(name)
    definition = next(d for d in data["definitions"] if d.id == case["name"].replace("_", "-"))
    expected = sorted(case["members"])
    assert spark_members(spark, name)[definition.id] == expected
    key = ENTITY_KEYS[data["entity"]]
    assert reference_members(definition.where, data["full_rows"], key, data["schema"], data["as_of_dt"]) == expected
