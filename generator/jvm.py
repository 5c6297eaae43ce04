"""The built-in offer templates rendered in the JVM (generator/jvm/*.java).

At a million offers the Python renderer bounds the generator (Arrow → dict → Jinja costs
about 120 µs of CPU per offer). ``RenderOffer`` applies the same rules as render.py to the
aggregate's columns inside Spark, and writes the item with the template's own
``item.*.j2``, compiled here from Jinja's syntax tree into a small program (text, field,
if-field, csv row). A template using anything else is not compiled and renders in Python.
``GeneratePass`` runs a whole generator pass with it (render, route to targets, write gzip
parts; ``generate_pass``); ``render_column`` is the same rules as a Spark UDF.

The Java sources ship with the package and are compiled with ``javac`` into a jar under
the user's cache folder the first time a SparkSession is built (``spark_jar``); without a
JDK everything renders in Python. tests/test_render_jvm.py renders random and hostile
offers both ways and requires the same text, errors, warnings, payload and missing fields.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import subprocess
import tempfile
import zipfile
from pathlib import Path

__all__ = ["JVM_FUNCTION", "generate_pass", "jvm_renderable", "offer_columns", "render_column", "spark_jar"]

log = logging.getLogger(__name__)

SOURCES = sorted((Path(__file__).parent / "jvm").glob("*.java"))
JVM_CLASS = "feedgen.jvm.RenderOffer"
JVM_FUNCTION = "feedgen_render_offer"
RETURN_TYPE = ("struct<text:string,errors:array<string>,warnings:array<string>,payload:string,"
               "missing:array<string>>")
# the templates whose prepare step RenderOffer implements, and with which limits
FLAVOURS = {"google_merchant_rss": "google", "meta_catalog_xml": "meta", "meta_catalog_csv": "meta"}
_SEP = "\u0001"


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "feedgen"


def spark_jar() -> str | None:
    """The jar with RenderOffer and GeneratePass, compiled from the sources on first use; None without javac."""
    digest = hashlib.sha256()
    for path in SOURCES:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    jar = _cache_dir() / f"feedgen-jvm-{digest.hexdigest()[:16]}.jar"
    if jar.is_file():
        return str(jar)
    from feedgen.jobs.spark import java_tool

    javac = java_tool("javac")
    if javac is None:
        log.warning("javac not found: built-in offer templates render in Python (slower); "
                    "install a JDK 17+ (apt-get install -y openjdk-17-jdk-headless) to render them in Spark")
        return None
    import pyspark

    classpath = os.path.join(os.path.dirname(pyspark.__file__), "jars", "*")
    jar.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="feedgen-jvm-") as tmp:
        done = subprocess.run([javac, "--release", "17", "-nowarn", "-cp", classpath, "-d", tmp, *map(str, SOURCES)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            log.warning("javac failed, built-in offer templates render in Python: %s", done.stderr[-2000:])
            return None
        partial = jar.with_suffix(f".{os.getpid()}.tmp")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(Path(tmp).rglob("*.class")):
                zf.write(path, path.relative_to(tmp).as_posix())
        os.replace(partial, jar)
    return str(jar)


@functools.cache
def _program(name: str) -> str | None:
    """The item template of ``name`` as RenderOffer's program, or None when it cannot be compiled."""
    from jinja2 import nodes

    from feedgen.generator.render import get_renderer

    renderer = get_renderer(name)
    env = renderer._item.environment
    parsed = env.parse(env.loader.get_source(env, renderer._item.name)[0])
    ops: list[str] = []

    def name_of(node) -> str:
        if isinstance(node, nodes.Name):
            return node.name
        raise ValueError(type(node).__name__)

    def body(items) -> None:
        for node in items:
            if isinstance(node, nodes.Output):
                for n in node.nodes:
                    if isinstance(n, nodes.TemplateData):
                        ops.append("T" + n.data)
                    elif isinstance(n, nodes.Call) and isinstance(n.node, nodes.Name) and n.node.name == "row" \
                            and len(n.args) == 1 and isinstance(n.args[0], nodes.List) and not n.kwargs:
                        ops.append("R" + ",".join(name_of(v) for v in n.args[0].items))
                    else:
                        ops.append("V" + name_of(n))
            elif isinstance(node, nodes.If) and not node.elif_ and not node.else_:
                ops.append("I" + name_of(node.test))
                body(node.body)
                ops.append("E")
            else:
                raise ValueError(type(node).__name__)

    try:
        body(parsed.body)
    except ValueError:
        return None
    if any(_SEP in op for op in ops):
        return None
    sep = "\t" if renderer.fmt == "tsv" else ","
    neutralise = renderer._builtin.neutralise   # row() cells: render.py's formula rule
    return _SEP.join(["1" if env.autoescape else "0", sep, "1" if neutralise else "0", *ops])


def jvm_renderable(spark, name: str, options: dict | None, schema) -> bool:
    """Whether template ``name`` renders in the JVM over an aggregate of ``schema`` in ``spark``."""
    from feedgen.generator.render import render_options

    if name not in FLAVOURS or render_options(name, options) or _program(name) is None:
        return False
    return _schema_ok(schema) and _registered(spark)


_REGISTERED: set[int] = set()


def _registered(spark) -> bool:
    key = id(spark)
    if key in _REGISTERED:
        return True
    try:
        spark.udf.registerJavaFunction(JVM_FUNCTION, JVM_CLASS, RETURN_TYPE)
    except Exception as err:  # noqa: BLE001 - no jar on the classpath: Python renders
        log.info("the JVM renderer is not available (%s); rendering in Python", str(err).splitlines()[0])
        return False
    _REGISTERED.add(key)
    return True


_USED = {"offer_id": None, "title": None, "description": None, "link": None, "image_link": None,
         "availability": None, "condition": None, "brand": None, "gtin": None, "mpn": None, "stock": None,
         "price": ("amount", "currency"), "sale_price": ("amount", "currency"),
         "effective_price": ("amount", "currency"), "category": ("path",), "product": ("name", "brand", "gtin")}


def _schema_ok(schema) -> bool:
    """The columns RenderOffer reads have the offer aggregate's types (else Python renders)."""
    from feedgen.aggregator.schemas import OFFER_AGGREGATE_SCHEMA

    have = {f.name: f.dataType for f in schema.fields}
    for name, subs in _USED.items():
        want, got = OFFER_AGGREGATE_SCHEMA[name].dataType, have.get(name)
        if subs is None:
            if got != want:
                return False
        elif not hasattr(got, "fieldNames") or not set(subs) <= set(got.fieldNames()) \
                or any(got[s].dataType != want[s].dataType for s in subs):
            return False
    return True


def offer_columns(*, prices_as_read: bool = False) -> list:
    """The aggregate columns RenderOffer reads, in its argument order (prices as struct(amount, currency)).

    ``prices_as_read``: the price columns as they are (GeneratePass's columnar path finds
    their fields by name) instead of rebuilt as struct(amount, currency).
    """
    from pyspark.sql import functions as F

    c = F.col

    def money(m: str):
        if prices_as_read:
            return c(m)
        # a null struct stays null: RenderOffer reads it as a missing price
        return F.when(c(m).isNotNull(), F.struct(c(m).getField("amount").alias("amount"),
                                                 c(m).getField("currency").alias("currency")))

    return [c("offer_id"), c("title"), c("description"), c("link"), c("image_link"), c("availability"), c("stock"),
            money("price"), money("sale_price"), money("effective_price"), c("condition"), c("brand"),
            c("gtin"), c("mpn"), c("category").getField("path"), c("product").getField("name"),
            c("product").getField("brand"), c("product").getField("gtin")]


def render_column(name: str, *, payload: bool = True):
    """The struct Column (text, errors, warnings, payload, missing) of template ``name``;
    ``payload`` is null unless asked for (building it is a third of the work)."""
    from pyspark.sql import functions as F

    flavour = FLAVOURS[name] + ("+payload" if payload else "")
    return F.call_function(JVM_FUNCTION, F.lit(_program(name)), F.lit(flavour), *offer_columns())


def generate_pass(spark, df, plan: dict, columnar=None) -> tuple:
    """GeneratePass over ``df``: the part, stat and snap rows of a pass whose targets all render
    here, and how it read its input (``columns`` or ``rows``).

    ``plan`` has run_root, part_max, sample_keys, targets (folder, fmt, events, renderer),
    def_targets, renderers (template name, payload), matches (whether ``df`` has
    _matches) and lookups; see GeneratePass.java. ``columnar``, the same inputs selected
    straight from the aggregate (no _matches), is read from the file scan's column
    batches when its plan is a plain vectorized scan; else ``df`` is read row by row.
    """
    import json

    from pyspark.sql import DataFrame

    plan = {**plan, "renderers": [{"program": _program(r["template"]), "google": FLAVOURS[r["template"]] == "google",
                                   "payload": r["payload"]} for r in plan["renderers"]]}
    generate, plan_json = spark.sparkContext._jvm.feedgen.jvm.GeneratePass, json.dumps(plan)
    jdf = generate.runColumnar(columnar._jdf, plan_json) if columnar is not None else None
    if jdf is not None:
        return DataFrame(jdf, spark), "columns"
    return DataFrame(generate.run(df._jdf, plan_json), spark), "rows"
