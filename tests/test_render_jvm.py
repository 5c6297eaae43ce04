"""The JVM renderer (generator/jvm.py, RenderOffer.java) against the Python renderer, its reference.

Both render the same rows, read back from Spark so both see what Spark holds; text,
errors, warnings and the snapshot payload must be equal for every offer.
"""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from feedgen.aggregator.schemas import OFFER_AGGREGATE_SCHEMA
from feedgen.generator.generate import _missing, _required_paths, content_hash
from feedgen.generator.jvm import jvm_renderable, render_column
from feedgen.generator.offer_spec import CHANNELS
from feedgen.generator.render import get_renderer
from tests.test_render_safety import FORMULA, HOSTILE, hostile_offer

TEMPLATES = tuple(CHANNELS)   # every built-in offer template: every flavour

SPACES = [" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u2003", "\u3000", "\u2028", "\x1c", "\x85", "\x0b"]
WORDS = ["Acme", "Phone", "Zażółć", "&", "<b>", "]]>", '"q"', "'s'", ",", "=1+2", "-5", "@x", "😀",
         "\u202eRTL", "\x00", "\x7f", "\ufffe", "x" * 60, "\U0001F4F1", "é"]


def _text(rng: random.Random, words: int) -> str:
    out = [rng.choice(SPACES)] if rng.random() < 0.2 else []
    for _ in range(words):
        out.append(rng.choice(WORDS))
        out.append(rng.choice(SPACES) if rng.random() < 0.3 else " ")
    return "".join(out)


def _maybe(rng: random.Random, value, p: float = 0.06):
    r = rng.random()
    return None if r < p / 2 else "" if r < p else value


def _pick(rng: random.Random, good, bad: list, p: float = 0.06):
    """``good`` mostly, one of ``bad`` with probability ``p``: most offers stay in the feed."""
    return rng.choice(bad) if rng.random() < p else good


def _gtin(rng: random.Random) -> str | None:
    body = "".join(rng.choice("0123456789") for _ in range(rng.choice([7, 11, 12, 13])))
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    good = body + str((10 - total % 10) % 10)
    return rng.choice([good, good, good[:-1] + str((int(good[-1]) + 1) % 10), f" {good[:4]}-{good[4:]} ",
                       "١٢٣٤٥٦٧٨", "abc", "", None, "00000000"])


def _money(rng: random.Random, currency: str = "PLN", p: float = 0.3):
    amount = _pick(rng, rng.choice([Decimal("15.00"), Decimal("9.99"), Decimal("1234567.89"), Decimal("0.01")]),
                   [Decimal("0.00"), Decimal("-3.50"), None], p)
    money = {"amount": amount, "currency": _pick(rng, currency, [f" {currency.lower()} ", "EURO", "US", None,
                                                                 "\tusd\n"], p)}
    return _pick(rng, money, [None], p / 3)


def random_offer(rng: random.Random, n: int) -> dict:
    long_title = rng.random() < 0.1
    return {
        "offer_id": _pick(rng, f"o-{n}", [f" o-{n}\t", "x" * 60 + str(n), "x" * 120 + str(n), "",
                                          FORMULA + str(n)]),
        "title": _maybe(rng, _text(rng, 60 if long_title else rng.randint(1, 8))),
        "description": _maybe(rng, _text(rng, rng.choice([0, 3, 40, 1300])), 0.2),
        "link": _maybe(rng, _pick(rng, f"https://shop.example.com/o/{n}?a=1&b=2",
                                  ["HTTPS://SHOP.EXAMPLE/x", " http://s.example/x ", "ftp://x", "https:// bad",
                                   "not a url", "https://s.example/" + "p" * 2000], 0.2)),
        "image_link": _maybe(rng, _pick(rng, f"https://img.example.com/{n}.jpg",
                                        ["https://img/<x>.png", "http:/broken"])),
        "availability": _maybe(rng, rng.choice(["in_stock", " In Stock ", "SOLD_OUT", "preorder",
                                                "back_order", "available for order", "unknown"])),
        "stock": rng.choice([None, 0, 3, -1, 5]),
        "price": _money(rng, rng.choice(["PLN", "PLN", "EUR", "CZK"]), p=0.1),
        "sale_price": _money(rng, rng.choice(["PLN", "EUR"])),
        "effective_price": _money(rng),
        "condition": _maybe(rng, rng.choice(["new", " USED ", "Refurbished", "broken", "  "]), 0.3),
        "brand": _maybe(rng, _text(rng, rng.choice([1, 2, 20])), 0.3),
        "gtin": _gtin(rng),
        "mpn": _maybe(rng, _text(rng, rng.choice([1, 15])), 0.4),
        "category": rng.choice([None, {"path": _maybe(rng, _text(rng, 4)), "levels": [], "top": "x"}] + [
            {"path": _text(rng, 3), "levels": [], "top": "x"}]),
        "product": rng.choice([None, {"product_id": "p", "name": _maybe(rng, _text(rng, 3)),
                                      "brand": _maybe(rng, "Zeta"), "category_path": None,
                                      "gtin": _gtin(rng)}]),
    }


def _full(item: dict) -> dict:
    return {f.name: item.get(f.name) for f in OFFER_AGGREGATE_SCHEMA.fields}


@pytest.fixture(scope="module")
def offers(spark):
    rng = random.Random(7)
    items = [random_offer(rng, n) for n in range(400)]
    items += [hostile_offer(), hostile_offer(description=None, brand=None, mpn=None, gtin=" 5901234-123457 "),
              hostile_offer(title=None, product={"name": HOSTILE * 3, "brand": None, "gtin": None})]
    df = spark.createDataFrame([_full(i) for i in items], OFFER_AGGREGATE_SCHEMA)
    return df


@pytest.mark.parametrize("name", TEMPLATES)
def test_jvm_renderer_writes_what_the_python_renderer_writes(spark, offers, name):
    from pyspark.sql import functions as F

    assert jvm_renderable(spark, name, {}, offers.schema)
    rows = offers.select(F.struct(*offers.columns).alias("row"), render_column(name).alias("out")).collect()
    renderer = get_renderer(name)
    required = _required_paths(renderer.required_fields)
    kept = 0
    for r in rows:
        item = r["row"].asDict(recursive=True)
        want = renderer.render(item)
        key = item["offer_id"]
        out = r["out"]
        assert (key, out["text"]) == (key, want.text)
        assert (key, out["errors"]) == (key, list(want.errors))
        assert (key, out["warnings"]) == (key, list(want.warnings))
        assert (key, out["missing"]) == (key, _missing(item, required))
        if want.text is not None:
            kept += 1
            assert out["payload"] == content_hash(want.fields)[1]
            if renderer.fmt == "xml":
                etree.fromstring(f'<r xmlns:g="http://base.google.com/ns/1.0">{out["text"]}</r>'.encode())
    # the random offers reach both sides of every rule (comparators leave out more: PLN only, new only, ...)
    assert 30 < kept < len(rows) - 50


def test_jvm_renderer_is_used_only_for_the_aggregate_schema_and_built_in_offer_templates(spark):
    df = spark.createDataFrame([{"offer_id": "o-1", "price": 1.5}], "offer_id string, price double")
    assert not jvm_renderable(spark, "google_merchant_rss", {}, df.schema)
    schema = OFFER_AGGREGATE_SCHEMA
    assert jvm_renderable(spark, "meta_catalog_csv", {"max_file_bytes": 1000}, schema)
    assert jvm_renderable(spark, "generic_csv", {"fields": ["offer_id"]}, schema)   # tests/test_jvm_options.py
    assert not jvm_renderable(spark, "ids_csv", {}, schema)


def test_without_a_jdk_there_is_no_jar_and_python_renders(tmp_path, monkeypatch):
    from feedgen.generator import jvm

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert jvm.spark_jar() is None
    assert not list(tmp_path.rglob("*.jar"))


def test_the_jar_is_built_once_per_source(tmp_path, monkeypatch):
    from feedgen.generator import jvm

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = jvm.spark_jar()
    assert first is not None and first.endswith(".jar")
    built = Path(first).stat().st_mtime_ns
    assert jvm.spark_jar() == first and Path(first).stat().st_mtime_ns == built
