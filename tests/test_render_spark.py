from __future__ import annotations

import datetime as dt
from decimal import Decimal

from lxml import etree

from feedgen.aggregator.schemas import CUSTOMER_AGGREGATE_SCHEMA, OFFER_AGGREGATE_SCHEMA
from feedgen.generator.render import get_renderer

G = "{http://base.google.com/ns/1.0}"


def _render_partition(rows):
    # what the generator does on an executor: look the renderer up there, by name
    renderer = get_renderer("google_merchant_rss")
    for row in rows:
        result = renderer.render(row.asDict(recursive=True))
        yield (row["offer_id"], result.text, list(result.errors))


def test_aggregate_rows_render_inside_spark_executors(spark):
    offer = {
        "offer_id": "o-1", "title": "Phone & <case>", "description": "Nice.",
        "price": {"amount": Decimal("15.00"), "currency": "PLN"},
        "effective_price": {"amount": Decimal("12.00"), "currency": "PLN"},
        "availability": "in_stock", "stock": 2, "condition": "new", "brand": "Acme",
        "link": "https://shop.example.com/o/1", "image_link": "https://img.example.com/1.jpg",
        "category": {"path": "Electronics > Phones", "levels": ["Electronics", "Phones"],
                     "top": "Electronics"},
        "attributes": {"color": "black"}, "updated_at": dt.datetime(2026, 11, 1, 12, 0),
        "campaigns": [], "campaign_ids": [],
    }
    no_image = {**offer, "offer_id": "o-2", "image_link": None}
    df = spark.createDataFrame([offer, no_image], OFFER_AGGREGATE_SCHEMA)
    out = dict((k, (t, e)) for k, t, e in df.rdd.mapPartitions(_render_partition).collect())

    assert out["o-2"] == (None, ["missing_image_link"])
    item = etree.fromstring(
        f'<r xmlns:g="http://base.google.com/ns/1.0">{out["o-1"][0]}</r>'.encode()).find("item")
    assert item.findtext("title") == "Phone & <case>"
    assert item.findtext(G + "price") == "15.00 PLN"
    assert item.findtext(G + "sale_price") == "12.00 PLN"
    assert item.findtext(G + "identifier_exists") == "no"


def test_customer_rows_from_spark_render_hashed_audience_rows(spark):
    customer = {"customer_id": "c-1", "email": "A.B@gmail.com", "phone": "601234567",
                "country": "PL", "zip": "00-001", "orders": [], "events": [],
                "signup_at": dt.datetime(2025, 1, 1)}
    row = spark.createDataFrame([customer], CUSTOMER_AGGREGATE_SCHEMA).first()
    result = get_renderer("google_customer_match").render(row.asDict(recursive=True))
    assert result.errors == () and result.fields["Country"] == "PL"
    assert len(result.fields["Email"]) == 64
