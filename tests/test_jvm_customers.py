"""The customer audience exports in the JVM (RenderCustomer.java) as render.py writes them.

ids_csv, google_customer_match and meta_custom_audience render in the JVM from the same spec
(generator/customer_spec.py); the Python renderer is the reference. Text, errors, warnings,
missing fields and payload must be equal for every customer, random and hostile (unicode
emails with spaces and capitals, plus-addressing, phones with spaces, dashes, ``+`` or ``00``,
missing values, formula-looking names); a whole customer pass writes the same parts, stats,
snapshots and membership rows either way, and run.json says ``jvm`` for every export.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections import defaultdict
from pathlib import Path

import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from feedgen.aggregator.schemas import CUSTOMER_AGGREGATE_SCHEMA
from feedgen.generator.customer_spec import EXPORTS
from feedgen.generator.definitions import definitions_from_mapping
from feedgen.generator.generate import (
    _missing,
    _required_paths,
    content_hash,
    generate_entity,
    snapshot_items,
)
from feedgen.generator.jvm import jvm_unrenderable, render_column
from feedgen.generator.parts import assemble
from feedgen.generator.render import get_renderer

RUN_ID = "20261122T030500Z-aaaaaa"
AS_OF = dt.datetime(2026, 11, 22, 3, 5, tzinfo=dt.UTC)
NAMES = sorted(EXPORTS)
INPUTS = ("customer_id", "email", "phone", "first_name", "last_name", "country", "city", "zip")
SCHEMA = T.StructType([T.StructField(c, T.StringType()) for c in INPUTS]).add("rid", "long")

EMAILS = ["Jan.Kowalski+promo@GMAIL.com", "  ZOFIA@Example.PL ", "a.b.c@googlemail.com", "+x@gmail.com",
          "...@gmail.com", "ŁUKASZ@przykład.pl", "user@@example.com", "no-at-sign", "a@b", "a@.b", "a@b.",
          "x y@example.com", "x\u00a0y@example.com", "\tuser@example.com\n", "İSTANBUL@example.com",
          "straße@EXAMPLE.de", "=cmd@example.com", "e\u0301@example.com", "ΣΑΣ@example.gr", "", " ", "@", "a@b.c"]
PHONES = ["+48 601 234 567", "0048-601-234-567", "601234567", "48601234567", "(601) 234-567", "+1 (555) 010-9999",
          "15550109999", "5550109999", "0601234567", "06 12 34 56 78", "+39 06 1234 5678", "0612345678",
          "+0048601", "12", "abc", "+", "00", "٠١٢٣٤٥٦٧٨٩", "601.234.567", "601/234/567", "+48\u2003601234567",
          "", " ", "=1+2", "-5"]
COUNTRIES = ["PL", "pl", " de ", "Poland", "UNITED STATES", "usa", "IT", "US", "CA", "FR", "XX", "Polska", "ß",
             "", " ", None, "P1", "=PL"]
NAMES_ = ["Jan", "  Anna  Maria ", "O'Brien-Smith", "ŻÓŁW", "José", "Jose\u0301", "=HYPERLINK(\"x\")", "+1", "-",
          "@user", "Łukasz 2nd", "Ⅻ", "x²", "李小龍", "İlker", "ΟΔΥΣΣΕΥΣ", "a_b", "tab\there", "", " ", "😀 smile",
          "\x00\x0b\x7f"]
CITIES = ["Kraków", "New York", "Saint-Étienne", "=SUM(A1)", "  ", "", "São Paulo", "Zürich 8001"]
ZIPS = ["31-042", "10001-1234", " 90210 ", "SW1A 1AA", "=1+1", "+48\n00-001", "-5", "", " ", "a,b", 'say "x"']
IDS = ["c-1", "=c-2", "", " ", "+48", "a,b", 'q"uote', "Zażółć", "@id", "-3", "x\ty"]


def random_customer(rng: random.Random, rid: int) -> dict:
    def pick(values, p_none: float = 0.1):
        return None if rng.random() < p_none else rng.choice(values)

    return {"customer_id": pick(IDS, 0.03) if rng.random() < 0.3 else f"c-{rid}", "email": pick(EMAILS),
            "phone": pick(PHONES), "first_name": pick(NAMES_), "last_name": pick(NAMES_),
            "country": pick(COUNTRIES), "city": pick(CITIES), "zip": pick(ZIPS), "rid": rid}


def hostile_customers() -> list[dict]:
    """Every value of each list in its own column, the others valid: each rule meets every hostile value."""
    base = {"customer_id": "c", "email": "jan@example.com", "phone": "+48601234567", "first_name": "Jan",
            "last_name": "Kowalski", "country": "PL", "city": "Kraków", "zip": "31-042"}
    rows = []
    for column, values in [("email", EMAILS), ("phone", PHONES), ("country", [*COUNTRIES, "US", "CA", "IT"]),
                           ("first_name", NAMES_), ("last_name", NAMES_), ("city", CITIES), ("zip", ZIPS),
                           ("customer_id", [*IDS, None])]:
        for value in values:
            for country in ("PL", "US", "IT", None):
                rows.append({**base, "country": country, column: value})
    # only the name/zip/city route to an identifier, or none at all
    rows += [{**base, "email": None, "phone": None}, {**base, "email": None, "phone": None, "zip": None},
             {**base, "email": None, "phone": None, "city": None, "zip": None},
             {**base, "email": None, "phone": None, "country": None}, dict.fromkeys(base)]
    return [{**r, "rid": n} for n, r in enumerate(rows)]


def both_renders(spark, rows: list[dict]) -> list[tuple]:
    """(rid, name, python result, jvm result) per customer and export; a result is (text, errors, warnings, missing, payload)."""
    df = spark.createDataFrame(rows, SCHEMA).repartition(3)
    jvm = {}
    for name in NAMES:
        assert jvm_unrenderable(spark, name, None, CUSTOMER_AGGREGATE_SCHEMA) is None   # registers the UDF
        for r in df.select("rid", render_column(name, payload=True).alias("r")).collect():
            jvm[(r["rid"], name)] = (r["r"]["text"], list(r["r"]["errors"]), list(r["r"]["warnings"]),
                                     list(r["r"]["missing"]), r["r"]["payload"])
    out = []
    for name in NAMES:
        renderer = get_renderer(name)
        required = _required_paths(renderer.required_fields)
        for row in rows:
            item = {k: v for k, v in row.items() if k != "rid"}
            result = renderer.render(item)
            python = (result.text, list(result.errors), list(result.warnings), _missing(item, required),
                      content_hash(result.fields)[1])
            out.append((row["rid"], name, python, jvm[(row["rid"], name)]))
    return out


def assert_equal(spark, rows: list[dict]) -> list[tuple]:
    by_rid = {r["rid"]: r for r in rows}
    out = both_renders(spark, rows)
    for rid, name, python, jvm in out:
        assert jvm == python, f"{name} on {by_rid[rid]}:\n python {python}\n jvm    {jvm}"
    return out


def test_every_customer_export_renders_random_customers_in_the_jvm_as_in_python(spark):
    rng = random.Random(20)
    assert_equal(spark, [random_customer(rng, n) for n in range(600)])


def test_every_customer_export_renders_hostile_customers_in_the_jvm_as_in_python(spark):
    results = [python for _, _, python, _ in assert_equal(spark, hostile_customers())]
    # the cases mean something: refused, left out, neutralised
    assert any("bad_email" in p[2] for p in results) and any("bad_phone" in p[2] for p in results)
    assert any(p[0] is None and p[1] == ["no_identifier"] for p in results)
    assert any(p[0] is None and p[1] == ["missing_id"] for p in results)
    assert any(p[0] and p[0].startswith("'=c") for p in results)


def test_customer_exports_are_routed_to_the_jvm_and_odd_aggregates_to_python(spark):
    schema = CUSTOMER_AGGREGATE_SCHEMA
    for name in NAMES:
        assert jvm_unrenderable(spark, name, None, schema) is None, name
    odd = T.StructType([f if f.name != "zip" else T.StructField("zip", T.LongType()) for f in schema.fields])
    assert "zip" in jvm_unrenderable(spark, "meta_custom_audience", None, odd)
    assert jvm_unrenderable(spark, "ids_csv", None, odd) is None


def _customers(n: int, seed: int = 5) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for k in range(n):
        row = random_customer(rng, k)
        row.pop("rid")
        if row["customer_id"] in (None, "") or rng.random() < 0.7:
            row["customer_id"] = f"c-{k}"
        rows.append({**row, "orders": [], "events": []})
    return rows


SEGMENTS = [
    {"id": "everyone", "exports": ["meta_custom_audience", "ids_csv"], "delivery": {"events": True}},
    {"id": "poles", "where": {"field": "country", "eq": "PL"}, "exports": ["ids_csv"]},
    {"id": "americans", "where": {"field": "country", "in": ["US", "us", "USA"]},
     "exports": ["meta_custom_audience"], "delivery": {"events": True}},
    {"id": "not-krakow", "where": {"not": {"field": "city", "eq": "Kraków"}},
     "exports": ["meta_custom_audience", "ids_csv"]},
    {"id": "gmail", "where": {"field": "email", "ends_with": "gmail.com"}, "exports": ["ids_csv"]},
]


def both_passes(spark, tmp_path: Path, segments: list[dict]) -> dict:
    """generate_entity with the JVM on and off: {jvm: (stats, {folder: (header, sorted lines)}, snaps, members)}."""
    df = spark.createDataFrame(_customers(400), CUSTOMER_AGGREGATE_SCHEMA).repartition(3)
    definitions = list(definitions_from_mapping({"segments": segments}))
    out = {}
    for jvm in (True, False):
        root = tmp_path / str(jvm)
        stats = generate_entity(spark, df, definitions, entity="customer", root=root, run_id=RUN_ID, as_of=AS_OF,
                                jvm=jvm, part_max_raw_bytes=2000)
        docs = {}
        for e in [*stats.values(), *(x for s in stats.values() for x in s["exports"].values())]:
            files = [assemble(root / "runs" / RUN_ID / e["folder"], i).decode("utf-8").split("\n")
                     for i in range(e["files"])]
            docs[e["folder"]] = (files[0][0], sorted(line for lines in files for line in lines[1:]))
        snaps = {d: sorted(tuple(r) for r in snapshot_items(spark, root, RUN_ID, "customer", s["target"]).collect())
                 for d, s in stats.items() if s["events"]}
        members: dict[str, set] = defaultdict(set)
        staging = root / "runs" / RUN_ID / "_generate" / "customer"
        for r in spark.read.parquet(str(staging)).where(F.col("kind") == "member").collect():
            members[r["key"]] |= set(json.loads(r["payload"]))
        out[jvm] = stats, docs, snaps, dict(members)
    return out


def test_a_whole_customer_pass_in_the_jvm_writes_what_python_writes(spark, tmp_path):
    out = both_passes(spark, tmp_path, SEGMENTS)
    (jvm_stats, jvm_docs, jvm_snaps, jvm_members), (py_stats, py_docs, py_snaps, py_members) = out[True], out[False]
    entries = lambda stats: [(d, s) for d, s in stats.items()] + [  # noqa: E731
        (f"{d}/{t}", e) for d, s in stats.items() for t, e in s["exports"].items()]
    assert {(e["render_path"], e["reason"]) for _, e in entries(jvm_stats)} == {("jvm", None)}
    assert {e["render_path"] for _, e in entries(py_stats)} == {"python"}
    assert jvm_docs.keys() == py_docs.keys()
    for folder in jvm_docs:
        assert jvm_docs[folder][0] == py_docs[folder][0], f"{folder}: header"
        extra = set(jvm_docs[folder][1]) ^ set(py_docs[folder][1])
        assert jvm_docs[folder] == py_docs[folder], f"{folder}: lines only one path wrote (first 3): {sorted(extra)[:3]}"
    assert jvm_snaps == py_snaps
    assert jvm_members == py_members and len(jvm_members) > 300
    same = ("items", "candidates", "renders", "excluded", "warnings", "null_rates")
    py_entries = dict(entries(py_stats))
    for d, e in entries(jvm_stats):
        assert {k: e[k] for k in same} == {k: py_entries[d][k] for k in same}, d
        assert ({k: sorted(v) for k, v in e["excluded_samples"].items()}
                == {k: sorted(v) for k, v in py_entries[d]["excluded_samples"].items()}), d
    assert jvm_stats["everyone"]["excluded"] and jvm_stats["everyone"]["warnings"]


@pytest.mark.parametrize("segments", [
    # a lookup only: GeneratePass reads the scan's columns; a user template would be Python's (not here)
    [{"id": "poles", "where": {"field": "country", "eq": "PL"}, "exports": ["ids_csv", "meta_custom_audience"]},
     {"id": "germans", "where": {"field": "country", "eq": "DE"}, "exports": ["ids_csv"]}],
])
def test_a_lookup_only_customer_pass_writes_what_python_writes(spark, tmp_path, segments):
    out = both_passes(spark, tmp_path, segments)
    assert out[True][1] == out[False][1]
    assert out[True][3] == out[False][3]
