"""The console's preview and explain equal what a run produces on the same aggregate and as_of.

One small published run (sample data, the registry's definitions, the pipeline in this
process on the suite's Spark session); the preview's answers are compared with the
generator's own output for the same definition (``generate_entity`` + ``snapshot_and_diff``).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from feedgen.aggregator.job import latest_aggregate, run_aggregate
from feedgen.console.app import create_app
from feedgen.console.preview import PreviewEngine, draft_definitions
from feedgen.console.registry import Registry
from feedgen.core.runs import parse_as_of
from feedgen.generator.generate import generate_entity, snapshot_items
from feedgen.generator.snapshots import read_snapshot_rows, snapshot_and_diff
from feedgen.jobs.pipeline import run_pipeline
from tests.console_support import console_config
from tests.pipeline_support import write_sample
from tests.registry_support import ADMIN, body, published

RUN_1, AS_OF_1 = "20261102T060000Z-first", "2026-11-02T06:00:00Z"
RUN_2, AS_OF_2 = "20261103T060000Z-second", "2026-11-03T06:00:00Z"
FEED = {"id": "electronics", "template": "google_merchant_rss",
        "where": {"all": [{"field": "category.path", "starts_with": "Electronics"},
                          {"field": "price.amount", "gte": 5}]},
        "delivery": {"events": True}, "gates": {"max_share_removed": 0.1, "min_base_items": 0}}
BUYERS = {"id": "buyers", "where": {"history": "orders", "count": {"gte": 1}}, "exports": ["ids_csv"],
          "delivery": {"events": True}}
BIG = {"id": "big-buyers", "where": {"all": [{"in_segment": "buyers"}, {"field": "orders_total", "gte": 200}]},
       "exports": ["ids_csv"]}
HEADERS = {"Authorization": "Bearer test-token-editor"}


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("preview")
    write_sample(root, 0, offers=400, customers=150)
    config = console_config(root)
    registry = Registry.open(f"sqlite:///{root}/feedgen.db")
    for kind, b in (("feed", FEED), ("segment", BUYERS), ("segment", BIG)):
        published(registry, kind, b)
    registry.accounts.add_user(ADMIN, "editor", "editor", "password-editor")
    registry.accounts.issue_token(ADMIN, "editor", "test-token-editor")
    config.data["gates"]["min_base_items"] = 0
    run_pipeline(config, run_id=RUN_1, as_of=parse_as_of(AS_OF_1), definitions_dir="registry")
    engine = PreviewEngine(config, spark=spark, published=lambda: published_set_of(registry))
    app = create_app(config, registry=registry, preview=engine)
    yield {"root": root, "config": config, "registry": registry, "engine": engine, "client": app.test_client()}
    registry.close()


def published_set_of(registry):
    from feedgen.generator.definitions import definitions_from_documents

    return definitions_from_documents([("registry", registry.published_document())], validate=False)


def truth(spark, world, kind: str, b: dict, run_id: str, *, base_run: str | None = None) -> dict:
    """What a run does with definition ``b`` on the latest aggregate: generate_entity (+ the diff)."""
    engine: PreviewEngine = world["engine"]
    (d,) = draft_definitions(kind, b)
    agg = engine.aggregate(d.entity)
    stats = generate_entity(spark, agg.df, [d], entity=d.entity, root=world["root"], run_id=run_id,
                            as_of=agg.as_of, all_segments=engine.segments([d]))[d.id]
    out = {"stats": stats, "document": _document(world["root"] / "runs" / run_id / stats["folder"])}
    if base_run:
        items = snapshot_items(spark, world["root"], run_id, d.entity, stats["target"])
        out["delta"] = snapshot_and_diff(spark, world["root"], run_id, d.id, items, as_of=agg.as_of, kind=d.kind,
                                         entity=d.entity, base_run_id=base_run)
    return out


def _document(folder: Path) -> str:
    return "".join(gzip.decompress(p.read_bytes()).decode() for p in sorted(folder.glob("part-*.gz")))


def preview(world, kind: str, b: dict, **extra) -> dict:
    r = world["client"].post("/api/v1/preview", json={"kind": kind, "body": b, **extra}, headers=HEADERS)
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def test_the_preview_count_and_samples_equal_what_generate_writes(spark, world):
    draft = body(FEED, id="cheap-electronics", where={"all": [
        {"field": "category.path", "starts_with": "Electronics"}, {"field": "price.amount", "lt": 300}]},
        pick_one_per="product_id", order_by=["price.amount"])
    got = preview(world, "feed", draft, sections=["count", "samples", "excluded", "breakdown"])
    expected = truth(spark, world, "feed", draft, "20261102T070000Z-check-feed")

    assert got["run_id"] == RUN_1 and got["as_of"] == AS_OF_1
    assert (got["count"], got["items"]) == (expected["stats"]["candidates"], expected["stats"]["items"])
    assert {e["reason"]: e["count"] for e in got["excluded"]["reasons"]} == expected["stats"]["excluded"]
    assert got["samples"] and len(got["samples"]) <= 20
    missing = [s["key"] for s in got["samples"] if s["included"] and s["text"] not in expected["document"]]
    assert not missing, f"samples not rendered as generate writes them: {missing[:5]}"
    assert sum(v["count"] for v in got["breakdown"]["values"]) <= got["count"]


def test_a_segment_with_a_history_leaf_counts_as_generate_does(spark, world):
    draft = {"id": "recent-buyers", "where": {"all": [
        {"history": "orders", "within_last": "90d", "where": {"field": "amount", "gte": 20}, "count": {"gte": 1}},
        {"not": {"field": "city", "eq": "Kraków"}}]}, "exports": ["ids_csv"]}
    got = preview(world, "segment", draft, sections=["count", "samples"], breakdown_field="city")
    expected = truth(spark, world, "segment", draft, "20261102T070000Z-check-seg")
    assert got["count"] == expected["stats"]["candidates"] > 0
    assert all(s["text"] in expected["document"] for s in got["samples"] if s["included"])


def test_an_edit_that_drops_items_shows_the_removes_and_the_gate_forecast(spark, world):
    edited = body(FEED, where={"all": [*FEED["where"]["all"], {"field": "price.amount", "lt": 150}]})
    got = preview(world, "feed", edited, base="electronics", sections=["count", "change", "gates"])
    expected = truth(spark, world, "feed", edited, "20261102T080000Z-check-change", base_run=RUN_1)

    change, ops = got["change"], expected["delta"]["ops"]
    assert change["available"] and change["base_run_id"] == RUN_1
    assert change["ops"] == {"add": ops.get("add", 0), "remove": ops.get("remove", 0), "update": ops.get("update", 0)}
    assert change["ops"]["remove"] > 0 and change["ops"]["add"] == 0
    assert (change["items"], change["base_items"]) == (expected["delta"]["items"], expected["delta"]["base_items"])
    removed = set(read_snapshot_rows(world["root"], RUN_1, "electronics")) - set(
        read_snapshot_rows(world["root"], "20261102T080000Z-check-change", "electronics"))
    assert {s["key"] for s in change["samples"]["remove"]} <= removed and len(removed) == change["ops"]["remove"]
    breach = [b for b in got["gates"]["breaches"] if b["metric"] == "share_removed"]
    assert got["gates"]["status"] == "held" and breach[0]["threshold"] == 0.1
    assert breach[0]["value"] == pytest.approx(change["ops"]["remove"] / change["base_items"], abs=1e-6)


def test_a_pick_among_valid_offers_and_its_change_equal_what_a_run_does(spark, world):
    # one offer per product, the cheapest the template renders: Ceneo refuses sample data's
    # offers priced in EUR, so for some products the pick falls to a runner-up
    ceneo = body(FEED, id="ceneo-one-per-product", template="ceneo_xml", where={"field": "price.amount", "gte": 0},
                 pick_one_per="product_id", order_by=["price.amount", "-offer_id"])
    got = preview(world, "feed", ceneo, sections=["count", "excluded"])
    expected = truth(spark, world, "feed", ceneo, "20261102T090000Z-check-pick")
    assert expected["stats"]["pick_runner_ups"] > 0
    assert (got["count"], got["items"]) == (expected["stats"]["candidates"], expected["stats"]["items"])

    # the same pick for Google, against the published electronics feed: the added offers
    # are those the pick keeps that Google renders, found without rendering them again
    google = body(FEED, where={"field": "price.amount", "gte": 0}, pick_one_per="product_id",
                  order_by=["price.amount", "-offer_id"])
    got = preview(world, "feed", google, base="electronics", sections=["count", "change", "gates"])
    expected = truth(spark, world, "feed", google, "20261102T091000Z-check-pick", base_run=RUN_1)
    change, ops = got["change"], expected["delta"]["ops"]
    assert change["rendered"].startswith("new items only") and got["count"] == expected["stats"]["candidates"]
    assert change["ops"] == {"add": ops.get("add", 0), "remove": ops.get("remove", 0), "update": ops.get("update", 0)}
    added = set(read_snapshot_rows(world["root"], "20261102T091000Z-check-pick", "electronics")) - set(
        read_snapshot_rows(world["root"], RUN_1, "electronics"))
    assert change["ops"]["add"] == len(added) > 0
    assert {s["key"] for s in change["samples"]["add"]} <= added and all(s["now"] for s in change["samples"]["add"])
    rates = {k.removeprefix("null_rate."): v for k, v in got["gates"]["metrics"].items() if k.startswith("null_rate.")}
    assert rates == pytest.approx(expected["stats"]["null_rates"], abs=1e-6) and rates


def test_dependents_show_how_their_count_would_change(world):
    draft = body(BUYERS, where={"history": "orders", "count": {"gte": 3}})
    got = preview(world, "segment", draft, base="buyers", sections=["dependents"])
    (dep,) = got["dependents"]
    engine: PreviewEngine = world["engine"]
    agg = engine.aggregate("customer")
    (big,) = [d for d in published_set_of(world["registry"]) if d.id == "big-buyers"]
    before = agg.df.where(engine.predicate(big, agg.df, agg.as_of, engine.segments())).count()
    (new,) = draft_definitions("segment", draft)
    after = agg.df.where(engine.predicate(big, agg.df, agg.as_of, {**engine.segments(), "buyers": new})).count()
    assert (dep["definition_id"], dep["count"], dep["count_after"]) == ("big-buyers", before, after)
    assert after <= before


def test_explain_names_the_failing_leaf_with_its_value_and_renders_the_item(world):
    engine: PreviewEngine = world["engine"]
    agg = engine.aggregate("offer")
    from pyspark.sql import functions as F

    row = agg.df.where(F.col("category.path").startswith("Electronics") & (F.col("price.amount") >= 150)) \
        .select("offer_id", "price.amount").first()
    r = world["client"].get(f"/api/v1/explain/electronics/{row['offer_id']}", headers=HEADERS)
    assert r.status_code == 200
    (entry,) = r.get_json()["definitions"]
    assert entry["in"] is True and entry["failing"] == [] and entry["rendered"]["text"]

    edited = body(FEED, where={"all": [*FEED["where"]["all"], {"field": "price.amount", "lt": 150}]})
    r = world["client"].post("/api/v1/explain", json={"kind": "feed", "body": edited, "key": row["offer_id"]},
                             headers=HEADERS)
    (entry,) = r.get_json()["definitions"]
    assert entry["in"] is False
    assert entry["failing"] == [{"clause": "price.amount lt 150", "actual": str(row["amount"]), "needs": True}]


def test_inspect_lists_every_published_definition_of_the_entity(world):
    engine: PreviewEngine = world["engine"]
    key = engine.aggregate("customer").df.select("customer_id").orderBy("customer_id").first()[0]
    got = world["client"].get(f"/api/v1/inspect/customer/{key}", headers=HEADERS).get_json()
    assert got["found"] and {d["definition_id"] for d in got["definitions"]} == {"buyers", "big-buyers"}
    missing = world["client"].get("/api/v1/inspect/offer/no-such-offer", headers=HEADERS).get_json()
    assert missing["found"] is False and "not in the aggregate" in missing["note"]


def test_an_invalid_draft_is_refused_with_the_pointer_of_the_leaf(world):
    bad = body(FEED, where={"all": [{"field": "price.amount", "gte": "cheap"}]})
    r = world["client"].post("/api/v1/preview", json={"kind": "feed", "body": bad}, headers=HEADERS)
    assert r.status_code == 422
    assert r.get_json()["errors"][0]["pointer"] == "/where/all/0/gte"


def test_a_new_aggregate_is_noticed_and_the_change_is_rendered_against_it(spark, world):
    engine: PreviewEngine = world["engine"]
    before = engine.aggregate("offer")
    write_sample(world["root"], 1, offers=400, customers=150)
    run_aggregate(spark, world["config"], RUN_2, parse_as_of(AS_OF_2), entities=("offer",))
    assert latest_aggregate(world["root"], "offer")[0] == RUN_2

    got = preview(world, "feed", FEED, base="electronics", sections=["count", "change", "backtest"])
    assert got["run_id"] == RUN_2 and got["as_of"] == AS_OF_2 and engine.aggregate("offer") is not before
    expected = truth(spark, world, "feed", FEED, "20261103T070000Z-check-day2", base_run=RUN_1)
    ops = expected["delta"]["ops"]
    assert got["change"]["rendered"] == "every item"
    assert got["change"]["ops"] == {"add": ops.get("add", 0), "remove": ops.get("remove", 0),
                                    "update": ops.get("update", 0)}
    assert got["change"]["ops"]["update"] > 0  # variant 1 cuts prices
    assert [b["run_id"] for b in got["backtest"]] == [RUN_1, RUN_2]
    first = got["backtest"][0]
    assert first["published"]["candidates"] == first["count"]


def test_the_field_picker_suggests_the_most_frequent_values_of_the_latest_aggregate(world):
    from pyspark.sql import functions as F

    agg = world["engine"].aggregate("offer")
    top = agg.df.groupBy("brand").count().where(F.col("brand").isNotNull()) \
        .orderBy(F.desc("count"), F.asc("brand")).first()
    got = world["client"].get("/api/v1/fields/offer/values?field=brand", headers=HEADERS).get_json()
    assert got["run_id"] == agg.run_id and got["values"][0] == {"value": top["brand"], "count": top["count"]}
    fields = world["client"].get("/api/v1/fields/customer", headers=HEADERS).get_json()
    assert "orders" in {h["path"] for h in fields["histories"]}
