"""The customer aggregate: profile + nested order and event histories + derived fields."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from feedgen.aggregator.offers import _conform
from feedgen.aggregator.schemas import CUSTOMER_AGGREGATE_SCHEMA, EVENT_STRUCT, MONEY, ORDER_STRUCT
from feedgen.aggregator.sources import REASON, TypedSource, add_reason, drop_duplicates_by_key


def validate_customers(customers: TypedSource) -> TypedSource:
    return drop_duplicates_by_key(customers, "customer_id", [F.col("signup_at").desc_nulls_last()])


def _known_customers(ts: TypedSource, good_customer_ids: DataFrame) -> TypedSource:
    known = good_customer_ids.select(F.col("customer_id").alias("_known_customer"))
    df = ts.df.join(known, ts.df.customer_id == known._known_customer, "left")
    df = df.withColumn(REASON, F.coalesce(F.col(REASON), F.when(F.col("_known_customer").isNull(), F.lit("unknown customer_id"))))
    return TypedSource(ts.name, ts.path, df.drop("_known_customer"), ts.columns)


def validate_orders(orders: TypedSource, good_customer_ids: DataFrame) -> TypedSource:
    o = add_reason(orders, F.col("amount") < 0, "negative amount")
    o = drop_duplicates_by_key(o, "order_id", [F.col("ts").desc_nulls_last()])
    return _known_customers(o, good_customer_ids)


def validate_events(events: TypedSource, good_customer_ids: DataFrame) -> TypedSource:
    return _known_customers(events, good_customer_ids)


def _history(df: DataFrame, struct_type: T.StructType, name: str, id_field: str) -> DataFrame:
    """Group a history source per customer into an array of structs sorted by (ts, id)."""
    fields = [f.name for f in struct_type.fields]
    items = F.collect_list(F.struct(*[F.col(f) for f in fields]))
    # sort_array on (ts, id, position) compares with Spark's ordering of structs; array_sort with a
    # comparator lambda evaluates the lambda per comparison, and ties on (ts, id) came out in
    # any order. The struct itself may hold a map (events' properties), which has no order: the
    # sort takes the positions, and the items are picked by position afterwards.
    grouped = df.groupBy("customer_id").agg(items.alias("_items")).select(
        "customer_id", F.transform(
            F.sort_array(F.transform("_items", lambda x, i: F.struct(x.ts.alias("ts"), x[id_field].alias("id"),
                                                                      i.alias("i")))),
            lambda k: F.col("_items")[k.i]).alias(name))
    return grouped.select(F.col("customer_id").alias(f"_{name}_cid"), F.col(name).cast(T.ArrayType(struct_type)))


def build_customer_aggregate(customers: DataFrame, orders: DataFrame, events: DataFrame) -> DataFrame:
    """One row per customer with its orders and events (sorted by time) and derived fields."""
    order_hist = _history(orders, ORDER_STRUCT, "orders", "order_id")
    event_hist = _history(events, EVENT_STRUCT, "events", "event_id")
    df = (customers.join(order_hist, customers.customer_id == order_hist._orders_cid, "left")
          .join(event_hist, customers.customer_id == event_hist._events_cid, "left"))
    empty_orders = F.array().cast(T.ArrayType(ORDER_STRUCT))
    empty_events = F.array().cast(T.ArrayType(EVENT_STRUCT))
    df = df.withColumn("orders", F.coalesce("orders", empty_orders)).withColumn("events", F.coalesce("events", empty_events))
    out = df.select(
        "customer_id", "email", "phone", "first_name", "last_name", "country", "city", "zip",
        "signup_at", "consents",
        F.coalesce(F.col("attributes"), F.create_map().cast(T.MapType(T.StringType(), T.StringType()))).alias("attributes"),
        "orders", "events",
        F.size("orders").cast("long").alias("orders_count"),
        F.aggregate("orders", F.lit(0).cast(MONEY), lambda acc, o: (acc + o.amount).cast(MONEY)).alias("orders_total"),
        F.try_element_at("orders", F.lit(1))["ts"].alias("first_order_at"),
        F.try_element_at("orders", F.lit(-1))["ts"].alias("last_order_at"),
        F.size("events").cast("long").alias("events_count"),
        F.try_element_at("events", F.lit(-1))["ts"].alias("last_event_at"),
    )
    return _conform(out, CUSTOMER_AGGREGATE_SCHEMA)
