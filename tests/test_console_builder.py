"""The rule builder's model ↔ definition body round trip, and the field list of its pickers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from feedgen.console.builder import NotModelable, field_list, to_body, to_model

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "definitions"


def _entries() -> list[tuple[str, str, dict]]:
    out = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        for section, kind in (("feeds", "feed"), ("segments", "segment")):
            out.extend((f"{path.name}:{entry['id']}", kind, entry) for entry in data.get(section) or [])
    return out


ENTRIES = _entries()


@pytest.mark.parametrize(("label", "kind", "body"), ENTRIES, ids=[e[0] for e in ENTRIES])
def test_every_example_definition_round_trips_exactly_through_the_builder(label, kind, body):
    model = to_model(kind, body)
    # the model is plain JSON (what the page holds), and gives back the same body, key order included
    again = to_body(json.loads(json.dumps(model)))
    assert json.dumps(again) == json.dumps(body), label
    assert yaml.safe_dump(again, sort_keys=False) == yaml.safe_dump(body, sort_keys=False)


def test_the_examples_cover_every_kind_of_builder_node():
    seen = set()

    def walk(node):
        seen.add(node["type"] if node["type"] != "history" else f"history:{node['agg']}")
        for child in node.get("items") or []:
            walk(child)
        for name in ("item", "where"):
            if node.get(name):
                walk(node[name])

    for _label, kind, body in ENTRIES:
        walk(to_model(kind, body)["where"])
    assert {"group", "not", "field", "in_segment", "history:count", "history:sum", "history:exists",
            "history:min"} <= seen


def test_a_definition_built_in_the_builder_has_the_canonical_yaml_shape():
    model = {"kind": "segment", "id": "lapsed-fans", "where": {"type": "group", "op": "all", "items": [
        {"type": "history", "history": "orders", "agg": "count", "agg_field": None, "op": "gte", "value": 2,
         "where": None, "within_last": "90d"},
        {"type": "not", "item": {"type": "history", "history": "orders", "agg": "exists", "agg_field": None,
                                 "op": None, "value": True, "where": None, "within_last": "30d"}},
        {"type": "group", "op": "any", "items": [
            {"type": "field", "field": "city", "op": "in", "value": ["Kraków", "Gdańsk"]},
            {"type": "in_segment", "segment": "high-value"}]}]},
        "exports": ["ids_csv"]}
    assert to_body(model) == {"id": "lapsed-fans", "where": {"all": [
        {"history": "orders", "within_last": "90d", "count": {"gte": 2}},
        {"not": {"history": "orders", "within_last": "30d", "exists": True}},
        {"any": [{"field": "city", "in": ["Kraków", "Gdańsk"]}, {"in_segment": "high-value"}]}]},
        "exports": ["ids_csv"]}
    assert list(to_body(model)) == ["id", "where", "exports"]


def test_a_clause_the_builder_cannot_show_names_its_pointer():
    with pytest.raises(NotModelable) as err:
        to_model("feed", {"id": "x", "where": {"all": [{"field": "price.amount", "gt": 1, "lt": 5}]}})
    assert err.value.pointer == "/where/all/0"


def test_the_field_list_gives_types_and_only_the_operators_valid_for_each():
    offer = {f["path"]: f for f in field_list("offer")["fields"]}
    assert offer["price.amount"]["kind"] == "number" and "starts_with" not in offer["price.amount"]["operators"]
    assert "starts_with" in offer["category.path"]["operators"]
    assert offer["campaign_ids"]["operators"] == ["contains", "is_null"]
    assert offer["attributes"]["key_path"] == "attributes.<key>"
    customer = field_list("customer")
    orders = {h["path"]: h for h in customer["histories"]}["orders"]
    assert orders["within_last"] is True
    assert "amount" in orders["aggregates"]["sum"]["fields"] and "ts" in orders["aggregates"]["max"]["fields"]
    assert customer["exports"] and not customer["templates"]
