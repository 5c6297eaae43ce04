"""The offer aggregate: offer + seller + product + campaigns active at as_of + rating."""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from feedgen.aggregator.schemas import CAMPAIGN_STRUCT, MONEY, OFFER_AGGREGATE_SCHEMA
from feedgen.aggregator.sources import REASON, TypedSource, add_reason, drop_duplicates_by_key

CATEGORY_SEP = " > "
SCOPE_TYPES = ("all", "category", "seller", "brand")


def validate_sellers(sellers: TypedSource) -> TypedSource:
    rating = F.col("rating")
    sellers = add_reason(sellers, rating.isNotNull() & ((rating < 0) | (rating > 5)), "rating out of range 0-5")
    return drop_duplicates_by_key(sellers, "seller_id", [F.col("name").asc_nulls_last()])


def validate_products(products: TypedSource) -> TypedSource:
    return drop_duplicates_by_key(products, "product_id", [F.col("name").asc_nulls_last()])


def validate_campaigns(campaigns: TypedSource) -> TypedSource:
    d = F.col("discount_pct")
    c = add_reason(campaigns, (d <= 0) | (d > 100), "discount_pct out of range (0, 100]")
    c = add_reason(c, F.col("ends_at") <= F.col("starts_at"), "ends_at not after starts_at")
    c = add_reason(c, ~F.col("scope_type").isin(*SCOPE_TYPES), "unknown scope_type")
    c = add_reason(c, (F.col("scope_type") != "all") & F.col("scope_value").isNull(), "missing scope_value")
    return drop_duplicates_by_key(c, "campaign_id", [F.col("starts_at").desc()])


def validate_ratings(ratings: TypedSource) -> TypedSource:
    s = F.col("stars")
    return add_reason(ratings, (s < 1) | (s > 5), "stars out of range 1-5")


def validate_offers(offers: TypedSource, currencies: list[str], good_seller_ids: DataFrame) -> TypedSource:
    """Row checks, duplicate ids (newest updated_at wins), and offers of unknown sellers."""
    o = add_reason(offers, F.col("price_amount") < 0, "negative price_amount")
    o = add_reason(o, F.col("sale_price_amount") < 0, "negative sale_price_amount")
    o = add_reason(o, ~F.col("price_currency").isin(*currencies), "unknown price_currency")
    o = add_reason(o, F.col("stock") < 0, "negative stock")
    o = drop_duplicates_by_key(o, "offer_id", [F.col("updated_at").desc_nulls_last()])
    known = good_seller_ids.select(F.col("seller_id").alias("_known_seller"))
    df = o.df.join(F.broadcast(known), o.df.seller_id == known._known_seller, "left")
    df = df.withColumn(REASON, F.coalesce(F.col(REASON), F.when(F.col("_known_seller").isNull(), F.lit("unknown seller_id"))))
    return TypedSource(o.name, o.path, df.drop("_known_seller"), o.columns)


def _campaign_literal(row: dict) -> Column:
    fields = []
    for f in CAMPAIGN_STRUCT.fields:
        fields.append(F.lit(row[f.name]).cast(f.dataType).alias(f.name))
    return F.struct(*fields)


def active_campaigns(campaigns: DataFrame, as_of: datetime) -> list[dict]:
    """Campaigns active at as_of (starts_at <= as_of < ends_at), collected: they are few."""
    as_of_lit = F.lit(as_of).cast("timestamp")
    rows = campaigns.where((F.col("starts_at") <= as_of_lit) & (F.col("ends_at") > as_of_lit)).orderBy("campaign_id").collect()
    return [r.asDict() for r in rows]


def _in_scope(scope_type: str, value: str | None) -> Column | None:
    """Whether an offer is in a campaign's scope, as plain comparisons (no per-row arrays or
    lambdas); None when no offer can be.

    An offer is in scope of ``all`` (with no scope_value), of its seller, of its own brand (not
    the product's), and of a category that is its category path or one of the path's leading
    levels ("Electronics" and "Electronics > Phones" for "Electronics > Phones > Cases").
    """
    if scope_type == "all":
        return F.lit(True) if not value else None
    value = value or ""
    if scope_type == "seller":
        return F.col("seller_id") == F.lit(value)
    if scope_type == "brand":
        return F.col("brand") == F.lit(value)
    if scope_type != "category":
        return None
    path = F.col("category_path")
    if not value.endswith(CATEGORY_SEP.rstrip()):
        # a prefix of the path that a separator follows is a leading run of its levels
        return (path == F.lit(value)) | path.startswith(F.lit(value + CATEGORY_SEP))
    # "A >" followed by " > " overlaps the separator: compare with the levels themselves
    levels = F.split(path, CATEGORY_SEP, -1)
    prefixes = F.transform(F.sequence(F.lit(1), F.greatest(F.size(levels), F.lit(1))),
                           lambda i: F.array_join(F.slice(levels, 1, i), CATEGORY_SEP))
    return F.array_contains(prefixes, F.lit(value))


def _campaign_columns(active: list[dict]) -> tuple[Column, Column]:
    """Per offer, the active campaigns in its scope (sorted by campaign_id) and their best
    discount (0.0 for none), from literals: no join, no shuffle."""
    empty = F.array().cast(T.ArrayType(CAMPAIGN_STRUCT))
    matched: list[tuple[Column, dict]] = []
    for row in sorted(active, key=lambda r: r["campaign_id"].encode()):  # Spark orders strings by bytes
        match = _in_scope(row["scope_type"], row["scope_value"])
        if match is not None:
            matched.append((F.coalesce(match, F.lit(False)), row))
    if not matched:
        return empty, F.lit(0.0)
    campaigns = F.flatten(F.array(*[F.when(m, F.array(_campaign_literal(r))).otherwise(empty) for m, r in matched]))
    best = F.greatest(F.lit(0.0), *[F.when(m, F.lit(r["discount_pct"]).cast("double")) for m, r in matched])
    return campaigns, best


def build_offer_aggregate(offers: DataFrame, sellers: DataFrame, products: DataFrame,
                          ratings: DataFrame, active: list[dict]) -> DataFrame:
    """Join valid offers with their seller, product, product rating and active campaigns."""
    seller = sellers.select(F.col("seller_id").alias("_sid"), F.struct(
        "seller_id", "name", "rating", "country", "status").alias("seller"))
    rating = ratings.groupBy("product_id").agg(
        F.round(F.avg("stars"), 2).alias("average"), F.count(F.lit(1)).alias("count"))
    # Products and their ratings are joined first (both keyed by product_id and much smaller
    # than the offers), so the offers are joined, and shuffled, once.
    product = products.join(rating, "product_id", "left").select(
        F.col("product_id").alias("_pid"),
        F.struct("product_id", "name", "brand", "category_path", "gtin").alias("product"),
        F.struct("average", "count").alias("rating"))
    df = (offers.join(F.broadcast(seller), offers.seller_id == seller._sid, "left")
          .join(product, offers.product_id == product._pid, "left"))
    campaigns, best_discount = _campaign_columns(active)
    df = df.withColumn("campaigns", campaigns)
    levels = F.split(F.col("category_path"), CATEGORY_SEP, -1)
    campaign_price = F.round(F.col("price_amount") * (F.lit(1.0) - best_discount / 100.0), 2).cast(MONEY)
    effective = F.least(F.col("price_amount"), F.coalesce(F.col("sale_price_amount"), F.col("price_amount")), campaign_price)
    price = lambda amount: F.struct(amount.cast(MONEY).alias("amount"), F.col("price_currency").alias("currency"))  # noqa: E731
    out = df.select(
        "offer_id", "product_id", "seller_id", "title", "description",
        F.struct(F.col("category_path").alias("path"), levels.alias("levels"), F.try_element_at(levels, F.lit(1)).alias("top")).alias("category"),
        price(F.col("price_amount")).alias("price"),
        F.when(F.col("sale_price_amount").isNotNull(), price(F.col("sale_price_amount"))).alias("sale_price"),
        price(effective).alias("effective_price"),
        "stock",
        F.when(F.col("stock") > 0, "in_stock").otherwise("out_of_stock").alias("availability"),
        F.coalesce(F.lower("condition"), F.lit("new")).alias("condition"),
        F.coalesce(F.col("brand"), F.col("product.brand")).alias("brand"),
        F.coalesce(F.col("gtin"), F.col("product.gtin")).alias("gtin"),
        "mpn", "link", "image_link",
        F.coalesce(F.col("attributes"), F.create_map().cast(T.MapType(T.StringType(), T.StringType()))).alias("attributes"),
        "updated_at", "seller", "product", "campaigns",
        F.col("campaigns.campaign_id").alias("campaign_ids"),
        F.coalesce(F.when(F.col("rating.count").isNotNull(), F.col("rating")), F.struct(F.lit(None).cast("double").alias("average"), F.lit(0).cast("long").alias("count"))).alias("rating"),
    )
    return _conform(out, OFFER_AGGREGATE_SCHEMA)


def _conform(df: DataFrame, schema: T.StructType) -> DataFrame:
    """Cast to the declared aggregate schema (field order and types), so readers can rely on it."""
    return df.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])

