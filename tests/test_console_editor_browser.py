"""The marketers' console in a real browser (Debian chromium through Playwright): build a
segment only through the rule builder, see a wrong value marked on its clause, preview it
(the count equals what ``generate`` produces), see the removes and the gate forecast of an
edit to a published feed, publish it as a publisher, inspect an excluded offer.

One small published run (sample data, the registry's definitions, the pipeline in this
process on the suite's Spark session) behind a live console.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from feedgen.console import api_preview
from feedgen.console.preview import PreviewEngine, draft_definitions
from feedgen.core.runs import parse_as_of
from feedgen.generator.generate import generate_entity, snapshot_items
from feedgen.generator.snapshots import snapshot_and_diff
from feedgen.jobs.pipeline import run_pipeline
from tests.browser_support import login, screenshot
from tests.console_support import start_console
from tests.pipeline_support import write_sample
from tests.registry_support import published

RUN, AS_OF = "20261102T060000Z-first", "2026-11-02T06:00:00Z"
FEED = {"id": "electronics", "description": "Electronics over 5 PLN", "template": "google_merchant_rss",
        "where": {"all": [{"field": "category.path", "starts_with": "Electronics"},
                          {"field": "price.amount", "gte": 5}]},
        "delivery": {"events": True}, "gates": {"max_share_removed": 0.1, "min_base_items": 0}}
BUYERS = {"id": "buyers", "where": {"history": "orders", "count": {"gte": 1}}, "exports": ["ids_csv"]}
DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture(scope="module")
def console(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("editor")
    write_sample(root, 0, offers=400, customers=150)
    live = start_console(root)
    published(live.registry, "feed", FEED)
    published(live.registry, "segment", BUYERS)
    live.config.data["gates"]["min_base_items"] = 0
    run_pipeline(live.config, run_id=RUN, as_of=parse_as_of(AS_OF), definitions_dir="registry")
    engine = PreviewEngine(live.config, spark=spark, published=lambda: api_preview.published_from(live.registry))
    live.server.server.app.extensions["feedgen_console"]["preview"] = engine
    live.engine = engine
    yield live
    live.stop()


def generated(spark, console, kind: str, body: dict, run_id: str, base_run: str | None = None) -> dict:
    """What a run writes for ``body`` on the same aggregate and as_of (the generator's own functions)."""
    (d,) = draft_definitions(kind, body)
    agg = console.engine.aggregate(d.entity)
    stats = generate_entity(spark, agg.df, [d], entity=d.entity, root=console.config.root, run_id=run_id,
                            as_of=agg.as_of, all_segments=console.engine.segments([d]))[d.id]
    if base_run:
        items = snapshot_items(spark, console.config.root, run_id, d.entity, stats["target"])
        stats["delta"] = snapshot_and_diff(spark, console.config.root, run_id, d.id, items, as_of=agg.as_of,
                                           kind=d.kind, entity=d.entity, base_run_id=base_run)
    return stats


def node(page, pointer: str):
    return page.locator(f'[data-pointer="{pointer}"]')


def test_an_editor_builds_a_segment_in_the_builder_sees_a_type_error_on_its_leaf_and_previews_it(
        spark, console, browser_page, tmp_path):
    page = login(browser_page, console, "editor", "/definitions/new?kind=segment")
    page.get_by_label("Id", exact=True).fill("lapsed-big-spenders")
    root = node(page, "/where")
    # the starter holds one history test (orders count >= 1); add a nested any-group
    root.get_by_role("button", name="Group in this group").last.click()
    group = node(page, "/where/all/1")
    group.get_by_label("all or any").first.select_option("any")
    group = node(page, "/where/all/1")
    group.get_by_role("button", name="Field test in this group").last.click()
    leaf = node(page, "/where/all/1/any/0")
    leaf.get_by_label("Field", exact=True).fill("orders_total")
    leaf.get_by_label("Field", exact=True).dispatch_event("change")
    leaf = node(page, "/where/all/1/any/0")
    leaf.get_by_label("Operator").select_option("gte")
    leaf = node(page, "/where/all/1/any/0")
    leaf.get_by_label("orders_total: value").fill("lots")
    error = leaf.locator(".leaf-error")
    error.wait_for()
    assert "number" in error.inner_text() and "fix" in error.inner_text()
    assert leaf.get_by_label("orders_total: value").get_attribute("aria-invalid") == "true"

    leaf.get_by_label("orders_total: value").fill("150")
    page.locator(".pass", has_text="Valid").wait_for()
    assert node(page, "/where/all/1/any/0").locator(".leaf-error").count() == 0
    # a history test with a where and a window, in the nested group
    node(page, "/where/all/1").get_by_role("button", name="History test in this group").last.click()
    history = node(page, "/where/all/1/any/1")
    history.get_by_label("Within the last").fill("60d")
    history.get_by_role("button", name="Only orders where…").click()
    inner = node(page, "/where/all/1/any/1/where/all/0")
    inner.get_by_label("Field", exact=True).select_option("amount")
    inner = node(page, "/where/all/1/any/1/where/all/0")
    inner.get_by_label("Operator").select_option("gte")
    node(page, "/where/all/1/any/1/where/all/0").get_by_label("amount: value").fill("20")
    page.wait_for_function("document.getElementById('yaml').value.includes('within_last: 60d')"
                           " && document.getElementById('yaml').value.includes('gte: 20')")
    page.locator(".pass", has_text="Valid").wait_for()
    body = yaml.safe_load(page.locator("#yaml").input_value())
    assert body["where"]["all"][1]["any"][1] == {"history": "orders", "where": {"all": [
        {"field": "amount", "gte": 20}]}, "within_last": "60d", "count": {"gte": 1}}
    screenshot(page, tmp_path / "builder.png", full_page=False)

    page.get_by_role("button", name="Preview", exact=True).click()
    count = page.locator("#count-value")
    count.wait_for()
    expected = generated(spark, console, "segment", body, "20261102T070000Z-browser-seg")
    assert int(count.get_attribute("data-count")) == expected["candidates"]
    page.locator("#preview-breakdown table").wait_for()
    screenshot(page, tmp_path / "segment-preview.png")
    shutil.copy(tmp_path / "builder.png", DOCS / "console-builder.png")


def test_an_edit_that_drops_items_from_a_published_feed_shows_the_removes_and_the_gate_forecast(
        spark, console, browser_page, tmp_path):
    page = login(browser_page, console, "editor", "/definitions/electronics")
    node(page, "/where").get_by_role("button", name="Field test in this group").last.click()
    leaf = node(page, "/where/all/2")
    leaf.get_by_label("Field", exact=True).fill("price.amount")
    leaf.get_by_label("Field", exact=True).dispatch_event("change")
    leaf = node(page, "/where/all/2")
    leaf.get_by_label("Operator").select_option("lt")
    node(page, "/where/all/2").get_by_label("price.amount: value").fill("150")
    page.wait_for_function("document.getElementById('yaml').value.includes('lt: 150')")
    page.locator(".pass", has_text="Valid").wait_for()
    page.get_by_role("button", name="Preview", exact=True).click()
    removed = page.locator('#change-summary [data-op="remove"]')
    removed.wait_for(timeout=60_000)

    edited = yaml.safe_load(page.locator("#yaml").input_value())
    expected = generated(spark, console, "feed", edited, "20261102T080000Z-browser-feed", base_run=RUN)
    assert removed.inner_text() == f"−{expected['delta']['ops']['remove']:,} removed"
    verdict = page.locator("#gate-verdict")
    assert "would be held" in verdict.inner_text()
    assert "share_removed" in page.locator("#preview-gates table").inner_text()
    page.locator("#preview-backtest table").wait_for(timeout=60_000)
    screenshot(page, tmp_path / "preview.png")
    page.locator("#preview-panel").screenshot(path=str(tmp_path / "preview-panel.png"))
    shutil.copy(tmp_path / "preview-panel.png", DOCS / "console-preview.png")


def test_a_publisher_publishes_from_the_editor_after_the_confirmation_repeats_the_change(console, browser_page):
    page = login(browser_page, console, "publisher", "/definitions/electronics")
    leaf = node(page, "/where/all/1")
    leaf.get_by_label("price.amount: value").fill("20")
    page.wait_for_function("document.getElementById('yaml').value.includes('gte: 20')")
    page.get_by_role("button", name="Publish…").click()
    dialog = page.get_by_role("dialog")
    dialog.locator('#change-summary [data-op="remove"]').wait_for(timeout=60_000)
    assert "Gate forecast" in dialog.inner_text()
    dialog.get_by_role("button", name="Publish", exact=True).click()
    assert "message is required" in dialog.get_by_role("alert").inner_text()
    dialog.get_by_label("Message (required)").fill("Raise the floor to 20 PLN")
    dialog.get_by_role("button", name="Publish", exact=True).click()
    page.wait_for_url("**/definitions/electronics/versions*")
    info = console.registry.definition("electronics")
    version = console.registry.version("electronics", info.published_version)
    assert (version.author, version.body["where"]["all"][1]) == ("publisher", {"field": "price.amount", "gte": 20})
    assert "Raise the floor to 20 PLN" in page.locator("main").inner_text()


def test_the_inspector_shows_the_failing_leaf_of_an_excluded_offer(console, browser_page):
    from pyspark.sql import functions as F

    agg = console.engine.aggregate("offer")
    row = agg.df.where(~F.col("category.path").startswith("Electronics")).select("offer_id", "category.path") \
        .orderBy("offer_id").first()
    page = login(browser_page, console, "viewer", "/inspect")
    page.get_by_label("Id", exact=True).fill(row["offer_id"])
    page.get_by_role("button", name="Inspect").click()
    section = page.locator('section[data-definition="electronics"]')
    section.wait_for()
    assert "not in" in section.locator("h2").inner_text()
    failing = section.locator("ul.failing").inner_text()
    assert "category.path starts_with 'Electronics'" in failing and repr(row["path"]) in failing
