"""Loading definitions: the documented format, for_each, JSON, and the examples."""

from __future__ import annotations

from datetime import timedelta

import pytest

from feedgen.core.errors import BadInput
from feedgen.core.paths import EXAMPLES_DIR
from feedgen.generator.definitions import load_definitions
from feedgen.generator.registry import AUDIENCE_EXPORTS, FEED_TEMPLATES
from feedgen.generator.tree import And, History, Not, Or, StringMatch

ISSUE_EXAMPLE = """\
feeds:
  - id: google-electronics              # [a-z0-9-]+, unique across feeds and segments
    entity: offer
    template: google_merchant_rss
    where:
      all:
        - {field: category.path, starts_with: "Electronics"}
        - {field: price.amount, between: [10, 5000]}
        - {field: stock, gt: 0}
        - any:
            - {field: seller.rating, gte: 4.5}
            - {field: campaign_ids, contains: black-friday}
        - not: {field: brand, in: [NoName, Generic]}
    pick_one_per: product_id            # optional: one offer per key ...
    order_by: [price.amount]            # ... the first after sorting; "-field" sorts descending
segments:
  - id: inactive-30d
    entity: customer
    where:
      all:
        - {history: orders, count: {gte: 1}}
        - {history: orders, within_last: 30d, count: {eq: 0}}
    exports: [google_customer_match]
  - id: no-orders-in-store-{store_id}   # expanded once per value
    for_each: {store_id: [101, 102, 103]}
    entity: customer
    where: {history: orders, where: {field: store_id, eq: "{store_id}"}, count: {eq: 0}}
"""


def write(tmp_path, text: str, name: str = "defs.yaml"):
    (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def test_the_documented_example_loads_with_files_and_lines(tmp_path):
    defset = load_definitions(write(tmp_path, ISSUE_EXAMPLE))
    assert [d.id for d in defset] == ["google-electronics", "inactive-30d", "no-orders-in-store-101",
                                      "no-orders-in-store-102", "no-orders-in-store-103"]
    feed = defset.by_id["google-electronics"]
    assert (feed.kind, feed.entity, feed.template, feed.pick_one_per, feed.order_by) == (
        "feed", "offer", "google_merchant_rss", "product_id", ("price.amount",))
    assert feed.file.endswith("defs.yaml") and feed.line == 2
    assert isinstance(feed.where, And) and isinstance(feed.where.items[3], Or) and isinstance(feed.where.items[4], Not)
    first = feed.where.items[0]
    assert isinstance(first, StringMatch) and first.loc.line == 7 and first.loc.path == "where.all[0]"


def test_for_each_expands_ids_values_and_params(tmp_path):
    defset = load_definitions(write(tmp_path, ISSUE_EXAMPLE))
    store = defset.by_id["no-orders-in-store-102"]
    assert store.params == {"store_id": 102} and store.source_id == "no-orders-in-store-{store_id}"
    assert isinstance(store.where, History) and store.where.where.value == "102"


def test_for_each_with_two_names_is_a_product(tmp_path):
    text = """\
segments:
  - id: "store-{store}-{tier}"
    for_each: {store: [101, 102], tier: [gold, silver]}
    where:
      all:
        - {field: attributes.loyalty_tier, eq: "{tier}"}
        - {history: orders, where: {field: store_id, eq: "{store}"}, exists: true}
"""
    ids = [d.id for d in load_definitions(write(tmp_path, text))]
    assert ids == ["store-101-gold", "store-101-silver", "store-102-gold", "store-102-silver"]


def test_double_braces_are_a_literal_brace(tmp_path):
    text = 'feeds:\n  - {id: braces, template: google_merchant_rss, where: {field: title, contains: "{{size}}"}}\n'
    assert load_definitions(write(tmp_path, text)).definitions[0].where.value == "{size}"


def test_json_files_load_with_lines(tmp_path):
    text = '{\n  "segments": [\n    {"id": "gold", "where": {"field": "attributes.loyalty_tier", "eq": "gold"}}\n  ]\n}\n'
    d = load_definitions(write(tmp_path, text, "segments.json")).definitions[0]
    assert (d.id, d.entity, d.line, d.where.loc.line) == ("gold", "customer", 3, 3)


def test_outputs_delivery_gates_and_refresh(tmp_path):
    text = """\
feeds:
  - id: partner
    template: generic_csv
    options: {fields: [offer_id, price.amount], max_file_items: 1000}
    delivery: {events: true, destinations: [meta_catalog_batch]}
    gates: {max_share_removed: 0.1, allow_empty: true}
    refresh_after: 14d
"""
    d = load_definitions(write(tmp_path, text)).definitions[0]
    assert d.options == {"fields": ["offer_id", "price.amount"], "max_file_items": 1000}
    assert d.delivery == {"events": True, "destinations": ["meta_catalog_batch"]}
    assert d.gates == {"max_share_removed": 0.1, "allow_empty": True}
    assert d.refresh_after == timedelta(days=14)


def test_unknown_definition_id_names_the_closest(tmp_path):
    defset = load_definitions(write(tmp_path, ISSUE_EXAMPLE))
    with pytest.raises(BadInput, match="did you mean 'inactive-30d'"):
        defset.get("inactive-30")


def test_the_examples_load_and_cover_every_template_and_export():
    defset = load_definitions(EXAMPLES_DIR / "definitions")
    assert len(defset.feeds) >= 20 and len(defset.segments) >= 10
    assert {d.template for d in defset.feeds} == set(FEED_TEMPLATES)
    assert {e for d in defset.segments for e in d.exports} == set(AUDIENCE_EXPORTS)
    stores = [d for d in defset.segments if d.source_id == "no-orders-in-store-{store_id}"]
    assert [d.params["store_id"] for d in stores] == list(range(101, 121))
    assert {"inactive-30d", "high-value"} <= set(defset.by_id)
