from __future__ import annotations

import csv
import io
import pickle
from decimal import Decimal

import pytest
from lxml import etree

from feedgen.core.errors import BadInput
from feedgen.generator.parts import assemble, part_name, write_manifest, write_part
from feedgen.generator.render import get_renderer, render_count, renderer_key

G = "{http://base.google.com/ns/1.0}"
CTX = {"definition_id": "google-pl", "title": "Shop PL", "link": "https://shop.example.com",
       "run_id": "20261122T030500Z-1a2b3c", "as_of": "2026-11-22T03:05:00Z", "options": {}}


def offer(**over):
    base = {
        "offer_id": "o-1", "title": "Acme Phone X", "description": "A phone.",
        "link": "https://shop.example.com/offer/1", "image_link": "https://img.example.com/1.jpg",
        "availability": "in_stock", "stock": 3,
        "price": {"amount": Decimal("15.00"), "currency": "PLN"},
        "sale_price": None, "effective_price": {"amount": Decimal("15.00"), "currency": "PLN"},
        "condition": "new", "brand": "Acme", "gtin": "5901234123457", "mpn": "MPN-1",
        "category": {"path": "Electronics > Phones", "levels": ["Electronics", "Phones"],
                     "top": "Electronics"},
        "product": {"product_id": "p-1", "name": "Acme Phone", "brand": "Acme",
                    "category_path": "Electronics > Phones", "gtin": "5901234123457"},
    }
    base.update(over)
    return base


def _feed(tmp_path, name, items, ctx=CTX):
    renderer = get_renderer(name)
    results = [renderer.render(i) for i in items]
    kept = [r.text for r in results if r.text is not None]
    parts = [write_part(tmp_path, part_name(n, renderer.fmt), t.encode(), 1)
             for n, t in enumerate(kept)]
    write_manifest(tmp_path, definition_id=ctx["definition_id"], kind="feed",
                   run_id=ctx["run_id"], as_of=ctx["as_of"], template=name, fmt=renderer.fmt,
                   header=renderer.header(ctx), footer=renderer.footer(ctx), parts=parts)
    return assemble(tmp_path), results


def test_google_feed_is_rss_with_required_fields_and_vocabulary(tmp_path):
    doc, _ = _feed(tmp_path, "google_merchant_rss", [
        offer(),
        offer(offer_id="o-2", availability="out_of_stock", gtin=None, mpn=None,
              product={"brand": None, "gtin": None}, condition="refurbished",
              effective_price={"amount": Decimal("12.5"), "currency": "PLN"}),
    ])
    root = etree.fromstring(doc)
    assert root.tag == "rss" and root.get("version") == "2.0"
    assert root.nsmap["g"] == "http://base.google.com/ns/1.0"
    assert root.findtext("channel/title") == "Shop PL"
    first, second = root.findall("channel/item")
    for item in (first, second):
        for tag in ("title", "description", "link"):
            assert item.findtext(tag)
        for tag in ("id", "image_link", "availability", "price"):
            assert item.findtext(G + tag)
        assert item.findtext(G + "availability") in {"in_stock", "out_of_stock", "preorder",
                                                     "backorder"}
    assert first.findtext(G + "price") == "15.00 PLN"
    assert first.findtext(G + "gtin") == "5901234123457"
    assert first.find(G + "identifier_exists") is None and first.find(G + "sale_price") is None
    assert second.findtext(G + "availability") == "out_of_stock"
    assert second.findtext(G + "sale_price") == "12.50 PLN"
    assert second.findtext(G + "condition") == "refurbished"
    assert second.findtext(G + "identifier_exists") == "no"


@pytest.mark.parametrize(("over", "reason"), [
    ({"image_link": None}, "missing_image_link"),
    ({"image_link": "not a url"}, "bad_image_link"),
    ({"link": None}, "missing_link"),
    ({"price": {"amount": Decimal("-1"), "currency": "PLN"}}, "bad_price"),
    ({"price": {"amount": Decimal("3"), "currency": "zł"}}, "bad_price"),
    ({"price": None}, "missing_price"),
    ({"offer_id": "x" * 51}, "id_too_long"),
    ({"title": None, "product": None}, "missing_title"),
    ({"availability": None, "stock": None}, "bad_availability"),
])
def test_google_leaves_out_items_that_break_a_hard_rule(over, reason):
    result = get_renderer("google_merchant_rss").render(offer(**over))
    assert result.text is None
    assert reason in result.errors


def test_google_keeps_items_with_warnings_and_applies_limits():
    result = get_renderer("google_merchant_rss").render(offer(
        title="T" * 400, description=None, gtin="5901234123450", mpn=None,
        product={"gtin": None}, condition="mint",
        sale_price={"amount": Decimal("20.00"), "currency": "PLN"}))
    assert result.text is not None
    assert set(result.warnings) == {"title_truncated", "description_missing", "invalid_gtin",
                                    "unknown_condition", "sale_price_not_below_price"}
    assert len(result.fields["title"]) == 150
    assert result.fields["gtin"] is None and result.fields["identifier_exists"] == "no"
    assert result.fields["sale_price"] is None and result.fields["condition"] is None


def test_availability_falls_back_to_stock():
    result = get_renderer("google_merchant_rss").render(offer(availability=None, stock=0))
    assert result.fields["availability"] == "out_of_stock"
    assert result.warnings == ("availability_from_stock",)


def test_meta_xml_uses_meta_vocabulary(tmp_path):
    doc, _ = _feed(tmp_path, "meta_catalog_xml", [
        offer(), offer(offer_id="o-2", availability="backorder", condition=None),
    ])
    items = etree.fromstring(doc).findall("channel/item")
    required = ("id", "title", "description", "availability", "condition", "price", "link",
                "image_link")
    for item in items:
        assert all(item.findtext(G + tag) for tag in required)
        assert item.findtext(G + "availability") in {"in stock", "out of stock", "preorder",
                                                     "available for order", "discontinued"}
        assert item.findtext(G + "condition") in {"new", "refurbished", "used"}
    assert items[0].findtext(G + "availability") == "in stock"
    assert items[1].findtext(G + "availability") == "available for order"
    assert items[1].findtext(G + "condition") == "new"


def test_meta_csv_has_meta_columns_and_requires_brand_or_identifier():
    renderer = get_renderer("meta_catalog_csv")
    text = renderer.header(CTX) + renderer.render(offer(availability="out_of_stock")).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0]["availability"] == "out of stock"
    assert rows[0]["price"] == "15.00 PLN" and rows[0]["id"] == "o-1"
    assert {"id", "title", "description", "availability", "condition", "price", "link",
            "image_link", "brand"} <= set(rows[0])
    bare = renderer.render(offer(brand=None, gtin=None, mpn=None, product=None))
    assert bare.text is None and bare.errors == ("missing_brand_gtin_mpn",)


def test_generic_csv_writes_chosen_fields_and_neutralises_formulas():
    renderer = get_renderer("generic_csv", {"fields": ["offer_id", "title", "price.amount",
                                                       "category.levels"]})
    result = renderer.render(offer(title='=SUM(A1) "quoted", ok'))
    rows = list(csv.reader(io.StringIO(renderer.header(CTX) + result.text)))
    assert rows == [["offer_id", "title", "price.amount", "category.levels"],
                    ["o-1", "'=SUM(A1) \"quoted\", ok", "15.00", "Electronics|Phones"]]
    assert result.fields["price.amount"] == "15.00"


def test_generic_tsv_has_no_tabs_or_line_breaks_inside_cells():
    renderer = get_renderer("generic_tsv", {"fields": ["offer_id", "description"],
                                            "columns": ["id", "desc"]})
    text = renderer.render(offer(description="a\tb\nc")).text
    assert renderer.header(CTX) == "id\tdesc\n"
    assert text == "o-1\ta b c\n"


def test_generic_fields_are_checked_with_a_suggestion():
    with pytest.raises(BadInput, match=r"fields'\[1\]: unknown field 'prise.amount'; did you mean 'price.amount'"):
        get_renderer("generic_csv", {"fields": ["offer_id", "prise.amount"]})
    with pytest.raises(BadInput, match="give a list of field paths"):
        get_renderer("generic_tsv", {})


def test_unknown_template_names_the_fix():
    with pytest.raises(BadInput, match="unknown template 'googel'"):
        get_renderer("googel")


def test_renderers_are_cached_per_template_and_options_and_survive_pickling():
    a = get_renderer("generic_csv", {"fields": ["offer_id"]})
    assert get_renderer("generic_csv", {"fields": ["offer_id"]}) is a
    assert get_renderer("generic_csv", {"fields": ["title"]}) is not a
    assert pickle.loads(pickle.dumps(a)) is a
    # file limits do not change the render: definitions differing there share one
    assert get_renderer("generic_csv", {"fields": ["offer_id"], "max_file_items": 10}) is a
    assert renderer_key("google_merchant_rss", {"max_file_bytes": 5}) == \
        renderer_key("google_merchant_rss")
    google = get_renderer("google_merchant_rss")
    assert (google.fmt, google.entity) == ("xml", "offer")
    assert "image_link" in google.required_fields


def test_render_count_counts_each_render():
    before = render_count()
    get_renderer("google_merchant_rss").render(offer())
    get_renderer("meta_catalog_csv").render(offer())
    assert render_count() == before + 2


def _narrowed(item: dict, paths: tuple[str, ...]) -> dict:
    """What the generator ships to a renderer: its columns, structs cut to the fields it reads."""
    out: dict = {}
    for path in paths:
        top, _, sub = path.partition(".")
        if not sub:
            out[top] = item.get(top)
        elif item.get(top) is None:
            out[top] = None
        else:
            out.setdefault(top, {})[sub] = item[top].get(sub)
    return out


def test_render_reads_only_its_input_columns():
    google = get_renderer("google_merchant_rss")
    assert "category.path" in google.input_columns and "category" not in google.input_columns
    for full in (offer(attributes={"a": "b"}, seller={"name": "S"}, campaigns=[], rating=None),
                 # title, brand and gtin come from the product when the offer lacks them
                 offer(title=None, brand=None, gtin=None), offer(product=None, category=None)):
        narrow = _narrowed(full, google.input_columns)
        assert google.render(narrow) == google.render(full)
    generic = get_renderer("generic_csv", {"fields": ["title", "price.amount", "price.currency"]})
    assert generic.input_columns == ("offer_id", "title", "price")
    assert generic.required_fields == ("offer_id",)
