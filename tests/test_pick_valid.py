"""pick_one_per picks among the items the definition's template renders, so a product whose first
offer by order_by fails the template is shown with its next valid offer."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from feedgen.aggregator.schemas import OFFER_AGGREGATE_SCHEMA
from feedgen.generator.definitions import definitions_from_mapping
from feedgen.generator.generate import generate_entity, snapshot_items
from feedgen.generator.parts import assemble
from feedgen.generator.snapshots import iter_delta_events, snapshot_and_diff
from tests.test_generate import AS_OF, G, offer

USER_TEMPLATES = str(Path(__file__).resolve().parents[1] / "examples" / "user-template" / "templates")


def price(amount: str) -> dict:
    return {"amount": Decimal(amount), "currency": "PLN"}


# p-a: the cheapest offer has no image (Google leaves it out) and the next one has no link
# (the user template rejects it); p-b: its only offer has no image; p-c: the cheapest is valid
OFFERS = [
    offer(1, product_id="p-a", price=price("10.00"), image_link=None),
    offer(2, product_id="p-a", price=price("20.00"), link=None),
    offer(3, product_id="p-a", price=price("30.00")),
    offer(4, product_id="p-b", price=price("5.00"), image_link=None),
    offer(5, product_id="p-c", price=price("7.00")),
    offer(6, product_id="p-c", price=price("8.00")),
]
CHEAPEST = {"pick_one_per": "product_id", "order_by": ["price.amount"]}
FEEDS = {"feeds": [
    {"id": "google", "template": "google_merchant_rss", **CHEAPEST},
    {"id": "ids", "template": "generic_csv", "options": {"fields": ["offer_id"]}, **CHEAPEST},
    {"id": "mine", "template": "my_item", **CHEAPEST},
    {"id": "dearest", "template": "google_merchant_rss", "pick_one_per": "product_id", "order_by": ["-price.amount"]},
]}
# per definition: the offers written, the picks that fell to a runner-up, what was left out
GOLDEN = {
    "google": (["o-3", "o-5"], 1, {"missing_image_link": 1}),   # p-b has no valid offer: o-4 is picked, excluded
    "ids": (["o-1", "o-4", "o-5"], 0, {}),                       # generic_csv needs only the id
    "mine": (["o-1", "o-4", "o-5"], 0, {}),                      # my_item needs a link, not an image
    "dearest": (["o-3", "o-6"], 0, {"missing_image_link": 1}),
}


def generate(spark, root: Path, offers: list[dict], mapping: dict, run_id: str = "20261122T030500Z-aaaaaa",
             **kwargs) -> dict:
    df = spark.createDataFrame(offers, OFFER_AGGREGATE_SCHEMA).repartition(2)
    definitions = list(definitions_from_mapping(mapping, templates_dir=USER_TEMPLATES))
    return generate_entity(spark, df, definitions, entity="offer", root=root, run_id=run_id, as_of=AS_OF,
                           user_templates_dir=USER_TEMPLATES, **kwargs)


def written_ids(root: Path, stats: dict, definition_id: str, run_id: str) -> list[str]:
    doc = assemble(root / "runs" / run_id / stats[definition_id]["folder"])
    template = stats[definition_id]["template"]
    if template == "generic_csv":
        return sorted(r["offer_id"] for r in csv.DictReader(io.StringIO(doc.decode())))
    if template == "my_item":
        return sorted(o.get("id") for o in etree.fromstring(doc).findall("offer"))
    return sorted(i.findtext(G + "id") for i in etree.fromstring(doc).findall("channel/item"))


@pytest.mark.parametrize("jvm", [True, False], ids=["jvm", "python"])
def test_pick_one_per_takes_the_first_offer_the_template_renders_and_counts_runner_ups(spark, tmp_path, jvm):
    stats = generate(spark, tmp_path, OFFERS, FEEDS, jvm=jvm)

    got = {d: (written_ids(tmp_path, stats, d, "20261122T030500Z-aaaaaa"), stats[d]["pick_runner_ups"],
               stats[d]["excluded"]) for d in GOLDEN}
    assert got == GOLDEN
    assert stats["google"]["render_path"] == ("jvm" if jvm else "python")


def test_my_item_skips_an_offer_it_rejects_for_the_next_one(spark, tmp_path):
    offers = [offer(1, product_id="p-a", price=price("10.00"), link=None),
              offer(2, product_id="p-a", price=price("20.00")),
              offer(3, product_id="p-b", price=price("10.00"), link=None)]
    stats = generate(spark, tmp_path, offers, {"feeds": [{"id": "mine", "template": "my_item", **CHEAPEST}]})
    assert written_ids(tmp_path, stats, "mine", "20261122T030500Z-aaaaaa") == ["o-2"]
    assert (stats["mine"]["pick_runner_ups"], stats["mine"]["excluded"]) == (1, {"no_link": 1})


def _run(spark, root: Path, run_id: str, offers: list[dict], base: str | None) -> dict[str, dict]:
    """One run of the ``google`` pick feed with events: generate, snapshot, diff; its events by key."""
    stats = generate(spark, root, offers, {"feeds": [
        {"id": "google", "template": "google_merchant_rss", "delivery": {"events": True}, **CHEAPEST}]}, run_id)
    items = snapshot_items(spark, root, run_id, "offer", stats["google"]["target"])
    snapshot_and_diff(spark, root, run_id, "google", items, as_of="2026-11-22T03:05:00Z", destinations=["google"],
                      base_run_id=base)
    return {e["key"]: e for e in iter_delta_events(root, run_id, "google")}


def test_a_winner_that_turns_invalid_gives_the_runner_ups_add_and_its_own_remove(spark, tmp_path):
    first = [offer(1, product_id="p-a", price=price("10.00")), offer(2, product_id="p-a", price=price("20.00"))]
    events = _run(spark, tmp_path, "20261122T030500Z-aaaaaa", first, None)
    assert {k: e["op"] for k, e in events.items()} == {"o-1": "add"}

    # the next day o-1 lost its image: o-2 takes its place
    second = [offer(1, product_id="p-a", price=price("10.00"), image_link=None), first[1]]
    events = _run(spark, tmp_path, "20261123T030500Z-bbbbbb", second, "20261122T030500Z-aaaaaa")
    assert {k: e["op"] for k, e in events.items()} == {"o-1": "remove", "o-2": "add"}
    assert events["o-2"]["data"]["id"] == "o-2"
