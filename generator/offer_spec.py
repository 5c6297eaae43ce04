"""The rules of the built-in offer templates, as data read by both renderers.

Python (``render.py``) and the JVM (``generator/jvm/RenderOffer.java``, through ``jvm.py``)
interpret the same spec, so a rule lives here once:

- ``INPUTS``: the aggregate values the rules read, each with the name both renderers read
  it by, its aggregate path and its type (``string``, ``int`` or ``money``).
- ``FIELDS``: the values an item template sees (``{{ title }}``), each made by a *cleaner*
  from its sources (the first source with a value wins), with its limit and the error and
  warning codes it reports. An error leaves the item out; a warning keeps it.
- ``FLAVOURS``: what differs between partners (limits, vocabularies, defaults, accepted
  currencies, how a price is written, which fields they take and require), as data.
- ``CHANNELS``: the built-in templates: a flavour and a format (``templates/<name>/``).
- ``GENERICS``: the generic templates (``generic_csv``, ``generic_tsv``): no flavour, the
  aggregate paths a definition chooses in ``options.fields``, one cell each, and the key
  without which an item is left out (``generic_json`` is a template with its fields, for the JVM).

The cleaners and the cell of a generic template are the only code. A generic cell is the
value as Python holds it after Arrow: text as it is, a list of texts and whole numbers joined
with ``|``, a struct, map or other list as JSON with sorted keys, numbers, decimals, booleans and
timestamps (ISO 8601 in the session's time zone) as Python writes them; then made one line,
and a text cell starting with ``= + - @`` after spaces gets a leading ``'`` (render.py
``_cell_text`` and ``_row_writer``, RenderGeneric.java). The cleaners: ``id``, ``text``, ``long_text``, ``url``, ``choice`` (a
vocabulary; an ``int`` source is the stock fallback of availability), ``money``,
``sale_price`` (the lowest price below the regular one), ``gtin`` (check digit),
``coalesce`` and ``flag`` (made of other fields). Both renderers implement each one;
tests/test_offer_spec.py holds them to shared golden vectors and tests/test_render_jvm.py
to each other on random and hostile offers. ``compiled(flavour)`` resolves a flavour into
the rules both renderers run; ``flavour_json`` is the same for the JVM.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from types import MappingProxyType

__all__ = ["CHANNELS", "CLEANERS", "FIELDS", "FLAVOURS", "GENERICS", "INPUTS", "Channel", "Compiled", "Field",
           "Flavour", "Generic", "Input", "Rule", "compiled", "flavour_json", "generic_json", "input_paths",
           "required_paths"]

INPUT_TYPES = ("string", "int", "money")
CLEANERS = ("id", "text", "long_text", "url", "choice", "money", "sale_price", "gtin", "coalesce", "flag")


@dataclass(frozen=True)
class Input:
    """An aggregate value the rules read: ``name`` in both renderers, ``path`` in the aggregate."""

    name: str
    path: str
    type: str = "string"


INPUTS: tuple[Input, ...] = (
    Input("offer_id", "offer_id"),
    Input("title", "title"),
    Input("description", "description"),
    Input("link", "link"),
    Input("image_link", "image_link"),
    Input("availability", "availability"),
    Input("stock", "stock", "int"),
    Input("price", "price", "money"),
    Input("sale_price", "sale_price", "money"),
    Input("effective_price", "effective_price", "money"),
    Input("condition", "condition"),
    Input("brand", "brand"),
    Input("gtin", "gtin"),
    Input("mpn", "mpn"),
    Input("category_path", "category.path"),
    Input("product_name", "product.name"),
    Input("product_brand", "product.brand"),
    Input("product_gtin", "product.gtin"),
)


def _frozen(mapping: Mapping | None = None) -> Mapping:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class Field:
    """A value the item templates see, and how it is made and checked."""

    name: str
    clean: str
    sources: tuple[str, ...] = ()      # input names; the first one with a value is used
    limit: int | None = None           # longest value in code points (a flavour may change it)
    missing: str | None = None         # error when no source has a value: the field is required
    bad: str | None = None             # error when a value is there but unusable (bad_link)
    too_long: str | None = None        # error when over the limit (instead of a cut)
    cut: str | None = None             # warning when the value was cut at the limit
    invalid: str | None = None         # warning when a value is dropped (unknown_condition)
    refused: str | None = None         # error when the flavour does not take the value
    fallback: str | None = None        # an earlier field whose value is used when there is none
    fallback_warning: str | None = None  # warning when ``fallback`` (or the stock) was used
    aliases: Mapping[str, str] = field(default_factory=_frozen)  # choice: spelling → value
    of: tuple[str, ...] = ()           # coalesce / flag: earlier fields
    value: str | None = None           # flag: the value when none of ``of`` is set


AVAILABILITY_ALIASES = {
    "in_stock": "in_stock", "instock": "in_stock", "in stock": "in_stock",
    "available": "in_stock", "out_of_stock": "out_of_stock", "outofstock": "out_of_stock",
    "out of stock": "out_of_stock", "sold_out": "out_of_stock", "preorder": "preorder",
    "pre_order": "preorder", "backorder": "backorder", "back_order": "backorder",
    "available for order": "backorder",
}
CONDITIONS = {"new": "new", "used": "used", "refurbished": "refurbished"}

FIELDS: tuple[Field, ...] = (
    Field("id", "id", ("offer_id",), limit=50, missing="missing_id", too_long="id_too_long",
          refused="bad_id"),
    Field("title", "text", ("title", "product_name"), limit=150, missing="missing_title",
          cut="title_truncated"),
    Field("description", "long_text", ("description",), limit=5000, cut="description_truncated",
          fallback="title", fallback_warning="description_missing"),
    Field("link", "url", ("link",), limit=2000, missing="missing_link", bad="bad_link"),
    Field("image_link", "url", ("image_link",), limit=2000, missing="missing_image_link",
          bad="bad_image_link"),
    Field("availability", "choice", ("availability", "stock"), missing="bad_availability",
          fallback_warning="availability_from_stock", refused="availability_not_accepted",
          aliases=_frozen(AVAILABILITY_ALIASES)),
    Field("price", "money", ("price",), missing="missing_price", bad="bad_price",
          refused="currency_not_accepted"),
    Field("sale_price", "sale_price", ("price", "effective_price", "sale_price"),
          invalid="sale_price_not_below_price"),
    Field("condition", "choice", ("condition",), invalid="unknown_condition",
          refused="condition_not_accepted", aliases=_frozen(CONDITIONS)),
    Field("brand", "text", ("brand", "product_brand"), limit=70, cut="brand_truncated"),
    Field("gtin", "gtin", ("gtin", "product_gtin"), invalid="invalid_gtin"),
    Field("mpn", "text", ("mpn",), limit=70, cut="mpn_truncated"),
    Field("product_type", "text", ("category_path",), limit=750),
    # the price the shopper pays: the sale price when there is one (price comparators)
    Field("pay_price", "coalesce", of=("sale_price", "price")),
    Field("identifier_exists", "flag", of=("gtin", "mpn"), value="no"),
)

COMMON = ("id", "title", "description", "link", "image_link", "availability", "price", "sale_price",
          "condition", "brand", "gtin", "mpn", "product_type")


@dataclass(frozen=True)
class Flavour:
    """A partner's variant of the rules: which fields it takes, and its limits and vocabularies."""

    name: str
    fields: tuple[str, ...] = COMMON                   # in the order they are made; the payload's keys
    limits: Mapping[str, int] = field(default_factory=_frozen)           # field → longest value
    vocab: Mapping[str, Mapping[str, str | None]] = field(default_factory=_frozen)  # field → {ours: theirs}
    defaults: Mapping[str, tuple[str, str]] = field(default_factory=_frozen)  # field → (value, warning)
    required: Mapping[str, str] = field(default_factory=_frozen)         # field → error when it has none
    require_any: tuple[tuple[tuple[str, ...], str], ...] = ()             # (fields, error): one must be set
    currencies: tuple[str, ...] | None = None          # the currencies it takes (None: any)
    money: str = "amount_currency"                     # a price as "15.00 PLN" (amount_currency) or "15.00"
    id_chars: str | None = None                        # the characters an id may hold (None: any)
    source: str = ""                                   # where its rules come from


_META_AVAILABILITY = {"in_stock": "in stock", "out_of_stock": "out of stock", "preorder": "preorder",
                      "backorder": "available for order"}
_ASCII_ID = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"

FLAVOURS: dict[str, Flavour] = {f.name: f for f in (
    Flavour("google", COMMON + ("identifier_exists",),
            source="https://support.google.com/merchants/answer/7052112"),
    Flavour("meta", limits=_frozen({"id": 100, "title": 200, "description": 9999}),
            vocab=_frozen({"availability": _frozen(_META_AVAILABILITY)}),
            # Meta requires a condition; a marketplace offer without one is sold as new
            defaults=_frozen({"condition": ("new", "condition_missing")}),
            require_any=((("brand", "gtin", "mpn"), "missing_brand_gtin_mpn"),),
            source="https://developers.facebook.com/docs/commerce-platform/catalog/fields"),
    Flavour("tiktok", limits=_frozen({"id": 100, "title": 200, "description": 9999}),
            vocab=_frozen({"availability": _frozen(_META_AVAILABILITY)}),
            defaults=_frozen({"condition": ("new", "condition_missing")}),
            required=_frozen({"brand": "missing_brand"}),
            source="https://ads.tiktok.com/help/article/catalog-product-parameters"),
    Flavour("ceneo", COMMON + ("pay_price",), currencies=("PLN",), money="amount",
            vocab=_frozen({"availability": _frozen({"in_stock": "1", "backorder": "14", "preorder": "99",
                                                    "out_of_stock": "99"}),
                           "condition": _frozen({"new": "new"})}),
            required=_frozen({"product_type": "missing_category"}),
            source="http://dlasklepow.ceneo.pl/en/questions-and-answers/"),
    Flavour("heureka", COMMON + ("pay_price",), currencies=("CZK", "EUR"), money="amount", id_chars=_ASCII_ID,
            limits=_frozen({"id": 36, "title": 200, "description": 13000, "link": 300, "image_link": 255}),
            vocab=_frozen({"availability": _frozen({"in_stock": "0", "backorder": "14", "preorder": None,
                                                    "out_of_stock": None})}),
            required=_frozen({"product_type": "missing_category"}),
            source="https://heureka.github.io/xml-feed-specs"),
)}


@dataclass(frozen=True)
class Channel:
    """A built-in offer template: ``templates/<name>/{header,item,footer}.<fmt>.j2`` over a flavour."""

    flavour: str
    fmt: str
    max_file_bytes: int | None = None   # the largest file the partner takes (uncompressed)


CHANNELS: dict[str, Channel] = {
    "google_merchant_rss": Channel("google", "xml", 4_000_000_000),
    "meta_catalog_xml": Channel("meta", "xml", 100_000_000),
    "meta_catalog_csv": Channel("meta", "csv", 100_000_000),
    "ceneo_xml": Channel("ceneo", "xml"),
    "heureka_xml": Channel("heureka", "xml"),
    "tiktok_catalog_csv": Channel("tiktok", "csv"),
}


@dataclass(frozen=True)
class Generic:
    """A generic template: the aggregate paths of its ``fields`` option, one cell each, in ``fmt``."""

    fmt: str                    # csv (RFC 4180 quoting) | tsv (no quoting: cells are one line)
    key: str = "offer_id"       # the item's key: without one (null or empty) the item is left out
    missing: str = "missing_id"  # ... with this error
    # the options that change what it renders (the rest, file limits, only how output is split)
    options: tuple[str, ...] = ("fields", "columns")


GENERICS: dict[str, Generic] = {
    "generic_csv": Generic("csv"),
    "generic_tsv": Generic("tsv"),
}


def generic_json(name: str, fields: Sequence[str]) -> str:
    """Generic template ``name`` with its chosen ``fields`` as the JSON RenderGeneric.java reads."""
    g = GENERICS[name]
    return json.dumps({"name": name, "sep": "," if g.fmt == "csv" else "\t", "key": g.key, "missing": g.missing,
                       "fields": list(fields)}, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


# ---------------------------------------------------------------------------------------
# resolved: what the renderers run


@dataclass(frozen=True)
class Rule:
    """One field of one flavour with everything resolved: what both renderers run."""

    name: str
    clean: str
    sources: tuple[int, ...]            # indices into INPUTS
    limit: int                          # 0: none
    missing: str | None
    bad: str | None
    too_long: str | None
    cut: str | None
    invalid: str | None
    refused: str | None
    fallback: int                       # index of an earlier rule, -1: none
    fallback_warning: str | None
    aliases: Mapping[str, str]
    vocab: Mapping[str, str | None] | None   # ours → theirs; a value not listed is refused
    default: str | None
    default_warning: str | None
    of: tuple[int, ...]                 # indices of earlier rules
    value: str | None
    currencies: tuple[str, ...] | None  # money: accepted currencies
    id_chars: str | None                # id: accepted characters
    money: str                          # money, sale_price: how a price is written


@dataclass(frozen=True)
class Compiled:
    """A flavour resolved into its rules, in order."""

    name: str
    rules: tuple[Rule, ...]
    require_any: tuple[tuple[tuple[int, ...], str], ...]
    money: str
    required: tuple[tuple[str, int, str], ...]   # (aggregate path, input index, "" | amount | currency)


class SpecError(ValueError):
    """The spec contradicts itself (a developer error: caught by tests/test_offer_spec.py)."""


_INPUT_INDEX = {i.name: n for n, i in enumerate(INPUTS)}
_FIELD_BY_NAME = {f.name: f for f in FIELDS}


@cache
def compiled(flavour: str) -> Compiled:
    """The rules of ``flavour`` (a name in FLAVOURS), resolved and checked."""
    fl = FLAVOURS[flavour]
    names = list(fl.fields)
    for table, what in ((fl.limits, "limits"), (fl.vocab, "vocab"), (fl.defaults, "defaults"),
                        (fl.required, "required")):
        for name in table:
            if name not in names:
                raise SpecError(f"flavour {flavour!r} {what}: {name!r} is not one of its fields {names}")
    rules: list[Rule] = []
    for name in names:
        if name not in _FIELD_BY_NAME:
            raise SpecError(f"flavour {flavour!r}: unknown field {name!r}; define it in FIELDS")
        f = _FIELD_BY_NAME[name]
        if f.clean not in CLEANERS:
            raise SpecError(f"field {name!r}: unknown cleaner {f.clean!r}; use one of {CLEANERS}")

        def earlier(ref: str, what: str, at=name) -> int:
            done = [r.name for r in rules]
            if ref not in done:
                raise SpecError(f"flavour {flavour!r} field {at!r} {what}: {ref!r} is not an earlier field of it")
            return done.index(ref)

        missing = f.missing or fl.required.get(name)
        sources = tuple(_INPUT_INDEX[s] for s in f.sources)
        if missing and not sources:
            raise SpecError(f"flavour {flavour!r} requires {name!r}, which is made of other fields")
        default = fl.defaults.get(name)
        rules.append(Rule(
            name=name, clean=f.clean, sources=sources, limit=fl.limits.get(name, f.limit) or 0,
            missing=missing, bad=f.bad, too_long=f.too_long, cut=f.cut, invalid=f.invalid, refused=f.refused,
            fallback=earlier(f.fallback, "fallback") if f.fallback else -1, fallback_warning=f.fallback_warning,
            aliases=f.aliases, vocab=fl.vocab.get(name), default=default[0] if default else None,
            default_warning=default[1] if default else None,
            of=tuple(earlier(o, "of") for o in f.of), value=f.value,
            currencies=fl.currencies if f.clean == "money" else None,
            id_chars=fl.id_chars if f.clean == "id" else None, money=fl.money))
    any_of = tuple((tuple(names.index(n) for n in group), error) for group, error in fl.require_any)
    required: list[tuple[str, int, str]] = []
    for rule in rules:
        if rule.missing:
            first = INPUTS[rule.sources[0]]
            parts = ("amount", "currency") if first.type == "money" else ("",)
            required += [(f"{first.path}.{p}" if p else first.path, rule.sources[0], p) for p in parts]
    return Compiled(flavour, tuple(rules), any_of, fl.money, tuple(required))


def required_paths(flavour: str) -> tuple[str, ...]:
    """The aggregate paths ``flavour`` requires (the null-rate gate counts them)."""
    return tuple(path for path, _, _ in compiled(flavour).required)


def input_paths() -> tuple[str, ...]:
    """The aggregate paths every offer flavour reads (``column`` or ``column.field``)."""
    return tuple(i.path for i in INPUTS)


@cache
def flavour_json(flavour: str) -> str:
    """``compiled(flavour)`` as the JSON RenderOffer.java reads (RenderOffer.Flavour)."""
    c = compiled(flavour)
    rules = [{k: v for k, v in {
        "name": r.name, "clean": r.clean, "sources": list(r.sources), "limit": r.limit, "missing": r.missing,
        "bad": r.bad, "too_long": r.too_long, "cut": r.cut, "invalid": r.invalid, "refused": r.refused,
        "fallback": r.fallback, "fallback_warning": r.fallback_warning, "aliases": dict(r.aliases) or None,
        "vocab": None if r.vocab is None else dict(r.vocab), "default": r.default,
        "default_warning": r.default_warning, "of": list(r.of), "value": r.value,
        "currencies": None if r.currencies is None else list(r.currencies), "id_chars": r.id_chars,
    }.items() if v is not None} for r in c.rules]
    names = [r.name for r in c.rules]
    return json.dumps({
        "name": c.name, "money": c.money,
        "inputs": [{"name": i.name, "type": i.type} for i in INPUTS],
        "fields": rules,
        "payload": sorted(range(len(names)), key=names.__getitem__),   # json.dumps(sort_keys=True)
        "require_any": [{"fields": list(group), "error": error} for group, error in c.require_any],
        "required": [{"name": path, "input": i, "part": part} for path, i, part in c.required],
    }, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
