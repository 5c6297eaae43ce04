"""The console's warm preview engine: a draft's effect on the latest aggregate, and explain.

One engine per console process: one local SparkSession, started on the first preview, and
the latest good aggregate of each entity read once and cached in Spark's memory
(``DataFrame.cache()``: Spark's in-memory columnar cache, spilling to disk when short; at
1M offers and 200k customers about 970 MB and 370 MB of the driver's memory, measured by
benchmarks/preview.py). Each call looks up the newest aggregate
folder with its marker (one directory listing) and re-reads and re-caches when a newer
run wrote one; the old cache is released. Also held, for repeated edits of the same
definition: the published snapshot a change is computed against (key, hash, payload,
last_sent; the last ``SNAPSHOTS_KEPT``), and the compiled clauses explain evaluates (``ExplainPlan``, per
aggregate and definitions set).

The change against what is published costs what changed: when the published run rendered
the same aggregate with the same template and options, a kept item renders as it did, so
adds and removes come from the keys alone and only new items are rendered; otherwise every
member is rendered and diffed as a run would. With ``pick_one_per`` the picked keys are
computed once per preview and every section reads them.

Everything is computed with the pipeline's own pieces, so a preview equals what a run
would produce on the same aggregate and ``as_of`` (the aggregate's, from its marker):
the predicate is compiled by ``generator.compile``, ``pick_one_per`` applied by
``generator.generate.apply_pick_one_per``, items rendered by ``generator.render`` exactly as
the generator hands them rows, the change classified by ``generator.snapshots._diff_frame``
against the published snapshot, and gates judged by ``generator.gates.evaluate_definition``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pyspark.sql import functions as F
from pyspark.sql import types as T

from feedgen.aggregator.job import MARKER, latest_aggregate, read_marker
from feedgen.aggregator.schemas import ENTITY_KEYS
from feedgen.core.errors import BadInput
from feedgen.core.runs import format_ts, parse_as_of, read_run
from feedgen.core.serving import current_run_id
from feedgen.generator.compile import compile_predicate, quote
from feedgen.generator.definitions import Definition, DefinitionSet, definitions_from_documents
from feedgen.generator.explain import _NO_VALUE, ExplainPlan, _show, explain_entities
from feedgen.generator.fields import resolve
from feedgen.generator.gates import evaluate_definition, thresholds_for
from feedgen.generator.generate import (
    _batch_rows,
    _converter,
    content_hash,
    field_column,
    pick_columns,
    render_projection,
)
from feedgen.generator.jvm import jvm_renderable, render_column
from feedgen.generator.render import get_renderer, renderer_key
from feedgen.generator.snapshots import _diff_frame, _has_parquet, refresh_window, snapshot_dir
from feedgen.generator.tree import History, InSegment, Leaf, Node
from feedgen.jobs.spark import spark_session

log = logging.getLogger(__name__)

__all__ = ["SECTIONS", "Aggregate", "PreviewEngine", "draft_definitions", "failing_leaves"]

SECTIONS = ("count", "breakdown", "samples", "excluded", "change", "dependents", "gates", "backtest")
DEFAULT_SAMPLES = 20
TOP_VALUES = 10
CHANGE_SAMPLES = 5
SNAPSHOTS_KEPT = 4  # published snapshots held in memory, newest used first
PLANS_KEPT = 8  # compiled explain plans (one per definitions set and aggregate)
REFUSALS_KEPT = 16  # per aggregate and renderer: the keys item validation leaves out (small)
RENDERED_SCHEMA = "key string, error string, hash string, payload string, warnings array<string>"


@dataclass
class Aggregate:
    """One entity's aggregate as the engine holds it."""

    entity: str
    run_id: str
    path: Path
    as_of: datetime
    rows: int
    df: Any  # the cached DataFrame

    def describe(self) -> dict[str, Any]:
        return {"entity": self.entity, "run_id": self.run_id, "as_of": format_ts(self.as_of), "rows": self.rows}


def draft_definitions(kind: str, body: Mapping[str, Any]) -> list[Definition]:
    """The definitions ``body`` stands for (one, or one per ``for_each`` value); the body has
    been validated already (``Registry.validate``)."""
    return list(definitions_from_documents([("draft", {f"{kind}s": [dict(body)]})], validate=False).definitions)


def jsonable(value: Any) -> Any:
    """A value from a Spark or Arrow row as JSON gives it (decimals and times as text)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return format_ts(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "asDict"):
        return jsonable(value.asDict(recursive=True))
    return value


# -- rows as the generator hands them to the renderer ------------------------------------------

def arrow_rows(df) -> list[dict]:
    """The rows of a small DataFrame as plain dicts, converted as ``generate`` converts them."""
    table = df.toArrow()
    converters = [_converter(f.type) for f in table.schema]
    out: list[dict] = []
    for batch in table.to_batches():
        out.extend(_batch_rows(batch, converters))
    return out


def _render_rows(template: str, options: Mapping, templates_dir: str | None, key: str) -> Callable:
    """The ``mapInArrow`` function: aggregate rows → (key, error, hash, payload, warnings)."""
    options = dict(options or {})

    def run(batches: Iterator) -> Iterator:
        import pyarrow as pa

        renderer = get_renderer(template, options, Path(templates_dir) if templates_dir else None)
        converters = None
        for batch in batches:
            if converters is None:
                converters = [_converter(f.type) for f in batch.schema]
            cols: list[list] = [[], [], [], [], []]
            for item in _batch_rows(batch, converters):
                result = renderer.render(item)
                cols[0].append(None if item.get(key) is None else str(item.get(key)))
                cols[4].append(list(result.warnings))
                if result.text is None:
                    cols[1].append(result.errors[0] if result.errors else "error")
                    cols[2].append(None)
                    cols[3].append(None)
                else:
                    h, payload = content_hash(result.fields)
                    cols[1].append(None)
                    cols[2].append(h)
                    cols[3].append(payload)
            yield pa.RecordBatch.from_arrays(
                [pa.array(c, pa.string()) for c in cols[:4]] + [pa.array(cols[4], pa.list_(pa.string()))],
                names=["key", "error", "hash", "payload", "warnings"])

    return run


# -- explain ---------------------------------------------------------------------------------

def _explained_json(node: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"clause": node.label, "holds": node.value}
    if node.actual is not _NO_VALUE:
        out["actual"] = _show(node.actual)
    if node.children:
        out["children"] = [_explained_json(c) for c in node.children]
    return out


def failing_leaves(node: Any, want: bool = True) -> list[dict[str, Any]]:
    """The clauses that keep an entity out: leaves whose value is not what the tree needs.

    Under ``not`` the need flips; a satisfied branch is not searched. Each is
    ``{clause, actual, needs}``: ``needs`` is true or false.
    """
    if node.value == want:
        return []
    if node.label == "not":
        return [f for c in node.children for f in failing_leaves(c, not want)]
    if node.children and node.label in ("all", "any") or node.label.startswith("in_segment"):
        found = [f for c in node.children for f in failing_leaves(c, want)]
        if found:
            return found
    actual = None if node.actual is _NO_VALUE else _show(node.actual)
    return [{"clause": node.label, "actual": actual, "needs": want}]


# -- the engine ------------------------------------------------------------------------------

class PreviewEngine:
    """The warm engine one console process keeps (thread-safe; Spark runs jobs side by side)."""

    def __init__(self, config: Any, *, spark: Any = None, published: Callable[[], DefinitionSet] | None = None,
                 spark_conf: Mapping[str, Any] | None = None) -> None:
        self.config = config
        self.root = str(config.root)
        self._spark = spark
        self._spark_conf = spark_conf
        self._published = published or (lambda: DefinitionSet(()))
        self._lock = threading.Lock()
        self._cached: dict[str, Aggregate] = {}
        self._snapshots: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._plans: OrderedDict[tuple, ExplainPlan] = OrderedDict()
        self._refusals: OrderedDict[tuple, Any] = OrderedDict()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="feedgen-preview")

    # -- session and aggregates ------------------------------------------------------------

    def spark(self):
        with self._lock:
            if self._spark is None:
                conf = dict(self._spark_conf or self.config.get("spark") or {})
                conf.setdefault("master", "local[*]")
                self._spark = spark_session(conf, app_name="feedgen-console-preview")
            return self._spark

    def latest(self, entity: str) -> tuple[str, Path] | None:
        """The newest complete aggregate of ``entity`` on disk (cheap: one listing)."""
        return latest_aggregate(self.root, entity)

    def aggregate(self, entity: str) -> Aggregate | None:
        """The latest aggregate, cached; re-read when a newer one appeared. None: none yet."""
        found = self.latest(entity)
        if found is None:
            return None
        run_id, path = found
        held = self._cached.get(entity)
        if held is not None and held.run_id == run_id:
            return held
        spark = self.spark()
        with self._lock:
            held = self._cached.get(entity)
            if held is not None and held.run_id == run_id:
                return held
            marker = read_marker(path)
            # sorted by key within each partition, the cache's per-batch min/max lets a
            # lookup of one key (explain) skip all but one batch of each partition
            df = spark.read.parquet(str(path)).sortWithinPartitions(quote(ENTITY_KEYS[entity])).cache()
            rows = df.count()  # fills the cache now, not on the first preview
            fresh = Aggregate(entity, run_id, path, parse_as_of(marker["as_of"]), rows, df)
            self._cached[entity] = fresh
            if held is not None:
                held.df.unpersist()
        # the first pick preview would otherwise render the whole aggregate while a marketer waits
        self._pool.submit(self._warm_refusals, fresh)
        return fresh

    def _warm_refusals(self, agg: Aggregate) -> None:
        """Which rows each published ``pick_one_per`` feed's template leaves out of ``agg``."""
        seen = set()
        for d in self._published():
            if d.entity != agg.entity or not d.pick_one_per:
                continue
            rkey = renderer_key(d.template, d.options)
            if rkey in seen:
                continue
            seen.add(rkey)
            try:
                self._refused(d, agg.df, agg.run_id)
            except Exception:  # noqa: BLE001 - a warm-up only: the preview computes it when asked
                log.warning("could not compute which offers %s leaves out of run %s", d.template, agg.run_id,
                            exc_info=True)

    def _need(self, entity: str) -> Aggregate:
        agg = self.aggregate(entity)
        if agg is None:
            raise NoAggregate(entity, self.root)
        return agg

    # -- building blocks -------------------------------------------------------------------

    def segments(self, extra: Sequence[Definition] = ()) -> dict[str, Definition]:
        out = {d.id: d for d in self._published() if d.kind == "segment"}
        out.update({d.id: d for d in extra if d.kind == "segment"})
        return out

    def predicate(self, d: Definition, df, as_of: datetime, segments: Mapping[str, Definition]):
        return compile_predicate(d.where, df.schema, as_of, segments)

    def members(self, d: Definition, df, as_of: datetime, segments: Mapping[str, Definition], tag: str):
        """The rows ``d`` takes, as the generator decides (predicate, then ``pick_one_per``);
        ``df`` is the aggregate of run ``tag``."""
        rows = df.where(self.predicate(d, df, as_of, segments))
        if not d.pick_one_per:
            return rows
        return self._picked(d, rows, df, tag)

    def _picked(self, d: Definition, rows, df, tag: str, held: list | None = None, carry: Sequence = ()):
        """``rows`` (``d``'s candidates in aggregate ``tag``) less those ``pick_one_per`` leaves out.

        The run's rule (generator.generate.apply_pick_one_per) for one definition: per pick
        key, the first row by ``order_by`` among those the template renders, else the first.
        Ranked on the candidates' key, pick and order columns only, and the winners' keys
        are held (appended to ``held``, with the named Columns ``carry``) for the sections
        that read them again.
        """
        from pyspark.sql import Window

        key = ENTITY_KEYS[d.entity]
        pick_key, ordered, orders = pick_columns(d.pick_one_per, d.order_by, key)
        refused = self._refused(d, df, tag)
        narrow = rows.select(F.col(quote(key)).alias("_k"), pick_key.alias("_pk"), *ordered, *carry)
        carried = narrow.columns[2 + len(ordered):]
        narrow = narrow.join(F.broadcast(refused), F.col("_k").cast("string") == F.col("_refused"), "left")
        ranked = narrow.withColumn("_rn", F.row_number().over(
            Window.partitionBy("_pk").orderBy(F.col("_refused").isNull().desc(), *orders, "_k")))
        winners = ranked.where("_rn = 1").select(F.col("_k").alias("_picked"), *carried)
        if held is not None:
            winners = winners.cache()
            held.append(winners)
        return rows.join(F.broadcast(winners.select("_picked")), F.col(quote(key)) == F.col("_picked"), "left_semi")

    def _refused(self, d: Definition, df, tag: str):
        """The keys (as text, column ``_refused``) of the rows of aggregate ``tag`` that ``d``'s
        template leaves out, cached: item validation depends on the row and the renderer only,
        so one render of the aggregate per renderer serves every pick preview after it."""
        cache_key = (tag, renderer_key(d.template, d.options))
        with self._lock:
            held = self._refusals.get(cache_key)
            if held is not None:
                self._refusals.move_to_end(cache_key)
                return held
        key = quote(ENTITY_KEYS[d.entity])
        spark = df.sparkSession
        if (self.config.get("generate.jvm_render", True)
                and jvm_renderable(spark, d.template, d.options, df.schema)):
            refused = df.where(render_column(d.template, d.options, payload=False).getField("text").isNull()) \
                .select(F.col(key).cast("string").alias("_refused"))
        else:
            refused = self.rendered(d, df).where(F.col("error").isNotNull()).select(F.col("key").alias("_refused"))
        refused = refused.cache()
        refused.count()
        with self._lock:
            if cache_key in self._refusals:  # computed meanwhile by another thread
                refused.unpersist()
                return self._refusals[cache_key]
            self._refusals[cache_key] = refused
            while len(self._refusals) > REFUSALS_KEPT:
                _, old = self._refusals.popitem(last=False)
                old.unpersist()
        return refused

    def _held_members(self, d: Definition, agg: Aggregate, segments: Mapping[str, Definition],
                      carry: Sequence = ()):
        """``d``'s rows for the sections of one preview, and the frame held for them (None: none).

        With ``pick_one_per`` the members need a shuffle (the window per pick key), so the
        picked keys are computed once and held; each section then reads the cached aggregate
        with the predicate and keeps the rows whose key was picked.
        """
        rows = agg.df.where(self.predicate(d, agg.df, agg.as_of, segments))
        if not d.pick_one_per:
            return rows, None
        held: list = []
        members = self._picked(d, rows, agg.df, agg.run_id, held, carry)
        return members, held[0]

    def _template(self, d: Definition) -> str:
        return d.template if d.kind == "feed" else (list(d.exports) or ["ids_csv"])[0]

    def _renderer(self, d: Definition):
        folder = self.config.get("generate.templates_dir")
        return get_renderer(self._template(d), d.options, Path(folder) if folder else None)

    def rendered(self, d: Definition, rows):
        """(key, error, hash, payload, warnings) of every row, rendered by ``d``'s template."""
        key = ENTITY_KEYS[d.entity]
        renderer = self._renderer(d)
        projected = rows.select(*render_projection(rows.schema, [renderer], key))
        return projected.mapInArrow(
            _render_rows(self._template(d), d.options, self.config.get("generate.templates_dir"), key),
            RENDERED_SCHEMA)

    # -- preview ---------------------------------------------------------------------------

    def preview(self, kind: str, body: Mapping[str, Any], *, base: str | None = None,
                sections: Sequence[str] = SECTIONS, breakdown_field: str | None = None,
                change_field: str | None = None, samples: int = DEFAULT_SAMPLES,
                expansion: str | None = None) -> dict[str, Any]:
        """The preview of a (validated) draft body: the ``sections`` asked for."""
        started = time.monotonic()
        expansions = draft_definitions(kind, body)
        if not expansions:
            raise BadInput("the definition expands to no definitions (its for_each has no values)")
        chosen = next((d for d in expansions if d.id == expansion), None) if expansion else expansions[0]
        if chosen is None:
            raise BadInput(f"expansion {expansion!r} is not one of {', '.join(d.id for d in expansions)[:300]}")
        agg = self._need(chosen.entity)
        segments = self.segments(expansions)
        d = chosen
        out: dict[str, Any] = {"definition_id": d.id, "kind": d.kind, "entity": d.entity,
                               "template": self._template(d), "aggregate": agg.describe(),
                               "run_id": agg.run_id, "as_of": format_ts(agg.as_of), "base": base,
                               "expansions": [e.id for e in expansions], "timings": {}}
        timings = out["timings"]

        def timed(name: str, fn: Callable[[], Any]) -> Any:
            t0 = time.monotonic()
            value = fn()
            timings[name] = round(time.monotonic() - t0, 3)
            return value

        wants_change = bool(base) and ("change" in sections or "gates" in sections)
        # with a pick, what the change and the gates read rides along with the held keys:
        # the change field's value and the required fields' blank flags
        change_field = self._change_field(d, agg, change_field) if wants_change else change_field
        carry = [field_column(change_field).cast("string").alias("_value")] if wants_change else []
        if "gates" in sections:
            carry += [flag.alias(f"_m{n}") for n, (_, flag) in enumerate(self._blank_flags(d, agg.df.schema))]
        members, held = self._held_members(d, agg, segments, carry)
        rendered = None
        try:
            # the samples (a short job and Python rendering) overlap the count (a full scan)
            sampling = (self._pool.submit(timed, "samples", lambda: self._samples(d, members, samples))
                        if "samples" in sections else None)
            if "count" in sections:
                out["count"] = timed("count", members.count if held is None else held.count)
            if sampling is not None:
                out["samples"] = sampling.result()
            if "breakdown" in sections:
                out["breakdown"] = timed("breakdown", lambda: self._breakdown(d, members, breakdown_field))
            if "excluded" in sections or ("gates" in sections and base is None):
                rendered = self.rendered(d, members).cache()
                out["excluded"] = timed("excluded", lambda: self._excluded(rendered))
                out["items"] = rendered.where("error is null").count()  # what generate would write
            change = None
            if ("change" in sections or "gates" in sections) and base:
                change = timed("change", lambda: self._change(d, base, agg, members, change_field, held))
                if "change" in sections:
                    out["change"] = change
            if "gates" in sections:
                out["gates"] = timed("gates", lambda: self._gates(d, base, agg, members, change, out.get("items"),
                                                                  held))
            if "dependents" in sections:
                out["dependents"] = timed("dependents", lambda: self._dependents(d, agg))
            if "backtest" in sections:
                out["backtest"] = timed("backtest", lambda: self._backtest(d, base, agg, segments))
        finally:
            for frame in (rendered, held):
                if frame is not None:
                    frame.unpersist()
        timings["total"] = round(time.monotonic() - started, 3)
        return out

    def _samples(self, d: Definition, members, n: int) -> list[dict[str, Any]]:
        key = ENTITY_KEYS[d.entity]
        renderer = self._renderer(d)
        out = []
        # the first matches Spark finds: a limit stops the scan early, a sort would read every match
        for item in arrow_rows(members.limit(n)):
            result = renderer.render(item)
            out.append({"key": item.get(key), "text": result.text, "fields": jsonable(result.fields),
                        "errors": list(result.errors), "warnings": list(result.warnings),
                        "included": result.text is not None})
        return out

    def _breakdown(self, d: Definition, rows, field: str | None) -> dict[str, Any]:
        field = field or default_breakdown_field(d.entity)
        try:
            ref = resolve(rows.schema, field)
        except Exception as err:  # noqa: BLE001 - the resolver's message names the field and the fix
            raise BadInput(f"breakdown_field: {err}") from None
        column = field_column(field)
        if isinstance(ref.dtype, T.ArrayType):
            column = F.explode_outer(column)
        elif isinstance(ref.dtype, (T.StructType, T.MapType)):
            raise BadInput(f"breakdown_field: {field!r} is a group of fields; pick one of its fields "
                           f"({field}.<name>)")
        top = (rows.select(column.cast("string").alias("value")).groupBy("value").count()
               .orderBy(F.desc("count"), F.asc_nulls_first("value")).limit(TOP_VALUES + 1).collect())
        return {"field": field, "values": [{"value": r["value"], "count": r["count"]} for r in top[:TOP_VALUES]],
                "more": len(top) > TOP_VALUES}

    @staticmethod
    def _excluded(rendered) -> dict[str, Any]:
        rows = (rendered.where(F.col("error").isNotNull()).groupBy("error")
                .agg(F.count("*").alias("n"), F.slice(F.sort_array(F.collect_list("key")), 1, CHANGE_SAMPLES)
                     .alias("keys")).orderBy(F.desc("n")).collect())
        return {"reasons": [{"reason": r["error"], "count": r["n"], "sample_keys": list(r["keys"])} for r in rows]}

    # -- change against what is published -------------------------------------------------

    def _published_run(self, base: str) -> tuple[str | None, dict[str, Any] | None]:
        run_id = current_run_id(self.config, base)
        if not run_id:
            return None, None
        try:
            return run_id, read_run(self.root, run_id)
        except Exception:  # noqa: BLE001 - a pointer to a run whose run.json is gone: no base
            return run_id, None

    def _base_renderer_key(self, base: str, record: dict[str, Any]) -> tuple | None:
        stats = (record.get("definitions") or {}).get(base) or {}
        template = stats.get("template")
        if not template:
            return None
        pinned = Path(self.root) / "runs" / record["run_id"] / "definitions.yaml"
        if not pinned.is_file():
            return None
        import yaml

        try:
            document = yaml.safe_load(pinned.read_text(encoding="utf-8"))
            pinned_set = definitions_from_documents([(str(pinned), document)], validate=False)
            found = {d.id: d for d in pinned_set}.get(base)
        except Exception:  # noqa: BLE001 - an unreadable pin: render everything instead
            return None
        return renderer_key(template, found.options) if found else None

    def _change(self, d: Definition, base: str, agg: Aggregate, members, field: str | None,
                held=None) -> dict[str, Any]:
        run_id, record = self._published_run(base)
        out: dict[str, Any] = {"base": base, "base_run_id": run_id}
        if run_id is None or record is None:
            out["available"] = False
            out["reason"] = (f"{base!r} has not been published by a run yet: every item would be new"
                             if run_id is None else f"run {run_id} (current for {base!r}) has no run.json")
            return out
        stats = (record.get("definitions") or {}).get(base) or {}
        out["base_items"] = stats.get("items")
        folder = snapshot_dir(self.root, run_id, base)
        if not _has_parquet(folder):
            out["available"] = False
            out["reason"] = (f"run {run_id} kept no item snapshot of {base!r} (snapshots are kept for "
                             "definitions with event delivery): only the counts compare")
            return out
        field = self._change_field(d, agg, field)
        y = self._snapshot(run_id, base, folder)
        same_aggregate = ((record.get("aggregates") or {}).get(d.entity) or {}).get("run_id") == agg.run_id
        same_render = self._base_renderer_key(base, record) == renderer_key(self._template(d), d.options)
        if same_aggregate and same_render:
            # same rows rendered the same way: a kept item renders as it did, so only the
            # new ones are rendered (to leave out those item validation excludes)
            out["rendered"] = "new items only (same aggregate and template as the published run)"
            out.update(self._change_of_keys(d, agg, members, y, field, held))
        else:
            out["rendered"] = "every item"
            out.update(self._change_rendered(d, agg, members, y, field))
        out["available"] = True
        return out

    def _change_field(self, d: Definition, agg: Aggregate, field: str | None) -> str:
        field = field or default_breakdown_field(d.entity)
        try:
            ref = resolve(agg.df.schema, field)
        except Exception as err:  # noqa: BLE001 - the resolver's message names the field and the fix
            raise BadInput(f"change_field: {err}") from None
        if isinstance(ref.dtype, (T.StructType, T.MapType, T.ArrayType)):
            raise BadInput(f"change_field: {field!r} is not a single value; pick a text or number field")
        return field

    def _change_of_keys(self, d: Definition, agg: Aggregate, members, y, field: str,
                        held=None) -> dict[str, Any]:
        """The change when only membership can differ: adds and removes from the keys alone."""
        if held is not None and "_value" in held.columns:  # a pick's held keys carry the value
            x = held.select(F.col("_picked").cast("string").alias("key"), F.col("_value").alias("value"))
            return self._change_of_x(d, agg, members, x, y, field)
        key = ENTITY_KEYS[d.entity]
        x = members.select(F.col(quote(key)).cast("string").alias("key"),
                           field_column(field).cast("string").alias("value")).cache()
        try:
            return self._change_of_x(d, agg, members, x, y, field)
        finally:
            x.unpersist()

    def _change_of_x(self, d: Definition, agg: Aggregate, members, x, y, field: str) -> dict[str, Any]:
        key = ENTITY_KEYS[d.entity]
        y_keys = y.select("key", F.lit(True).alias("in_y"))
        joined = x.join(F.broadcast(y_keys), "key", "left")
        refused = self._known_refusals(d, agg)
        if refused is not None:  # which rows the template leaves out is known: no render
            joined = joined.join(F.broadcast(refused.select(F.col("_refused").alias("key"),
                                                            F.lit(True).alias("out"))), "key", "left")
        groups = joined.groupBy(F.col("in_y").isNotNull().alias("kept"),
                                (F.col("out").isNotNull() if refused is not None else F.lit(False)).alias("out"),
                                "value").count().collect()
        kept = sum(r["count"] for r in groups if r["kept"])
        candidates = [r for r in groups if not r["kept"]]
        adds, add_samples, add_values = 0, [], []
        if candidates and refused is not None:
            add_values = [(r["value"], r["count"]) for r in candidates if not r["out"]]
            adds = sum(n for _, n in add_values)
            if adds:
                keys = [r["key"] for r in joined.where(F.col("in_y").isNull() & F.col("out").isNull())
                        .select("key").orderBy("key").limit(CHANGE_SAMPLES).collect()]
                add_samples = self._rendered_now(d, agg, keys)
        elif candidates:
            new_rows = members.join(F.broadcast(y.select(F.col("key").alias("_yk"))),
                                    F.col(quote(key)).cast("string") == F.col("_yk"), "left_anti")
            fresh = self.rendered(d, new_rows).where(F.col("error").isNull()).select("key", "payload").cache()
            try:
                adds = fresh.count()
                add_samples = [{"key": r["key"], "changed": [], "now": json.loads(r["payload"]), "published": None}
                               for r in fresh.orderBy("key").limit(CHANGE_SAMPLES).collect()]
                if adds == sum(r["count"] for r in candidates):
                    add_values = [(r["value"], r["count"]) for r in candidates]
                elif adds:
                    add_values = [(r["value"], r["count"]) for r in
                                  x.join(fresh.select("key"), "key").groupBy("value").count().collect()]
            finally:
                fresh.unpersist()
        removed = y.join(x.select("key"), "key", "left_anti").select("key", "payload").cache()
        try:
            removes = removed.count()
            remove_samples = [{"key": r["key"], "changed": [], "now": None, "published": json.loads(r["payload"])}
                              for r in removed.orderBy("key").limit(CHANGE_SAMPLES).collect()] if removes else []
            remove_values: list[tuple[Any, int]] = []
            if removes:
                values = agg.df.select(F.col(quote(key)).cast("string").alias("_k"),
                                       field_column(field).cast("string").alias("value"))
                found = values.join(F.broadcast(removed.select(F.col("key").alias("_k"))), "_k") \
                    .groupBy("value").count().collect()
                remove_values = [(r["value"], r["count"]) for r in found]
                gone = removes - sum(n for _, n in remove_values)
                if gone:  # keys the aggregate no longer has: no value to group by
                    remove_values.append((None, gone))
        finally:
            removed.unpersist()
        return {"ops": {"add": adds, "remove": removes, "update": 0}, "unchanged": kept,
                "items": adds + kept, "base_items": removes + kept,
                "samples": {"add": add_samples, "remove": remove_samples, "update": []},
                "breakdown": {"field": field, "add": _top(add_values), "remove": _top(remove_values), "update": []}}

    def _known_refusals(self, d: Definition, agg: Aggregate):
        """The keys ``d``'s template leaves out of aggregate ``agg``, when already computed; else None."""
        if d.kind != "feed":
            return None
        with self._lock:
            return self._refusals.get((agg.run_id, renderer_key(d.template, d.options)))

    def _rendered_now(self, d: Definition, agg: Aggregate, keys: Sequence[str]) -> list[dict[str, Any]]:
        """Change samples of the added ``keys``: each rendered as the run renders it."""
        if not keys:
            return []
        key = ENTITY_KEYS[d.entity]
        renderer = self._renderer(d)
        rows = arrow_rows(agg.df.where(F.col(quote(key)).cast("string").isin(list(keys))))
        out = []
        for item in sorted(rows, key=lambda r: str(r.get(key))):
            result = renderer.render(item)
            if result.text is not None:
                out.append({"key": str(item.get(key)), "changed": [], "published": None,
                            "now": json.loads(content_hash(result.fields)[1])})
        return out

    def _change_rendered(self, d: Definition, agg: Aggregate, members, y, field: str) -> dict[str, Any]:
        """The change when items may render differently: every member rendered and diffed."""
        rendered = self.rendered(d, members).where(F.col("error").isNull()).select("key", "hash", "payload")
        window = refresh_window(self.config, d.refresh_after)
        diff = _diff_frame(rendered, y, run_id="preview", definition_id=d.id, kind=d.kind, as_of=agg.as_of,
                           refresh_before=agg.as_of - window).cache()
        try:
            counts = {r["op"]: r["n"] for r in diff.groupBy("op").agg(F.count("*").alias("n")).collect()}
            add_op, remove_op = ("join", "leave") if d.kind == "segment" else ("add", "remove")
            names = {add_op: "add", remove_op: "remove", "update": "update"}
            key = ENTITY_KEYS[d.entity]
            values = agg.df.select(F.col(quote(key)).cast("string").alias("_k"),
                                   field_column(field).cast("string").alias("value"))
            changed = diff.where(F.col("op").isin(*names)).select(F.col("key").alias("_k"), "op")
            found = changed.join(values, "_k", "left").groupBy("op", "value").count().collect()
            return {"ops": {name: counts.get(op, 0) for op, name in names.items()},
                    "unchanged": counts.get("same", 0) + counts.get("refresh", 0),
                    "items": sum(counts.get(o, 0) for o in (add_op, "update", "same", "refresh")),
                    "base_items": sum(counts.get(o, 0) for o in (remove_op, "update", "same", "refresh")),
                    "samples": self._change_samples(diff, add_op, remove_op),
                    "breakdown": {"field": field, **{name: _top([(r["value"], r["count"]) for r in found if r["op"] == op])
                                                     for op, name in names.items()}}}
        finally:
            diff.unpersist()

    def _snapshot(self, run_id: str, base: str, folder: Path):
        """The published snapshot of ``base`` in ``run_id`` (key, hash, payload, last_sent), cached: a
        marketer edits the same definition many times in a row."""
        with self._lock:
            held = self._snapshots.get((run_id, base))
            if held is not None:
                self._snapshots.move_to_end((run_id, base))
                return held
        y = self.spark().read.parquet(str(folder)).select("key", "hash", "payload", "last_sent").cache()
        y.count()
        with self._lock:
            self._snapshots[(run_id, base)] = y
            while len(self._snapshots) > SNAPSHOTS_KEPT:
                _, old = self._snapshots.popitem(last=False)
                old.unpersist()
        return y

    @staticmethod
    def _change_samples(diff, add_op: str, remove_op: str) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for op, name in ((add_op, "add"), (remove_op, "remove"), ("update", "update")):
            rows = diff.where(F.col("op") == op).orderBy("key").limit(CHANGE_SAMPLES) \
                .select("key", "changed", "x_payload", "y_payload").collect()
            out[name] = [{"key": r["key"], "changed": list(r["changed"] or []),
                          "now": json.loads(r["x_payload"]) if r["x_payload"] else None,
                          "published": json.loads(r["y_payload"]) if r["y_payload"] else None} for r in rows]
        return out

    # -- gates -----------------------------------------------------------------------------

    def _blank_flags(self, d: Definition, schema) -> list[tuple[str, Any]]:
        """(path, 1 when blank else 0) of each field ``d``'s template requires, as the generator
        counts them: null, or blank text; a path the aggregate lacks is missing everywhere."""
        out = []
        for path in self._renderer(d).required_fields:
            try:
                dtype = resolve(schema, path).dtype
            except Exception:  # noqa: BLE001
                out.append((path, F.lit(1)))
                continue
            column = field_column(path)
            blank = column.isNull()
            if isinstance(dtype, T.StringType):
                blank = blank | (F.trim(column) == "")
            out.append((path, F.when(blank, 1).otherwise(0)))
        return out

    def _null_rates(self, d: Definition, members, held=None) -> dict[str, float]:
        flags = self._blank_flags(d, members.schema)
        if not flags:
            return {}
        if held is not None and "_m0" in held.columns:  # a pick's held keys carry the flags
            frame, exprs = held, [F.sum(f"_m{n}").alias(f"m{n}") for n in range(len(flags))]
        else:
            frame, exprs = members, [F.sum(flag).alias(f"m{n}") for n, (_, flag) in enumerate(flags)]
        row = frame.agg(F.count("*").alias("n"), *exprs).collect()[0]
        total = row["n"]
        return {path: round((row[f"m{n}"] or 0) / total, 6) if total else 0.0 for n, (path, _) in enumerate(flags)}

    def _gates(self, d: Definition, base: str | None, agg: Aggregate, members,
               change: dict[str, Any] | None, written: int | None = None, held=None) -> dict[str, Any]:
        gate_id = base or d.id
        try:
            thresholds = thresholds_for(self.config, gate_id, dict(d.gates or {}))
        except BadInput as err:
            return {"status": "invalid", "error": str(err), "breaches": []}
        base_stats, delta = None, None
        if change is not None and change.get("base_run_id"):
            _run, record = self._published_run(gate_id)
            base_stats = ((record or {}).get("definitions") or {}).get(gate_id)
            if change.get("available"):
                ops = change["ops"]
                delta = {"base_items": change["base_items"],
                         "ops": {"add": ops["add"], "remove": ops["remove"], "update": ops["update"]},
                         "samples": {op: [s["key"] for s in change["samples"][op]] for op in ("add", "remove", "update")}}
        items = change["items"] if change and change.get("available") else written
        if items is None:
            items = self.rendered(d, members).where("error is null").count()
        stats = {"items": items, "null_rates": self._null_rates(d, members, held)}
        empty_input = agg.rows == 0
        metrics, breaches = evaluate_definition(gate_id, stats, delta, base_stats, thresholds, empty_input)
        return {"status": "held" if breaches else "passed", "first_run": base_stats is None,
                "base_run_id": (change or {}).get("base_run_id"), "metrics": metrics, "breaches": breaches,
                "thresholds": {k: thresholds.get(k) for k in ("max_count_change", "max_share_removed",
                                                               "max_share_changed", "allow_empty",
                                                               "max_null_rate", "min_base_items")}}

    # -- blast radius ----------------------------------------------------------------------

    def _dependents(self, d: Definition, agg: Aggregate) -> list[dict[str, Any]]:
        if d.kind != "segment":
            return []
        published = [p for p in self._published() if p.entity == d.entity and p.id != d.id]
        now = self.segments()
        draft = {**now, d.id: d}
        mine = [p for p in published if d.id in referenced_segments(p.where, now)]
        if not mine:
            return []
        df = agg.df
        exprs = []
        for n, p in enumerate(mine):
            exprs.append(F.sum(F.when(self.predicate(p, df, agg.as_of, now), 1).otherwise(0)).alias(f"a{n}"))
            exprs.append(F.sum(F.when(self.predicate(p, df, agg.as_of, draft), 1).otherwise(0)).alias(f"b{n}"))
        row = df.agg(*exprs).collect()[0]
        out = []
        for n, p in enumerate(mine):
            before, after = int(row[f"a{n}"] or 0), int(row[f"b{n}"] or 0)
            out.append({"definition_id": p.id, "kind": p.kind, "count": before, "count_after": after,
                        "change": after - before,
                        "share": round((after - before) / before, 6) if before else None,
                        "direct": d.id in referenced_segments(p.where, {})})
        return out

    # -- backtest --------------------------------------------------------------------------

    def _backtest(self, d: Definition, base: str | None, agg: Aggregate,
                  segments: Mapping[str, Definition]) -> list[dict[str, Any]]:
        folder = Path(self.root) / "aggregates" / d.entity
        out = []
        spark = self.spark()
        for child in sorted(folder.iterdir()) if folder.is_dir() else []:
            if not (child / MARKER).is_file():
                continue
            marker = read_marker(child)
            as_of = parse_as_of(marker["as_of"])
            df = agg.df if child.name == agg.run_id else spark.read.parquet(str(child))
            count = self.members(d, df, as_of, segments, child.name).count()
            published = None
            try:
                stats = (read_run(self.root, child.name).get("definitions") or {}).get(base or d.id)
                if stats:
                    published = {"items": stats.get("items"), "candidates": stats.get("candidates")}
            except Exception:  # noqa: BLE001 - an aggregate whose run is gone: no published size
                published = None
            out.append({"run_id": child.name, "as_of": marker["as_of"], "rows": marker.get("rows"),
                        "count": count, "published": published})
        return out

    # -- explain ---------------------------------------------------------------------------

    def explain(self, entity: str, key: str, definitions: Sequence[Definition] | None = None,
                extra_segments: Sequence[Definition] = ()) -> dict[str, Any]:
        """For each definition (default: every published one of ``entity``): whether the entity
        ``key`` is in, the failing clauses with their values, and (feeds) the rendered item."""
        from pyspark import StorageLevel

        started = time.monotonic()
        agg = self._need(entity)
        key_column = ENTITY_KEYS[entity]
        segments = self.segments(extra_segments)
        chosen = list(definitions) if definitions is not None else [
            p for p in self._published() if p.entity == entity]
        one = agg.df.where(F.col(quote(key_column)) == F.lit(key)).limit(1).persist(StorageLevel.MEMORY_ONLY)
        try:
            rows = arrow_rows(one)
            out: dict[str, Any] = {"entity": entity, "key": key, "found": bool(rows), "aggregate": agg.describe(),
                                   "run_id": agg.run_id, "as_of": format_ts(agg.as_of), "definitions": []}
            if not rows:
                out["note"] = (f"{entity} {key!r} is not in the aggregate of run {agg.run_id}: it was not in the "
                               "sources, or its row was quarantined")
                return out
            item = rows[0]
            # one Spark job for every definition: their clauses side by side on the one row
            plan = self._explain_plan(agg, chosen, segments)
            for d, explained in zip(chosen, explain_entities(one, chosen, key, agg.as_of, segments, plan=plan),
                                    strict=True):
                entry: dict[str, Any] = {"definition_id": d.id, "kind": d.kind, "in": bool(explained.value),
                                         "failing": failing_leaves(explained),
                                         "tree": _explained_json(explained)}
                if d.pick_one_per and explained.value:
                    entry["note"] = (f"pick_one_per {d.pick_one_per} keeps one {entity} per {d.pick_one_per} "
                                     f"(order_by {', '.join(d.order_by) or 'none'}), which may be another one")
                if d.kind == "feed":
                    result = self._renderer(d).render(dict(item))
                    entry["rendered"] = {"template": d.template, "text": result.text,
                                         "errors": list(result.errors), "warnings": list(result.warnings)}
                out["definitions"].append(entry)
        finally:
            one.unpersist()
        out["seconds"] = round(time.monotonic() - started, 3)
        return out

    def _explain_plan(self, agg: Aggregate, chosen: Sequence[Definition],
                      segments: Mapping[str, Definition]) -> ExplainPlan | None:
        """The compiled clauses of ``chosen``, kept while the aggregate and the definitions stay
        the same (compiling the published set takes longer than evaluating it on one row)."""
        try:
            fingerprint = (agg.run_id, tuple(d.where for d in chosen),
                           tuple(sorted((k, v.where) for k, v in segments.items())))
            hash(fingerprint)
        except TypeError:  # an operand that does not hash: compile afresh
            return None
        with self._lock:
            found = self._plans.get(fingerprint)
        if found is None:
            found = ExplainPlan(agg.df.schema, list(chosen), agg.as_of, segments)
            with self._lock:
                self._plans[fingerprint] = found
                while len(self._plans) > PLANS_KEPT:
                    self._plans.popitem(last=False)
        return found

    # -- field list for the builder --------------------------------------------------------

    def frequent_values(self, entity: str, field: str, limit: int = TOP_VALUES) -> dict[str, Any]:
        """The most frequent values of ``field`` in the latest aggregate (for the builder's inputs)."""
        agg = self._need(entity)
        try:
            ref = resolve(agg.df.schema, field)
        except Exception as err:  # noqa: BLE001
            raise BadInput(f"field: {err}") from None
        column = field_column(field)
        if isinstance(ref.dtype, T.ArrayType):
            column = F.explode(column)
        elif isinstance(ref.dtype, (T.StructType, T.MapType)):
            raise BadInput(f"field: {field!r} is a group of fields; ask for one of its fields")
        rows = (agg.df.select(column.alias("v")).where(F.col("v").isNotNull()).groupBy("v").count()
                .orderBy(F.desc("count"), F.asc("v")).limit(limit).collect())
        return {"entity": entity, "field": field, "run_id": agg.run_id,
                "values": [{"value": jsonable(r["v"]), "count": r["count"]} for r in rows]}

    def close(self) -> None:
        with self._lock:
            for held in self._cached.values():
                held.df.unpersist()
            self._cached.clear()
            for snapshot in self._snapshots.values():
                snapshot.unpersist()
            self._snapshots.clear()
            for refused in self._refusals.values():
                refused.unpersist()
            self._refusals.clear()
            self._plans.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)


class NoAggregate(BadInput):
    """No aggregate of the entity yet: nothing to preview on."""

    def __init__(self, entity: str, root: str) -> None:
        super().__init__(f"no {entity} aggregate under {Path(root) / 'aggregates' / entity} yet: run "
                         f"`feedgen run` (or `feedgen aggregate`) first, then preview again")
        self.entity = entity


def _top(values: list[tuple[Any, int]]) -> list[dict[str, Any]]:
    """The most frequent values first (ties by value), at most ``TOP_VALUES``."""
    ordered = sorted(values, key=lambda v: (-v[1], str(v[0])))
    return [{"value": v, "count": n} for v, n in ordered[:TOP_VALUES]]


def default_breakdown_field(entity: str) -> str:
    return "category.top" if entity == "offer" else "city"


def referenced_segments(node: Node, segments: Mapping[str, Definition]) -> set[str]:
    """The segment ids ``node`` refers to through ``in_segment``, directly and (given
    ``segments``) through them."""
    out: set[str] = set()
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, InSegment):
            if n.segment_id not in out:
                out.add(n.segment_id)
                if n.segment_id in segments:
                    stack.append(segments[n.segment_id].where)
        elif isinstance(n, (History, Leaf)):
            continue
        else:
            stack.extend(n.children())
    return out
