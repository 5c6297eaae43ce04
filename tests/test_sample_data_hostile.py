"""`feedgen sample-data` writes every kind of dirt the README's table lists, with exact counts.

A small sample (4,900 offers, 1,200 customers: 100 rows per kind per value) is enough for
every kind and every value of a many-valued kind (hostile titles and names, non-numeric
prices) to occur; `_sample.json` records each count, and the counts are those of the
Parquet files a user gets.
"""

from __future__ import annotations

import json
import subprocess
import sys
import unicodedata
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from feedgen.aggregator.sample_data import (
    HOSTILE_NAME_KINDS,
    HOSTILE_TITLE_KINDS,
    NON_NUMERIC_PRICES,
)

OFFERS, CUSTOMERS = 4_900, 1_200

# README "1. Sample data": each row of the table → where _sample.json counts it
README_TABLE = {
    "offers: missing offer_id": ("dirty", "offers", "missing_offer_id"),
    "offers: negative price": ("dirty", "offers", "negative_price"),
    "offers: non-numeric price 12,99 zł": ("dirty_values", "offers", "non_numeric_price", "comma_decimal"),
    "offers: non-numeric price abc": ("dirty_values", "offers", "non_numeric_price", "letters"),
    "offers: non-numeric price NaN": ("dirty_values", "offers", "non_numeric_price", "nan"),
    "offers: non-numeric price empty": ("dirty_values", "offers", "non_numeric_price", "empty"),
    "offers: unknown currency": ("dirty", "offers", "unknown_currency"),
    "offers: duplicate offer_id": ("dirty", "offers", "duplicate_offer_id"),
    "offers: dangling seller_id": ("dirty", "offers", "dangling_seller_id"),
    "offers: title with control characters": ("dirty_values", "offers", "hostile_title", "control_characters"),
    "offers: title with & < ]]>": ("dirty_values", "offers", "hostile_title", "markup"),
    "offers: title with emoji": ("dirty_values", "offers", "hostile_title", "emoji"),
    "offers: title with RTL text and override marks": ("dirty_values", "offers", "hostile_title",
                                                       "rtl_and_override_marks"),
    "offers: title with a CSV formula": ("dirty_values", "offers", "hostile_title", "csv_formula"),
    "offers: title with CDATA and script": ("dirty_values", "offers", "hostile_title", "cdata_and_script"),
    "offers: title with line breaks and noncharacters": ("dirty_values", "offers", "hostile_title",
                                                         "line_breaks_and_noncharacters"),
    "sellers: rating out of range": ("dirty", "sellers", "rating_out_of_range"),
    "customers: missing customer_id": ("dirty", "customers", "missing_customer_id"),
    "customers: duplicate customer_id": ("dirty", "customers", "duplicate_customer_id"),
    "customers: hostile names (formula, markup)": ("dirty_values", "customers", "hostile_name",
                                                   "csv_formula_and_markup"),
    "customers: hostile names (control characters)": ("dirty_values", "customers", "hostile_name",
                                                      "control_characters"),
    "customers: hostile names (emoji, RTL)": ("dirty_values", "customers", "hostile_name", "emoji_and_rtl"),
    "customers: bad email": ("dirty", "customers", "bad_email"),
    "orders: missing customer_id": ("dirty", "orders", "missing_customer_id"),
    "orders: dangling customer_id": ("dirty", "orders", "dangling_customer_id"),
    "orders: negative amount": ("dirty", "orders", "negative_amount"),
    "orders: non-numeric amount": ("dirty", "orders", "non_numeric_amount"),
    "events: missing type": ("dirty", "events", "missing_type"),
    "events: dangling customer_id": ("dirty", "events", "dangling_customer_id"),
}


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("sample") / "sample"
    done = subprocess.run([sys.executable, "-m", "feedgen.jobs.cli", "sample-data", "--out", str(out),
                           "--offers", str(OFFERS), "--customers", str(CUSTOMERS), "--seed", "7"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return out, json.loads((out / "_sample.json").read_text(encoding="utf-8"))


def table(out: Path, source: str) -> dict[str, list]:
    return pq.read_table(out / source).to_pydict()


def count(summary: dict, path: tuple) -> int:
    value = summary
    for key in path:
        value = value.get(key, {})
    return value or 0


def test_every_kind_in_the_readme_table_occurs_in_a_small_sample(sample):
    _, summary = sample
    missing = [row for row, path in README_TABLE.items() if count(summary, path) < 1]
    assert not missing, f"_sample.json counts none of: {missing}"
    # and the table names every kind the generator writes
    listed = {path[1:3] for path in README_TABLE.values()}
    written = {(source, kind) for source, kinds in summary["dirty"].items() for kind in kinds}
    assert written - {("offers", "non_numeric_price"), ("offers", "hostile_title"),
                      ("customers", "hostile_name")} <= listed


def test_counts_of_each_value_add_up_to_the_kind_counts(sample):
    _, summary = sample
    for source, kinds in summary["dirty_values"].items():
        for kind, values in kinds.items():
            assert sum(values.values()) == summary["dirty"][source][kind], (source, kind)
    assert set(summary["dirty_values"]["offers"]["hostile_title"]) == set(HOSTILE_TITLE_KINDS)
    assert set(summary["dirty_values"]["customers"]["hostile_name"]) == set(HOSTILE_NAME_KINDS)
    assert set(summary["dirty_values"]["offers"]["non_numeric_price"]) == set(NON_NUMERIC_PRICES)


def test_hostile_titles_hold_what_the_readme_promises(sample):
    out, summary = sample
    titles = table(out, "offers")["title"]
    found = Counter(kind for t in titles for kind, text in HOSTILE_TITLE_KINDS.items() if t == text)
    assert dict(found) == summary["dirty_values"]["offers"]["hostile_title"]
    hostile = [t for t in titles if t in HOSTILE_TITLE_KINDS.values()]
    # each README kind, as a user finds it in the data
    assert any(any(unicodedata.category(c) == "Cc" and c not in "\t\n\r" for c in t) for t in hostile)
    assert any("&" in t for t in hostile) and any("<" in t for t in hostile)
    assert any("]]>" in t for t in hostile)
    assert any(any(ord(c) > 0xFFFF for c in t) for t in hostile)   # emoji
    assert any(any(unicodedata.bidirectional(c) in ("R", "AL") for c in t) and "\u202e" in t for t in hostile)
    assert any(t.startswith("=HYPERLINK(") for t in hostile)


def test_offer_dirt_counts_are_the_rows_in_the_parquet(sample):
    out, summary = sample
    offers, dirt = table(out, "offers"), summary["dirty"]["offers"]
    assert len(offers["offer_id"]) == OFFERS == summary["rows"]["offers"]
    ids = offers["offer_id"]
    assert ids.count(None) == dirt["missing_offer_id"]
    assert sum(n - 1 for i, n in Counter(ids).items() if i is not None and n > 1) == dirt["duplicate_offer_id"]
    assert sum(p.startswith("-") for p in offers["price_amount"]) == dirt["negative_price"]
    prices = Counter(offers["price_amount"])
    assert {k: prices[v] for k, v in NON_NUMERIC_PRICES.items()} == \
        summary["dirty_values"]["offers"]["non_numeric_price"]
    assert offers["price_currency"].count("XYZ") == dirt["unknown_currency"]
    assert sum(s.startswith("s-missing-") for s in offers["seller_id"]) == dirt["dangling_seller_id"]
    assert table(out, "sellers")["rating"].count(7.5) == summary["dirty"]["sellers"]["rating_out_of_range"]


def test_customer_order_and_event_dirt_counts_are_the_rows_in_the_parquet(sample):
    out, summary = sample
    customers, dirt = table(out, "customers"), summary["dirty"]["customers"]
    assert customers["customer_id"].count(None) == dirt["missing_customer_id"]
    ids = Counter(customers["customer_id"])
    assert sum(n - 1 for i, n in ids.items() if i is not None and n > 1) == dirt["duplicate_customer_id"]
    assert customers["email"].count("not-an-email") == dirt["bad_email"]
    names = Counter(zip(customers["first_name"], customers["last_name"], strict=True))
    assert {k: names[v] for k, v in HOSTILE_NAME_KINDS.items()} == summary["dirty_values"]["customers"]["hostile_name"]

    orders, dirt = table(out, "orders"), summary["dirty"]["orders"]
    assert orders["customer_id"].count(None) == dirt["missing_customer_id"]
    assert sum((c or "").startswith("c-missing-") for c in orders["customer_id"]) == dirt["dangling_customer_id"]
    assert sum(a.startswith("-") for a in orders["amount"]) == dirt["negative_amount"]
    assert orders["amount"].count("n/a") == dirt["non_numeric_amount"]

    events, dirt = table(out, "events"), summary["dirty"]["events"]
    assert events["type"].count(None) == dirt["missing_type"]
    assert sum((c or "").startswith("c-missing-") for c in events["customer_id"]) == dirt["dangling_customer_id"]
