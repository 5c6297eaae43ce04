"""The validate and explain commands."""

from __future__ import annotations

from click.testing import CliRunner

from feedgen.aggregator.job import MARKER
from feedgen.aggregator.schemas import OFFER_AGGREGATE_SCHEMA
from feedgen.core.paths import EXAMPLES_DIR
from feedgen.jobs.cli import main
from tests.predicate_support import dataframe, rows_for

FEED = """\
feeds:
  - id: google-electronics
    template: google_merchant_rss
    where:
      all:
        - {field: category.path, starts_with: "Electronics"}
        - {field: price.amount, between: [10, 5000]}
        - any:
            - {field: seller.rating, gte: 4.5}
            - {field: campaign_ids, contains: black-friday}
        - not: {field: brand, in: [NoName, Generic]}
"""


def run(*args: str):
    return CliRunner().invoke(main, ["--log-level", "ERROR", *args])


def test_validate_the_examples_prints_a_summary():
    result = run("validate", str(EXAMPLES_DIR / "definitions"))
    assert result.exit_code == 0, result.output
    assert "definitions OK" in result.output and "feeds of offers" in result.output
    assert "google_merchant_rss" in result.output and "ids_csv" in result.output


def test_validate_exits_2_listing_every_problem(tmp_path):
    (tmp_path / "bad.yaml").write_text(
        "feeds:\n  - {id: a, template: google_merchant_rss, where: {field: prise, gt: 1}}\n"
        "  - {id: b, template: nope}\n", encoding="utf-8")
    result = run("validate", str(tmp_path))
    assert result.exit_code == 2
    assert "2 problems in the definitions" in result.output
    assert "bad.yaml:2: feed 'a' where.field: unknown field 'prise'" in result.output
    assert "bad.yaml:3: feed 'b' template: unknown template 'nope'" in result.output


def test_validate_takes_the_directory_from_the_definitions_option(tmp_path):
    (tmp_path / "ok.yaml").write_text(FEED, encoding="utf-8")
    result = run("validate", "--definitions", str(tmp_path))
    assert result.exit_code == 0 and "1 definitions OK" in result.output


def test_explain_shows_each_clause_for_one_offer(spark, tmp_path):
    defs = tmp_path / "defs"
    defs.mkdir()
    (defs / "feeds.yaml").write_text(FEED, encoding="utf-8")
    folder = tmp_path / "root" / "aggregates" / "offer" / "20261122T000000Z-abcdef"
    rows = rows_for(OFFER_AGGREGATE_SCHEMA, [
        {"offer_id": "o1", "category": {"path": "Electronics > TV"}, "price": {"amount": 6999}, "brand": "Sony",
         "seller": {"rating": 4.9}, "campaign_ids": []},
        {"offer_id": "o2", "category": {"path": "Electronics > TV"}, "price": {"amount": 99}, "brand": None,
         "seller": {"rating": 3.0}, "campaign_ids": ["black-friday"]},
    ])
    dataframe(spark, OFFER_AGGREGATE_SCHEMA, rows).write.parquet(str(folder))
    (folder / MARKER).write_text("{}", encoding="utf-8")
    common = ["--root", str(tmp_path / "root"), "--definitions", str(defs), "--as-of", "2026-11-22T00:00:00Z"]

    out = run("explain", "google-electronics", "o1", *common)
    assert out.exit_code == 0, out.output
    assert "offer o1 is NOT a member" in out.output
    lines = out.output.splitlines()
    assert any(line.split()[:4] == ["false", "price.amount", "between", "[10,"] and "value: 6999.00" in line for line in lines)
    assert any(line.split()[:3] == ["true", "category.path", "starts_with"] for line in lines)

    out = run("explain", "google-electronics", "o2", *common)
    assert "offer o2 IS a member" in out.output
    assert any(line.split()[:3] == ["true", "campaign_ids", "contains"] for line in out.output.splitlines())

    missing = run("explain", "google-electronics", "o9", *common)
    assert missing.exit_code == 2 and "offer 'o9' is not in the aggregate" in missing.output
