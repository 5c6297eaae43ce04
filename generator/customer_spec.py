"""The built-in customer audience exports, as data read by both renderers.

Python (``render.py``) and the JVM (``generator/jvm/RenderCustomer.java``, through
``jvm.py``) interpret the same description, so an export's columns live here once:

- ``EXPORTS``: per template (``templates/<name>/``), its columns in order. A column is made
  from one customer aggregate column (``input``) by a *rule* of ``generator/audience.py``
  (``id``, ``google_email``, ``meta_email``, ``e164_phone``, ``meta_phone``, ``google_name``,
  ``meta_name``, ``normalize_country``, ``meta_country``, ``zip`` and ``meta_zip``; the phone
  and ``meta_zip`` rules read ``country`` too), sent in clear or as a SHA-256 hex digest
  (``hashed``). ``bad``: the warning when the input has a value the rule refuses;
  ``missing``: the error when the rule gives nothing. ``require_any``: groups of columns of
  which one must have every value, else ``error`` leaves the customer out.
- ``customer_json(name)``: the same as the JSON RenderCustomer.java reads.

Every cell is a text cell of render.py's ``_row_writer`` (one line, formula-neutralised,
CSV-quoted). tests/test_jvm_customers.py holds the two renderers equal on random and
hostile customers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from feedgen.generator import audience as A

__all__ = ["COUNTRY_INPUT", "EXPORTS", "RULES", "Column", "Export", "customer_json", "export_inputs"]

# the rules, by name; the phone and zip rules read the customer's country as well
RULES = ("id", "google_email", "meta_email", "e164_phone", "meta_phone", "google_name", "meta_name",
         "normalize_country", "meta_country", "zip", "meta_zip")
WITH_COUNTRY = ("e164_phone", "meta_phone", "meta_zip")
COUNTRY_INPUT = "country"


@dataclass(frozen=True)
class Column:
    name: str
    input: str
    rule: str
    hashed: bool = False
    bad: str | None = None
    missing: str | None = None


@dataclass(frozen=True)
class Export:
    columns: tuple[Column, ...]
    require_any: tuple[tuple[str, ...], ...] = ()
    error: str | None = None
    # the aggregate paths whose null (or blank) rate run.json reports, and the gate checks
    required: tuple[str, ...] = ("customer_id", "email")


EXPORTS: dict[str, Export] = {
    "ids_csv": Export((Column("customer_id", "customer_id", "id", missing="missing_id"),), required=("customer_id",)),
    "google_customer_match": Export((
        Column("Email", "email", "google_email", True, bad="bad_email"),
        Column("Phone", "phone", "e164_phone", True, bad="bad_phone"),
        Column("First Name", "first_name", "google_name", True),
        Column("Last Name", "last_name", "google_name", True),
        Column("Country", "country", "normalize_country"),
        Column("Zip", "zip", "zip"),
    ), (("Email",), ("Phone",), ("First Name", "Last Name", "Country", "Zip")), "no_identifier"),
    "meta_custom_audience": Export((
        Column("EMAIL", "email", "meta_email", True, bad="bad_email"),
        Column("PHONE", "phone", "meta_phone", True, bad="bad_phone"),
        Column("FN", "first_name", "meta_name", True),
        Column("LN", "last_name", "meta_name", True),
        Column("ZIP", "zip", "meta_zip", True),
        Column("CT", "city", "meta_name", True),
        Column("COUNTRY", "country", "meta_country", True),
    ), (("EMAIL",), ("PHONE",), ("FN", "LN", "ZIP"), ("FN", "LN", "CT")), "no_identifier"),
}


def export_inputs(name: str) -> tuple[str, ...]:
    """The customer aggregate columns export ``name`` reads (all strings), in first-use order."""
    out: dict[str, None] = {}
    for c in EXPORTS[name].columns:
        out[c.input] = None
        if c.rule in WITH_COUNTRY:
            out[COUNTRY_INPUT] = None
    out.update(dict.fromkeys(EXPORTS[name].required))
    return tuple(out)


def customer_json(name: str) -> str:
    """Export ``name`` as the JSON RenderCustomer.java reads."""
    e = EXPORTS[name]
    names = [c.name for c in e.columns]
    inputs = list(export_inputs(name))
    return json.dumps({
        "name": name,
        "inputs": inputs,
        "country": inputs.index(COUNTRY_INPUT) if COUNTRY_INPUT in inputs else -1,
        "columns": [{"name": c.name, "input": inputs.index(c.input), "rule": c.rule, "hashed": c.hashed,
                     "bad": c.bad, "missing": c.missing} for c in e.columns],
        "require_any": [[names.index(n) for n in group] for group in e.require_any],
        "error": e.error,
        "required": [inputs.index(r) for r in e.required],
        "sep": ",",   # every export is a CSV template (templates/<name>/item.csv.j2)
        "payload": sorted(range(len(names)), key=names.__getitem__),   # json.dumps(sort_keys=True)
        "calling_codes": A.CALLING_CODES, "nsn_length": A._NSN_LENGTH,
        "keeps_trunk_zero": sorted(A._KEEPS_TRUNK_ZERO), "country_names": A._COUNTRY_NAMES,
    }, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
