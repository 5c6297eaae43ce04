"""The offer spec (generator/offer_spec.py): golden vectors on both renderers, and the spec's own checks.

tests/fixtures/offer_golden.json holds the rules that are code in both languages (sale
price, availability, GTIN check digit; the generic templates' cells) and the flavours' data
(limits, vocabularies, defaults, currencies). Every vector renders in Python and in the JVM
and must give the expected fields (or text), errors and warnings on both; a difference is
reported per vector and field.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest
from jinja2 import meta

from feedgen.aggregator.schemas import OFFER_AGGREGATE_SCHEMA
from feedgen.generator import offer_spec
from feedgen.generator.jvm import _SEP, _program, jvm_renderable, render_column
from feedgen.generator.offer_spec import (
    CHANNELS,
    FLAVOURS,
    GENERICS,
    SpecError,
    compiled,
    flavour_json,
    generic_json,
)
from feedgen.generator.render import get_renderer

GOLDEN = json.loads((Path(__file__).parent / "fixtures" / "offer_golden.json").read_text(encoding="utf-8"))
VECTORS = GOLDEN["vectors"]
GENERIC = GOLDEN["generic"]["vectors"]


def _money(value):
    if isinstance(value, dict) and set(value) == {"amount", "currency"}:
        return {**value, "amount": None if value["amount"] is None else Decimal(value["amount"])}
    return value


def _offer(vector: dict) -> dict:
    return {k: _money(v) for k, v in {**GOLDEN["base"], **vector["offer"]}.items()}


def _differences(vector: dict, fields: dict, errors: list, warnings: list) -> list[str]:
    out = [f"{k}: got {fields.get(k)!r}, want {want!r}" for k, want in vector["fields"].items()
           if fields.get(k) != want]
    if errors != vector["errors"]:
        out.append(f"errors: got {errors}, want {vector['errors']}")
    if warnings != vector["warnings"]:
        out.append(f"warnings: got {warnings}, want {vector['warnings']}")
    return out


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_python_renders_the_golden_vector(vector):
    result = get_renderer(vector["template"]).render(_offer(vector))
    assert _differences(vector, result.fields, list(result.errors), list(result.warnings)) == []


def test_the_jvm_renders_every_golden_vector_as_python_does(spark):
    from pyspark.sql import functions as F

    df = spark.createDataFrame([{f.name: o.get(f.name) for f in OFFER_AGGREGATE_SCHEMA.fields}
                                for o in map(_offer, VECTORS)], OFFER_AGGREGATE_SCHEMA)
    templates = sorted({v["template"] for v in VECTORS})
    assert all(jvm_renderable(spark, t, {}, df.schema) for t in templates)
    rows = df.select(F.col("offer_id"), *[render_column(t).alias(t) for t in templates]).collect()
    problems = []
    for vector, row in zip(VECTORS, rows, strict=True):
        out = row[vector["template"]]
        # the payload holds the fields of an item left out too, but only the kept ones are compared
        fields = json.loads(out["payload"])
        python = get_renderer(vector["template"]).render(_offer(vector))
        problems += [f"{vector['name']}: {d}" for d in _differences(vector, fields, out["errors"], out["warnings"])]
        if out["text"] != python.text:
            problems.append(f"{vector['name']}: text differs: JVM {out['text']!r} / Python {python.text!r}")
    assert problems == []


def test_every_channel_uses_only_fields_its_flavour_sets():
    for name, channel in CHANNELS.items():
        renderer = get_renderer(name)
        env = renderer._item.environment
        source = env.loader.get_source(env, renderer._item.name)[0]
        used = meta.find_undeclared_variables(env.parse(source)) - {"row"}
        assert used <= set(FLAVOURS[channel.flavour].fields), name
        assert _program(name) is not None, f"{name}: the JVM does not compile its item template"


def test_a_name_the_flavour_does_not_set_is_an_error_in_the_jvm_not_the_text_none(spark):
    check = spark.sparkContext._jvm.feedgen.jvm.RenderOffer.check
    program = _SEP.join(["1", ",", "0", "T<x>", "Vcolour", "T</x>"])
    message = check(program, flavour_json("meta"))
    assert "'colour'" in message and "flavour 'meta' does not set" in message
    # google sets identifier_exists, meta does not
    assert check(_SEP.join(["1", ",", "0", "Videntifier_exists"]), flavour_json("google")) is None
    assert "identifier_exists" in check(_SEP.join(["1", ",", "0", "Videntifier_exists"]), flavour_json("meta"))


def test_the_spec_names_what_is_wrong_with_a_flavour(monkeypatch):
    monkeypatch.setitem(FLAVOURS, "broken", offer_spec.Flavour("broken", ("id", "colour")))
    with pytest.raises(SpecError, match="flavour 'broken': unknown field 'colour'; define it in FIELDS"):
        compiled("broken")
    monkeypatch.setitem(FLAVOURS, "broken2", offer_spec.Flavour("broken2", ("id",), limits={"title": 10}))
    with pytest.raises(SpecError, match=r"flavour 'broken2' limits: 'title' is not one of its fields \['id'\]"):
        compiled("broken2")
    monkeypatch.setitem(FLAVOURS, "broken3", offer_spec.Flavour("broken3", ("description", "title")))
    with pytest.raises(SpecError, match="field 'description' fallback: 'title' is not an earlier field"):
        compiled("broken3")


def test_required_paths_follow_the_flavour():
    assert get_renderer("google_merchant_rss").required_fields == (
        "offer_id", "title", "link", "image_link", "availability", "price.amount", "price.currency")
    assert "category.path" in get_renderer("ceneo_xml").required_fields
    assert "brand" in get_renderer("tiktok_catalog_csv").required_fields
    spec = json.loads(flavour_json("heureka"))
    assert {i["name"] for i in spec["inputs"]} == {i.name for i in offer_spec.INPUTS}
    assert [spec["fields"][i]["name"] for i in spec["payload"]] == sorted(FLAVOURS["heureka"].fields)


# ------------------------------------------------------------------ generic templates


def _typed(value, dtype):
    """A golden value as the aggregate holds it and Arrow hands it to Python: decimals, floats
    (nan, inf) and UTC timestamps are text in the fixture."""
    from pyspark.sql import types as T

    if value is None:
        return None
    if isinstance(dtype, T.StructType):
        return {f.name: _typed(value.get(f.name), f.dataType) for f in dtype.fields}
    if isinstance(dtype, T.ArrayType):
        return [_typed(v, dtype.elementType) for v in value]
    if isinstance(dtype, T.MapType):
        return {k: _typed(v, dtype.valueType) for k, v in value.items()}
    if isinstance(dtype, T.DecimalType):
        return Decimal(value)
    if isinstance(dtype, T.DoubleType):
        return float(value)
    if isinstance(dtype, T.TimestampType):
        return dt.datetime.fromisoformat(value).astimezone(dt.UTC)
    return value


def _generic_offer(vector: dict) -> dict:
    raw = {**GOLDEN["base"], **vector["offer"]}
    return {f.name: _typed(raw.get(f.name), f.dataType) for f in OFFER_AGGREGATE_SCHEMA.fields}


@pytest.mark.parametrize("vector", GENERIC, ids=[v["name"] for v in GENERIC])
def test_python_writes_the_generic_golden_vector(vector):
    result = get_renderer(vector["template"], {"fields": vector["fields"]}).render(_generic_offer(vector))
    assert (result.text, list(result.errors)) == (vector["text"], vector["errors"])


def test_the_jvm_writes_every_generic_golden_vector_as_python_does(spark):
    from pyspark.sql import types as T

    # offer_id nullable: an aggregate has none without one, but a generic template is checked for it
    schema = T.StructType([T.StructField(f.name, f.dataType) for f in OFFER_AGGREGATE_SCHEMA.fields])
    df = spark.createDataFrame([_generic_offer(v) for v in GENERIC], schema)
    options = [{"fields": v["fields"]} for v in GENERIC]
    assert all(jvm_renderable(spark, v["template"], o, df.schema) for v, o in zip(GENERIC, options, strict=True))
    rows = df.select(*[render_column(v["template"], o).alias(f"v{n}")
                       for n, (v, o) in enumerate(zip(GENERIC, options, strict=True))]).collect()
    problems = []
    for n, vector in enumerate(GENERIC):
        out = rows[n][f"v{n}"]
        if (out["text"], out["errors"]) != (vector["text"], vector["errors"]):
            problems.append(f"{vector['name']}:\n  jvm:    {out['text']!r} {out['errors']}\n"
                            f"  golden: {vector['text']!r} {vector['errors']}")
    assert problems == []


def test_the_generic_spec_is_what_both_renderers_read():
    assert set(GENERICS) == {"generic_csv", "generic_tsv"}
    spec = json.loads(generic_json("generic_tsv", ["offer_id", "price.amount"]))
    assert spec == {"name": "generic_tsv", "sep": "\t", "key": "offer_id", "missing": "missing_id",
                    "fields": ["offer_id", "price.amount"]}
    renderer = get_renderer("generic_csv", {"fields": ["title"]})
    assert renderer.required_fields == (GENERICS["generic_csv"].key,)
    assert renderer.render({"title": "x"}).errors == (GENERICS["generic_csv"].missing,)
