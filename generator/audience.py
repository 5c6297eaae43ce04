"""Normalising and hashing customer identifiers for audience exports.

Google Customer Match and Meta Custom Audiences match on SHA-256 hex digests of
normalised values, so a value normalised differently from the platform's rule simply
never matches. The rules implemented here:

- Google: email trimmed and lower-cased; for gmail.com / googlemail.com the dots and any
  ``+suffix`` of the local part are removed. Phone in E.164 (``+48601234567``). First and
  last name trimmed and lower-cased. Country (ISO 3166-1 alpha-2) and zip are sent in
  clear.
- Meta: email trimmed and lower-cased. Phone as digits with the country code, no ``+``
  and no leading zeros. First/last name and city lower-cased with punctuation, digits and
  spaces removed (letters outside a-z are kept, UTF-8). Zip lower-cased without spaces or
  dashes (US: first 5 digits). Country as lower-case ISO alpha-2. All hashed.

Every normaliser returns None when the value is missing or unusable.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from feedgen.generator.xmlsafe import text_clean

__all__ = [
    "CALLING_CODES",
    "e164_phone",
    "google_email",
    "google_name",
    "meta_city",
    "meta_country",
    "meta_email",
    "meta_name",
    "meta_phone",
    "meta_zip",
    "normalize_country",
    "sha256_hex",
]

# ITU calling codes of the countries a customer aggregate is likely to hold.
CALLING_CODES: dict[str, str] = {
    "PL": "48", "CZ": "420", "SK": "421", "DE": "49", "AT": "43", "CH": "41", "LT": "370",
    "LV": "371", "EE": "372", "HU": "36", "RO": "40", "BG": "359", "HR": "385", "SI": "386",
    "UA": "380", "GB": "44", "IE": "353", "FR": "33", "BE": "32", "NL": "31", "LU": "352",
    "ES": "34", "PT": "351", "IT": "39", "GR": "30", "SE": "46", "NO": "47", "DK": "45",
    "FI": "358", "US": "1", "CA": "1", "MX": "52", "BR": "55", "AU": "61", "NZ": "64",
    "JP": "81", "IN": "91", "TR": "90", "IL": "972", "AE": "971",
}
# Countries whose national significant numbers have one fixed length: lets "48601234567"
# (country code written without "+") be told apart from a national number.
_NSN_LENGTH = {"PL": 9, "CZ": 9, "SK": 9, "FR": 9, "ES": 9, "PT": 9, "DK": 8, "NO": 8,
               "US": 10, "CA": 10, "BE": 9, "NL": 9}
# Italy keeps the leading 0 of landline numbers in international form.
_KEEPS_TRUNK_ZERO = {"IT"}

_COUNTRY_NAMES = {
    "poland": "PL", "polska": "PL", "czechia": "CZ", "czech republic": "CZ", "slovakia": "SK",
    "germany": "DE", "deutschland": "DE", "united kingdom": "GB", "uk": "GB",
    "great britain": "GB", "united states": "US", "usa": "US", "france": "FR",
    "spain": "ES", "italy": "IT", "netherlands": "NL", "austria": "AT",
}

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE_JUNK = re.compile(r"[\s\-().\/]")
_NOT_LETTER = re.compile(r"[^\w]|[\d_]")


def sha256_hex(value: str) -> str:
    """Lower-case hex SHA-256 of the UTF-8 bytes of ``value``."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = unicodedata.normalize("NFC", text_clean(str(value))).strip()
    return text or None


def meta_email(value: object) -> str | None:
    """Email trimmed and lower-cased; None when it is not an address."""
    text = _text(value)
    if text is None:
        return None
    text = text.lower()
    return text if _EMAIL.match(text) else None


def google_email(value: object) -> str | None:
    """Email as Google matches it: lower-cased, gmail dots and ``+suffix`` removed."""
    text = meta_email(value)
    if text is None:
        return None
    local, domain = text.rsplit("@", 1)
    if domain in ("gmail.com", "googlemail.com"):
        local = local.split("+", 1)[0].replace(".", "")
        if not local:
            return None
    return f"{local}@{domain}"


def normalize_country(value: object) -> str | None:
    """ISO 3166-1 alpha-2 code in upper case (``PL``), from a code or a common name."""
    text = _text(value)
    if text is None:
        return None
    if len(text) == 2 and text.isascii() and text.isalpha():
        return text.upper()
    return _COUNTRY_NAMES.get(text.lower())


def e164_phone(value: object, country: object = None) -> str | None:
    """Phone in E.164 (``+48601234567``); a national number takes ``country``'s code."""
    text = _text(value)
    if text is None:
        return None
    digits = _PHONE_JUNK.sub("", text)
    if digits.startswith("+"):
        digits = digits[1:]
        international = True
    elif digits.startswith("00"):
        digits = digits[2:]
        international = True
    else:
        international = False
    if not digits.isdigit() or not digits.isascii():
        return None
    if not international:
        iso = normalize_country(country)
        code = CALLING_CODES.get(iso or "")
        length = _NSN_LENGTH.get(iso or "")
        if code is None:
            return None
        if length and len(digits) == len(code) + length and digits.startswith(code):
            pass  # the country code was written without "+" or "00"
        else:
            if iso in ("US", "CA") and len(digits) == 11 and digits.startswith("1") or iso not in _KEEPS_TRUNK_ZERO and digits.startswith("0"):
                digits = digits[1:]
            if length and len(digits) != length:
                return None
            digits = code + digits
    if digits.startswith("0") or not 8 <= len(digits) <= 15:
        return None
    return "+" + digits


def meta_phone(value: object, country: object = None) -> str | None:
    """Phone as Meta matches it: digits with the country code, no ``+`` (``48601234567``)."""
    e164 = e164_phone(value, country)
    return e164[1:] if e164 else None


def google_name(value: object) -> str | None:
    """First or last name trimmed and lower-cased, inner spaces collapsed."""
    text = _text(value)
    return " ".join(text.lower().split()) if text else None


def meta_name(value: object) -> str | None:
    """First or last name lower-cased without punctuation, digits or spaces."""
    text = _text(value)
    if text is None:
        return None
    text = _NOT_LETTER.sub("", text.lower())
    return text or None


meta_city = meta_name


def meta_zip(value: object, country: object = None) -> str | None:
    """Zip lower-cased without spaces or dashes; US zips cut to their first 5 digits."""
    text = _text(value)
    if text is None:
        return None
    text = re.sub(r"[\s\-]", "", text.lower())
    if normalize_country(country) == "US":
        text = text[:5]
    return text or None


def meta_country(value: object) -> str | None:
    """Country as lower-case ISO alpha-2 (``pl``)."""
    iso = normalize_country(value)
    return iso.lower() if iso else None
