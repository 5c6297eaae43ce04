"""Built-in templates with their options in the JVM (RenderGeneric.java) as render.py writes them.

generic_csv and generic_tsv with ``fields`` (nested paths, lists, maps, structs, timestamps,
floats, decimals) and ``columns`` render in the JVM; the Python renderer is the reference. The
Python side here runs as the pipeline runs it: rows handed over by Arrow (``mapInArrow``), so
both see the values Spark holds. Text, errors, missing fields and payload must be equal for
every offer, random and hostile; a difference names the offer, the template and the field.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql import types as T

from feedgen.aggregator.schemas import OFFER_AGGREGATE_SCHEMA
from feedgen.generator.definitions import definitions_from_mapping
from feedgen.generator.generate import (
    _batch_rows,
    _converter,
    _missing,
    _required_paths,
    content_hash,
    generate_entity,
    snapshot_items,
)
from feedgen.generator.jvm import jvm_renderable, jvm_unrenderable, render_column
from feedgen.generator.parts import assemble
from feedgen.generator.render import get_renderer
from tests.test_render_jvm import HOSTILE, random_offer

RUN_ID = "20261122T030500Z-aaaaaa"
AS_OF = dt.datetime(2026, 11, 22, 3, 5, tzinfo=dt.UTC)
# the fields partners choose: nested paths, lists, structs, maps, numbers, timestamps, a path twice
FIELD_SETS = [
    ["offer_id", "title", "price.amount"],
    ["offer_id", "price", "sale_price.amount", "effective_price.currency", "seller.rating", "rating.average",
     "rating.count", "stock"],
    ["title", "category.path", "category.levels", "campaign_ids", "image_link", "link", "offer_id"],
    ["offer_id", "attributes", "campaigns", "seller", "updated_at", "description", "category"],
    ["offer_id", "brand", "brand", "mpn", "gtin", "product.name", "product", "rating"],
]
CASES = [(name, {"fields": fields}) for fields in FIELD_SETS for name in ("generic_csv", "generic_tsv")]
# an aggregate has no offer without an id; a generic template is checked for one all the same
SCHEMA = T.StructType([T.StructField(f.name, f.dataType) for f in OFFER_AGGREGATE_SCHEMA.fields]).add("rid", "long")

FLOATS = [0.0, -0.0, 4.5, 4.1, 0.1 + 0.2, 1e16, 1e-5, 1e-4, 123.0, 5e-324, 1.7976931348623157e308, 2.0 ** -1074,
          9007199254740993.0, 1 / 3, -2.5e-7, float("nan"), float("inf"), float("-inf")]
TEXTS = ["", " ", "=1+2", " -5 ", "+48601234567", "@SUM(A1)", "\t=x", "a,b", 'say "hi"', "a\tb\nc", "x|y", "{}",
         "Zażółć", "😀", "\x00\x0b\x7f\ufffe", "\u2028", "\u00a0@x", "[1]", HOSTILE]


def _ts(rng: random.Random) -> dt.datetime:
    seconds = rng.choice([0, 1, -1, 1_700_000_000, -86_400 * 365 * 30, 4_102_444_800, 1_774_746_000])
    return dt.datetime.fromtimestamp(seconds, dt.UTC) + dt.timedelta(microseconds=rng.choice([0, 1, 500_000, 999_999]))


def full_offer(rng: random.Random, n: int) -> dict:
    """A random offer (tests/test_render_jvm.py) with every other column of the aggregate filled too."""
    item = random_offer(rng, n)
    text = lambda: rng.choice(TEXTS)  # noqa: E731
    item.update({
        "product_id": rng.choice([None, f"p-{n}", text()]),
        "seller_id": f"s-{n % 5}",
        "attributes": rng.choice([None, {}, {text(): text() for _ in range(rng.randint(1, 3))},
                                  {"color": None, "size": "XL"}]),
        "updated_at": rng.choice([None, _ts(rng)]),
        "seller": rng.choice([None, {"seller_id": f"s-{n % 5}", "name": text(), "rating": rng.choice(FLOATS + [None]),
                                     "country": rng.choice([None, "PL"]), "status": "active"}]),
        "campaigns": rng.choice([None, [], [{"campaign_id": text(), "name": text(), "scope_type": "brand",
                                             "scope_value": None, "discount_pct": rng.choice(FLOATS),
                                             "starts_at": _ts(rng), "ends_at": rng.choice([None, _ts(rng)])}]]),
        "campaign_ids": rng.choice([None, [], [text(), text()], ["c-1", None]]),
        "rating": rng.choice([None, {"average": rng.choice(FLOATS), "count": rng.choice([0, -3, 2 ** 62, None])}]),
    })
    if item["category"] is not None:
        item["category"]["levels"] = rng.choice([[], ["@x", "y"], [text()], None])
    if rng.random() < 0.05:
        item["offer_id"] = rng.choice([None, "", " ", "=o"])
    return item


def _row(item: dict, rid: int) -> dict:
    return {**{f.name: item.get(f.name) for f in OFFER_AGGREGATE_SCHEMA.fields}, "rid": rid}


def _python_rendered(cases):
    """The ``mapInArrow`` function: every row rendered by render.py with each case, as the pipeline's Python pass."""

    def run(batches):
        import pyarrow as pa

        renderers = [get_renderer(name, options) for name, options in cases]
        required = [_required_paths(r.required_fields) for r in renderers]
        converters = None
        for batch in batches:
            converters = converters or [_converter(f.type) for f in batch.schema]
            out = []
            for item in _batch_rows(batch, converters):
                rid = item.pop("rid")
                for i, renderer in enumerate(renderers):
                    result = renderer.render(item)
                    out.append((rid, i, result.text, list(result.errors), _missing(item, required[i]),
                                content_hash(result.fields)[1]))
            columns = list(zip(*out, strict=True)) if out else [[]] * 6
            yield pa.RecordBatch.from_arrays(
                [pa.array(columns[0], pa.int64()), pa.array(columns[1], pa.int32()), pa.array(columns[2], pa.string()),
                 pa.array(columns[3], pa.list_(pa.string())), pa.array(columns[4], pa.list_(pa.string())),
                 pa.array(columns[5], pa.string())],
                names=["rid", "i", "text", "errors", "missing", "payload"])

    return run


def _cells(case: tuple, text: str | None) -> list[str] | None:
    if text is None:
        return None
    dialect = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if case[0] == "generic_tsv" else {}
    return next(csv.reader(io.StringIO(text, newline=""), **dialect))


def differences(spark, rows: list[dict], cases=CASES) -> tuple[list[str], int]:
    """Where the JVM and Python write ``rows`` differently with ``cases``, first differing field
    named; and how many items both kept."""
    df = spark.createDataFrame(rows, SCHEMA)
    assert all(jvm_renderable(spark, name, options, df.schema) for name, options in cases)
    python = {(r["rid"], r["i"]): r for r in df.mapInArrow(
        _python_rendered(cases), "rid long, i int, text string, errors array<string>, missing array<string>, "
                                 "payload string").collect()}
    jvm = df.select("rid", *[render_column(name, options).alias(f"c{i}")
                             for i, (name, options) in enumerate(cases)]).collect()
    out, kept = [], 0
    for row in jvm:
        for i, case in enumerate(cases):
            got, want = row[f"c{i}"], python[(row["rid"], i)]
            where = f"offer {row['rid']} {case[0]} {case[1]['fields']}"
            kept += want["text"] is not None
            if got["text"] != want["text"]:
                a, b = _cells(case, got["text"]), _cells(case, want["text"])
                if a is not None and b is not None and len(a) == len(b):
                    k = next(k for k in range(len(a)) if a[k] != b[k])
                    out.append(f"{where}: field {case[1]['fields'][k]!r}: jvm {a[k]!r}, python {b[k]!r}")
                else:
                    out.append(f"{where}: jvm {got['text']!r}, python {want['text']!r}")
            for what in ("errors", "missing", "payload"):
                if got[what] != want[what]:
                    out.append(f"{where}: {what}: jvm {got[what]!r}, python {want[what]!r}")
            if got["warnings"]:
                out.append(f"{where}: warnings {got['warnings']!r}: a generic template has none")
    return out, kept


def test_generic_templates_with_fields_render_in_the_jvm_as_in_python_on_random_offers(spark):
    rng = random.Random(20)
    rows = [_row(full_offer(rng, n), n) for n in range(160)]
    problems, kept = differences(spark, rows)
    assert not problems, f"{len(problems)} differences; first ones:\n" + "\n".join(problems[:8])
    # the random offers reach both sides of the key rule
    assert 0 < len(rows) * len(CASES) - kept < len(rows) * len(CASES) // 5


_text = st.one_of(st.sampled_from(TEXTS), st.text(st.sampled_from(list("=+-@ ,\"'\t\n\r|{}[]\\aZ0.é😀\x00\x85\u2028")),
                                                   max_size=8))
_money = st.one_of(st.none(), st.fixed_dictionaries({
    "amount": st.one_of(st.none(), st.decimals(min_value=-10 ** 12, max_value=10 ** 12, places=2)),
    "currency": st.one_of(st.none(), _text)}))
_float = st.one_of(st.none(), st.floats(), st.sampled_from(FLOATS))
_time = st.one_of(st.none(), st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1),
                                          timezones=st.just(dt.UTC)))
_offer = st.fixed_dictionaries({
    "offer_id": st.one_of(st.sampled_from(["o-1", "o-2", "", " "]), _text),
    "title": st.one_of(st.none(), _text), "description": st.one_of(st.none(), _text),
    "brand": st.one_of(st.none(), _text), "mpn": st.one_of(st.none(), _text), "gtin": st.one_of(st.none(), _text),
    "link": st.one_of(st.none(), _text), "image_link": st.one_of(st.none(), _text),
    "stock": st.one_of(st.none(), st.integers(-2 ** 31, 2 ** 31 - 1)),
    "price": _money, "sale_price": _money, "effective_price": _money,
    "category": st.one_of(st.none(), st.fixed_dictionaries({
        "path": st.one_of(st.none(), _text), "levels": st.one_of(st.none(), st.lists(st.one_of(st.none(), _text),
                                                                                  max_size=3)),
        "top": st.one_of(st.none(), _text)})),
    "attributes": st.one_of(st.none(), st.dictionaries(_text, st.one_of(st.none(), _text), max_size=3)),
    "updated_at": _time,
    "seller": st.one_of(st.none(), st.fixed_dictionaries({"name": st.one_of(st.none(), _text), "rating": _float})),
    "product": st.one_of(st.none(), st.fixed_dictionaries({"name": st.one_of(st.none(), _text)})),
    "campaigns": st.one_of(st.none(), st.lists(st.fixed_dictionaries({
        "campaign_id": _text, "discount_pct": _float, "starts_at": _time}), max_size=2)),
    "campaign_ids": st.one_of(st.none(), st.lists(st.one_of(st.none(), _text), max_size=3)),
    "rating": st.one_of(st.none(), st.fixed_dictionaries({"average": _float,
                                                         "count": st.one_of(st.none(), st.integers(-2 ** 63,
                                                                                                   2 ** 63 - 1))})),
})


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(offers=st.lists(_offer, min_size=1, max_size=5))
def test_generic_templates_render_hostile_offers_in_the_jvm_as_in_python(spark, offers):
    def filled(struct: dict | None, dtype) -> dict | None:
        return None if struct is None else {f.name: struct.get(f.name) for f in dtype.fields}

    rows = []
    for n, item in enumerate(offers):
        row = _row(item, n)
        for name in ("seller", "product", "rating", "category"):
            row[name] = filled(row[name], SCHEMA[name].dataType)
        row["campaigns"] = None if row["campaigns"] is None else [
            filled(c, SCHEMA["campaigns"].dataType.elementType) for c in row["campaigns"]]
        rows.append(row)
    problems, _ = differences(spark, rows, CASES[2:8])
    assert not problems, "\n".join(problems[:8])


def test_every_generic_option_is_taken_over_by_the_jvm_and_odd_aggregates_go_to_python(spark):
    from feedgen.generator.render import _RENDER_OPTIONS

    schema = OFFER_AGGREGATE_SCHEMA
    for name, keys in _RENDER_OPTIONS.items():
        options = {"fields": ["offer_id", "price.amount"], "columns": ["id", "amount"]}
        assert set(keys) <= set(options), f"{name}: an option the JVM renderer does not read: {keys}"
        assert jvm_unrenderable(spark, name, {**options, "max_file_items": 5}, schema) is None, name
    odd = spark.createDataFrame([], "offer_id string, price struct<amount: double, currency: binary>").schema
    assert "no field 'title'" in jvm_unrenderable(spark, "generic_csv", {"fields": ["offer_id", "title"]}, odd)
    assert "holds binary" in jvm_unrenderable(spark, "generic_csv", {"fields": ["offer_id", "price"]}, odd)
    assert jvm_unrenderable(spark, "generic_csv", {"fields": ["offer_id", "price.amount"]}, odd) is None


# ------------------------------------------------------------------------ whole passes

FEEDS = [
    {"id": "csv-lookup", "template": "generic_csv", "options": {"fields": FIELD_SETS[0]},
     "where": {"field": "seller_id", "in": ["s-0", "s-1"]}, "delivery": {"events": True}},
    {"id": "tsv-lookup", "template": "generic_tsv", "options": {"fields": FIELD_SETS[3], "max_file_items": 7},
     "where": {"field": "seller_id", "eq": "s-2"}},
    {"id": "csv-nested", "template": "generic_csv", "options": {"fields": FIELD_SETS[1]},
     "where": {"field": "seller_id", "in": ["s-1", "s-3", "s-4"]}, "delivery": {"events": True}},
    {"id": "csv-lists", "template": "generic_csv", "options": {"fields": FIELD_SETS[2]},
     "where": {"field": "seller_id", "in": ["s-0", "s-4"]}},
    {"id": "tsv-same-fields", "template": "generic_tsv", "options": {"fields": FIELD_SETS[4]},
     "where": {"field": "seller_id", "in": ["s-3"]}, "delivery": {"events": True}},
    {"id": "google", "template": "google_merchant_rss", "where": {"field": "seller_id", "in": ["s-0", "s-3"]}},
    {"id": "meta", "template": "meta_catalog_csv", "where": {"field": "seller_id", "in": ["s-1", "s-2"]}},
    {"id": "csv-more", "template": "generic_csv", "options": {"fields": [*FIELD_SETS[0], "seller.rating"]},
     "where": {"field": "seller_id", "eq": "s-4"}},
    {"id": "tsv-more", "template": "generic_tsv", "options": {"fields": ["offer_id", "title"]},
     "where": {"field": "seller_id", "in": ["s-0"]}},
]
# (8 or more lookups on one field: the pass reads the scan's column batches, generate.LOOKUP_MIN)
# non-lookup predicates: the pass reads rows with _matches instead of column batches
RANGES = [
    {**FEEDS[0], "id": "csv-range", "where": {"field": "price.amount", "between": [1, 100]}},
    {**FEEDS[1], "id": "tsv-not", "where": {"not": {"field": "brand", "eq": "Zeta"}}},
    {**FEEDS[2], "id": "csv-ends", "where": {"field": "offer_id", "ends_with": "1"}},
    {**FEEDS[4], "id": "tsv-all", "where": {"field": "offer_id", "is_null": False}},
    FEEDS[5],
]


def _definitions(feeds: list[dict]) -> list:
    definitions = list(definitions_from_mapping({"feeds": feeds}))
    # columns (the header's names) is a render option too; definitions files do not offer it yet
    return [replace(d, options={**d.options, "columns": [f.upper() for f in d.options["fields"]]})
            if d.id == "csv-nested" else d for d in definitions]


def both_paths(spark, tmp_path: Path, aggregate, feeds: list[dict]) -> dict:
    """generate_entity with the JVM on and off: {jvm: (stats, {id: (header, sorted lines)}, {id: snapshots})}."""
    out = {}
    definitions = _definitions(feeds)
    for jvm in (True, False):
        root = tmp_path / str(jvm)
        stats = generate_entity(spark, aggregate, definitions, entity="offer", root=root, run_id=RUN_ID, as_of=AS_OF,
                                jvm=jvm, part_max_raw_bytes=1500)
        docs = {}
        for d, s in stats.items():
            files = [assemble(root / "runs" / RUN_ID / s["folder"], i).decode("utf-8").split("\n")
                     for i in range(s["files"])]
            # item order within a part, and so where files split, may differ between the paths
            docs[d] = (files[0][0], sorted(line for lines in files for line in lines[1:]))
        snaps = {d: sorted(tuple(r) for r in snapshot_items(spark, root, RUN_ID, "offer", s["target"]).collect())
                 for d, s in stats.items() if s["events"]}
        out[jvm] = stats, docs, snaps
    return out


def assert_same(out: dict, read: str) -> None:
    (jvm_stats, jvm_docs, jvm_snaps), (py_stats, py_docs, py_snaps) = out[True], out[False]
    assert {(s["render_path"], s["input"], s["reason"]) for s in jvm_stats.values()} == {("jvm", read, None)}
    assert {s["render_path"] for s in py_stats.values()} == {"python"}
    for d in jvm_docs:
        assert jvm_docs[d][0] == py_docs[d][0], f"{d}: header"
        extra = set(jvm_docs[d][1]) ^ set(py_docs[d][1])
        assert jvm_docs[d] == py_docs[d], f"{d}: items only one path wrote (first 3): {sorted(extra)[:3]}"
    assert jvm_snaps == py_snaps
    same = ("items", "candidates", "renders", "excluded", "warnings", "null_rates")
    for d in jvm_stats:
        assert {k: jvm_stats[d][k] for k in same} == {k: py_stats[d][k] for k in same}, d
        assert ({k: sorted(v) for k, v in jvm_stats[d]["excluded_samples"].items()}
                == {k: sorted(v) for k, v in py_stats[d]["excluded_samples"].items()}), d


def _rows(n: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for k in range(n):
        item = {**full_offer(rng, k), "seller_id": f"s-{k % 5}"}
        item["offer_id"] = item["offer_id"] if item["offer_id"] is not None else ""   # the aggregate's key is not null
        rows.append({f.name: item.get(f.name) for f in OFFER_AGGREGATE_SCHEMA.fields})
    return rows


def test_a_pass_of_generic_feeds_read_from_parquet_columns_writes_what_python_writes(spark, tmp_path):
    spark.createDataFrame(_rows(90), OFFER_AGGREGATE_SCHEMA).write.parquet(str(tmp_path / "aggregate"))
    out = both_paths(spark, tmp_path, spark.read.parquet(str(tmp_path / "aggregate")), FEEDS)
    assert_same(out, "columns")
    stats, docs, snaps = out[True]
    assert docs["csv-nested"][0] == ",".join(f.upper() for f in FIELD_SETS[1])   # columns
    assert stats["tsv-lookup"]["files"] > 1 and all(stats[d]["items"] > 0 for d in stats)
    assert snaps["csv-nested"] and sum(stats[d]["excluded"].get("missing_id", 0) for d in stats) > 0


def test_a_pass_with_ranges_reads_rows_and_writes_what_python_writes(spark, tmp_path):
    aggregate = spark.createDataFrame(spark.sparkContext.parallelize(_rows(70, seed=8), 2), OFFER_AGGREGATE_SCHEMA)
    out = both_paths(spark, tmp_path, aggregate, RANGES)
    assert_same(out, "rows")
    assert all(s["items"] > 0 for s in out[True][0].values())


def test_timestamps_are_written_in_the_sessions_time_zone_as_python_gets_them(spark, tmp_path):
    rows = _rows(30, seed=9)
    for n, row in enumerate(rows):   # both sides of the 2026 DST change in Warsaw
        row["updated_at"] = dt.datetime(2026, 3, 29, 0, 30, tzinfo=dt.UTC) + dt.timedelta(minutes=17 * n,
                                                                                         microseconds=n)
    aggregate = spark.createDataFrame(rows, OFFER_AGGREGATE_SCHEMA)
    feeds = [{"id": "times", "template": "generic_csv", "delivery": {"events": True},
              "options": {"fields": ["offer_id", "updated_at", "campaigns"]}, "where": {"field": "seller_id", "ne": "x"}}]
    zone = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", "Europe/Warsaw")
    try:
        out = both_paths(spark, tmp_path, aggregate, feeds)
    finally:
        spark.conf.set("spark.sql.session.timeZone", zone)
    assert_same(out, "rows")
    written = "\n".join(out[True][1]["times"][1])
    assert "+01:00" in written and "+02:00" in written


@pytest.mark.parametrize("template", ["generic_csv", "generic_tsv"])
def test_generic_feeds_neutralise_formulas_in_the_jvm_as_python(spark, template):
    from tests.test_formula_policy import ATTACKS, NUMBERS

    rows = []
    for n, text in enumerate([*ATTACKS.values(), *NUMBERS]):
        item = full_offer(random.Random(n), n)
        item.update(offer_id=f"o-{n}", title=text, brand=text, campaign_ids=[text, "x"],
                    category={"path": text, "levels": [text], "top": None}, price={"amount": Decimal("-3.50"),
                                                                                     "currency": text})
        rows.append(_row(item, n))
    cases = [(template, {"fields": ["offer_id", "title", "brand", "campaign_ids", "category.path", "category.levels",
                                    "price.amount", "price.currency", "price"]})]
    problems, kept = differences(spark, rows, cases)
    assert not problems, "\n".join(problems[:8])
    assert kept == len(rows)
