from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from feedgen.generator.parts import assemble, part_name, write_manifest, write_part
from feedgen.generator.render import get_renderer
from feedgen.generator.xmlsafe import text_clean, xml_clean

USER_TEMPLATES = Path(__file__).parent / "fixtures" / "render" / "user_templates"

HOSTILE = (
    "Zażółć \x00\x01\x08\x0b\x0c\x1b\x7f\x85 ]]> <![CDATA[x]]> & &amp; <script>alert(1)</script>"
    " \ud800 lone \udfff \ud83d\ude00 pair \ufffe\uffff \u202eRTL\u202c \u200f \U0001F4F1"
    ' "quoted", \'single\' \r\n new\tline'
)
FORMULA = "=HYPERLINK(\"http://evil.example\",\"x\")"


def hostile_offer(**over):
    item = {
        "offer_id": FORMULA[:20], "title": HOSTILE, "description": HOSTILE + "\n" + HOSTILE,
        "link": "https://shop.example.com/o?a=1&b=<2>&c=]]>",
        "image_link": "https://img.example.com/1.jpg?x=\"&y='",
        "availability": "in_stock", "stock": 1,
        "price": {"amount": Decimal("15.00"), "currency": "PLN"},
        "sale_price": None, "effective_price": None, "condition": "new",
        "brand": "+" + HOSTILE, "gtin": None, "mpn": "-" + HOSTILE,
        "category": {"path": "@" + HOSTILE, "levels": [HOSTILE], "top": HOSTILE},
        "attributes": {"k": HOSTILE},
    }
    item.update(over)
    return item


def hostile_customer():
    return {"customer_id": FORMULA, "email": " =x+y@gmail.com ", "phone": "+48 601 234 567",
            "first_name": HOSTILE, "last_name": "@" + HOSTILE, "country": "PL",
            "city": HOSTILE, "zip": "-31-042"}


CTX = {"definition_id": "hostile", "title": HOSTILE, "link": "https://x.example/?a=1&b=2",
       "run_id": "r", "as_of": "2026-11-22T03:05:00Z", "options": {}}


def _write(tmp_path, renderer, texts, ctx=CTX):
    parts = [write_part(tmp_path, part_name(n, renderer.fmt), t.encode("utf-8"), 1)
             for n, t in enumerate(texts)]
    write_manifest(tmp_path, definition_id="hostile", kind="feed", run_id="r", as_of="t",
                   template=renderer.name, fmt=renderer.fmt, header=renderer.header(ctx),
                   footer=renderer.footer(ctx), parts=parts)
    return assemble(tmp_path)


@pytest.mark.parametrize("name", ["google_merchant_rss", "meta_catalog_xml"])
def test_hostile_text_gives_xml_that_parses_part_by_part_and_assembled(tmp_path, name):
    renderer = get_renderer(name)
    result = renderer.render(hostile_offer())
    assert result.text is not None, result.errors
    # each fragment parses on its own inside the namespace the header declares
    wrapped = f'<r xmlns:g="http://base.google.com/ns/1.0">{result.text}</r>'
    etree.fromstring(wrapped.encode("utf-8"))
    root = etree.fromstring(_write(tmp_path, renderer, [result.text, result.text]))
    title = root.find("channel/item").findtext("title") or root.find("channel/item").findtext(
        "{http://base.google.com/ns/1.0}title")
    # the text survives, minus what XML cannot hold; the split pair becomes the emoji
    assert "]]> <![CDATA[x]]> & &amp; <script>" in title
    assert "\U0001F600" in title and "\U0001F4F1" in title and "\u202eRTL" in title
    assert "\x00" not in title and "\ud800" not in title and "\ufffe" not in title
    assert root.findtext("channel/title").startswith("Zażółć")
    json.dumps(result.fields, ensure_ascii=False).encode("utf-8")  # events can carry it


@pytest.mark.parametrize(("name", "options", "neutralised"), [
    ("meta_catalog_csv", None, False),
    ("generic_csv", {"fields": ["offer_id", "title", "brand", "mpn", "category.path",
                                "category.levels", "attributes"]}, True),
    ("generic_tsv", {"fields": ["offer_id", "title", "brand", "mpn"]}, True),
])
def test_hostile_text_gives_one_line_csv_rows_that_round_trip(name, options, neutralised):
    renderer = get_renderer(name, options)
    result = renderer.render(hostile_offer())
    text = result.text
    assert text.endswith("\n") and text.count("\n") == 1
    text.encode("utf-8")
    dialect = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if renderer.fmt == "tsv" else {}
    header, row = list(csv.reader(io.StringIO(renderer.header(CTX) + text), **dialect))
    assert len(row) == len(header)
    title = row[header.index("title")]
    assert "\"quoted\", 'single'" in title or renderer.fmt == "tsv"
    starts = [row[header.index(c)][:1] for c in ("offer_id", "brand", "mpn") if c in header]
    if neutralised:
        assert all(s == "'" for s in starts)


@pytest.mark.parametrize("name", ["google_customer_match", "meta_custom_audience", "ids_csv"])
def test_hostile_customer_gives_safe_audience_rows(name):
    renderer = get_renderer(name)
    result = renderer.render(hostile_customer())
    assert result.text is not None and result.text.count("\n") == 1
    header, row = list(csv.reader(io.StringIO(renderer.header({}) + result.text)))
    assert len(row) == len(header)
    for cell in row:
        assert not cell.startswith(("=", "+", "-", "@"))
    if name == "ids_csv":
        assert row == ["'" + FORMULA]
    if name == "google_customer_match":
        assert row[header.index("Zip")] == "'-31-042"
        assert len(row[0]) == 64 and all(c in "0123456789abcdef" for c in row[0])


def test_user_xml_template_runs_sandboxed_and_can_reject_and_warn(tmp_path):
    renderer = get_renderer("shop_xml", user_templates_dir=USER_TEMPLATES)
    assert (renderer.fmt, renderer.entity) == ("xml", "offer")
    good = renderer.render(hostile_offer(brand=None))
    assert good.errors == () and good.warnings == ("no_brand",)
    assert "mro" not in good.text and "class" not in good.text  # nothing leaks out
    rejected = renderer.render(hostile_offer(image_link=None))
    assert rejected.text is None and rejected.errors == ("no_image",)
    root = etree.fromstring(_write(tmp_path, renderer, [good.text]))
    assert root.find("{urn:example:shop}offer").get("id").startswith("=HYPERLINK")


def test_user_template_that_breaks_xml_is_caught_per_item():
    renderer = get_renderer("raw_xml", user_templates_dir=USER_TEMPLATES)
    assert renderer.render(hostile_offer(title="plain")).text == "<s:offer>plain</s:offer>\n"
    broken = renderer.render(hostile_offer(title="<b>unclosed"))
    assert broken.text is None and broken.errors == ("template_invalid_xml",)


def test_user_csv_template_for_customers_quotes_and_neutralises():
    renderer = get_renderer("crm_csv", user_templates_dir=USER_TEMPLATES)
    assert renderer.entity == "customer" and renderer.required_fields == ("customer_id",)
    text = renderer.header({}) + renderer.render(hostile_customer()).text
    assert list(csv.reader(io.StringIO(text))) == [["id", "email"],
                                                   ["'" + FORMULA, "' =x+y@gmail.com "]]


def test_cleaners_keep_valid_text_untouched():
    text = "Zażółć gęślą jaźń \u200f 😀 \t tab"
    assert xml_clean(text) is text
    assert text_clean("a\r\nb\tc") == "a b c"


@settings(max_examples=150, deadline=None)
@given(text=st.text(alphabet=st.characters(exclude_categories=()), max_size=60))
def test_any_text_in_any_field_gives_parseable_xml_and_one_line_csv(text):
    item = hostile_offer(title=text or "t", description=text, brand=text, mpn=text,
                         category={"path": text})
    for name in ("google_merchant_rss", "meta_catalog_xml"):
        result = get_renderer(name).render(item)
        if result.text is not None:
            wrapped = f'<r xmlns:g="http://base.google.com/ns/1.0">{result.text}</r>'
            etree.fromstring(wrapped.encode("utf-8"))
    row = get_renderer("meta_catalog_csv").render(item).text
    if row is not None:
        assert len(next(csv.reader(io.StringIO(row)))) == 13 and row.count("\n") == 1
