"""Strict parsing of what a request names: ids, numbers, tokens, query strings, dates, ranges.

Every value taken from a URL path, a query string or a header goes through this module, on
the Flask routes and on the WSGI fast paths alike, so both read a request the same way.
Each value is matched in full (``re.fullmatch``) against an ASCII pattern with a length
bound before it is converted, so a Unicode digit, a trailing ``%0a`` or a 5,000-digit
number is a refusal with a message, never a 500 and never a different id.

Query strings: ASCII only (non-ASCII must be percent-encoded), percent-escapes must decode
as UTF-8, at most ``MAX_QUERY_PAIRS`` parameters. A parameter that takes one value
(``file``, ``token``, ``limit``) given twice is a 400 (``BadParameter``): the first and the
last copy mean different things to different proxies, so neither is picked. Filters that
may repeat (the lookup filters) say so themselves.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

__all__ = [
    "CUSTOMER_ID", "DEFINITION_ID", "FEED_NAME", "FILE_INDEX", "MAX_QUERY_PAIRS", "MAX_RANGES", "RUN_ID",
    "TOKEN",
    "BadParameter", "BadRange", "DuplicateKey", "byte_range", "http_date", "json_loads", "number", "query",
    "single", "valid_token",
]

DEFINITION_ID = re.compile(r"[a-z0-9-]{1,128}")
FEED_NAME = re.compile(r"(?P<id>[a-z0-9-]{1,128})(?:\.(?P<fmt>xml|csv|tsv))?(?P<gz>\.gz)?")
RUN_ID = re.compile(r"[A-Za-z0-9-]{1,80}")
CUSTOMER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,127}")
FILE_INDEX = re.compile(r"[0-9]{1,6}")
# Visible ASCII: what token generators produce and what survives a header unchanged.
TOKEN = re.compile(r"[\x21-\x7e]{1,512}")
MAX_QUERY_PAIRS = 256
_DIGITS = re.compile(r"[0-9]{1,18}")
_QUERY = re.compile(r"[\x21-\x7e]{0,8192}")
_RANGE_SPEC = re.compile(r"(?:([0-9]{1,18})-([0-9]{0,18})|-([0-9]{1,18}))")
# A Range list longer than this is ignored (served whole) rather than parsed.
MAX_RANGES = 64

_MONTHS = {m: n for n, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_MON = "(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_TIME = "([0-9]{2}):([0-9]{2}):([0-9]{2})"
# RFC 9110 5.6.7: IMF-fixdate, and the obsolete RFC 850 and asctime forms a recipient must accept.
_IMF_FIXDATE = re.compile(rf"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), ([0-9]{{2}}) {_MON} ([0-9]{{4}}) {_TIME} GMT")
_RFC850 = re.compile(rf"(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day, ([0-9]{{2}})-{_MON}-([0-9]{{2}}) {_TIME} GMT")
_ASCTIME = re.compile(rf"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) {_MON} ([ 0-9][0-9]) {_TIME} ([0-9]{{4}})")


class BadParameter(ValueError):
    """A malformed or repeated query parameter; the message says which and what to send."""


class BadRange(ValueError):
    """A ``Range: bytes=...`` header that is not a valid byte-range set (answered 416)."""


class DuplicateKey(Exception):
    """A JSON object that names one key twice (not a ValueError, which means "not JSON")."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def json_loads(raw: bytes | str) -> Any:
    """``json.loads`` refusing an object that names a key twice (``DuplicateKey``).

    Parsers disagree on which copy wins (Python keeps the last, others the first), so a
    body that means two things to two programs is refused rather than read one way.
    """
    return json.loads(raw, object_pairs_hook=_unique_keys)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _value in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return out


def query(query_string: str | None) -> dict[str, list[str]]:
    """Parameter name → its values in order, from a raw WSGI ``QUERY_STRING``."""
    if not query_string:
        return {}
    if not _QUERY.fullmatch(query_string):
        raise BadParameter("query string: percent-encode spaces, control and non-ASCII characters "
                           "(at most 8192 characters)")
    try:
        pairs = parse_qsl(query_string, keep_blank_values=True, strict_parsing=False, encoding="utf-8",
                          errors="strict", max_num_fields=MAX_QUERY_PAIRS)
    except UnicodeDecodeError:
        raise BadParameter("query string: a percent-escape does not decode as UTF-8") from None
    except ValueError:
        raise BadParameter(f"query string: more than {MAX_QUERY_PAIRS} parameters") from None
    out: dict[str, list[str]] = {}
    for name, value in pairs:
        out.setdefault(name, []).append(value)
    return out


def single(params: Mapping[str, list[str]], name: str) -> str | None:
    """The one value of ``name`` (None when absent); a repeated parameter is a BadParameter."""
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise BadParameter(f"query: parameter {name!r} is given {len(values)} times; give it once")
    return values[0]


def number(text: str | None, name: str, *, default: int, low: int, high: int) -> int:
    """A whole number of ASCII digits from ``low`` to ``high`` (``default`` when absent)."""
    if text is None:
        return default
    if not _DIGITS.fullmatch(text) or len(text) > len(str(high)) or not low <= int(text) <= high:
        raise BadParameter(f"query: {name} must be a whole number from {low} to {high} in ASCII digits, "
                           f"got {_shown(text)}")
    return int(text)


def valid_token(token: Any) -> bool:
    """True when ``token`` has the shape of an access token (1-512 visible ASCII characters)."""
    return isinstance(token, str) and TOKEN.fullmatch(token) is not None


def http_date(value: str | None) -> datetime | None:
    """An HTTP-date header value as an aware UTC datetime; None when absent or not a valid date."""
    if not value or len(value) > 64:
        return None
    value = value.strip(" \t")
    try:
        if m := _IMF_FIXDATE.fullmatch(value):
            day, mon, year, hh, mm, ss = m.groups()
            return datetime(int(year), _MONTHS[mon], int(day), int(hh), int(mm), int(ss), tzinfo=UTC)
        if m := _RFC850.fullmatch(value):
            day, mon, yy, hh, mm, ss = m.groups()
            # RFC 9110: a two-digit year more than 50 years in the future is in the past century
            year = 2000 + int(yy) if int(yy) < 70 else 1900 + int(yy)
            return datetime(year, _MONTHS[mon], int(day), int(hh), int(mm), int(ss), tzinfo=UTC)
        if m := _ASCTIME.fullmatch(value):
            mon, day, hh, mm, ss, year = m.groups()
            return datetime(int(year), _MONTHS[mon], int(day.strip()), int(hh), int(mm), int(ss), tzinfo=UTC)
    except ValueError:  # 31 February, 25:00:00, year 0
        return None
    return None


def byte_range(header: str | None, length: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte range a ``Range`` header asks of a ``length``-byte body.

    The range set is a comma-separated list (RFC 9110 14.1.1); as for every HTTP list, empty
    elements and the spaces around commas are allowed (``bytes=0-9,`` is one range).
    None: no header, another unit, several ranges (valid, but served whole rather than as
    multipart; RFC 9110 14.2 lets a server ignore Range), or a list of more than
    ``MAX_RANGES`` elements (ignored without being read: the whole file, 200). BadRange:
    a list of at most ``MAX_RANGES`` elements where one is not ``FIRST-LAST`` / ``FIRST-``
    / ``-SUFFIX`` of at most 18 ASCII digits each, or that names no range at all, a last
    before the first, or a single range that starts past the end.
    """
    if not header:
        return None
    unit, eq, specs = header.partition("=")
    if not eq or unit.strip(" \t").lower() != "bytes":
        return None
    elements = specs.split(",", MAX_RANGES)
    if len(elements) > MAX_RANGES:
        return None
    parts = [p for p in (e.strip(" \t") for e in elements) if p]
    matches = [_RANGE_SPEC.fullmatch(p) for p in parts]
    if not parts or not all(matches):
        raise BadRange(header)
    if len(parts) > 1:
        return None
    first, last, suffix = matches[0].groups()  # type: ignore[union-attr]
    if suffix is not None:
        if int(suffix) == 0 or length == 0:
            raise BadRange(header)
        return max(0, length - int(suffix)), length - 1
    start = int(first)
    if last and int(last) < start:
        raise BadRange(header)
    if start >= length:
        raise BadRange(header)
    end = int(last) if last else length - 1
    return start, min(end, length - 1)


def _shown(text: str) -> str:
    return repr(text[:20] + ("..." if len(text) > 20 else ""))
