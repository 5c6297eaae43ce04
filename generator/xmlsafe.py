"""Making any text safe for an XML 1.0 document or a CSV/TSV cell.

Field values come from sellers and can hold anything: control characters, lone
surrogates (from badly decoded sources), U+FFFE, ``]]>``. Escaping (``&``, ``<``) is the
template's job (autoescape); these functions remove what no escaping can fix.
"""

from __future__ import annotations

import re

__all__ = ["csv_cell", "neutralise_formula", "text_clean", "tsv_cell", "xml_clean"]

# Not allowed in XML 1.0 (Char production), plus C1 controls and DEL, which are allowed
# but are always mojibake in a product feed.
_XML_INVALID = re.compile(
    "[^\u0009\u000a\u000d\u0020-\u007e\u00a0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
# The same, and line breaks and tabs too: CSV and TSV rows stay on one line.
_TEXT_INVALID = re.compile(
    "[^\u0020-\u007e\u00a0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
_LINE_BREAKS = re.compile("[\t\n\r\u0085\u2028\u2029]+")
_SURROGATE = re.compile("[\ud800-\udfff]")
_FORMULA_START = ("=", "+", "-", "@")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _join_surrogate_pairs(text: str) -> str:
    # a high+low pair held as two code points is one real character (an emoji); only
    # the lone halves are garbage
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").replace("\ufffd", "")


def xml_clean(text: str) -> str:
    """``text`` without the characters XML 1.0 does not allow (and lone surrogates)."""
    if _XML_INVALID.search(text) is None:
        return text
    return _XML_INVALID.sub("", _join_surrogate_pairs(text))


def text_clean(text: str) -> str:
    """``text`` on one line: line breaks and tabs become a space, other invalid characters go."""
    if _TEXT_INVALID.search(text) is None:
        return text
    text = _LINE_BREAKS.sub(" ", _join_surrogate_pairs(text))
    return _TEXT_INVALID.sub("", text)


def neutralise_formula(text: str) -> str:
    """Prefix a cell that a spreadsheet would run as a formula with a single quote.

    A text cell is a formula when it starts with ``= + - @`` after any spaces (a
    spreadsheet skips them; tabs and line breaks are spaces by now, see text_clean),
    unless it is a plain number (``-5``, ``+48601234567``), which a spreadsheet reads as
    a number and a partner must get unchanged. RenderOffer.java applies the same rule.
    """
    lead = text.lstrip()
    if not lead.startswith(_FORMULA_START) or _PLAIN_NUMBER.fullmatch(lead.rstrip()):
        return text
    return "'" + text


def csv_cell(text: str) -> str:
    """One CSV cell (RFC 4180): quoted when it holds a comma, quote or edge space."""
    if '"' in text:
        return '"' + text.replace('"', '""') + '"'
    if "," in text or "\n" in text or "\r" in text or text[:1] == " " or text[-1:] == " ":
        return '"' + text + '"'
    return text


def tsv_cell(text: str) -> str:
    """One TSV cell: TSV has no quoting, so the text must already be on one line."""
    return text
