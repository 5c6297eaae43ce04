"""The single-pass generator end to end: tiny aggregates in, part files + manifests out."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import zlib
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from feedgen.aggregator.schemas import CUSTOMER_AGGREGATE_SCHEMA, OFFER_AGGREGATE_SCHEMA
from feedgen.generator.definitions import definitions_from_mapping
from feedgen.generator.generate import generate_entity, snapshot_items
from feedgen.generator.parts import assemble, read_manifest

AS_OF = dt.datetime(2026, 11, 22, 3, 5, tzinfo=dt.UTC)
G = "{http://base.google.com/ns/1.0}"
HOSTILE = "Tom & Jerry <b>\x00\x0b]]>\ud800 \u202eRTL\u202c 🎉 \"quoted\", 'x'\n=cmd|' /C calc'!A0"


def offer(n: int, **changes) -> dict:
    row = {
        "offer_id": f"o-{n}", "product_id": f"p-{n}", "seller_id": "s-1",
        "title": f"Phone {n}", "description": "A phone.",
        "category": {"path": "Electronics > Phones", "levels": ["Electronics", "Phones"],
                     "top": "Electronics"},
        "price": {"amount": Decimal("15.00"), "currency": "PLN"},
        "stock": 3, "availability": "in_stock", "condition": "new", "brand": "Acme",
        "gtin": None, "mpn": f"M-{n}", "link": f"https://shop.example.com/o/{n}",
        "image_link": f"https://img.example.com/{n}.jpg",
    }
    row.update(changes)
    return row


def customer(n: int, **changes) -> dict:
    row = {"customer_id": f"c-{n}", "email": f"user{n}@example.com", "phone": "+48601234567",
           "first_name": "Jan", "last_name": "Kowalski", "country": "PL", "city": "Kraków",
           "zip": "31-042", "orders": [], "events": []}
    row.update(changes)
    return row


def generate(spark, root: Path, rows: list[dict], mapping: dict, *, entity: str = "offer",
             run_id: str = "20261122T030500Z-aaaaaa", partitions: int = 2, validate: bool = True,
             **kwargs) -> dict:
    schema = OFFER_AGGREGATE_SCHEMA if entity == "offer" else CUSTOMER_AGGREGATE_SCHEMA
    df = spark.createDataFrame(rows, schema).repartition(partitions)
    definitions = list(definitions_from_mapping(mapping, validate=validate))
    return generate_entity(spark, df, definitions, entity=entity, root=root, run_id=run_id,
                           as_of=AS_OF, **kwargs)


def folder(root: Path, stats: dict, definition_id: str, run_id: str = "20261122T030500Z-aaaaaa") -> Path:
    return root / "runs" / run_id / stats[definition_id]["folder"]


def xml_items(doc: bytes) -> list[etree._Element]:
    return etree.fromstring(doc).findall("channel/item")


def part_texts(path: Path) -> list[bytes]:
    """Each part of every file of a definition, uncompressed."""
    manifest = read_manifest(path)
    return [zlib.decompress((path / p["path"]).read_bytes(), wbits=31)
            for f in manifest["files"] for p in f["parts"]]


def parse_part(fragment: bytes) -> list[etree._Element]:
    # a part is a run of <item> elements: wrap it as the header and footer would
    return etree.fromstring(b'<channel xmlns:g="http://base.google.com/ns/1.0">' + fragment
                            + b"</channel>").findall("item")


def csv_rows(doc: bytes, delimiter: str = ",") -> list[dict]:
    return list(csv.DictReader(io.StringIO(doc.decode("utf-8"), newline=""), delimiter=delimiter))


def test_every_feed_holds_exactly_its_matching_offers_in_parseable_xml(spark, tmp_path):
    offers = [offer(1, brand="Acme"), offer(2, brand="Zeta"), offer(3, brand="Acme", price={
        "amount": Decimal("99.00"), "currency": "PLN"}), offer(4, brand=None)]
    stats = generate(spark, tmp_path, offers, {"feeds": [
        {"id": "acme", "template": "google_merchant_rss", "where": {"field": "brand", "eq": "Acme"}},
        {"id": "cheap", "template": "meta_catalog_xml", "where": {"field": "price.amount", "lt": 50}},
        {"id": "no-brand", "template": "google_merchant_rss",
         "where": {"not": {"field": "brand", "in": ["Acme", "Zeta"]}}},
        {"id": "nothing", "template": "google_merchant_rss", "where": {"field": "brand", "eq": "Nope"}},
    ]})

    expected = {"acme": ["o-1", "o-3"], "cheap": ["o-1", "o-2", "o-4"], "no-brand": ["o-4"], "nothing": []}
    for definition_id, keys in expected.items():
        path = folder(tmp_path, stats, definition_id)
        doc = assemble(path)
        items = xml_items(doc)
        ids = sorted(i.findtext(G + "id") or i.findtext("id") for i in items)
        assert ids == keys, definition_id
        assert stats[definition_id]["items"] == len(keys)
        for part in part_texts(path):
            assert parse_part(part)
        # the stored members concatenated are themselves a valid gzip of the document
        assert gzip.decompress(assemble(path, compressed=True)) == doc
    meta = etree.fromstring(assemble(folder(tmp_path, stats, "cheap")))
    assert meta.tag == "rss"


def test_pick_one_per_keeps_one_offer_per_key_by_order_ascending_and_descending(spark, tmp_path):
    prices = {1: "30.00", 2: "10.00", 3: "20.00", 4: "5.00", 5: "7.00"}
    products = {1: "p-a", 2: "p-a", 3: "p-a", 4: "p-b", 5: None}
    brands = {1: "Acme", 2: "Acme", 3: "Zed", 4: "Zed", 5: "Zed"}
    stocks = {1: 9, 2: 1, 3: 4, 4: 4, 5: 2}
    offers = [offer(n, product_id=products[n], brand=brands[n], stock=stocks[n],
                    price={"amount": Decimal(p), "currency": "PLN"}) for n, p in prices.items()]
    stats = generate(spark, tmp_path, offers, {"feeds": [
        {"id": "cheapest", "template": "google_merchant_rss", "pick_one_per": "product_id",
         "order_by": ["price.amount"]},
        {"id": "dearest", "template": "google_merchant_rss", "pick_one_per": "product_id",
         "order_by": ["-price.amount"]},
        # another pick key, and two order columns of other types: most stock, then cheapest
        {"id": "per-brand", "template": "google_merchant_rss", "pick_one_per": "brand",
         "order_by": ["-stock", "price.amount"]},
        {"id": "everything", "template": "google_merchant_rss"},
    ]})

    def ids(definition_id: str) -> list[str]:
        return sorted(i.findtext(G + "id") for i in xml_items(assemble(folder(tmp_path, stats, definition_id))))

    # an offer without a product is a group of its own, so it stays
    assert ids("cheapest") == ["o-2", "o-4", "o-5"]
    assert ids("dearest") == ["o-1", "o-4", "o-5"]
    assert ids("per-brand") == ["o-1", "o-4"]   # Zed: o-3 and o-4 have 4 in stock, o-4 is cheaper
    assert ids("everything") == ["o-1", "o-2", "o-3", "o-4", "o-5"]


def test_item_failing_a_template_rule_is_left_out_of_that_feed_only_with_reason_and_keys(spark, tmp_path):
    offers = [offer(1), offer(2, image_link=None), offer(3, image_link=None), offer(4)]
    stats = generate(spark, tmp_path, offers, {"feeds": [
        {"id": "google", "template": "google_merchant_rss"},
        {"id": "ids", "template": "generic_csv", "options": {"fields": ["offer_id", "title"]}},
    ]})

    google = stats["google"]
    assert sorted(i.findtext(G + "id") for i in xml_items(assemble(folder(tmp_path, stats, "google")))) \
        == ["o-1", "o-4"]
    assert google["items"] == 2 and google["candidates"] == 4
    assert google["excluded"] == {"missing_image_link": 2}
    assert sorted(google["excluded_samples"]["missing_image_link"]) == ["o-2", "o-3"]
    assert google["null_rates"]["image_link"] == 0.5
    assert google["null_rates"]["price.amount"] == 0.0
    generic = csv_rows(assemble(folder(tmp_path, stats, "ids")))
    assert sorted(r["offer_id"] for r in generic) == ["o-1", "o-2", "o-3", "o-4"]
    assert stats["ids"]["excluded"] == {}


def test_hostile_text_in_every_offer_template_stays_parseable_end_to_end(spark, tmp_path):
    offers = [offer(1, title=HOSTILE, description=HOSTILE, brand=HOSTILE, mpn="=1+2"),
              offer(2, title="plain")]
    templates = ["google_merchant_rss", "meta_catalog_xml", "meta_catalog_csv", "generic_csv", "generic_tsv"]
    fields = {"fields": ["offer_id", "title", "brand", "mpn"]}
    stats = generate(spark, tmp_path, offers, {"feeds": [
        {"id": t.replace("_", "-"), "template": t, **({"options": fields} if t.startswith("generic") else {})}
        for t in templates]})

    for t in templates:
        path = folder(tmp_path, stats, t.replace("_", "-"))
        doc = assemble(path)
        assert stats[t.replace("_", "-")]["items"] == 2, t
        if t.endswith(("rss", "xml")):
            titles = [i.findtext("title") or i.findtext(G + "title") for i in xml_items(doc)]
            assert any(s.startswith("Tom & Jerry <b>") for s in titles), t
            for part in part_texts(path):
                parse_part(part)
            continue
        rows = csv_rows(doc, "\t" if t.endswith("tsv") else ",")
        assert len(rows) == 2, t   # no cell broke a row in two
        hostile = next(r for r in rows if (r.get("id") or r.get("offer_id")) == "o-1")
        title = hostile["title"]
        assert "\n" not in title and "Tom & Jerry <b>" in title
        if t.startswith("generic"):
            assert hostile["mpn"] == "'=1+2"   # a formula is neutralised


def test_hostile_text_in_every_audience_export_stays_one_row_per_customer(spark, tmp_path):
    customers = [customer(1, first_name=HOSTILE, last_name="=HYPERLINK(\"x\")", city=HOSTILE,
                          zip="+48\n00-001", customer_id="=c-1"), customer(2)]
    stats = generate(spark, tmp_path, customers, {"segments": [
        {"id": "everyone", "exports": ["google_customer_match", "meta_custom_audience", "ids_csv"]},
    ]}, entity="customer")

    base = folder(tmp_path, stats, "everyone")
    for export, path in [("ids_csv", base / "exports" / "ids_csv"), ("google_customer_match", base),
                         ("meta_custom_audience", base / "exports" / "meta_custom_audience")]:
        rows = csv_rows(assemble(path))
        assert len(rows) == 2, export
        for row in rows:
            assert not any(v.lstrip().startswith(("=", "+", "-", "@")) for v in row.values()), export
    assert {r["customer_id"] for r in csv_rows(assemble(base / "exports" / "ids_csv"))} == {"'=c-1", "c-2"}


def test_feeds_sharing_a_template_render_each_offer_once(spark, tmp_path):
    offers = [offer(n, brand="Acme" if n % 2 else "Zeta") for n in range(6)]
    stats = generate(spark, tmp_path, offers, {"feeds": [
        {"id": "all-1", "template": "google_merchant_rss"},
        {"id": "all-2", "template": "google_merchant_rss", "options": {"max_file_items": 100}},
        {"id": "acme", "template": "google_merchant_rss", "where": {"field": "brand", "eq": "Acme"}},
        {"id": "meta", "template": "meta_catalog_csv"},
        {"id": "meta-acme", "template": "meta_catalog_csv", "where": {"field": "brand", "eq": "Acme"}},
    ]}, partitions=3)

    # counted by the executors: 6 Google renders serve 15 Google items, 6 Meta renders 9 Meta items
    assert sum(stats[d]["items"] for d in ("all-1", "all-2", "acme")) == 15
    assert {stats[d]["renders"] for d in ("all-1", "all-2", "acme")} == {6}
    assert {stats[d]["renders"] for d in ("meta", "meta-acme")} == {6}


def test_max_file_items_splits_a_feed_into_files_that_each_parse(spark, tmp_path):
    offers = [offer(n) for n in range(7)]
    stats = generate(spark, tmp_path, offers, {"feeds": [
        {"id": "split", "template": "google_merchant_rss", "options": {"max_file_items": 2}},
        {"id": "whole", "template": "google_merchant_rss"},
    ]}, part_max_raw_bytes=1)   # one part per item, so the limit can split anywhere

    path = folder(tmp_path, stats, "split")
    manifest = read_manifest(path)
    assert stats["split"]["files"] == len(manifest["files"]) == 4
    ids = []
    for n, entry in enumerate(manifest["files"]):
        assert entry["items"] <= 2
        ids += [i.findtext(G + "id") for i in xml_items(assemble(path, n))]
    assert sorted(ids) == [f"o-{n}" for n in range(7)]
    assert len(read_manifest(folder(tmp_path, stats, "whole"))["files"]) == 1


def test_customer_segment_with_two_exports_writes_both_with_the_same_members(spark, tmp_path):
    customers = [customer(1, country="PL"), customer(2, country="DE"), customer(3, country="PL", email=None)]
    stats = generate(spark, tmp_path, customers, {"segments": [
        {"id": "poles", "where": {"field": "country", "eq": "PL"},
         "exports": ["google_customer_match", "ids_csv"], "delivery": {"events": True}},
    ]}, entity="customer")

    segment = stats["poles"]
    base = folder(tmp_path, stats, "poles")
    ids = sorted(r["customer_id"] for r in csv_rows(assemble(base / "exports" / "ids_csv")))
    assert ids == ["c-1", "c-3"]
    assert segment["exports"]["ids_csv"]["items"] == 2
    google = csv_rows(assemble(base))
    assert list(google[0]) == ["Email", "Phone", "First Name", "Last Name", "Country", "Zip"]
    assert segment["candidates"] == 2 and segment["null_rates"]["email"] == 0.5
    assert [r["Email"] for r in google].count("") == 1   # a member without email is still a member
    # the segment's snapshot (join/leave events) holds its members
    snapshot = snapshot_items(spark, tmp_path, "20261122T030500Z-aaaaaa", "customer", segment["target"])
    assert sorted(r["key"] for r in snapshot.collect()) == ["c-1", "c-3"]


def test_rerun_of_the_same_run_id_converges_without_stale_parts(spark, tmp_path):
    mapping = {"feeds": [{"id": "all", "template": "google_merchant_rss", "delivery": {"events": True}}]}
    generate(spark, tmp_path, [offer(n) for n in range(8)], mapping, partitions=4, part_max_raw_bytes=1)
    stats = generate(spark, tmp_path, [offer(n) for n in range(3)], mapping, partitions=1)

    path = folder(tmp_path, stats, "all")
    manifest = read_manifest(path)
    listed = {m["path"] for f in manifest["files"] for m in [f["header"], *f["parts"], f["footer"]]}
    assert {p.name for p in path.iterdir()} == listed | {"manifest.json"}
    assert sorted(i.findtext(G + "id") for i in xml_items(assemble(path))) == ["o-0", "o-1", "o-2"]
    snapshot = snapshot_items(spark, tmp_path, "20261122T030500Z-aaaaaa", "offer", stats["all"]["target"])
    assert sorted(r["key"] for r in snapshot.collect()) == ["o-0", "o-1", "o-2"]


@pytest.mark.parametrize("template", ["google_merchant_rss"])
def test_a_definition_matching_nothing_still_writes_an_empty_valid_document(spark, tmp_path, template):
    stats = generate(spark, tmp_path, [offer(1)], {"feeds": [
        {"id": "none", "template": template, "where": {"field": "brand", "eq": "Nope"}}]})
    assert xml_items(assemble(folder(tmp_path, stats, "none"))) == []
    assert stats["none"]["items"] == 0


def test_many_feeds_keyed_on_one_field_get_exactly_their_offers(spark, tmp_path):
    # ten feeds that each take some sellers: matched through one lookup, not ten comparisons
    offers = [offer(n, seller_id=f"s-{n % 12}" if n != 11 else None) for n in range(24)]
    feeds = [{"id": f"seller-{k}", "template": "google_merchant_rss",
              "where": {"field": "seller_id", "in": [f"s-{k}", f"s-{k + 10}"]} if k < 2 else
              {"field": "seller_id", "eq": f"s-{k}"}} for k in range(10)]
    feeds.append({"id": "not-s-0", "template": "meta_catalog_csv", "where": {"field": "seller_id", "ne": "s-0"}})
    stats = generate(spark, tmp_path, offers, {"feeds": feeds})

    def ids(definition_id: str) -> set[str]:
        return {i.findtext(G + "id") for i in xml_items(assemble(folder(tmp_path, stats, definition_id)))}

    assert ids("seller-0") == {"o-0", "o-12", "o-10", "o-22"}
    assert ids("seller-1") == {"o-1", "o-13", "o-23"}   # o-11 has no seller
    assert ids("seller-7") == {"o-7", "o-19"}
    assert {r["id"] for r in csv_rows(assemble(folder(tmp_path, stats, "not-s-0")))} == \
        {f"o-{n}" for n in range(24)} - {"o-0", "o-12"}
    assert stats["seller-0"]["renders"] == 23   # every offer with a seller, once
    assert stats["not-s-0"]["renders"] == 22


@pytest.mark.parametrize("jvm", [True, False], ids=["jvm", "python"])
def test_feeds_all_keyed_on_one_field_leave_out_offers_no_feed_wants(spark, tmp_path, jvm):
    # only lookups (a hash table in the JVM pass, one inner join for Python): the pass keeps
    # just the offers some feed names; a seller no feed has, or none at all, is in no feed
    offers = [offer(n, seller_id=None if n == 0 else f"s-{n % 12}") for n in range(24)]
    feeds = [{"id": f"seller-{k}", "template": ["google_merchant_rss", "meta_catalog_csv"][k % 2],
              "where": {"field": "seller_id", "in": [f"s-{k}", f"s-{k + 1}"]}} for k in range(8)]
    stats = generate(spark, tmp_path, offers, {"feeds": feeds}, jvm=jvm)
    assert stats["seller-0"]["render_path"] == ("jvm" if jvm else "python")

    assert {i.findtext(G + "id") for i in xml_items(assemble(folder(tmp_path, stats, "seller-0")))} == \
        {"o-12", "o-1", "o-13"}
    assert {r["id"] for r in csv_rows(assemble(folder(tmp_path, stats, "seller-7")))} == \
        {"o-7", "o-19", "o-8", "o-20"}
    assert [stats[f"seller-{k}"]["items"] for k in range(8)] == [3, 4, 4, 4, 4, 4, 4, 4]
    # Google feeds want sellers s-0 .. s-7 (15 offers: o-0 has no seller), CSV feeds s-1 .. s-8
    assert (stats["seller-0"]["renders"], stats["seller-1"]["renders"]) == (15, 16)


def test_user_template_sees_maps_structs_and_lists_as_plain_values(spark, tmp_path):
    templates = tmp_path / "templates" / "partner_xml"
    templates.mkdir(parents=True)
    (templates / "header.xml.j2").write_text("<offers>\n")
    (templates / "footer.xml.j2").write_text("</offers>\n")
    (templates / "item.xml.j2").write_text(
        "<offer id=\"{{ item.offer_id }}\"><color>{{ item.attributes.color }}</color>"
        "<top>{{ item.category.top }}</top><level>{{ item.category.levels[1] }}</level>"
        "<price>{{ item.price.amount }}</price><sale>{{ item.sale_price.amount }}</sale>"
        "{% if not item.attributes.size %}{{ reject('no_size') }}{% endif %}</offer>\n")
    offers = [offer(1, attributes={"color": "red & black", "size": "XL"}),
              offer(2, attributes={"color": "blue"}),
              offer(3, attributes=None)]
    stats = generate(spark, tmp_path / "root", offers, {"feeds": [{"id": "partner", "template": "partner_xml"}]},
                     user_templates_dir=str(tmp_path / "templates"),
                     validate=False)   # the validator knows the built-in templates only

    doc = etree.fromstring(assemble(folder(tmp_path / "root", stats, "partner")))
    [item] = doc.findall("offer")
    assert item.get("id") == "o-1"
    assert [item.findtext(t) for t in ("color", "top", "level", "price", "sale")] == \
        ["red & black", "Electronics", "Phones", "15.00", ""]
    assert stats["partner"]["excluded"] == {"no_size": 2}


def test_renderers_get_the_struct_fields_they_read_through_spark(spark, tmp_path):
    # the generator ships category and product cut to the fields the templates read
    product = {"product_id": "p-9", "name": "Acme Phone 9", "brand": "Acme", "category_path": "X",
               "gtin": "5901234123457"}
    offers = [offer(1, title=None, brand=None, product=product), offer(2, product=None, category=None)]
    stats = generate(spark, tmp_path, offers, {"feeds": [
        {"id": "all", "template": "google_merchant_rss", "where": {"field": "stock", "gt": 0}}]})
    items = {i.findtext(G + "id"): i for i in xml_items(assemble(folder(tmp_path, stats, "all")))}
    assert items["o-1"].findtext("title") == "Acme Phone 9"
    assert items["o-1"].findtext(G + "brand") == "Acme"
    assert items["o-1"].findtext(G + "gtin") == "5901234123457"
    assert items["o-1"].findtext(G + "product_type") == "Electronics > Phones"
    assert items["o-2"].findtext(G + "product_type") is None


def test_jvm_and_python_renderers_write_the_same_feeds_stats_and_snapshots(spark, tmp_path):
    rows = [offer(n, seller_id=f"s-{n % 3}", brand=None if n % 5 == 0 else "Acme", mpn=None if n % 5 == 0 else f"M-{n}",
                  title=HOSTILE if n % 4 == 0 else f"Phone {n}", image_link=None if n % 7 == 0 else f"https://i.example/{n}.jpg",
                  availability=None if n % 6 == 0 else "in_stock", condition="weird" if n % 8 == 0 else "new")
            for n in range(40)]
    mapping = {"feeds": [
        {"id": "google-all", "template": "google_merchant_rss", "where": {"field": "offer_id", "is_null": False},
         "delivery": {"events": True}},
        {"id": "meta-s1", "template": "meta_catalog_xml", "where": {"field": "seller_id", "eq": "s-1"}},
        {"id": "meta-csv", "template": "meta_catalog_csv", "where": {"field": "seller_id", "in": ["s-0", "s-2"]},
         "options": {"max_file_items": 5}},
    ]}
    # rows in a fixed order in 2 partitions: a repartition's order would depend on the columns each path reads
    df = spark.createDataFrame(spark.sparkContext.parallelize(rows, 2), OFFER_AGGREGATE_SCHEMA)
    definitions = list(definitions_from_mapping(mapping))
    out = {}
    for jvm in (True, False):
        root = tmp_path / str(jvm)
        stats = generate_entity(spark, df, definitions, entity="offer", root=root, run_id="20261122T030500Z-aaaaaa",
                                as_of=AS_OF, jvm=jvm, part_max_raw_bytes=2000)
        docs = {d: assemble(folder(root, stats, d)) for d in stats}
        snaps = sorted(tuple(r) for r in snapshot_items(spark, root, "20261122T030500Z-aaaaaa", "offer",
                                                        stats["google-all"]["target"]).collect())
        out[jvm] = stats, docs, snaps
    (jvm_stats, jvm_docs, jvm_snaps), (py_stats, py_docs, py_snaps) = out[True], out[False]
    assert {s["render_path"] for s in jvm_stats.values()} == {"jvm"}
    assert {s["render_path"] for s in py_stats.values()} == {"python"}
    assert jvm_docs == py_docs
    assert jvm_snaps == py_snaps and len(jvm_snaps) == jvm_stats["google-all"]["items"] > 0
    same = ("items", "candidates", "renders", "excluded", "warnings", "excluded_samples", "null_rates", "files")
    for d in jvm_stats:
        assert {k: jvm_stats[d][k] for k in same} == {k: py_stats[d][k] for k in same}, d
    assert jvm_stats["google-all"]["excluded"] and jvm_stats["meta-csv"]["files"] > 1


def test_an_aggregate_read_from_parquet_is_rendered_from_its_column_batches_as_python_renders_it(spark, tmp_path):
    # the pipeline reads the aggregate from Parquet; with only lookups GeneratePass reads the
    # scan's column batches in place (nested fields, null structs and prices, hostile text)
    rows = [offer(n, seller_id=f"s-{n % 9}", title=HOSTILE if n % 4 == 0 else f"Phone {n}",
                  brand=None if n % 5 == 0 else "Acme", sale_price=None if n % 3 else {"amount": Decimal("9.99"), "currency": "EUR"},
                  category=None if n % 7 == 0 else {"path": "Electronics > Phones", "levels": ["Electronics", "Phones"], "top": "Electronics"},
                  product=None if n % 6 == 0 else {"product_id": f"p-{n}", "name": f"Acme Phone {n}", "brand": "Acme",
                                                  "category_path": "X", "gtin": None},
                  image_link=None if n % 8 == 0 else f"https://i.example/{n}.jpg")
            for n in range(60)]
    spark.createDataFrame(rows, OFFER_AGGREGATE_SCHEMA).write.parquet(str(tmp_path / "aggregate"))
    aggregate = spark.read.parquet(str(tmp_path / "aggregate"))
    mapping = {"feeds": [{"id": f"seller-{k}", "template": ("google_merchant_rss", "meta_catalog_xml", "meta_catalog_csv")[k % 3],
                          "where": {"field": "seller_id", "in": [f"s-{k}", f"s-{(k + 1) % 9}"]},
                          **({"delivery": {"events": True}} if k == 0 else {})} for k in range(9)]}
    definitions = list(definitions_from_mapping(mapping))
    out = {}
    for jvm in (True, False):
        root = tmp_path / str(jvm)
        stats = generate_entity(spark, aggregate, definitions, entity="offer", root=root,
                                run_id="20261122T030500Z-aaaaaa", as_of=AS_OF, jvm=jvm, part_max_raw_bytes=3000)
        docs = {d: assemble(folder(root, stats, d)) for d in stats}
        snaps = sorted(tuple(r) for r in snapshot_items(spark, root, "20261122T030500Z-aaaaaa", "offer",
                                                        stats["seller-0"]["target"]).collect())
        out[jvm] = stats, docs, snaps
    (jvm_stats, jvm_docs, jvm_snaps), (py_stats, py_docs, py_snaps) = out[True], out[False]
    assert {(s["render_path"], s["input"]) for s in jvm_stats.values()} == {("jvm", "columns")}
    assert {s["render_path"] for s in py_stats.values()} == {"python"}
    # item order within a part may differ (Python reads through a join): compare items
    for d in jvm_docs:
        assert sorted(jvm_docs[d].splitlines()) == sorted(py_docs[d].splitlines()), d
    assert jvm_snaps == py_snaps and len(jvm_snaps) == jvm_stats["seller-0"]["items"] > 0
    same = ("items", "candidates", "renders", "excluded", "warnings", "null_rates")
    for d in jvm_stats:
        assert {k: jvm_stats[d][k] for k in same} == {k: py_stats[d][k] for k in same}, d
    assert sum(s["items"] for s in jvm_stats.values()) == 2 * 60 - sum(
        sum(s["excluded"].values()) for s in jvm_stats.values())
