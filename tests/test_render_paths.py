"""Each output is rendered by the JVM when its template is a built-in offer template (with its
options: generic CSV/TSV with their fields), else by Python (user templates);
run.json, the run summary and `feedgen runs show` say which, and why."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import yaml
from click.testing import CliRunner
from lxml import etree

from feedgen.aggregator.job import MARKER, aggregate_path
from feedgen.aggregator.schemas import CUSTOMER_AGGREGATE_SCHEMA, OFFER_AGGREGATE_SCHEMA
from feedgen.core.config import load_config
from feedgen.core.runs import new_run_record, parse_as_of
from feedgen.generator.generate import plan_targets, route_targets
from feedgen.generator.parts import assemble
from feedgen.jobs.cli import main
from feedgen.jobs.cmd_pipeline import print_run_summary
from feedgen.jobs.pipeline import generate_stage
from tests.test_generate import HOSTILE, offer
from tests.test_pick_valid import USER_TEMPLATES, price

RUN_ID = "20261122T030500Z-aaaaaa"
FEEDS = [
    {"id": "google", "template": "google_merchant_rss", "where": {"field": "stock", "gt": 0},
     "delivery": {"events": True}},
    {"id": "meta-csv", "template": "meta_catalog_csv", "where": {"field": "brand", "eq": "Acme"}},
    {"id": "cheapest", "template": "google_merchant_rss", "pick_one_per": "product_id", "order_by": ["price.amount"]},
    {"id": "ids", "template": "generic_csv", "options": {"fields": ["offer_id", "title", "price.amount"]},
     "where": {"field": "stock", "gt": 0}},
    {"id": "tsv", "template": "generic_tsv", "delivery": {"events": True},
     "options": {"fields": ["offer_id", "category.levels", "price", "description", "title"], "max_file_items": 3},
     "where": {"not": {"field": "brand", "eq": "Zeta"}}},
    {"id": "cheapest-ids", "template": "generic_csv", "options": {"fields": ["offer_id", "price.amount", "link"]},
     "pick_one_per": "product_id", "order_by": ["price.amount"]},
    {"id": "mine", "template": "my_item", "where": {"field": "title", "matches": "^[A-Z]"}},
]
ON_JVM = {"google", "meta-csv", "cheapest", "ids", "tsv", "cheapest-ids"}


def offers() -> list[dict]:
    return [offer(1), offer(2, title=HOSTILE, brand="Zeta", stock=0), offer(3, image_link=None, product_id="p-x"),
            offer(4, product_id="p-x", price=price("99.00")), offer(5, link=None, description=HOSTILE),
            offer(6, brand=None, mpn=None), offer(7, price=None, stock=2), offer(8, title="lower case")]


def run_generate(spark, folder: Path, jvm: bool) -> tuple[dict, Path]:
    """``generate_stage`` of a run over the offers above, with the JVM renderer on or off."""
    root = folder / "root"
    (folder / "defs").mkdir(parents=True)
    (folder / "defs" / "feeds.yaml").write_text(yaml.safe_dump({"feeds": FEEDS}), encoding="utf-8")
    config_path = folder / "feedgen.yaml"
    config_path.write_text(yaml.safe_dump({
        "root": str(root), "definitions": str(folder / "defs"),
        "generate": {"templates_dir": USER_TEMPLATES, "jvm_render": jvm}}), encoding="utf-8")
    path = aggregate_path(root, "offer", RUN_ID)
    spark.createDataFrame(offers(), OFFER_AGGREGATE_SCHEMA).repartition(2).write.parquet(str(path))
    (path / MARKER).write_text(json.dumps({"run_id": RUN_ID, "entity": "offer", "as_of": "2026-11-22T03:05:00Z",
                                           "rows": 8}), encoding="utf-8")
    record = new_run_record(RUN_ID, parse_as_of("2026-11-22T03:05:00Z"), "local[2]")
    return generate_stage(spark, load_config(config_path, environ={}), record, None, gate=False), root


def parsed_items(root: Path, stats: dict) -> list:
    """The items of one output, parsed and sorted: XML elements in canonical form, CSV rows as tuples."""
    doc = assemble(root / "runs" / RUN_ID / stats["folder"])
    if doc.lstrip().startswith(b"<?xml"):
        tree = etree.fromstring(doc)
        items = tree.findall("channel/item") or list(tree)
        return sorted(etree.tostring(i, method="c14n") for i in items)
    dialect = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if stats["template"].endswith("tsv") else {}
    return sorted(tuple(r) for r in csv.reader(io.StringIO(doc.decode("utf-8"), newline=""), **dialect))


def test_a_mixed_pass_renders_built_in_targets_in_the_jvm_the_rest_in_python_as_python_alone_would(
        spark, tmp_path, capsys):
    mixed, root = run_generate(spark, tmp_path / "mixed", jvm=True)
    python, py_root = run_generate(spark, tmp_path / "python", jvm=False)

    on_disk = json.loads((root / "runs" / RUN_ID / "run.json").read_text())["definitions"]
    paths = {d: (s["render_path"], s["reason"]) for d, s in on_disk.items()}
    # built-in templates with options (generic CSV/TSV with fields, file limits, a
    # pick) in the JVM; only the user template in Python, with why, per target in run.json
    assert {d for d, (path, _) in paths.items() if path == "jvm"} == ON_JVM
    assert all(reason is None for d, (_, reason) in paths.items() if d in ON_JVM)
    assert paths["mine"][0] == "python" and paths["mine"][1].startswith("'my_item' is a user template")
    assert {on_disk[d]["input"] for d in ON_JVM} <= {"rows", "columns"} and on_disk["mine"]["input"] == "arrow"
    assert {s["render_path"] for s in python["definitions"].values()} == {"python"}
    assert "switched off" in python["definitions"]["google"]["reason"]

    same = ("items", "candidates", "excluded", "warnings", "excluded_samples", "null_rates", "files")
    for d, s in mixed["definitions"].items():
        py = python["definitions"][d]
        assert parsed_items(root, s) == parsed_items(py_root, py), d
        assert {k: s[k] for k in same} == {k: py[k] for k in same}, d
    for d in ("google", "mine", "ids", "tsv", "cheapest-ids"):
        assert mixed["definitions"][d]["items"] > 0, d
    assert mixed["definitions"]["tsv"]["files"] > 1      # max_file_items: 3
    assert mixed["definitions"]["cheapest"]["pick_runner_ups"] == 1     # o-3 has no image: o-4 is shown
    header = assemble(root / "runs" / RUN_ID / mixed["definitions"]["tsv"]["folder"]).split(b"\n")[0]
    assert header == b"offer_id\tcategory.levels\tprice\tdescription\ttitle"

    print_run_summary(mixed)
    shown = " ".join(capsys.readouterr().err.split())
    assert f"rendered in the JVM: {len(ON_JVM)} output(s)" in shown
    assert "rendered in Python: 1 output(s) (mine): 'my_item' is a user template" in shown
    assert "cheapest 1" in shown
    listed = CliRunner().invoke(main, ["runs", "show", RUN_ID, "--root", str(root)])
    assert listed.exit_code == 0, listed.output
    assert "rendered in Python: 1 output(s) (mine): 'my_item' is a user template" in listed.output


def test_every_output_that_python_renders_has_a_reason(spark):
    from feedgen.generator.definitions import definitions_from_mapping

    targets, _ = plan_targets(list(definitions_from_mapping({"feeds": FEEDS[:2]}, validate=False)))
    odd = spark.createDataFrame([], "offer_id string, price double").schema
    assert route_targets(spark, OFFER_AGGREGATE_SCHEMA, "offer", targets) == [None, None]
    odd_reasons = route_targets(spark, odd, "offer", targets)
    assert [r.split(":")[0] for r in odd_reasons] == ["'google_merchant_rss'", "'meta_catalog_csv'"]
    assert all("which the JVM renderer reads" in r or "where the JVM renderer reads" in r for r in odd_reasons)
    # the customer audience exports render in the JVM too (RenderCustomer.java)
    segments, _ = plan_targets(list(definitions_from_mapping(
        {"segments": [{"id": "all", "exports": ["meta_custom_audience", "ids_csv"]}]}, validate=False)))
    assert route_targets(spark, CUSTOMER_AGGREGATE_SCHEMA, "customer", segments) == [None] * len(segments)
