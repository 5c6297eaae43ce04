"""One policy for spreadsheet formulas in every CSV/TSV output (README "CSV and TSV cells").

Text cells that a spreadsheet would run (``= + - @`` first, after spaces; a leading tab or
CR is a space by then) get a leading ``'``; plain numbers and typed values stay as they
are, so a partner parsing the file gets its price, availability, link, gtin and hashes
unchanged. Asserted on what a person opening the file in a spreadsheet (``csv.reader``)
and a partner parsing it would see, in the Python renderer and in the JVM one.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
from decimal import Decimal, InvalidOperation

import pytest

from feedgen.aggregator.schemas import OFFER_AGGREGATE_SCHEMA
from feedgen.generator.jvm import jvm_renderable, render_column
from feedgen.generator.parts import assemble
from feedgen.generator.render import get_renderer
from tests.test_generate import folder, generate
from tests.test_generate import offer as generated_offer

# OWASP's CSV injection starters, each as an attack a spreadsheet would run
ATTACKS = {
    "=": '=HYPERLINK("http://evil.example","click")',
    "+": "+cmd|' /C calc'!A0",
    "-": "-2+3+cmd|' /C calc'!A0",
    "@": "@SUM(1+1)*cmd|' /C calc'!A0",
    "tab": "\t=1+2",
    "cr": "\r=1+2",
    "space": "  =1+2",
    "nbsp": "\u00a0@SUM(A1)",
}
# text a spreadsheet reads as a number: not a formula, kept for the partner
NUMBERS = ["-5", "+48601234567", "-3.50", "+1e3", " -.5 "]
META_TEXT = ("id", "title", "description", "brand", "mpn", "product_type")
HEX64 = re.compile(r"[0-9a-f]{64}")


def runs_in_a_spreadsheet(cell: str) -> bool:
    """What Excel/LibreOffice/Sheets do with a cell they open: = + - @ start a formula unless it is a number."""
    lead = cell.lstrip()
    if lead[:1] not in ("=", "+", "-", "@"):
        return False
    try:
        return not Decimal(lead.strip()).is_finite()
    except InvalidOperation:
        return True


def rows(renderer, text: str, ctx: dict | None = None) -> list[dict]:
    dialect = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if renderer.fmt == "tsv" else {}
    return list(csv.DictReader(io.StringIO(renderer.header(ctx or {}) + text), **dialect))


def offer(**over) -> dict:
    item = {
        "offer_id": "o-1", "title": "Phone", "description": "A phone.",
        "link": "https://shop.example.com/o/1", "image_link": "https://img.example.com/1.jpg",
        "availability": "in_stock", "stock": 3, "condition": "new",
        "price": {"amount": Decimal("15.00"), "currency": "PLN"},
        "sale_price": {"amount": Decimal("12.50"), "currency": "PLN"}, "effective_price": None,
        "brand": "Acme", "gtin": "5901234123457", "mpn": "M-1",
        "category": {"path": "Electronics > Phones", "levels": ["Electronics", "Phones"], "top": "Electronics"},
        "product": None,
    }
    item.update(over)
    return item


def attacked_offer(attack: str, n: int = 1) -> dict:
    return offer(offer_id=attack + str(n), title=attack, description=attack, brand=attack, mpn=attack,
                 category={"path": attack, "levels": [attack], "top": attack})


def meta_row(item: dict) -> dict:
    renderer = get_renderer("meta_catalog_csv")
    result = renderer.render(item)
    assert result.text is not None, result.errors
    (row,) = rows(renderer, result.text)
    return row


# ------------------------------------------------------------------------ meta_catalog_csv


@pytest.mark.parametrize("start", ATTACKS)
def test_meta_catalog_csv_neutralises_every_text_column_and_keeps_the_typed_ones(start):
    attack = ATTACKS[start]
    item = attacked_offer(attack)
    row = meta_row(item)
    one_line = " ".join(attack.split())   # Meta's text is single-spaced
    for column in META_TEXT:
        want = one_line + "1" if column == "id" else one_line
        assert row[column] == "'" + want, column
    assert not any(runs_in_a_spreadsheet(cell) for cell in row.values()), row
    # the columns Meta parses are exactly what it expects
    assert (row["price"], row["sale_price"], row["availability"], row["condition"]) == \
        ("15.00 PLN", "12.50 PLN", "in stock", "new")
    assert (row["link"], row["image_link"], row["gtin"]) == \
        ("https://shop.example.com/o/1", "https://img.example.com/1.jpg", "5901234123457")
    # events and the content hash carry the value itself: no spreadsheet reads them
    fields = get_renderer("meta_catalog_csv").render(item).fields
    assert fields["title"] == one_line and fields["id"] == one_line + "1"


def test_meta_catalog_xml_and_google_rss_keep_formula_text_as_it_is():
    # XML is not opened as a spreadsheet: the title reaches the partner unchanged
    for name in ("meta_catalog_xml", "google_merchant_rss"):
        text = get_renderer(name).render(attacked_offer(ATTACKS["="])).text
        assert "=HYPERLINK(" in text and "'=HYPERLINK" not in text, name


def test_plain_numbers_in_text_cells_are_not_formulas_and_stay_unchanged():
    for number in NUMBERS:
        row = meta_row(offer(offer_id=number, title=number, mpn=number, brand=number))
        for column in ("id", "title", "mpn", "brand"):
            assert row[column] == number.strip(), (column, number)
    # a price-like text that is not a number is a formula to a spreadsheet
    row = meta_row(offer(title="-5.00 PLN", mpn="-5%"))
    assert (row["title"], row["mpn"]) == ("'-5.00 PLN", "'-5%")


# ------------------------------------------------------------------------ generic_csv / generic_tsv

GENERIC_FIELDS = ["offer_id", "title", "link", "category.levels", "campaign_ids", "attributes", "seller",
                  "price.amount", "price.currency", "stock", "seller.rating", "rating.count", "updated_at"]


@pytest.mark.parametrize("name", ["generic_csv", "generic_tsv"])
def test_generic_exports_neutralise_text_lists_and_json_and_keep_numbers_prices_and_dates(name):
    renderer = get_renderer(name, {"fields": GENERIC_FIELDS})
    updated = dt.datetime(2026, 11, 22, 3, 5, tzinfo=dt.UTC)
    item = offer(offer_id="=id", title="@SUM(A1)", link=ATTACKS["="], attributes={"k": "=v"},
                 category={"path": "x", "levels": ["=1+2", "b"], "top": "x"}, campaign_ids=["-x", "y"],
                 seller={"seller_id": "s", "name": "=n", "rating": -0.5, "country": "PL", "status": "active"},
                 price={"amount": Decimal("-5.00"), "currency": "+PLN"}, stock=-1,
                 rating={"average": 4.0, "count": 3}, updated_at=updated)
    (row,) = rows(renderer, renderer.render(item).text)
    assert row["offer_id"] == "'=id" and row["title"] == "'@SUM(A1)" and row["link"] == "'" + ATTACKS["="]
    # lists are text: joined with "|", neutralised like any text
    assert row["category.levels"] == "'=1+2|b" and row["campaign_ids"] == "'-x|y"
    # maps and structs are JSON, which never starts with a formula character
    assert row["attributes"] == '{"k": "=v"}' and row["seller"].startswith('{"country": "PL"')
    # typed values: a negative amount, count or rating stays a number, a timestamp a date
    assert (row["price.amount"], row["stock"], row["seller.rating"], row["rating.count"]) == \
        ("-5.00", "-1", "-0.5", "3")
    assert row["price.currency"] == "'+PLN"
    assert row["updated_at"] == "2026-11-22T03:05:00+00:00"
    assert not any(runs_in_a_spreadsheet(cell) for cell in row.values()), row


@pytest.mark.parametrize("start", ATTACKS)
@pytest.mark.parametrize("name", ["generic_csv", "generic_tsv"])
def test_generic_exports_neutralise_every_formula_start(name, start):
    renderer = get_renderer(name, {"fields": ["offer_id", "title", "category.levels"]})
    attack = ATTACKS[start]
    (row,) = rows(renderer, renderer.render(attacked_offer(attack)).text)
    spaced = attack.replace("\t", " ").replace("\r", " ")   # cells stay on one line
    assert row == {"offer_id": "'" + spaced + "1", "title": "'" + spaced, "category.levels": "'" + spaced}


def test_generic_header_names_are_neutralised_too():
    renderer = get_renderer("generic_csv", {"fields": ["offer_id", "stock"], "columns": ["=evil()", "-5"]})
    assert next(csv.reader(io.StringIO(renderer.header({})))) == ["'=evil()", "-5"]


# ------------------------------------------------------------------------ audience exports


def customer(**over) -> dict:
    item = {"customer_id": "c-1", "email": "=x@evil.example", "phone": "+48 601 234 567",
            "first_name": ATTACKS["="], "last_name": ATTACKS["-"], "country": "PL",
            "city": ATTACKS["@"], "zip": "=1+2"}
    item.update(over)
    return item


def audience_row(name: str, item: dict) -> dict:
    renderer = get_renderer(name)
    result = renderer.render(item)
    assert result.text is not None, result.errors
    (row,) = rows(renderer, result.text)
    return row


def test_google_customer_match_hashes_identifiers_and_neutralises_only_the_clear_zip():
    row = audience_row("google_customer_match", customer())
    for column in ("Email", "Phone", "First Name", "Last Name"):
        assert HEX64.fullmatch(row[column]), column   # never prefixed: Google parses the digest
    assert row["Email"] == hashlib.sha256(b"=x@evil.example").hexdigest()
    assert row["Phone"] == hashlib.sha256(b"+48601234567").hexdigest()
    assert (row["Country"], row["Zip"]) == ("PL", "'=1+2")
    assert not any(runs_in_a_spreadsheet(cell) for cell in row.values())


def test_meta_custom_audience_is_all_hashes_whatever_the_input():
    row = audience_row("meta_custom_audience", customer(zip="-31-042"))
    assert all(HEX64.fullmatch(cell) for cell in row.values()), row


@pytest.mark.parametrize(("customer_id", "cell"), [
    (ATTACKS["="], "'" + ATTACKS["="]), ("@c-1", "'@c-1"), ("\t-c-1", "' -c-1"),
    ("+48601234567", "+48601234567"), ("-5", "-5"), ("c-1", "c-1"),
])
def test_ids_csv_neutralises_formula_ids_and_keeps_numeric_ones(customer_id, cell):
    assert audience_row("ids_csv", customer(customer_id=customer_id)) == {"customer_id": cell}


def test_user_csv_templates_follow_the_same_rule(tmp_path):
    folder_ = tmp_path / "shop_csv"
    folder_.mkdir()
    (folder_ / "header.csv.j2").write_text('{{ row(["title", "levels", "stock"]) }}\n')
    (folder_ / "item.csv.j2").write_text("{{ row([item.title, item.category.levels, item.stock]) }}\n")
    (folder_ / "footer.csv.j2").write_text("")
    renderer = get_renderer("shop_csv", user_templates_dir=tmp_path)
    item = offer(title="=1+2", stock=-4, category={"path": "x", "levels": ["@x", "y"], "top": "x"})
    assert rows(renderer, renderer.render(item).text) == [{"title": "'=1+2", "levels": "'@x|y", "stock": "-4"}]


# ------------------------------------------------------------------------ the JVM renderer


def _formula_offers() -> list[dict]:
    items = []
    values = [*ATTACKS.values(), *NUMBERS, "-5.00 PLN", "=", "-", " ", "@ ", "a=1", "\u3000+1", "+\u00a0"]
    for n, value in enumerate(values):
        items.append(attacked_offer(value, n))
        items.append(offer(offer_id=f"o-{n}", mpn=value, brand=None if n % 2 else value,
                           description=value))
    return [{f.name: item.get(f.name) for f in OFFER_AGGREGATE_SCHEMA.fields} for item in items]


def test_jvm_renderer_neutralises_formula_cells_exactly_like_python(spark):
    from pyspark.sql import functions as F

    df = spark.createDataFrame(_formula_offers(), OFFER_AGGREGATE_SCHEMA)
    assert jvm_renderable(spark, "meta_catalog_csv", {}, df.schema)   # registers the UDF
    out = df.select(F.struct(*df.columns).alias("row"), render_column("meta_catalog_csv").alias("out")).collect()
    renderer = get_renderer("meta_catalog_csv")
    differ = []
    for r in out:
        item = r["row"].asDict(recursive=True)
        want = renderer.render(item).text
        if r["out"]["text"] != want:
            differ.append(f"{item['offer_id']!r}\n  jvm:    {r['out']['text']!r}\n  python: {want!r}")
    assert not differ, f"{len(differ)} of {len(out)} rows differ; first ones:\n" + "\n".join(differ[:5])
    assert sum(r["out"]["text"] is not None and r["out"]["text"].startswith("'") for r in out) >= len(ATTACKS)


def test_generated_meta_csv_and_generic_csv_files_hold_no_runnable_formula(spark, tmp_path):
    offers = [generated_offer(n, title=attack, brand=attack, mpn=attack) for n, attack in enumerate(ATTACKS.values())]
    offers.append(generated_offer(99, title="-5", mpn="+48601234567"))
    meta = {"id": "meta", "template": "meta_catalog_csv"}
    generic = {"id": "generic", "template": "generic_csv", "options": {"fields": ["offer_id", "title", "mpn"]}}
    docs = {}
    # both templates render in the JVM, generic_csv with its fields too; Python is the reference
    for jvm in (True, False):
        root = tmp_path / str(jvm)
        stats = generate(spark, root, offers, {"feeds": [meta, generic]}, jvm=jvm)
        assert {stats[d]["render_path"] for d in ("meta", "generic")} == {"jvm" if jvm else "python"}
        docs[jvm] = {d: assemble(folder(root, stats, d)) for d in ("meta", "generic")}
    meta = list(csv.DictReader(io.StringIO(docs[True]["meta"].decode("utf-8"))))
    python = {r["id"]: r for r in csv.DictReader(io.StringIO(docs[False]["meta"].decode("utf-8")))}
    assert sorted(python) == sorted(r["id"] for r in meta)
    differ = [(r["id"], c, r[c], python[r["id"]][c]) for r in meta for c in r if r[c] != python[r["id"]][c]]
    assert not differ, "(id, column, jvm, python) that differ:\n" + "\n".join(map(repr, differ[:5]))
    assert len(meta) == len(offers)
    for row in meta:
        assert not any(runs_in_a_spreadsheet(cell) for cell in row.values()), row
        assert row["price"] == "15.00 PLN" and row["availability"] == "in stock"
    plain = next(r for r in meta if r["id"] == "o-99")
    assert (plain["title"], plain["mpn"]) == ("-5", "+48601234567")
    generic = list(csv.DictReader(io.StringIO(docs[True]["generic"].decode("utf-8"))))
    python = list(csv.DictReader(io.StringIO(docs[False]["generic"].decode("utf-8"))))
    assert sorted(map(sorted, (r.items() for r in generic))) == sorted(map(sorted, (r.items() for r in python)))
    assert len(generic) == len(offers)
    for row in generic:
        assert not any(runs_in_a_spreadsheet(cell) for cell in row.values()), row
    assert {r["title"] for r in generic} >= {"'" + ATTACKS["="], "-5"}
