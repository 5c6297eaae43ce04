from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from chispa import assert_df_equality
from click.testing import CliRunner
from pyspark.sql import functions as F

from feedgen.aggregator import customers as cust
from feedgen.aggregator import offers as off
from feedgen.aggregator.job import latest_aggregate, read_marker, run_aggregate
from feedgen.aggregator.sample_data import HOSTILE_TITLES, write_sample_data
from feedgen.aggregator.sources import REASON, type_source
from feedgen.core.config import SOURCE_NAMES, load_config
from feedgen.core.errors import RunFailed
from feedgen.jobs.cli import main

AS_OF = datetime(2026, 11, 10, tzinfo=UTC)


def ts(day: int, hour: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


def typed(spark, name, rows, schema):
    return type_source(name, f"<{name}>", spark.createDataFrame(rows, schema))


OFFER_COLS = ("offer_id string, product_id string, seller_id string, title string, category_path string, "
              "price_amount string, price_currency string, stock int, link string, brand string, updated_at timestamp")


DAY_1 = ts(1)


def offer(offer_id, price="10.00", seller="s1", currency="PLN", updated=DAY_1, brand="Sony",
          category="Electronics > Audio > Headphones", product="p1"):
    return (offer_id, product, seller, f"title {offer_id}", category, price, currency, 5,
            f"https://x/{offer_id}", brand, updated)


@pytest.fixture()
def sellers(spark):
    return off.validate_sellers(typed(spark, "sellers", [
        ("s1", "Shop 1", 4.8, "PL", "active"),
        ("s2", "Shop 2", 9.0, "PL", "active"),  # rating out of range: quarantined
    ], "seller_id string, name string, rating double, country string, status string"))


def test_bad_offer_rows_are_quarantined_with_one_reason_each(spark, sellers):
    offers = typed(spark, "offers", [
        offer("o1"),
        offer(None),
        offer(None, price="12.00"),
        offer("o3", price="-1.00"),
        offer("o4", price="12,99 zł"),
        offer("o5", currency="XYZ"),
        offer("o6", seller="s2"),          # its seller was quarantined
        offer("o7", seller="nope"),
        offer("o1", price="11.00", updated=ts(2)),  # newer duplicate: wins
    ], OFFER_COLS)
    good_sellers = sellers.df.where(F.col(REASON).isNull()).select("seller_id")
    result = off.validate_offers(offers, ["PLN", "EUR"], good_sellers).df
    got = result.select("offer_id", "price_amount", REASON)
    expected = spark.createDataFrame([
        ("o1", Decimal("11.00"), None),
        ("o1", Decimal("10.00"), "duplicate offer_id"),
        (None, Decimal("10.00"), "missing offer_id"),
        (None, Decimal("12.00"), "missing offer_id"),
        ("o3", Decimal("-1.00"), "negative price_amount"),
        ("o4", None, "invalid price_amount: not a decimal(18,2)"),
        ("o5", Decimal("10.00"), "unknown price_currency"),
        ("o6", Decimal("10.00"), "unknown seller_id"),
        ("o7", Decimal("10.00"), "unknown seller_id"),
    ], f"offer_id string, price_amount decimal(18,2), {REASON} string")
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_offer_aggregate_joins_seller_product_rating_and_campaigns_active_at_as_of(spark):
    offers = typed(spark, "offers", [offer("o1"), offer("o2", brand="LEGO", category="Toys > Bricks", product="p2")],
                   OFFER_COLS).df
    sellers_df = typed(spark, "sellers", [("s1", "Shop 1", 4.8, "PL", "active")],
                       "seller_id string, name string, rating double, country string, status string").df
    products = typed(spark, "products", [("p1", "Phones X", "Sony", "Electronics", "5901234123457")],
                     "product_id string, name string, brand string, category_path string, gtin string").df
    ratings = typed(spark, "ratings", [("p1", "c1", 5), ("p1", "c2", 4)],
                    "product_id string, customer_id string, stars int").df
    campaigns = typed(spark, "campaigns", [
        ("bf", "Black Friday", "all", None, 20.0, ts(1), ts(30)),
        ("audio", "Audio", "category", "Electronics > Audio", 25.0, ts(1), ts(30)),
        ("lego", "Lego", "brand", "LEGO", 10.0, ts(1), ts(30)),
        ("past", "Past", "all", None, 50.0, ts(1), ts(5)),       # ended before as_of
        ("s9", "Other seller", "seller", "s9", 30.0, ts(1), ts(30)),
    ], "campaign_id string, name string, scope_type string, scope_value string, discount_pct double, "
       "starts_at timestamp, ends_at timestamp").df
    active = off.active_campaigns(campaigns, AS_OF)
    agg = off.build_offer_aggregate(offers, sellers_df, products, ratings, active)
    got = agg.select("offer_id", "seller.rating", "product.name", "rating.average", "rating.count",
                     "campaign_ids", "effective_price.amount", "category.top", "gtin")
    expected = spark.createDataFrame([
        ("o1", 4.8, "Phones X", 4.5, 2, ["audio", "bf"], Decimal("7.50"), "Electronics", "5901234123457"),
        ("o2", 4.8, None, None, 0, ["bf", "lego"], Decimal("8.00"), "Toys", None),
    ], "offer_id string, rating double, name string, average double, count long, campaign_ids array<string>, "
       "amount decimal(18,2), top string, gtin string")
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True, ignore_column_order=False)


def test_campaign_scope_is_a_leading_run_of_category_levels_the_offer_brand_or_the_seller(spark):
    offers = typed(spark, "offers", [
        offer("o1", category="Electronics > Phones > Cases", brand="LEGO"),
        offer("o2", category="Electronics > Phones2", seller="s2"),
        offer("o3", category="Electro > Phones", brand=None),          # the product's brand is LEGO
        offer("o4", category="A > > B"),   # levels "A" and "> B": "A >" is not a leading run
        offer("o5", category="A >"),       # one level, "A >"
    ], OFFER_COLS).df
    sellers_df = typed(spark, "sellers", [("s1", "Shop 1", 4.8, "PL", "active"), ("s2", "Shop 2", 4.0, "PL", "active")],
                       "seller_id string, name string, rating double, country string, status string").df
    products = typed(spark, "products", [("p1", "Bricks", "LEGO", "Toys", None)],
                     "product_id string, name string, brand string, category_path string, gtin string").df
    ratings = typed(spark, "ratings", [], "product_id string, customer_id string, stars int").df

    def campaign(campaign_id, scope_type, scope_value, discount):
        return {"campaign_id": campaign_id, "name": campaign_id, "scope_type": scope_type, "scope_value": scope_value,
                "discount_pct": discount, "starts_at": ts(1), "ends_at": ts(30)}

    active = [
        campaign("phones", "category", "Electronics > Phones", 10.0),
        campaign("electronics", "category", "Electronics", 5.0),
        campaign("electro", "category", "Electro", 30.0),
        campaign("odd", "category", "A >", 40.0),
        campaign("lego", "brand", "LEGO", 25.0),
        campaign("shop2", "seller", "s2", 50.0),
    ]
    agg = off.build_offer_aggregate(offers, sellers_df, products, ratings, active)
    got = agg.select("offer_id", "campaign_ids", "effective_price.amount")
    expected = spark.createDataFrame([
        ("o1", ["electronics", "lego", "phones"], Decimal("7.50")),
        ("o2", ["electronics", "shop2"], Decimal("5.00")),
        ("o3", ["electro"], Decimal("7.00")),
        ("o4", [], Decimal("10.00")),
        ("o5", ["odd"], Decimal("6.00")),
    ], "offer_id string, campaign_ids array<string>, amount decimal(18,2)")
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_customer_aggregate_nests_histories_sorted_by_time_with_derived_fields(spark):
    customers = typed(spark, "customers", [("c1", "a@x.pl"), ("c2", "b@x.pl")], "customer_id string, email string")
    good_ids = customers.df.select("customer_id")
    orders = cust.validate_orders(typed(spark, "orders", [
        ("o2", "c1", "101", "100.00", ts(5)),
        ("o1", "c1", "102", "50.00", ts(2)),
        ("o3", "ghost", "101", "10.00", ts(3)),   # unknown customer: quarantined
        ("o4", "c1", "101", "-5.00", ts(4)),     # negative: quarantined
    ], "order_id string, customer_id string, store_id string, amount string, ts timestamp"), good_ids)
    events = cust.validate_events(typed(spark, "events", [("c2", "page_view", ts(3))],
                                        "customer_id string, type string, ts timestamp"), good_ids)
    reasons = {r["order_id"]: r[REASON] for r in orders.df.collect()}
    assert reasons == {"o1": None, "o2": None, "o3": "unknown customer_id", "o4": "negative amount"}
    agg = cust.build_customer_aggregate(customers.df, orders.df.where(F.col(REASON).isNull()),
                                        events.df.where(F.col(REASON).isNull()))
    got = agg.select("customer_id", F.transform("orders", lambda o: o.order_id).alias("order_ids"),
                     "orders_count", "orders_total", "first_order_at", "last_order_at", "events_count")
    expected = spark.createDataFrame([
        ("c1", ["o1", "o2"], 2, Decimal("150.00"), ts(2), ts(5), 0),
        ("c2", [], 0, Decimal("0.00"), None, None, 1),
    ], "customer_id string, order_ids array<string>, orders_count long, orders_total decimal(18,2), "
       "first_order_at timestamp, last_order_at timestamp, events_count long")
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_histories_break_equal_times_by_id_and_keep_every_field(spark):
    customers = typed(spark, "customers", [("c1", "a@x.pl")], "customer_id string, email string")
    good_ids = customers.df.select("customer_id")
    orders = cust.validate_orders(typed(spark, "orders", [
        (f"o{n}", "c1", "101", f"{n}.00", ts(9 - n % 3)) for n in range(9, 0, -1)
    ], "order_id string, customer_id string, store_id string, amount string, ts timestamp"), good_ids)
    events = cust.validate_events(typed(spark, "events", [
        ("e2", "c1", "view", {"sku": "b"}, ts(4)), ("e1", "c1", "cart", {"sku": "a", "n": "2"}, ts(4)),
        ("e9", "c1", "view", {}, ts(3)), (None, "c1", "view", None, ts(4)),
    ], "event_id string, customer_id string, type string, properties map<string,string>, ts timestamp"), good_ids)
    agg = cust.build_customer_aggregate(customers.df, orders.df.where(F.col(REASON).isNull()),
                                        events.df.where(F.col(REASON).isNull())).collect()[0]
    by_time = sorted(range(1, 10), key=lambda n: (9 - n % 3, f"o{n}"))
    assert [(o.order_id, o.amount) for o in agg.orders] == [(f"o{n}", Decimal(f"{n}.00")) for n in by_time]
    # a null id sorts first among equal times; the properties map travels with its event
    assert [(e.event_id, e.type, e.properties) for e in agg.events] == [
        ("e9", "view", {}), (None, "view", None), ("e1", "cart", {"sku": "a", "n": "2"}), ("e2", "view", {"sku": "b"})]


@pytest.fixture(scope="module")
def sample_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("agg")
    summary = write_sample_data(root / "sample", offers=1000, customers=300, seed=7)
    return root, summary


def test_sample_data_aggregates_to_exact_row_counts(spark, sample_root):
    root, summary = sample_root
    config = load_config(root=str(root))
    stats = run_aggregate(spark, config, "20261110T000000Z-test01", AS_OF)
    offer_dirt = summary["dirty"]["offers"]
    quarantined = sum(n for kind, n in offer_dirt.items() if kind != "hostile_title")
    assert stats["sources"]["offers"]["quarantined"] == quarantined == 9
    assert stats["entities"]["offer"]["rows"] == 1000 - quarantined
    assert stats["sources"]["customers"]["reasons"] == {"duplicate customer_id": 1, "missing customer_id": 1}
    assert stats["entities"]["customer"]["rows"] == 298
    assert stats["sources"]["orders"]["quarantined"] == stats["sources"]["orders"]["rows"] - sum(
        r["orders_count"] for r in spark.read.parquet(stats["entities"]["customer"]["path"]).collect())
    # hostile titles are kept: the generator escapes them
    titles = spark.read.parquet(stats["entities"]["offer"]["path"]).where(F.col("title").isin(HOSTILE_TITLES)).count()
    assert titles == offer_dirt["hostile_title"] == 1
    run_id, path = latest_aggregate(root, "offer")
    assert run_id == "20261110T000000Z-test01"
    assert read_marker(path)["rows"] == 1000 - quarantined
    quarantine = spark.read.parquet(str(root / "aggregates/quarantine" / run_id / "offers"))
    assert quarantine.count() == quarantined
    raw_prices = {r.price_amount: r.reason for r in quarantine.collect()}
    assert raw_prices["abc"] == "invalid price_amount: not a decimal(18,2)"  # kept as it was read


def test_a_source_over_the_quarantine_tolerance_fails_the_run_with_the_figure(spark, tmp_path):
    write_sample_data(tmp_path / "sample", offers=200, customers=100, seed=1)
    config = load_config(root=str(tmp_path), environ={"FEEDGEN__AGGREGATE__QUARANTINE_TOLERANCE": "0.001"})
    with pytest.raises(RunFailed, match=r"source 'offers' .*quarantined \(1\.0%\), above the tolerance of 0\.1%"):
        run_aggregate(spark, config, "20261110T000000Z-toler1", AS_OF, entities=("offer",))
    assert latest_aggregate(tmp_path, "offer") is None


def test_cli_missing_required_column_exits_2_naming_source_column_and_type(spark, tmp_path):
    sample = tmp_path / "sample"
    write_sample_data(sample, offers=200, customers=50)
    shutil.rmtree(sample / "offers")
    spark.createDataFrame([("o1", "t")], "offer_id string, title string").write.parquet(str(sample / "offers"))
    cfg = tmp_path / "feedgen.yaml"
    paths = "".join(f"  {name}: {{path: {sample / name}}}\n" for name in SOURCE_NAMES)
    cfg.write_text(f"root: {tmp_path}\nsources:\n{paths}")
    result = CliRunner().invoke(main, ["aggregate", "--config", str(cfg), "--as-of", "2026-11-10T00:00:00Z"])
    assert result.exit_code == 2, result.output
    assert "source 'offers'" in result.output
    assert "required column 'product_id' is missing; expected type string" in result.output
    assert not (tmp_path / "aggregates" / "offer").exists()


def test_cli_malformed_config_exits_2_with_file_and_line(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("root: ./var\nspark:\n  master: [local\n")
    result = CliRunner().invoke(main, ["aggregate", "--config", str(cfg)])
    assert result.exit_code == 2
    assert f"{cfg}:" in result.output and "malformed YAML" in result.output


def test_cli_unknown_config_key_exits_2_listing_known_keys(tmp_path):
    cfg = tmp_path / "typo.yaml"
    cfg.write_text("sorces: {}\n")
    result = CliRunner().invoke(main, ["aggregate", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "unknown top-level key 'sorces'" in result.output


def test_env_overrides_config_values(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("spark: {shuffle_partitions: 4}\n")
    config = load_config(cfg, environ={"FEEDGEN__SPARK__SHUFFLE_PARTITIONS": "16", "KAFKA_BOOTSTRAP": "h:9092"})
    assert config.get("spark.shuffle_partitions") == 16
    assert config.get("kafka.bootstrap") == "h:9092"
    assert json.loads(json.dumps(config.data))["sources"]["offers"]["path"].endswith("/sample/offers")
