"""The price comparator and catalog channels: Ceneo XML, Heureka XML (SHOPITEM), TikTok catalog CSV.

Each is a flavour of generator/offer_spec.py plus templates/<name>/; these tests pin an item's
text, parse whole generated feeds with lxml / csv, hold the JVM pass to the Python one, and
run `feedgen validate` and `feedgen run` with them.
"""

from __future__ import annotations

import json
from decimal import Decimal

from click.testing import CliRunner
from lxml import etree

from feedgen.aggregator.schemas import OFFER_AGGREGATE_SCHEMA
from feedgen.generator.definitions import definitions_from_mapping
from feedgen.generator.generate import generate_entity
from feedgen.generator.parts import assemble
from feedgen.generator.render import get_renderer
from feedgen.jobs.cli import main
from tests.pipeline_support import DAY1, run_json, write_config, write_definitions, write_sample
from tests.test_generate import AS_OF, HOSTILE, csv_rows, folder, offer

CTX = {"definition_id": "d", "run_id": "20261122T030500Z-aaaaaa", "as_of": "2026-11-22T03:05:00Z", "options": {}}


def _doc(name: str, *offers: dict) -> str:
    renderer = get_renderer(name)
    return renderer.header(CTX) + "".join(r.text for r in map(renderer.render, offers) if r.text) + renderer.footer(CTX)


def test_a_ceneo_offer_has_its_attributes_category_image_and_producer():
    item = get_renderer("ceneo_xml").render(offer(1, gtin="5901234123457", brand="Acme & Co",
                                                  effective_price={"amount": Decimal("12.5"), "currency": "PLN"}))
    assert item.errors == ()
    assert item.text == (
        '<o id="o-1" url="https://shop.example.com/o/1" price="12.50" avail="1">\n'
        "<cat>Electronics &gt; Phones</cat>\n<name>Phone 1</name>\n"
        '<imgs><main url="https://img.example.com/1.jpg"/></imgs>\n<desc>A phone.</desc>\n<attrs>\n'
        '<a name="Producent">Acme &amp; Co</a>\n<a name="EAN">5901234123457</a>\n<a name="Kod_producenta">M-1</a>\n'
        "</attrs>\n</o>\n")
    root = etree.fromstring(_doc("ceneo_xml", offer(1), offer(2, brand=None, mpn=None)).encode())
    assert root.tag == "offers" and root.get("version") == "1"
    first, second = root.findall("group/o")
    assert first.attrib == {"id": "o-1", "url": "https://shop.example.com/o/1", "price": "15.00", "avail": "1"}
    assert first.find("imgs/main").get("url") == "https://img.example.com/1.jpg"
    assert [a.get("name") for a in second.findall("attrs/a")] == []


def test_a_heureka_shopitem_has_the_required_elements_and_a_delivery_date_only_when_known():
    czk = {"amount": Decimal("399"), "currency": "CZK"}
    item = get_renderer("heureka_xml").render(offer(1, price=czk, gtin="5901234123457"))
    assert item.text == (
        "<SHOPITEM>\n<ITEM_ID>o-1</ITEM_ID>\n<PRODUCTNAME>Phone 1</PRODUCTNAME>\n<DESCRIPTION>A phone.</DESCRIPTION>\n"
        "<URL>https://shop.example.com/o/1</URL>\n<IMGURL>https://img.example.com/1.jpg</IMGURL>\n"
        "<PRICE_VAT>399.00</PRICE_VAT>\n<MANUFACTURER>Acme</MANUFACTURER>\n"
        "<CATEGORYTEXT>Electronics &gt; Phones</CATEGORYTEXT>\n<EAN>5901234123457</EAN>\n<PRODUCTNO>M-1</PRODUCTNO>\n"
        "<DELIVERY_DATE>0</DELIVERY_DATE>\n</SHOPITEM>\n")
    root = etree.fromstring(_doc("heureka_xml", offer(1, price=czk), offer(2, price=czk, availability="preorder"),
                                 offer(3)).encode())
    items = root.findall("SHOPITEM")
    assert root.tag == "SHOP" and [i.findtext("ITEM_ID") for i in items] == ["o-1", "o-2"]   # o-3 is in PLN
    for i in items:
        assert all(i.findtext(tag) for tag in ("ITEM_ID", "PRODUCTNAME", "URL", "IMGURL", "PRICE_VAT", "CATEGORYTEXT"))
    assert items[1].find("DELIVERY_DATE") is None


def test_a_tiktok_catalog_is_a_csv_with_the_nine_required_columns():
    doc = _doc("tiktok_catalog_csv", offer(1, title='=HYPERLINK("x"), "quoted"'), offer(2, condition=None))
    rows = csv_rows(doc.encode())
    required = ["sku_id", "title", "description", "availability", "condition", "price", "link", "image_link", "brand"]
    assert list(rows[0])[:9] == required
    assert all(r[c] for r in rows for c in required)
    assert rows[0]["title"] == "'=HYPERLINK(\"x\"), \"quoted\""   # a formula is neutralised
    assert (rows[0]["availability"], rows[0]["price"]) == ("in stock", "15.00 PLN")
    assert rows[1]["condition"] == "new"


def test_the_jvm_writes_the_channels_as_python_does(spark, tmp_path):
    rows = [offer(n, seller_id=f"s-{n % 3}", title=HOSTILE if n % 4 == 0 else f"Phone {n}",
                  price={"amount": Decimal("99.90"), "currency": ["PLN", "EUR", "CZK"][n % 3]},
                  condition="used" if n % 5 == 0 else "new", brand=None if n % 7 == 0 else "Acme",
                  category=None if n % 9 == 3 else {"path": "Home > Garden", "levels": [], "top": "Home"})
            for n in range(30)]
    mapping = {"feeds": [
        {"id": "ceneo-pl", "template": "ceneo_xml", "where": {"field": "offer_id", "is_null": False},
         "delivery": {"events": True}},
        {"id": "heureka-cz-sk", "template": "heureka_xml", "where": {"field": "seller_id", "in": ["s-1", "s-2"]}},
        {"id": "tiktok-all", "template": "tiktok_catalog_csv", "where": {"field": "offer_id", "is_null": False}},
    ]}
    # rows in a fixed order in 2 partitions: a repartition's order would depend on the columns each path reads
    df = spark.createDataFrame(spark.sparkContext.parallelize(rows, 2), OFFER_AGGREGATE_SCHEMA)
    docs, stats = {}, {}
    for jvm in (True, False):
        root = tmp_path / str(jvm)
        stats[jvm] = generate_entity(spark, df, list(definitions_from_mapping(mapping)), entity="offer", root=root,
                                     run_id="20261122T030500Z-aaaaaa", as_of=AS_OF, jvm=jvm)
        docs[jvm] = {d: assemble(folder(root, stats[jvm], d)) for d in stats[jvm]}
    assert {s.get("render_path", s.get("renderer")) for s in stats[True].values()} == {"jvm"}
    assert docs[True] == docs[False]
    for d in stats[True]:
        assert (stats[True][d]["items"], stats[True][d]["excluded"]) == (stats[False][d]["items"],
                                                                         stats[False][d]["excluded"]), d
    ceneo = etree.fromstring(docs[True]["ceneo-pl"]).findall("group/o")
    assert len(ceneo) == stats[True]["ceneo-pl"]["items"] > 0
    assert set(stats[True]["ceneo-pl"]["excluded"]) == {"currency_not_accepted", "condition_not_accepted",
                                                        "missing_category"}
    heureka = etree.fromstring(docs[True]["heureka-cz-sk"]).findall("SHOPITEM")
    assert {i.findtext("PRICE_VAT") for i in heureka} == {"99.90"}
    tiktok = csv_rows(docs[True]["tiktok-all"])
    assert len(tiktok) == stats[True]["tiktok-all"]["items"]
    assert stats[True]["tiktok-all"]["excluded"] == {"missing_brand": 5}   # o-0, o-7, o-14, o-21, o-28


FEEDS = """\
feeds:
  - id: ceneo-pl
    template: ceneo_xml
    where: {field: price.currency, eq: PLN}
  - id: heureka-sk
    template: heureka_xml
    where: {field: price.currency, eq: EUR}
  - id: tiktok-in-stock
    template: tiktok_catalog_csv
    where: {field: availability, eq: in_stock}
"""


def test_feedgen_validate_and_run_take_the_new_channels(spark, tmp_path):
    defs = write_definitions(tmp_path / "defs", FEEDS)
    checked = CliRunner().invoke(main, ["--log-level", "ERROR", "validate", str(defs)])
    assert checked.exit_code == 0, checked.output
    assert "ceneo_xml" in checked.output and "tiktok_catalog_csv" in checked.output

    root = tmp_path / "root"
    write_sample(root, variant=0, offers=300, customers=20)
    done = CliRunner().invoke(main, ["--log-level", "ERROR", "run", "--config", str(write_config(tmp_path)),
                                     "--root", str(root), "--definitions", str(defs), "--as-of", DAY1])
    assert done.exit_code == 0, done.output
    (run_id,) = [p.name for p in (root / "runs").iterdir() if p.is_dir()]
    record = run_json(root, run_id)
    assert record["status"] in ("published", "emitted"), record.get("gate")
    stats = record["definitions"]
    docs = {}
    for d in ("ceneo-pl", "heureka-sk", "tiktok-in-stock"):
        assert stats[d].get("render_path", stats[d].get("renderer")) == "jvm", d
        pointer = json.loads((root / "current" / f"{d}.json").read_text())
        docs[d] = assemble(root / pointer["manifest"].rsplit("/", 1)[0])
    assert len(etree.fromstring(docs["ceneo-pl"]).findall("group/o")) == stats["ceneo-pl"]["items"] > 0
    assert len(etree.fromstring(docs["heureka-sk"]).findall("SHOPITEM")) == stats["heureka-sk"]["items"] > 0
    assert len(csv_rows(docs["tiktok-in-stock"])) == stats["tiktok-in-stock"]["items"] > 0
