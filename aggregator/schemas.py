"""Declared schemas of the sources and of the two aggregates.

A source column is declared with the type the aggregate needs. A source may hold it as
that type or as text (CSV, JSON, a feed export): text is cast, and a row whose value does
not cast is quarantined with a reason instead of becoming null silently.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import types as T

MONEY = T.DecimalType(18, 2)


@dataclass(frozen=True)
class Column:
    name: str
    dtype: T.DataType
    required: bool = True


def _c(name: str, dtype: T.DataType, required: bool = True) -> Column:
    return Column(name, dtype, required)


STR = T.StringType()
TS = T.TimestampType()
MAP = T.MapType(T.StringType(), T.StringType())

SOURCE_SCHEMAS: dict[str, tuple[Column, ...]] = {
    "offers": (
        _c("offer_id", STR), _c("product_id", STR), _c("seller_id", STR),
        _c("title", STR), _c("description", STR, False), _c("category_path", STR),
        _c("price_amount", MONEY), _c("price_currency", STR),
        _c("sale_price_amount", MONEY, False), _c("stock", T.IntegerType()),
        _c("condition", STR, False), _c("brand", STR, False), _c("gtin", STR, False),
        _c("mpn", STR, False), _c("link", STR), _c("image_link", STR, False),
        _c("attributes", MAP, False), _c("updated_at", TS),
    ),
    "sellers": (
        _c("seller_id", STR), _c("name", STR, False), _c("rating", T.DoubleType(), False),
        _c("country", STR, False), _c("status", STR),
    ),
    "products": (
        _c("product_id", STR), _c("name", STR, False), _c("brand", STR, False),
        _c("category_path", STR, False), _c("gtin", STR, False),
    ),
    "campaigns": (
        _c("campaign_id", STR), _c("name", STR, False), _c("scope_type", STR),
        _c("scope_value", STR, False), _c("discount_pct", T.DoubleType()),
        _c("starts_at", TS), _c("ends_at", TS),
    ),
    "ratings": (
        _c("product_id", STR), _c("customer_id", STR, False), _c("stars", T.IntegerType()),
        _c("ts", TS, False),
    ),
    "customers": (
        _c("customer_id", STR), _c("email", STR, False), _c("phone", STR, False),
        _c("first_name", STR, False), _c("last_name", STR, False),
        _c("country", STR, False), _c("city", STR, False), _c("zip", STR, False),
        _c("signup_at", TS, False),
        _c("consents", T.StructType([
            T.StructField("email", T.BooleanType()), T.StructField("sms", T.BooleanType()),
            T.StructField("ads", T.BooleanType()),
        ]), False),
        _c("attributes", MAP, False),
    ),
    "orders": (
        _c("order_id", STR), _c("customer_id", STR), _c("store_id", STR),
        _c("category", STR, False), _c("amount", MONEY), _c("currency", STR, False), _c("ts", TS),
    ),
    "events": (
        _c("event_id", STR, False), _c("customer_id", STR), _c("type", STR),
        _c("properties", MAP, False), _c("ts", TS),
    ),
}

OFFER_SOURCES = ("offers", "sellers", "products", "campaigns", "ratings")
CUSTOMER_SOURCES = ("customers", "orders", "events")

# Keys: the column that identifies a row of each source (None: rows have no identity).
SOURCE_KEYS: dict[str, str | None] = {
    "offers": "offer_id", "sellers": "seller_id", "products": "product_id",
    "campaigns": "campaign_id", "ratings": None, "customers": "customer_id",
    "orders": "order_id", "events": None,
}

CAMPAIGN_STRUCT = T.StructType([
    T.StructField("campaign_id", STR), T.StructField("name", STR),
    T.StructField("scope_type", STR), T.StructField("scope_value", STR),
    T.StructField("discount_pct", T.DoubleType()),
    T.StructField("starts_at", TS), T.StructField("ends_at", TS),
])

ORDER_STRUCT = T.StructType([
    T.StructField("order_id", STR), T.StructField("store_id", STR),
    T.StructField("category", STR), T.StructField("amount", MONEY),
    T.StructField("currency", STR), T.StructField("ts", TS),
])

EVENT_STRUCT = T.StructType([
    T.StructField("event_id", STR), T.StructField("type", STR),
    T.StructField("properties", MAP), T.StructField("ts", TS),
])

PRICE_STRUCT = T.StructType([T.StructField("amount", MONEY), T.StructField("currency", STR)])

# The offer aggregate: one row per offer_id. Predicates address these paths
# (category.path, price.amount, seller.rating, campaign_ids, rating.average, ...).
OFFER_AGGREGATE_SCHEMA = T.StructType([
    T.StructField("offer_id", STR, False),
    T.StructField("product_id", STR),
    T.StructField("seller_id", STR),
    T.StructField("title", STR),
    T.StructField("description", STR),
    T.StructField("category", T.StructType([
        T.StructField("path", STR),              # "Electronics > Phones > Smartphones"
        T.StructField("levels", T.ArrayType(STR)),
        T.StructField("top", STR),
    ])),
    T.StructField("price", PRICE_STRUCT),
    T.StructField("sale_price", PRICE_STRUCT),      # null when no sale price
    T.StructField("effective_price", PRICE_STRUCT),  # lowest of price, sale price, best active campaign
    T.StructField("stock", T.IntegerType()),
    T.StructField("availability", STR),             # in_stock | out_of_stock
    T.StructField("condition", STR),                # new | used | refurbished
    T.StructField("brand", STR),
    T.StructField("gtin", STR),
    T.StructField("mpn", STR),
    T.StructField("link", STR),
    T.StructField("image_link", STR),
    T.StructField("attributes", MAP),
    T.StructField("updated_at", TS),
    T.StructField("seller", T.StructType([
        T.StructField("seller_id", STR), T.StructField("name", STR),
        T.StructField("rating", T.DoubleType()), T.StructField("country", STR),
        T.StructField("status", STR),
    ])),
    T.StructField("product", T.StructType([
        T.StructField("product_id", STR), T.StructField("name", STR),
        T.StructField("brand", STR), T.StructField("category_path", STR),
        T.StructField("gtin", STR),
    ])),
    T.StructField("campaigns", T.ArrayType(CAMPAIGN_STRUCT)),   # active at as_of
    T.StructField("campaign_ids", T.ArrayType(STR)),
    T.StructField("rating", T.StructType([
        T.StructField("average", T.DoubleType()), T.StructField("count", T.LongType()),
    ])),
])

# The customer aggregate: one row per customer_id with nested histories.
CUSTOMER_AGGREGATE_SCHEMA = T.StructType([
    T.StructField("customer_id", STR, False),
    T.StructField("email", STR),
    T.StructField("phone", STR),
    T.StructField("first_name", STR),
    T.StructField("last_name", STR),
    T.StructField("country", STR),
    T.StructField("city", STR),
    T.StructField("zip", STR),
    T.StructField("signup_at", TS),
    T.StructField("consents", T.StructType([
        T.StructField("email", T.BooleanType()), T.StructField("sms", T.BooleanType()),
        T.StructField("ads", T.BooleanType()),
    ])),
    T.StructField("attributes", MAP),
    T.StructField("orders", T.ArrayType(ORDER_STRUCT)),   # sorted by ts
    T.StructField("events", T.ArrayType(EVENT_STRUCT)),   # sorted by ts
    T.StructField("orders_count", T.LongType()),
    T.StructField("orders_total", MONEY),
    T.StructField("first_order_at", TS),
    T.StructField("last_order_at", TS),
    T.StructField("events_count", T.LongType()),
    T.StructField("last_event_at", TS),
])

AGGREGATE_SCHEMAS = {"offer": OFFER_AGGREGATE_SCHEMA, "customer": CUSTOMER_AGGREGATE_SCHEMA}
ENTITY_KEYS = {"offer": "offer_id", "customer": "customer_id"}
