"""Rendering one entity into one feed item or export row, with per-item validation.

A ``Renderer`` belongs to a template, not to a definition: the generator renders each
entity once per template and routes the same fragment to every definition that uses it,
so nothing here may depend on the definition (that goes in the header/footer context).

Built-in templates live in ``templates/<name>/{header,item,footer}.<fmt>.j2``. Before the
item template runs, a Python *prepare* step turns the aggregate row into the values the
destination sees (``RenderResult.fields``), cleaning and checking them against the
destination's rules; items that break a hard rule are left out (``text=None``) with an
error reason, softer problems are kept with a warning reason.

User templates (``<user_templates_dir>/<name>/`` with the same three files) run in
Jinja's sandbox with the aggregate row as ``item``; they may call ``reject(reason)`` and
``warn(reason)``. XML templates are autoescaped and every XML fragment of a user template
is checked to be well-formed.

Executors call this inside ``mapPartitions``: environments and renderers are built lazily
once per process and cached; a pickled ``Renderer`` is rebuilt by name on the other side.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import cache, lru_cache
from operator import methodcaller
from pathlib import Path
from typing import Any

import jinja2

from feedgen.core.errors import BadInput
from feedgen.core.paths import TEMPLATES_DIR
from feedgen.generator import audience as A
from feedgen.generator.customer_spec import COUNTRY_INPUT
from feedgen.generator.customer_spec import EXPORTS as CUSTOMER_EXPORTS
from feedgen.generator.offer_spec import (
    CHANNELS,
    GENERICS,
    INPUTS,
    Rule,
    compiled,
    input_paths,
    required_paths,
)
from feedgen.generator.registry import AUDIENCE_EXPORTS, FEED_TEMPLATES, TEMPLATE_ENTITY
from feedgen.generator.sandbox import (
    TEMPLATE_OPTIONS,
    TemplateLimit,
    failure_site,
    render_bounds,
    render_template,
    user_environment,
)
from feedgen.generator.templates import TemplateProblem, find_user_template, user_template_names
from feedgen.generator.xmlsafe import (
    csv_cell,
    neutralise_formula,
    text_clean,
    tsv_cell,
    xml_clean,
)

__all__ = ["MAX_FILE_BYTES", "TEMPLATE_FAILURES", "RenderResult", "Renderer", "get_renderer", "render_count",
           "render_options", "renderer_key"]

BUILTIN_FORMATS: dict[str, str] = {**FEED_TEMPLATES, **AUDIENCE_EXPORTS}


@dataclass
class RenderResult:
    text: str | None
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    fields: dict = field(default_factory=dict)
    # a user template that failed: {"file", "line", "message"} (the error reason is errors[0])
    detail: dict | None = None


# Reasons a user template leaves an item out by failing (not by a deliberate reject()):
# counted by the max_template_error_rate gate.
TEMPLATE_FAILURES = ("template_error", "template_limit", "template_security_error", "template_invalid_xml")


class _Rejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ---------------------------------------------------------------------------------------
# values


def _is_map(value: Any) -> bool:
    # dict first: the ABC check behind isinstance(x, Mapping) is slow per item
    return type(value) is dict or isinstance(value, Mapping)


def _get(item: Mapping, path: str) -> Any:
    value: Any = item
    for part in path.split("."):
        if not _is_map(value):
            return None
        value = value.get(part)
    return value


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return xml_clean(value)
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "asDict"):  # a pyspark Row that was not converted recursively
        return _jsonable(value.asDict(recursive=True))
    return str(value)


def _cell_text(value: Any) -> str:
    # how a value of any type is written in a CSV/TSV cell
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal | int | float):
        return str(_jsonable(value)) if isinstance(value, float) else str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, list | tuple) and all(isinstance(v, str | int) for v in value):
        return "|".join(str(v) for v in value)
    return json.dumps(_jsonable(value), ensure_ascii=False, sort_keys=True)


# Typed values a spreadsheet and a partner read as what they are: never neutralised, so
# a negative number or amount (-5, -3.50) stays a number. Everything else in a cell is
# text (strings, lists joined with "|", structs and maps as JSON) and is neutralised.
_TYPED_CELL = (bool, int, float, Decimal, dt.date)


def _row_writer(sep: str, neutralise: bool) -> Callable[[list], str]:
    cell = csv_cell if sep == "," else tsv_cell

    def row(values: list) -> str:
        out = []
        for value in values:
            text = text_clean(_cell_text(value))
            if neutralise and not isinstance(value, _TYPED_CELL):
                text = neutralise_formula(text)
            out.append(cell(text))
        return sep.join(out)

    return row


def _cut(text: str, limit: int | None) -> tuple[str | None, bool]:
    """``text`` (None when empty) cut at ``limit`` code points (0, None: none) with an ellipsis, and whether it was."""
    if not text:
        return None, False
    if limit and len(text) > limit:
        return text[: limit - 1].rstrip() + "…", True
    return text, False


def _text(value: Any, limit: int | None = None) -> tuple[str | None, bool]:
    """Cleaned single-spaced text and whether it was cut at ``limit``."""
    return (None, False) if value is None else _cut(" ".join(xml_clean(str(value)).split()), limit)


def _long_text(value: Any, limit: int | None = None) -> tuple[str | None, bool]:
    # descriptions keep their line breaks
    return (None, False) if value is None else _cut(xml_clean(str(value)).strip(), limit)


_CURRENCY = re.compile(r"^[A-Z]{3}$")
_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)


def _money(value: Any) -> tuple[Decimal, str] | None:
    if value is None or not _is_map(value):
        return None
    amount, currency = value.get("amount"), value.get("currency")
    if amount is None or not isinstance(currency, str):
        return None
    if type(amount) is not Decimal:
        try:
            amount = Decimal(str(amount))
        except (InvalidOperation, ValueError):
            return None
    currency = currency.strip().upper()
    if not amount.is_finite() or amount <= 0 or not _CURRENCY.match(currency):
        return None
    return amount, currency


@lru_cache(maxsize=1 << 16)  # offers of one product share its gtin
def _gtin_ok(gtin: str) -> bool:
    if not gtin.isdigit() or not gtin.isascii() or len(gtin) not in (8, 12, 13, 14):
        return False
    digits = [int(c) for c in gtin]
    body, check = digits[:-1], digits[-1]
    total = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10 == check


def _url(value: Any, limit: int = 2000) -> str | None:
    if not isinstance(value, str):
        return None
    url = xml_clean(value).strip()
    return url if (not limit or len(url) <= limit) and _URL.match(url) else None


# ---------------------------------------------------------------------------------------
# offers


def _add(codes: list, code: str | None) -> None:
    if code:
        codes.append(code)


def _fmt(money: tuple[Decimal, str], style: str) -> str:
    return f"{money[0]:.2f}" if style == "amount" else f"{money[0]:.2f} {money[1]}"


def _none(rule: Rule, f: list, errors: list, warnings: list) -> Any:
    # no source had a value: an earlier field's, or the field is missing
    if rule.fallback >= 0:
        _add(warnings, rule.fallback_warning)
        return f[rule.fallback]
    _add(errors, rule.missing)
    return None


def _clean_id(rule: Rule, values: dict, f: list, errors: list, warnings: list) -> Any:
    raw = values[rule.sources[0]]
    value = xml_clean(str(raw)).strip() if raw is not None else ""
    if not value:
        _add(errors, rule.missing)
    elif rule.limit and len(value) > rule.limit:
        _add(errors, rule.too_long)
    elif rule.id_chars is not None and not set(value) <= set(rule.id_chars):
        _add(errors, rule.refused)
    return value


def _clean_text(rule: Rule, values: dict, f: list, errors: list, warnings: list, clean=_text) -> Any:
    for s in rule.sources:
        value, cut = clean(values[s], rule.limit)
        if value is not None:
            if cut:
                _add(warnings, rule.cut)
            return value
    return _none(rule, f, errors, warnings)


def _clean_long_text(rule: Rule, values: dict, f: list, errors: list, warnings: list) -> Any:
    return _clean_text(rule, values, f, errors, warnings, _long_text)


def _clean_url(rule: Rule, values: dict, f: list, errors: list, warnings: list) -> Any:
    given = False
    for s in rule.sources:
        given = given or bool(values[s])
        value = _url(values[s], rule.limit)
        if value is not None:
            return value
    _add(errors, rule.bad if given else rule.missing)
    return None


def _clean_choice(rule: Rule, values: dict, f: list, errors: list, warnings: list) -> Any:
    for s in rule.sources:
        raw = values[s]
        if _INPUT_INT[s]:
            # the stock says what no source did (availability)
            if isinstance(raw, int):
                _add(warnings, rule.fallback_warning)
                return "in_stock" if raw > 0 else "out_of_stock"
        elif raw:
            value = rule.aliases.get(str(raw).strip().lower())
            if value is not None:
                return value
            if rule.invalid:
                warnings.append(rule.invalid)
                return None
    _add(errors, rule.missing)
    return None


def _clean_money(rule: Rule, values: dict, f: list, errors: list, warnings: list) -> Any:
    raw = values[rule.sources[0]]
    money = _money(raw)
    if money is None:
        _add(errors, rule.bad if _is_map(raw) and raw.get("amount") else rule.missing)
        return None
    if rule.currencies is not None and money[1] not in rule.currencies:
        _add(errors, rule.refused)
        return None
    return _fmt(money, rule.money)


def _clean_sale_price(rule: Rule, values: dict, f: list, errors: list, warnings: list) -> Any:
    # the lowest price the shopper pays among the candidates (a campaign's, the seller's
    # sale price: the last source), shown only when below the price in its currency
    price = _money(values[rule.sources[0]])
    if price is None:
        return None
    sale = candidate = None
    for s in rule.sources[1:]:
        candidate = _money(values[s])
        if candidate and candidate[1] == price[1] and candidate[0] < price[0] \
                and (sale is None or candidate[0] < sale[0]):
            sale = candidate
    if sale is None and candidate is not None:
        _add(warnings, rule.invalid)
    return _fmt(sale, rule.money) if sale else None


_SPACE_DASH = re.compile(r"[\s-]")


def _clean_gtin(rule: Rule, values: dict, f: list, errors: list, warnings: list) -> Any:
    for s in rule.sources:
        gtin = values[s]
        if gtin and not (type(gtin) is str and gtin.isdigit()):
            gtin = _SPACE_DASH.sub("", str(gtin))
        if gtin:
            if _gtin_ok(gtin):
                return gtin
            _add(warnings, rule.invalid)
            return None
    return None


def _clean_coalesce(rule: Rule, values: dict, f: list, errors: list, warnings: list) -> Any:
    return next((f[i] for i in rule.of if f[i] is not None), None)


def _clean_flag(rule: Rule, values: dict, f: list, errors: list, warnings: list) -> Any:
    return None if any(f[i] for i in rule.of) else rule.value


_CLEANERS: dict[str, Callable[..., Any]] = {
    "id": _clean_id, "text": _clean_text, "long_text": _clean_long_text, "url": _clean_url,
    "choice": _clean_choice, "money": _clean_money, "sale_price": _clean_sale_price, "gtin": _clean_gtin,
    "coalesce": _clean_coalesce, "flag": _clean_flag,
}
_INPUT_INT = [i.type == "int" for i in INPUTS]


def _reader(path: str) -> Callable[[Mapping], Any]:
    top, _, sub = path.partition(".")
    if not sub:
        return methodcaller("get", top)

    def read(item: Mapping) -> Any:
        value = item.get(top)
        return value.get(sub) if value is not None and _is_map(value) else None

    return read


_READERS = [_reader(i.path) for i in INPUTS]
_COLUMNS = [(n, i.path) for n, i in enumerate(INPUTS) if "." not in i.path]


class _Inputs(dict):
    """An item's inputs by index: the columns at once, struct fields when a rule first asks."""

    __slots__ = ("item",)

    def __init__(self, item: Mapping) -> None:
        super().__init__([(n, item.get(path)) for n, path in _COLUMNS])
        self.item = item

    def __missing__(self, index: int) -> Any:
        value = self[index] = _READERS[index](self.item)
        return value


def _offer_prepare(flavour: str) -> Callable[[Mapping, Mapping, list, list], dict]:
    """The prepare step of an offer flavour: offer_spec's rules, in order."""
    spec = compiled(flavour)
    # (rule, cleaner, whether a vocabulary or default applies after it)
    steps = [(rule, _CLEANERS[rule.clean], rule.vocab is not None or rule.default is not None)
             for rule in spec.rules]
    names = [rule.name for rule in spec.rules]

    def prepare(item: Mapping, options: Mapping, errors: list, warnings: list) -> dict:
        values = _Inputs(item)
        f: list = []
        for rule, clean, post in steps:
            value = clean(rule, values, f, errors, warnings)
            if not post:
                f.append(value)
                continue
            if value is not None and rule.vocab is not None:
                if value in rule.vocab:
                    value = rule.vocab[value]
                else:
                    _add(errors, rule.refused)
                    value = None
            if value is None and rule.default is not None:
                value = rule.default
                _add(warnings, rule.default_warning)
            f.append(value)
        for group, error in spec.require_any:
            if not any(f[i] for i in group):
                errors.append(error)
        return dict(zip(names, f, strict=True))

    return prepare


# ---------------------------------------------------------------------------------------
# customers


def _hashed(value: str | None) -> str | None:
    return A.sha256_hex(value) if value else None


def _zip(value: Any, country: Any = None) -> str | None:
    # Google takes the zip in clear, on one line and trimmed
    return text_clean(str(value)).strip() or None if value else None


# the rules of customer_spec.RULES (RenderCustomer.java implements the same)
_CUSTOMER_RULES: dict[str, Callable[[Any, Any], str | None]] = {
    "id": lambda v, c: None if v is None else str(v),
    "google_email": lambda v, c: A.google_email(v), "meta_email": lambda v, c: A.meta_email(v),
    "e164_phone": A.e164_phone, "meta_phone": A.meta_phone,
    "google_name": lambda v, c: A.google_name(v), "meta_name": lambda v, c: A.meta_name(v),
    "normalize_country": lambda v, c: A.normalize_country(v), "meta_country": lambda v, c: A.meta_country(v),
    "zip": _zip, "meta_zip": A.meta_zip,
}


def _customer_prepare(name: str) -> Callable[[Mapping, Mapping, list, list], dict]:
    """The prepare step of customer export ``name``, interpreting customer_spec.EXPORTS."""
    export = CUSTOMER_EXPORTS[name]
    columns = [(c.name, c.input, _CUSTOMER_RULES[c.rule], c.hashed, c.bad, c.missing) for c in export.columns]

    def prepare(item: Mapping, options: Mapping, errors: list, warnings: list) -> dict:
        country = item.get(COUNTRY_INPUT)
        values: dict[str, Any] = {}
        for column, source, rule, _, bad, missing in columns:
            raw = item.get(source)
            value = values[column] = rule(raw, country)
            if bad and raw and value is None:
                warnings.append(bad)
            if missing and (value is None or value == ""):
                errors.append(missing)
        if export.error and not any(all(values[n] for n in group) for group in export.require_any):
            errors.append(export.error)
        return {column: _hashed(values[column]) if hashed else values[column]
                for column, _, _, hashed, _, _ in columns}

    return prepare


# ---------------------------------------------------------------------------------------
# generic


def _aggregate_paths(entity: str) -> list[str]:
    from feedgen.aggregator.schemas import AGGREGATE_SCHEMAS  # lazy: pyspark, only when asked

    paths: list[str] = []

    def walk(struct, prefix: str) -> None:
        for f in struct.fields:
            path = prefix + f.name
            paths.append(path)
            if hasattr(f.dataType, "fields"):
                walk(f.dataType, path + ".")

    walk(AGGREGATE_SCHEMAS[entity], "")
    return paths


def _generic_columns(name: str, options: Mapping) -> tuple[tuple[str, ...], tuple[str, ...]]:
    fields = options.get("fields")
    where = f"template {name!r} option 'fields'"
    if not isinstance(fields, list | tuple) or not fields or not all(
            isinstance(f, str) for f in fields):
        raise BadInput(f"{where}: give a list of field paths, e.g. "
                       "fields: [offer_id, title, price.amount]")
    known = _aggregate_paths(TEMPLATE_ENTITY[name])
    for i, path in enumerate(fields):
        if path not in known:
            hint = difflib.get_close_matches(path, known, n=1)
            fix = f"did you mean {hint[0]!r}?" if hint else "see OFFER_AGGREGATE_SCHEMA"
            raise BadInput(f"{where}[{i}]: unknown field {path!r}; {fix}")
    columns = options.get("columns") or fields
    if not isinstance(columns, list | tuple) or len(columns) != len(fields):
        raise BadInput(f"template {name!r} option 'columns': give one header name per "
                       f"field ({len(fields)}), or leave it out to use the field paths")
    return tuple(fields), tuple(str(c) for c in columns)


# ---------------------------------------------------------------------------------------
# environments


def _finalize_xml(value: Any) -> Any:
    if value is None:
        return ""
    return xml_clean(value) if isinstance(value, str) else value


def _finalize_text(value: Any) -> Any:
    return "" if value is None else value


@cache
def _environment(folder: str, fmt: str, sandboxed: bool) -> jinja2.Environment:
    if sandboxed:
        # built-in prepare steps clean every value already; user templates get any value
        return user_environment(folder, fmt, _finalize_xml if fmt == "xml" else _finalize_text)
    # a name the prepare step does not set is an error (StrictUndefined); a field without a
    # value writes nothing, as in RenderOffer.java
    return jinja2.Environment(loader=jinja2.FileSystemLoader(folder), autoescape=fmt == "xml",
                              undefined=jinja2.StrictUndefined, finalize=_finalize_text, **TEMPLATE_OPTIONS)


@dataclass(frozen=True)
class _Builtin:
    prepare: Callable[[Mapping, Mapping, list, list], dict]
    required_fields: tuple[str, ...]
    neutralise: bool = False
    input_columns: tuple[str, ...] | None = None


_CUSTOMER_COLUMNS = ("customer_id", "email", "phone", "first_name", "last_name", "country",
                     "city", "zip")
# Every CSV/TSV template neutralises formulas in its text cells (_row_writer). The typed
# columns that partners parse (Meta's price "15.00 PLN", availability, condition, link,
# gtin; the audiences' SHA-256 hashes and country code) are checked values that never
# start with = + - @, so the rule leaves them as the partner expects them.
BUILTINS: dict[str, _Builtin] = {
    # the offer channels of generator/offer_spec.py: the inputs they read ("column.field"
    # when only some fields of a struct are used; the generator ships only those to Python)
    **{name: _Builtin(_offer_prepare(c.flavour), required_paths(c.flavour), c.fmt != "xml", input_paths())
       for name, c in CHANNELS.items()},
    # the generic templates of offer_spec.GENERICS: their cells are _row_writer's
    **{name: _Builtin(lambda *a: {}, (g.key,), True) for name, g in GENERICS.items()},
    # the customer exports of customer_spec.EXPORTS
    "google_customer_match": _Builtin(_customer_prepare("google_customer_match"),
                                      CUSTOMER_EXPORTS["google_customer_match"].required, True,
                                      _CUSTOMER_COLUMNS),
    "meta_custom_audience": _Builtin(_customer_prepare("meta_custom_audience"),
                                     CUSTOMER_EXPORTS["meta_custom_audience"].required, True,
                                     _CUSTOMER_COLUMNS),
    "ids_csv": _Builtin(_customer_prepare("ids_csv"), CUSTOMER_EXPORTS["ids_csv"].required, True, ("customer_id",)),
}

# Largest file a partner takes (uncompressed bytes); the generator passes it to
# write_manifest unless a definition sets its own limit.
MAX_FILE_BYTES: dict[str, int] = {name: c.max_file_bytes for name, c in CHANNELS.items() if c.max_file_bytes}

_render_counter = threading.local()


def render_count() -> int:
    """How many items this thread has rendered (tests check render-once routing with it)."""
    return getattr(_render_counter, "n", 0)


class Renderer:
    """Renders items of one template (with one set of options) to fragments."""

    name: str
    fmt: str
    entity: str
    required_fields: tuple[str, ...]
    max_file_bytes: int | None
    input_columns: tuple[str, ...] | None

    def __init__(self, name: str, options: Mapping | None = None,
                 user_templates_dir: Path | None = None) -> None:
        self.name = name
        self.options = dict(options or {})
        self.user_templates_dir = user_templates_dir
        self._builtin = BUILTINS.get(name)
        if self._builtin is not None:
            folder, self.fmt, sandboxed = TEMPLATES_DIR / name, BUILTIN_FORMATS[name], False
            self.entity = TEMPLATE_ENTITY[name]
            self.required_fields = self._builtin.required_fields
        else:
            folder, self.fmt, self.entity = self._user_template(name, user_templates_dir)
            sandboxed = True
            self.required_fields = tuple(self.options.get("required_fields") or
                                         (("offer_id",) if self.entity == "offer" else
                                          ("customer_id",)))
        self.user = sandboxed
        self.max_file_bytes = MAX_FILE_BYTES.get(name)
        # the aggregate columns the render reads, "column.field" for a struct of which it
        # reads only some fields (None: all, user templates); selecting only these before
        # mapInArrow saves converting and shipping the rest
        self.input_columns = self._builtin.input_columns if self._builtin else None
        env = _environment(str(folder), self.fmt, sandboxed)
        try:
            self._item = env.get_template(f"item.{self.fmt}.j2")
            self._header = env.get_template(f"header.{self.fmt}.j2")
            self._footer = env.get_template(f"footer.{self.fmt}.j2")
        except jinja2.TemplateNotFound as err:
            raise BadInput(f"{folder}: template {name!r} has no {err.name}; a template "
                           f"folder holds header.{self.fmt}.j2, item.{self.fmt}.j2 and "
                           f"footer.{self.fmt}.j2") from err
        except jinja2.TemplateSyntaxError as err:
            raise BadInput(f"{err.filename}:{err.lineno}: template {name!r}: {err.message}; "
                           "fix the Jinja syntax") from err
        neutralise = self._builtin.neutralise if self._builtin else True
        self._row = _row_writer("\t" if self.fmt == "tsv" else ",", neutralise)
        self._columns: tuple[str, ...] = ()
        self._fields: tuple[str, ...] = ()
        if name in GENERICS:
            self._fields, self._columns = _generic_columns(name, self.options)
            # chosen columns may be legitimately sparse (sale_price): only the key is
            # required, so the null-rate gate does not hold a run for an optional column
            tops = dict.fromkeys((GENERICS[name].key.split(".", 1)[0], *(f.split(".", 1)[0] for f in self._fields)))
            self.input_columns = tuple(tops)

    @staticmethod
    def _user_template(name: str, folder: Path | None) -> tuple[Path, str, str]:
        known = sorted(BUILTIN_FORMATS)
        if folder is None:
            raise BadInput(f"unknown template {name!r}; use one of {known}, or set "
                           "generate.templates_dir to a folder of your own templates")
        try:
            found = find_user_template(name, folder)
        except TemplateProblem as err:
            names = user_template_names(folder)
            raise BadInput(f"{err}; built-in templates: {', '.join(known)}"
                           + (f"; yours: {', '.join(names)}" if names else "")) from err
        return found.folder, found.fmt, found.entity

    def __reduce__(self):
        # rebuilt by name in the executor (and taken from its process cache there)
        return (get_renderer, (self.name, self.options, self.user_templates_dir))

    def _chrome_ctx(self, ctx: Mapping) -> dict:
        clean = xml_clean if self.fmt == "xml" else text_clean
        ctx = {k: clean(v) if isinstance(v, str) else v for k, v in ctx.items()}
        definition_id = str(ctx.get("definition_id") or "")
        return {
            **ctx,
            "title": ctx.get("title") or definition_id,
            "link": ctx.get("link") or "",
            "description": ctx.get("description") or
            f"feedgen {definition_id}, run {ctx.get('run_id', '')}, as of {ctx.get('as_of', '')}",
            "options": self.options,
            "columns": list(self._columns),
            "row": self._row,
        }

    def header(self, ctx: dict) -> str:
        """The text before the first item (XML prolog and channel, CSV header line)."""
        return self._chrome(self._header, ctx)

    def footer(self, ctx: dict) -> str:
        """The text after the last item."""
        return self._chrome(self._footer, ctx)

    def _chrome(self, template: jinja2.Template, ctx: dict) -> str:
        if not self.user:
            return template.render(self._chrome_ctx(ctx))
        with render_bounds():
            return render_template(template, self._chrome_ctx(ctx))

    def render(self, item: dict) -> RenderResult:
        """Render one aggregate row; ``text`` is None when an error leaves it out."""
        _render_counter.n = getattr(_render_counter, "n", 0) + 1
        if not isinstance(item, Mapping) and hasattr(item, "asDict"):
            item = item.asDict(recursive=True)
        if self.user:
            return self._render_user(item)
        errors: list[str] = []
        warnings: list[str] = []
        if self._fields:
            values = [_get(item, path) for path in self._fields]
            generic = GENERICS[self.name]
            key = _get(item, generic.key)
            if key is None or key == "":
                errors.append(generic.missing)
            fields = {path: _jsonable(v) for path, v in zip(self._fields, values, strict=True)}
            if errors:
                return RenderResult(None, tuple(errors), (), fields)
            return RenderResult(self._row(values) + "\n", (), (), fields)
        fields = self._builtin.prepare(item, self.options, errors, warnings)
        if errors:
            return RenderResult(None, tuple(errors), tuple(warnings), fields)
        # the template's render function directly: Template.render adds a try/except and
        # a dict copy per call, which shows at millions of items
        ctx = self._item.new_context({**fields, "f": fields, "row": self._row}, shared=True)
        text = "".join(self._item.root_render_func(ctx))
        return RenderResult(text, (), tuple(warnings), fields)

    def _render_user(self, item: dict) -> RenderResult:
        warnings: list[str] = []

        def reject(reason: str) -> None:
            raise _Rejected(str(reason))

        def warn(reason: str) -> str:
            warnings.append(str(reason))
            return ""

        fields = _jsonable(item)
        try:
            with render_bounds():
                text = render_template(self._item, {"item": item, "row": self._row, "reject": reject,
                                                    "warn": warn, "options": self.options})
        except _Rejected as rejected:
            return RenderResult(None, (rejected.reason,), tuple(warnings), fields)
        except Exception as err:  # whatever a user's template raises leaves this item out, with where
            reason, detail = _failure(err, self._item)
            return RenderResult(None, (reason,), tuple(warnings), fields, detail)
        if self.fmt == "xml":
            problem = _xml_problem(text)
            if problem:
                detail = {"file": self._item.filename or self._item.name, "line": 0,
                          "message": f"the item is not well-formed XML: {problem}"}
                return RenderResult(None, ("template_invalid_xml",), tuple(warnings), fields, detail)
        return RenderResult(text, (), tuple(warnings), fields)


def _failure(err: Exception, template: jinja2.Template) -> tuple[str, dict]:
    """The exclusion reason of a user template's error, and where and what it was."""
    file, line = failure_site(err, template.filename or template.name or "")
    if isinstance(err, TemplateLimit):
        reason, message = "template_limit", f"over the {err.bound} bound: {err.message}"
    elif isinstance(err, RecursionError):
        reason, message = "template_limit", "over the recursion bound: calls nested too deep (a recursive macro?)"
    elif isinstance(err, MemoryError):
        reason, message = "template_limit", "over the memory bound: out of memory"
    elif isinstance(err, jinja2.exceptions.SecurityError):
        reason, message = "template_security_error", f"SecurityError: {err}"
    else:
        reason = "template_error"
        message = f"{type(err).__name__}: {getattr(err, 'message', None) or err}"
    return reason, {"file": file, "line": line, "message": message[:500]}


_PREFIX = re.compile(r"</?([A-Za-z_][\w.\-]*):")


def _xml_problem(fragment: str) -> str | None:
    """Why ``fragment`` is not well-formed XML (None when it is)."""
    from lxml import etree

    prefixes = sorted(set(_PREFIX.findall(fragment)) - {"xml"})
    decl = " ".join(f'xmlns:{p}="urn:feedgen:{p}"' for p in prefixes)
    try:
        etree.fromstring(f"<feedgen-check {decl}>{fragment}</feedgen-check>".encode())
    except etree.XMLSyntaxError as err:
        return str(err) or "XML syntax error"
    return None


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


_RENDERERS: dict[tuple, Renderer] = {}
_LOCK = threading.Lock()


# The options that change what a template renders; the rest (file limits) only change
# how the output is split, so definitions differing only there share one render.
_RENDER_OPTIONS: dict[str, tuple[str, ...]] = {name: g.options for name, g in GENERICS.items()}
_LAYOUT_OPTIONS = ("max_file_bytes", "max_file_items")


def render_options(name: str, options: Mapping | None) -> dict:
    """The part of a definition's ``options`` that the render of ``name`` depends on."""
    options = options or {}
    if name in BUILTINS:
        keys = _RENDER_OPTIONS.get(name, ())
        return {k: options[k] for k in keys if k in options}
    return {k: v for k, v in options.items() if k not in _LAYOUT_OPTIONS}


def renderer_key(name: str, options: Mapping | None = None) -> tuple:
    """What makes two renders equal: the template name and its render options, frozen."""
    return (name, _freeze(render_options(name, options)))


def get_renderer(name: str, options: Mapping | None = None,
                 user_templates_dir: Path | None = None) -> Renderer:
    """The cached renderer of template ``name`` with ``options`` (built once per process)."""
    key = (*renderer_key(name, options), str(user_templates_dir or ""))
    renderer = _RENDERERS.get(key)
    if renderer is None:
        with _LOCK:
            renderer = _RENDERERS.get(key)
            if renderer is None:
                renderer = Renderer(name, render_options(name, options), user_templates_dir)
                _RENDERERS[key] = renderer
    return renderer
