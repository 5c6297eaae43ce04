"""The built-in offer templates rendered in the JVM (generator/jvm/*.java).

At a million offers the Python renderer bounds the generator (Arrow → dict → Jinja costs
about 120 µs of CPU per offer). ``RenderOffer`` applies the rules of generator/offer_spec.py
(the same spec render.py interprets, passed to the JVM as JSON: ``flavour_json``) to the
aggregate's columns inside Spark, reading them by their spec names (``offer_columns``), and
writes the item with the template's own ``item.*.j2``, compiled here from Jinja's syntax
tree into a small program (text, field, if-field, csv row) over the flavour's field names
(a name the flavour does not set is an error in the JVM). A template using anything else
is not compiled and renders in Python.
``RenderGeneric`` renders the generic templates (``generic_csv``, ``generic_tsv``, offer_spec
``GENERICS``) with the paths of their ``fields`` option: each path is one column,
``_fg_path:<path>``, read by name, and its cell is written with render.py's rules (Python's
``str``, ``repr``, ``isoformat`` and ``json.dumps`` of the value as Arrow hands it to Python).
``RenderCustomer`` renders the customer audience exports (``ids_csv``, ``google_customer_match``,
``meta_custom_audience``) with the rules of generator/customer_spec.py (``customer_json``, the
spec render.py interprets too), reading the customer columns it names as ``_fg_path:<column>``.
``GeneratePass`` runs a whole generator pass with all three (render, route to targets, write gzip
parts; ``generate_pass``), writing a row's cell of a path once for every generic feed that
selects it; ``render_column`` is the same rules as a Spark UDF.

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
from feedgen.generator.customer_spec import EXPORTS as CUSTOMER_EXPORTS
from feedgen.generator.customer_spec import customer_json, export_inputs
from feedgen.generator.offer_spec import CHANNELS, GENERICS, INPUTS, flavour_json, generic_json

__all__ = ["CUSTOMER_FUNCTION", "GENERIC_FUNCTION", "JVM_FUNCTION", "generate_pass", "jvm_renderable", "jvm_unrenderable", "offer_columns",
           "pass_columns", "render_column", "spark_jar"]

log = logging.getLogger(__name__)

SOURCES = sorted((Path(__file__).parent / "jvm").glob("*.java"))
JVM_CLASS = "feedgen.jvm.RenderOffer"
JVM_FUNCTION = "feedgen_render_offer"
GENERIC_CLASS = "feedgen.jvm.RenderGeneric"
GENERIC_FUNCTION = "feedgen_render_generic"
CUSTOMER_CLASS = "feedgen.jvm.RenderCustomer"
CUSTOMER_FUNCTION = "feedgen_render_customer"
PATH = "_fg_path:"   # + an aggregate path: the column of its value (RenderGeneric.PATH)
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

    if name in GENERICS:
        problem = _paths_problem(_generic_paths(name, options), schema) or _registered(spark)
        return f"{name!r}: {problem}" if problem else None
    if name in CUSTOMER_EXPORTS:
        problem = _strings_problem(export_inputs(name), schema) or _registered(spark)
        return f"{name!r}: {problem}" if problem else None
    if name not in FLAVOURS:
        what = "a user template" if name not in BUILTINS else "a built-in template without a JVM renderer"
        return f"{name!r} is {what}; the JVM renders {', '.join((*FLAVOURS, *GENERICS, *CUSTOMER_EXPORTS))}"
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
        spark.udf.registerJavaFunction(GENERIC_FUNCTION, GENERIC_CLASS, RETURN_TYPE)
        spark.udf.registerJavaFunction(CUSTOMER_FUNCTION, CUSTOMER_CLASS, RETURN_TYPE)
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


def _strings_problem(columns, schema) -> str | None:
    """Which of ``columns`` (a customer export's inputs) the aggregate lacks or holds as other than a
    string, which RenderCustomer reads (then Python renders, with ``str()`` of the value); None: none."""
    from pyspark.sql import types as T

    for name in columns:
        dtype = _path_type(schema, name)
        if dtype is None:
            return f"the aggregate has no column {name!r}, which the JVM renderer reads"
        if not isinstance(dtype, T.StringType):
            return f"aggregate column {name!r} is {dtype.simpleString()}, where the JVM renderer reads string"
    return None


def _generic_paths(name: str, options: dict | None) -> tuple[str, ...]:
    """The aggregate paths generic template ``name`` reads: its key, then its ``fields`` (checked by
    render.py; none without the option: then only the key, which alone decides whether an item is left out)."""
    from feedgen.generator.render import get_renderer

    fields = get_renderer(name, options)._fields if (options or {}).get("fields") else ()
    return (GENERICS[name].key, *fields)


def _path_type(schema, path: str):
    """The type of ``path`` (struct fields joined by dots) in ``schema``, None when it has none."""
    dtype = schema
    for part in path.split("."):
        if part not in getattr(dtype, "fieldNames", list)():
            return None
        dtype = dtype[part].dataType
    return dtype


def _unsupported(dtype) -> str | None:
    """The type in ``dtype`` that RenderGeneric does not write (RenderGeneric.unsupported), None: none."""
    from pyspark.sql import types as T

    atomic = (T.StringType, T.BooleanType, T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType,
              T.DoubleType, T.DecimalType, T.DateType, T.TimestampType, T.TimestampNTZType)
    if type(dtype) in atomic or isinstance(dtype, T.DecimalType):
        return None
    if isinstance(dtype, T.ArrayType):
        return _unsupported(dtype.elementType)
    if isinstance(dtype, T.MapType):
        keys = (T.StringType, T.BooleanType, T.ByteType, T.ShortType, T.IntegerType, T.LongType)
        return _unsupported(dtype.valueType) if type(dtype.keyType) in keys else dtype.keyType.simpleString()
    if isinstance(dtype, T.StructType):
        return next((p for p in map(_unsupported, (f.dataType for f in dtype.fields)) if p), None)
    return dtype.simpleString()


def _paths_problem(paths, schema) -> str | None:
    """Which of ``paths`` the aggregate of ``schema`` lacks, or holds as a type RenderGeneric does not write."""
    for path in dict.fromkeys(paths):
        dtype = _path_type(schema, path)
        if dtype is None:
            return f"the aggregate has no field {path!r}, which the JVM renderer reads"
        problem = _unsupported(dtype)
        if problem:
            return f"aggregate field {path!r} holds {problem}, which the JVM renderer does not write"
    return None


def _path_column(path: str):
    from pyspark.sql import functions as F

    top, *rest = path.split(".")
    value = F.col(f"`{top}`")
    for part in rest:
        value = value.getField(part)
    return value.alias(PATH + path)


def _pass_paths(renderers) -> list[str]:
    """The distinct aggregate paths the generic and customer ``renderers`` ({template, options}) read."""
    paths: dict[str, None] = {}
    for r in renderers:
        if r["template"] in GENERICS:
            paths.update(dict.fromkeys(_generic_paths(r["template"], r.get("options"))))
        elif r["template"] in CUSTOMER_EXPORTS:
            paths.update(dict.fromkeys(export_inputs(r["template"])))
    return list(paths)


def pass_columns(renderers, *, prices_as_read: bool = False) -> list:
    """The columns GeneratePass reads for ``renderers`` ({template, options}): the offer_spec
    inputs when a built-in offer template is among them (``offer_columns``), and one column
    ``_fg_path:<path>`` per distinct path the generic and customer ones read."""
    channels = any(r["template"] in FLAVOURS for r in renderers)
    return [*(offer_columns(prices_as_read=prices_as_read) if channels else []),
            *map(_path_column, _pass_paths(renderers))]


def _time_zone(spark) -> str:
    # Arrow hands timestamps to Python in the session's time zone: RenderGeneric writes them in it
    return spark.conf.get("spark.sql.session.timeZone")


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


def render_column(name: str, options: dict | None = None, *, payload: bool = True):
    """The struct Column (text, errors, warnings, payload, missing) of template ``name`` with
    ``options``; ``payload`` is null unless asked for (building it is a third of the work).

    A generic template without ``fields`` renders its key only: its text is then not the
    feed's, but whether it is null (the item left out) is, as only the key decides that.
    """
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    if name in CUSTOMER_EXPORTS:
        return F.call_function(CUSTOMER_FUNCTION, F.lit(customer_json(name)), F.lit(payload),
                               F.struct(*[F.col(f"`{c}`") for c in export_inputs(name)]))
    if name in GENERICS:
        paths = _generic_paths(name, options)
        return F.call_function(GENERIC_FUNCTION, F.lit(generic_json(name, paths[1:])),
                               F.lit(_time_zone(SparkSession.active())), F.lit(payload),
                               F.struct(*map(_path_column, dict.fromkeys(paths))))
    return F.call_function(JVM_FUNCTION, F.lit(_program(name)), F.lit(flavour_json(FLAVOURS[name])),
                           F.lit(payload), F.struct(*offer_columns()))


def members_ready(spark) -> bool:
    """Whether Members.java can evaluate membership programs in ``spark``."""
    return _registered(spark) is None


def members_column(spark, program_json: str, words: list, fields, barrier):
    """The ``array<int>`` Column of compile.Program ``program_json`` over the packed clause
    ``words`` and the struct of ``fields`` its JVM leaves read, evaluated per row by
    generator/jvm/Members.java (``members_ready``: else compile.py evaluates it with an Arrow
    UDF). ``barrier`` is read and ignored: a column the caller's optimizer cannot inline
    (see compile.add_membership).

    The program is registered as its own UDF, named by its digest (registering again
    replaces it by the same), so the plan carries the parsed program and no row passes its text.
    """
    from pyspark.sql import functions as F

    name = "feedgen_members_" + hashlib.sha256(program_json.encode()).hexdigest()[:16]
    spark.sparkContext._jvm.feedgen.jvm.Members.register(spark._jsparkSession, name, program_json)
    array = F.array(*words) if words else F.array().cast("array<bigint>")
    return F.call_function(name, array, fields, barrier)


def generate_pass(spark, df, plan: dict, columnar=None) -> tuple:
    """GeneratePass over ``df``: the part, stat and snap rows of a pass whose targets all render
    here, and how it read its input (``columns`` or ``rows``).

    ``plan`` has run_root, part_max, sample_keys, targets (folder, fmt, events, renderer),
    def_targets, renderers (template name, its render options, payload), matches (whether
    ``df`` has _matches), lookups, and for the customer pass membership and definition_ids
    (``member`` rows); see GeneratePass.java. ``df`` holds ``pass_columns`` of
    the renderers. ``columnar``, the same inputs selected straight from the aggregate (no
    _matches), is read from the file scan's column batches when its plan is a plain vectorized
    scan; else ``df`` is read row by row.
    """
    import json

    from pyspark.sql import DataFrame

    from feedgen.generator.compile import MATCHES

    def renderer(r: dict) -> dict:
        name = r["template"]
        if name in GENERICS:
            return {"generic": generic_json(name, _generic_paths(name, r.get("options"))[1:]), "payload": r["payload"]}
        if name in CUSTOMER_EXPORTS:
            return {"customer": customer_json(name), "payload": r["payload"]}
        return {"program": _program(name), "flavour": flavour_json(FLAVOURS[name]), "payload": r["payload"]}

    plan = {**plan, "matches_name": MATCHES, "time_zone": _time_zone(spark),
            "renderers": [renderer(r) for r in plan["renderers"]]}
    generate, plan_json = spark.sparkContext._jvm.feedgen.jvm.GeneratePass, json.dumps(plan)
    jdf = generate.runColumnar(columnar._jdf, plan_json) if columnar is not None else None
    if jdf is not None:
        return DataFrame(jdf, spark), "columns"
    return DataFrame(generate.run(df._jdf, plan_json), spark), "rows"
