from __future__ import annotations

import csv
import io

import pytest

from feedgen.generator import audience as A
from feedgen.generator.render import get_renderer

# (function, raw input, country, normalised by hand from the platform's published rule)
NORMALISED = [
    (A.google_email, "  Jan.Kowalski+Promo@GoogleMail.com ", None, "jankowalski@googlemail.com"),
    (A.google_email, "j.a.n.e+x@gmail.com", None, "jane@gmail.com"),
    # dots and +suffix only go for Google's consumer domains
    (A.google_email, "Jan.Kowalski+Promo@wp.pl", None, "jan.kowalski+promo@wp.pl"),
    (A.google_email, "not-an-email", None, None),
    (A.meta_email, " Jan.Kowalski+Promo@GoogleMail.com", None, "jan.kowalski+promo@googlemail.com"),
    (A.e164_phone, "+48 601 234 567", "PL", "+48601234567"),
    (A.e164_phone, "0048-601234567", "PL", "+48601234567"),
    (A.e164_phone, "(601) 234567", "PL", "+48601234567"),
    (A.e164_phone, "48601234567", "PL", "+48601234567"),
    (A.e164_phone, "601 234 567", "CZ", "+420601234567"),
    (A.e164_phone, "(202) 555-0143", "US", "+12025550143"),
    (A.e164_phone, "1-202-555-0143", "US", "+12025550143"),
    (A.e164_phone, "06 1234 5678", "IT", "+390612345678"),
    (A.e164_phone, "12345", "PL", None),
    (A.e164_phone, "601234567", None, None),
    (A.meta_phone, "+48 601 234 567", None, "48601234567"),
    (A.google_name, "  Anna   Maria ", None, "anna maria"),
    (A.meta_name, " Anna-Maria ", None, "annamaria"),
    (A.meta_name, "O'Brien", None, "obrien"),
    (A.meta_city, "Łódź 2", None, "łódź"),
    (A.meta_zip, "31-042", "PL", "31042"),
    (A.meta_zip, "90210-1234", "US", "90210"),
    (A.normalize_country, " pl", None, "PL"),
    (A.normalize_country, "Poland", None, "PL"),
    (A.meta_country, "US", None, "us"),
]


@pytest.mark.parametrize(("func", "raw", "country", "expected"), NORMALISED)
def test_normalisation_follows_platform_rules(func, raw, country, expected):
    args = (raw, country) if func in (A.e164_phone, A.meta_phone, A.meta_zip) else (raw,)
    assert func(*args) == expected


# SHA-256 of the normalised strings, computed independently with coreutils `sha256sum`
GOLDEN = {
    "adsapi": "49e0be2aeccfb51a8dee4c945c8a70a9ac500cf6f5cb08112575f74db9b1470d",
    "jankowalski@googlemail.com": "f423723ac7f3c6032a226394066d9543c8e2792bc554f93ee4b0de3ef7abda6e",
    "jan.kowalski+promo@googlemail.com": "7ab26a6c77ddec0bf612b4bea0aace3eb732769d7fbc6fd7d7f8336b7125e79d",
    "+48601234567": "1eac5678517f9e3cabbd08af68668ce50c627e40e523e621c04fdfea1fe1b95c",
    "48601234567": "dabf1db2d2243059d25ffb05f283e7d409ca3861b356004b9606bddcec5e724e",
    "jan": "6a0ac0fd972c325d6ca5512b67a5e0ad996c4a3e9b59971d125164e6d4db1a1c",
    "kowalski": "a377e09c55929b4677840112cae16709a99f1eb066eabd41f11ad702f3ff14bb",
    "31042": "6fb11726b9acc627607c5d21d50ff8c9668cadaa39f27391b23228350d576d13",
    "kraków": "59cbd4cbd8c0631899e466c8ee7c63443932d4902768fff60071a52a7ec25e45",
    "pl": "3485639faf1591f3c16f295198e9389db5b33c949587ec48663597d4e00299d5",
}


@pytest.mark.parametrize(("text", "digest"), sorted(GOLDEN.items()))
def test_sha256_golden_vectors(text, digest):
    assert A.sha256_hex(text) == digest


CUSTOMER = {
    "customer_id": "c-1", "email": " Jan.Kowalski+Promo@GoogleMail.com ", "phone": "601 234 567",
    "first_name": " Jan ", "last_name": "KOWALSKI", "country": "PL", "city": "Kraków",
    "zip": "31-042",
}


def _rows(name, item):
    renderer = get_renderer(name)
    result = renderer.render(item)
    assert result.errors == ()
    return list(csv.reader(io.StringIO(renderer.header({}) + result.text)))


def test_google_customer_match_row_hashes_contact_and_keeps_country_and_zip_clear():
    header, row = _rows("google_customer_match", CUSTOMER)
    assert header == ["Email", "Phone", "First Name", "Last Name", "Country", "Zip"]
    assert row == [GOLDEN["jankowalski@googlemail.com"], GOLDEN["+48601234567"],
                   GOLDEN["jan"], GOLDEN["kowalski"], "PL", "31-042"]


def test_meta_custom_audience_row_hashes_every_column():
    header, row = _rows("meta_custom_audience", CUSTOMER)
    assert header == ["EMAIL", "PHONE", "FN", "LN", "ZIP", "CT", "COUNTRY"]
    assert row == [GOLDEN["jan.kowalski+promo@googlemail.com"], GOLDEN["48601234567"],
                   GOLDEN["jan"], GOLDEN["kowalski"], GOLDEN["31042"], GOLDEN["kraków"],
                   GOLDEN["pl"]]


def test_customer_without_any_identifier_is_left_out_with_a_reason():
    result = get_renderer("google_customer_match").render(
        {"customer_id": "c-2", "email": "not-an-email", "phone": None, "country": "PL"})
    assert result.text is None
    assert result.errors == ("no_identifier",)
    assert "bad_email" in result.warnings


def test_bad_phone_is_a_warning_when_email_still_matches():
    result = get_renderer("meta_custom_audience").render(
        {"customer_id": "c-3", "email": "a@b.pl", "phone": "call me", "country": "PL"})
    assert result.text is not None and result.warnings == ("bad_phone",)
    assert result.fields["PHONE"] is None


def test_ids_csv_neutralises_formula_ids_and_audience_fields_hold_no_raw_pii():
    header, row = _rows("ids_csv", {"customer_id": "=HYPERLINK(\"http://evil\")"})
    assert header == ["customer_id"] and row == ["'=HYPERLINK(\"http://evil\")"]
    fields = get_renderer("google_customer_match").render(CUSTOMER).fields
    assert "kowalski" not in str(fields).lower()


@pytest.mark.parametrize("name", ["google_customer_match", "meta_custom_audience", "ids_csv"])
def test_audience_render_reads_only_its_input_columns(name):
    renderer = get_renderer(name)
    full = {**CUSTOMER, "orders": [], "events": [], "attributes": {"x": "y"}}
    narrow = {k: v for k, v in full.items() if k in renderer.input_columns}
    assert renderer.render(narrow) == renderer.render(full)
