"""The built-in offer templates rendered in the JVM (generator/jvm/*.java).

At a million offers the Python renderer bounds the generator (Arrow → dict → Jinja costs
about 120 µs of CPU per offer). ``RenderOffer`` applies the rules of generator/offer_spec.py
(the same spec render.py interprets, passed to the JVM as JSON: ``flavour_json``) to the
aggregate's columns inside Spark, reading them by their spec names (``offer_columns``), and
writes the item with the template's own ``item.*.j2``, compiled here from Jinja's syntax
tree into a small program (text, field, if-field, csv row) over the flavour's field names
(a name the flavour does not set is an error in the JVM). A template using anything else
is not compiled and renders in Python.
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

from feedgen.aggregator.schemas import OFFER_AGGREGATE_SCHEMA
from feedgen.core.java import java_tool
from feedgen.generator.offer_spec import CHANNELS, INPUTS, flavour_json

__all__ = ["JVM_FUNCTION", "generate_pass", "jvm_renderable", "jvm_unrenderable", "offer_columns", "render_column",
           "spark_jar"]

log = logging.getLogger(__name__)

SOURCES = sorted((Path(__file__).parent / "jvm").glob("*.java"))
JVM_CLASS = "feedgen.jvm.RenderOffer"
JVM_FUNCTION = "feedgen_render_offer"
RETURN_TYPE = ("struct<text:string,errors:array<string>,warnings:array<string>,payload:string,"
               "missing:array<string>>")
# the templates RenderOffer renders, and the flavour of offer_spec.py each one uses
FLAVOURS = {name: channel.flavour for name, channel in CHANNELS.items()}
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


def _program(name: str) -> str | None:
    """The item template of ``name`` as RenderOffer's program, or None when it cannot be compiled."""
    return _compiled(name)[0]


@functools.cache
def _compiled(name: str) -> tuple[str | None, str | None]:
    """(program, None), or (None, why the item template of ``name`` cannot be compiled)."""
    from jinja2 import nodes

    from feedgen.generator.render import get_renderer

    renderer = get_renderer(name)
    env = renderer._item.environment
    parsed = env.parse(env.loader.get_source(env, renderer._item.name)[0])
    ops: list[str] = []

    def name_of(node) -> str:
        if isinstance(node, nodes.Name):
            return node.name
        raise ValueError(f"{type(node).__name__} at line {node.lineno}")

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
                raise ValueError(f"{type(node).__name__} at line {node.lineno}")

    try:
        body(parsed.body)
    except ValueError as err:
        return None, (f"its item template uses a Jinja construct the JVM program does not compile "
                      f"({err}; it compiles text, {{{{ name }}}}, {{% if name %}} and row([...]))")
    if any(_SEP in op for op in ops):
        return None, "its item template holds the character U+0001, which the JVM program uses as a separator"
    sep = "\t" if renderer.fmt == "tsv" else ","
    neutralise = renderer._builtin.neutralise   # row() cells: render.py's formula rule
    return _SEP.join(["1" if env.autoescape else "0", sep, "1" if neutralise else "0", *ops]), None


def jvm_renderable(spark, name: str, options: dict | None, schema) -> bool:
    """Whether template ``name`` renders in the JVM over an aggregate of ``schema`` in ``spark``."""
    return jvm_unrenderable(spark, name, options, schema) is None


def jvm_unrenderable(spark, name: str, options: dict | None, schema) -> str | None:
    """Why template ``name`` (with ``options``) does not render in the JVM over an aggregate of
    ``schema`` in ``spark``, as a sentence for run.json; None when it does."""
    from feedgen.generator.render import BUILTINS, render_options

    if name not in FLAVOURS:
        what = "a user template" if name not in BUILTINS else "a built-in template without a JVM renderer"
        return f"{name!r} is {what}; the JVM renders {', '.join(FLAVOURS)}"
    changed = render_options(name, options)
    if changed:
        return f"options {', '.join(sorted(changed))} change what {name!r} renders, and only Python reads them"
    problem = _compiled(name)[1] or _schema_problem(schema) or _registered(spark)
    return f"{name!r}: {problem}" if problem else None


_REGISTERED: set[int] = set()


def _registered(spark) -> str | None:
    """None once the JVM renderer is registered in ``spark``; else why it cannot be."""
    key = id(spark)
    if key in _REGISTERED:
        return None
    try:
        spark.udf.registerJavaFunction(JVM_FUNCTION, JVM_CLASS, RETURN_TYPE)
    except Exception as err:  # noqa: BLE001 - no jar on the classpath: Python renders
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        log.info("the JVM renderer is not available (%s); rendering in Python", first)
        return (f"the JVM renderer is not available in this Spark session ({first[:300]}); install a JDK 17+ "
                "so that feedgen can compile it (see generator/jvm.py)")
    _REGISTERED.add(key)
    return None


def _used() -> dict[str, tuple[str, ...] | None]:
    # the aggregate columns offer_spec.INPUTS reads: whole, or these fields of a struct
    used: dict[str, tuple[str, ...] | None] = {}
    for i in INPUTS:
        top, _, sub = i.path.partition(".")
        subs = ("amount", "currency") if i.type == "money" else (sub,) if sub else None
        used[top] = None if subs is None else tuple(dict.fromkeys((*(used.get(top) or ()), *subs)))
    return used


_USED = _used()


def _schema_problem(schema) -> str | None:
    """Which column RenderOffer reads lacks the offer aggregate's type (then Python renders); None: none."""
    have = {f.name: f.dataType for f in schema.fields}
    for name, subs in _USED.items():
        want, got = OFFER_AGGREGATE_SCHEMA[name].dataType, have.get(name)
        if got is None:
            return f"the aggregate has no column {name!r}, which the JVM renderer reads"
        for sub in subs or (None,):
            w = want if sub is None else want[sub].dataType
            g = got if sub is None else got[sub].dataType if sub in getattr(got, "fieldNames", list)() else None
            if g != w:
                path = name if sub is None else f"{name}.{sub}"
                return (f"aggregate column {path!r} is {g.simpleString() if g else 'missing'}, "
                        f"where the JVM renderer reads {w.simpleString()}")
    return None


def offer_columns(*, prices_as_read: bool = False) -> list:
    """The aggregate columns RenderOffer reads, named as offer_spec.INPUTS names them (both
    RenderOffer and GeneratePass find them by name; prices as struct(amount, currency)).

    ``prices_as_read``: the price columns as they are (GeneratePass's columnar path finds
    their fields by name) instead of rebuilt as struct(amount, currency).
    """
    from pyspark.sql import functions as F

    def column(path: str, kind: str):
        top, _, sub = path.partition(".")
        value = F.col(top).getField(sub) if sub else F.col(top)
        if kind == "money" and not prices_as_read:
            # a null struct stays null: RenderOffer reads it as a missing price
            value = F.when(value.isNotNull(), F.struct(value.getField("amount").alias("amount"),
                                                       value.getField("currency").alias("currency")))
        return value

    return [column(i.path, i.type).alias(i.name) for i in INPUTS]


def render_column(name: str, *, payload: bool = True):
    """The struct Column (text, errors, warnings, payload, missing) of template ``name``;
    ``payload`` is null unless asked for (building it is a third of the work)."""
    from pyspark.sql import functions as F

    return F.call_function(JVM_FUNCTION, F.lit(_program(name)), F.lit(flavour_json(FLAVOURS[name])),
                           F.lit(payload), F.struct(*offer_columns()))


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

    from feedgen.generator.compile import MATCHES

    plan = {**plan, "matches_name": MATCHES,
            "renderers": [{"program": _program(r["template"]), "flavour": flavour_json(FLAVOURS[r["template"]]),
                           "payload": r["payload"]} for r in plan["renderers"]]}
    generate, plan_json = spark.sparkContext._jvm.feedgen.jvm.GeneratePass, json.dumps(plan)
    jdf = generate.runColumnar(columnar._jdf, plan_json) if columnar is not None else None
    if jdf is not None:
        return DataFrame(jdf, spark), "columns"
    return DataFrame(generate.run(df._jdf, plan_json), spark), "rows"
