"""The single-pass generator: every definition of an entity kind in one scan of its aggregate.

One Spark job per entity kind:
1. membership of every definition as one ``_matches`` column: shared clauses computed
   once, and many ``eq``/``in`` definitions on one field matched by one hash lookup;
2. ``pick_one_per`` / ``order_by`` applied with one window per distinct (key, order), among
   the entities the definition's template renders without error;
3. ``mapInArrow``: each partition turns Arrow batches of only the columns the renderers
   read into plain dicts, renders every entity once per *renderer* (template + render
   options) that any of its matching definitions uses, and appends the fragment to a
   buffer per output target; buffers become gzip-member part files written by the task.
   For the outputs that use a built-in template (offer templates and the customer audience
   exports; membership rows too, for customers) the JVM does all of this instead
   (generator/jvm/GeneratePass.java, ``_jvm_pass``) and no row goes through Python (its
   lookups are hash probes in the task, and it reads a Parquet scan's column batches in
   place when nothing else comes between); the other outputs' definitions are evaluated
   in a Python pass over the same aggregate, in the same Spark job (``route_targets``
   says which output goes where, and why);
4. the job's only rows are small: part descriptions, per-target stats (one per partition,
   not per row), and, for definitions with event delivery, the (key, hash, payload)
   snapshot rows; they go to the staging Parquet ``runs/<run_id>/_generate/<entity>/``.
A driver thread writes each target's header and footer while the job runs; the driver
writes each target's manifest after it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from feedgen.aggregator.schemas import ENTITY_KEYS
from feedgen.core.runs import format_ts, run_dir
from feedgen.generator.definitions import Definition
from feedgen.generator.parts import finish_manifest, write_chrome, write_part

STAGING = "_generate"
PART_MAX_RAW_BYTES = 64 << 20
SAMPLE_KEYS = 5
MANIFEST_THREADS = 4
ROW_SCHEMA = "kind string, target int, key string, hash string, payload string, info string"


@dataclass(frozen=True)
class Target:
    """One output of a run: a feed, or one audience export of a segment."""

    index: int
    definition_id: str
    kind: str                 # feed | segment
    template: str
    options: dict
    folder: str               # relative to the run folder: feeds/<id>, segments/<id>[/<export>]
    events: bool              # write a snapshot for diffs and delta events
    primary: bool = True      # the first export of a segment (its membership and snapshot)


@dataclass
class EntityPlan:
    """What the executors need: picklable, small."""

    entity: str
    key: str
    run_root: str
    # per definition index (into the membership array): target indices
    def_targets: list[list[int]]
    targets: list[Target]
    user_templates_dir: str | None
    part_max_raw_bytes: int = PART_MAX_RAW_BYTES
    membership: bool = False   # emit (key, [segment ids]) rows for the lookup index
    definition_ids: list[str] = field(default_factory=list)


def definition_events(d: Definition) -> bool:
    delivery = d.delivery or {}
    return bool(delivery.get("events", bool(delivery.get("destinations"))))


def plan_targets(definitions: Sequence[Definition]) -> tuple[list[Target], list[list[int]]]:
    targets: list[Target] = []
    def_targets: list[list[int]] = []
    for d in definitions:
        mine = []
        names = [d.template] if d.kind == "feed" else list(d.exports) or ["ids_csv"]
        for n, name in enumerate(names):
            if d.kind == "feed":
                folder = f"feeds/{d.id}"
            else:
                folder = f"segments/{d.id}" if n == 0 else f"segments/{d.id}/exports/{name}"
            t = Target(len(targets), d.id, d.kind, name, dict(d.options or {}), folder,
                       definition_events(d) and n == 0, primary=n == 0)
            targets.append(t)
            mine.append(t.index)
        def_targets.append(mine)
    return targets, def_targets


def content_hash(fields: dict) -> tuple[str, str]:
    payload = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest(), payload


def _required_paths(fields: Sequence[str]) -> list[tuple[str, str, tuple[str, ...]]]:
    # required fields are aggregate paths such as price.amount: split once, not per row
    return [(f, f.split(".")[0], tuple(f.split(".")[1:])) for f in fields]


def _missing(item: dict, required: list[tuple[str, str, tuple[str, ...]]]) -> list[str]:
    """The required paths that are missing or blank in ``item``."""
    missing = []
    for name, top, rest in required:
        value = item.get(top)
        for step in rest:
            if value is None:
                break
            value = value.get(step) if type(value) is dict else None
        if value is None or value == "" or (type(value) is str and value.isspace()):
            missing.append(name)
    return missing


class _Buffer:
    __slots__ = ("chunks", "size", "items", "seq")

    def __init__(self) -> None:
        self.chunks: list[str] = []
        self.size = 0
        self.items = 0
        self.seq = 0


def render_partition(plan: EntityPlan, partition: int, rows: Iterable[dict]) -> Iterator[tuple]:
    """Render one partition: each row once per renderer, routed to every matching target.

    ``rows`` are aggregate rows as plain dicts plus ``_matches`` (definition indices).
    Yields ``ROW_SCHEMA`` tuples: one ``part`` per part file written, one ``stat`` per
    target, ``snap`` rows for targets with events, ``member`` rows for customers.
    """
    from feedgen.generator.render import get_renderer, renderer_key

    templates_dir = Path(plan.user_templates_dir) if plan.user_templates_dir else None
    renderers: dict[tuple, Any] = {}
    # only the targets this pass routes to: the others render in the JVM's pass
    target_renderer: dict[int, tuple] = {}
    for t in sorted({t for ts in plan.def_targets for t in ts}):
        target = plan.targets[t]
        rk = target_renderer[t] = renderer_key(target.template, target.options)
        if rk not in renderers:
            renderers[rk] = get_renderer(target.template, target.options, templates_dir)
    required = {rk: _required_paths(r.required_fields) for rk, r in renderers.items()}
    # per definition: (target, renderer key, events) — looked up once, not per row
    routes = [[(t, target_renderer[t], plan.targets[t].events) for t in ts] for ts in plan.def_targets]
    buffers: dict[int, _Buffer] = defaultdict(_Buffer)
    excluded: dict[int, Counter] = defaultdict(Counter)
    warned: dict[int, Counter] = defaultdict(Counter)
    samples: dict[int, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    nulls: dict[int, Counter] = defaultdict(Counter)
    failed: dict[int, dict] = {}  # per target: the first item a user template failed on, and where
    seen: Counter = Counter()
    runner_ups: Counter = Counter()
    renders: Counter = Counter()
    run_root = Path(plan.run_root)
    part_max = plan.part_max_raw_bytes
    key_name = plan.key

    def flush(t: int, buf: _Buffer) -> tuple:
        target = plan.targets[t]
        fmt = renderers[target_renderer[t]].fmt
        name = f"part-{partition:05d}-{buf.seq:03d}.{fmt}.gz"
        info = write_part(run_root / target.folder, name, "".join(buf.chunks).encode("utf-8"), buf.items)
        buf.chunks, buf.size, buf.items = [], 0, 0
        buf.seq += 1
        return ("part", t, None, None, None, json.dumps({
            "path": info.path, "items": info.items, "bytes": info.bytes, "raw_bytes": info.raw_bytes,
            "sha256": info.sha256, "partition": partition, "seq": buf.seq - 1}))

    for item in rows:
        matches = item.pop(MATCHES_COLUMN)
        for m in item.pop(RUNNER_UP, None) or ():
            for t in plan.def_targets[m]:
                runner_ups[t] += 1
        key = item.get(key_name)
        if plan.membership:
            yield ("member", -1, key, None, json.dumps([plan.definition_ids[m] for m in matches]), None)
        results: dict[tuple, Any] = {}
        missing: dict[tuple, list[str]] = {}
        for m in matches:
            for t, rk, events in routes[m]:
                result = results.get(rk)
                if result is None:
                    result = results[rk] = renderers[rk].render(item)
                    renders[rk] += 1
                    missing[rk] = _missing(item, required[rk])
                seen[t] += 1
                for f in missing[rk]:
                    nulls[t][f] += 1
                for w in result.warnings:
                    warned[t][w] += 1
                if result.text is None:
                    for e in result.errors[:1]:
                        excluded[t][e] += 1
                        if len(samples[t][e]) < SAMPLE_KEYS:
                            samples[t][e].append(key)
                    if result.detail is not None and t not in failed:
                        failed[t] = {"reason": result.errors[0], **result.detail, "key": key,
                                     "partition": partition}
                    continue
                buf = buffers[t]
                buf.chunks.append(result.text)
                buf.size += len(result.text)
                buf.items += 1
                if events:
                    h, payload = content_hash(result.fields)
                    yield ("snap", t, key, h, payload, None)
                if buf.size >= part_max:
                    yield flush(t, buf)
    for t, buf in buffers.items():
        if buf.items:
            yield flush(t, buf)
    for t in sorted(set(seen) | {t for t, rk in target_renderer.items() if renders[rk]}):
        yield ("stat", t, None, None, None, json.dumps({
            "candidates": seen[t], "renders": renders[target_renderer[t]], "excluded": excluded[t],
            "warnings": warned[t], "samples": samples[t], "nulls": nulls[t], "failed": failed.get(t),
            "runner_ups": runner_ups[t]}))


# -- Arrow in, Arrow out ----------------------------------------------------------------------

MATCHES_COLUMN = "_matches"
# after pick_one_per: the definitions (indices, as in _matches) whose pick of this row fell
# to it as a runner-up, because the first in order_by fails that definition's template
RUNNER_UP = "_fg_runner_up"
# before the pick: the pick_one_per definitions this row matches and renders for without error
VALID = "_fg_valid"
_OUT_BATCH = 8192


def _converter(dtype) -> Callable[[Any], list] | None:
    """A function from an Arrow array to Python values as ``Row.asDict(recursive=True)`` gives.

    Struct columns are converted field by field (faster than Arrow's own struct to_pylist)
    and maps become dicts (Arrow gives lists of pairs).
    """
    import pyarrow as pa

    if pa.types.is_struct(dtype):
        names = [f.name for f in dtype]
        kids = [_converter(f.type) or (lambda a: a.to_pylist()) for f in dtype]

        def struct(array) -> list:
            if isinstance(array, pa.ChunkedArray):
                array = array.combine_chunks()
            # flatten() honours the struct's offset and null mask, .field(i) does not
            values = zip(*[k(child) for k, child in zip(kids, array.flatten())])
            if array.null_count == 0:
                return [dict(zip(names, v)) for v in values]
            valid = array.is_valid().to_pylist()
            return [dict(zip(names, v)) if ok else None for v, ok in zip(values, valid)]
        return struct
    fix = _python_fixer(dtype)
    if fix is None:
        return None
    return lambda array: [fix(v) for v in array.to_pylist()]


def _python_fixer(dtype) -> Callable[[Any], Any] | None:
    """Post-processing of to_pylist values that hold maps (lists of pairs → dicts); None: none needed."""
    import pyarrow as pa

    if pa.types.is_map(dtype):
        value_fix = _python_fixer(dtype.item_type)
        if value_fix is None:
            return lambda v: None if v is None else dict(v)
        return lambda v: None if v is None else {k: value_fix(x) for k, x in v}
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        inner = _python_fixer(dtype.value_type)
        if inner is None:
            return None
        return lambda v: None if v is None else [inner(x) for x in v]
    if pa.types.is_struct(dtype):
        fixes = [(f.name, _python_fixer(f.type)) for f in dtype]
        fixes = [(n, f) for n, f in fixes if f is not None]
        if not fixes:
            return None

        def struct(v):
            if v is None:
                return None
            for n, f in fixes:
                v[n] = f(v[n])
            return v
        return struct
    return None


def _batch_rows(batch, converters: list) -> list[dict]:
    names = batch.schema.names
    columns = [(c(batch.column(i)) if c else batch.column(i).to_pylist()) for i, c in enumerate(converters)]
    return [dict(zip(names, values)) for values in zip(*columns)]


def _arrow_partitions(plan: EntityPlan) -> Callable:
    """The ``mapInArrow`` function: Arrow batches of aggregate rows → Arrow batches of ROW_SCHEMA."""

    def run(batches: Iterator) -> Iterator:
        import pyarrow as pa
        from pyspark import TaskContext

        context = TaskContext.get()
        partition = context.partitionId() if context else 0
        converters: list | None = None

        def rows() -> Iterator[dict]:
            nonlocal converters
            for batch in batches:
                if converters is None:
                    converters = [_converter(f.type) for f in batch.schema]
                yield from _batch_rows(batch, converters)

        out: list[tuple] = []
        for row in render_partition(plan, partition, rows()):
            out.append(row)
            if len(out) >= _OUT_BATCH:
                yield _out_batch(pa, out)
                out = []
        if out:
            yield _out_batch(pa, out)

    return run


def _out_batch(pa, rows: list[tuple]):
    columns = list(zip(*rows))
    return pa.RecordBatch.from_arrays(
        [pa.array(columns[0], pa.string()), pa.array(columns[1], pa.int32()),
         *[pa.array(c, pa.string()) for c in columns[2:]]],
        names=["kind", "target", "key", "hash", "payload", "info"])


# A field that this many definitions test with a plain `eq`/`in` is looked up in a hash
# join instead: one probe per row rather than one comparison per definition.
LOOKUP_MIN = 8


def _lookup_key(d: Definition, schema) -> tuple[str, tuple] | None:
    """(field, values) when ``d``'s whole predicate is a case-sensitive eq/in on a string field."""
    from pyspark.sql import types as T

    from feedgen.generator.fields import resolve
    from feedgen.generator.tree import Compare, In

    node = d.where
    if isinstance(node, Compare) and node.op == "eq":
        values = (node.value,)
    elif isinstance(node, In) and not node.negated:
        values = node.values
    else:
        return None
    if node.ignore_case or not all(isinstance(v, str) for v in values):
        return None
    try:
        ref = resolve(schema, node.field)
    except Exception:  # noqa: BLE001 - anything unusual takes the general path
        return None
    if not isinstance(ref.dtype, T.StringType) or any(kind != "field" for kind, _ in ref.steps):
        return None
    return node.field, values


def split_lookups(definitions: Sequence[Definition], schema) -> tuple[list[tuple[str, dict[str, list[int]]]], list[int]]:
    """The definitions matched by looking up a field's value, and the indices of the rest.

    A field that at least ``LOOKUP_MIN`` definitions test with a plain ``eq``/``in`` (one
    feed per seller, per shop, per country ...) gives ``(field, {value: [definition
    indices, ascending]})``; the lookups come sorted by field.
    """
    by_field: dict[str, list[tuple[int, tuple]]] = defaultdict(list)
    for i, d in enumerate(definitions):
        found = _lookup_key(d, schema)
        if found:
            by_field[found[0]].append((i, found[1]))
    lookups = []
    for path, entries in sorted(by_field.items()):
        if len(entries) < LOOKUP_MIN:
            continue
        ids: dict[str, list[int]] = defaultdict(list)
        for i, values in entries:
            for v in dict.fromkeys(values):
                ids[v].append(i)
        lookups.append((path, dict(ids)))
    looked_up = {i for _, ids in lookups for found in ids.values() for i in found}
    return lookups, [i for i in range(len(definitions)) if i not in looked_up]


def field_column(path: str):
    """The Column of a dotted field path (``seller.country``)."""
    from pyspark.sql import functions as F

    from feedgen.generator.compile import quote

    steps = path.split(".")
    value = F.col(quote(steps[0]))
    for step in steps[1:]:
        value = value.getField(step)
    return value


def rest_memberships(df, definitions: Sequence[Definition], rest: Sequence[int], as_of: datetime, *,
                     all_segments: dict | None = None, jvm: bool = True):
    """``df`` plus ``_matches``: the indices (into ``definitions``) of the definitions in ``rest`` a row matches."""
    from pyspark.sql import functions as F

    from feedgen.generator.compile import MATCHES, add_membership

    out = add_membership(df, [definitions[i] for i in rest], as_of, all_segments=all_segments, jvm=jvm)
    if list(rest) != list(range(len(rest))):
        # indices into the subset → indices into ``definitions``
        index = F.array(*[F.lit(i) for i in rest])
        out = out.withColumn(MATCHES, F.transform(F.col(MATCHES), lambda x: F.element_at(index, x + 1)))
    return out


def add_memberships(spark, df, definitions: Sequence[Definition], as_of: datetime, *,
                    all_segments: dict | None = None, jvm: bool = True):
    """``df`` plus ``_matches`` (sorted definition indices), as ``compile.add_membership``;
    a row that matches no definition may be left out.

    The definitions of ``split_lookups`` are matched with one broadcast hash join per
    field; the rest go through ``add_membership``'s shared-clause evaluation.
    """
    from pyspark.sql import functions as F

    from feedgen.generator.compile import MATCHES, quote

    lookups, rest = split_lookups(definitions, df.schema)
    columns = [F.col(quote(c)) for c in df.columns]
    empty = F.array().cast("array<int>")
    out, parts = df, []
    if rest:
        out = rest_memberships(df, definitions, rest, as_of, all_segments=all_segments, jvm=jvm)
        parts.append(F.col(MATCHES))
    # one lookup and nothing else: a row it does not find matches nothing (an inner join
    # drops it), and its arrays, built in definition order, are sorted already
    only = not rest and len(lookups) == 1
    for n, (path, ids) in enumerate(lookups):
        name = f"_fg_lookup{n}"
        table = spark.createDataFrame(sorted(ids.items()), f"{name}_k string, {name} array<int>")
        out = out.join(F.broadcast(table), field_column(path) == F.col(f"{name}_k"), "inner" if only else "left")
        parts.append(F.col(name) if only else F.coalesce(F.col(name), empty))
    # sort_array, not array_sort: the latter calls a comparator lambda per comparison
    matches = F.sort_array(F.concat(*parts)) if len(parts) > 1 else parts[0] if parts else empty
    return out.select(*columns, matches.alias(MATCHES))


def matched(spark, df, definitions: Sequence[Definition], key: str, as_of: datetime, all_segments: dict | None, *,
            user_templates_dir: str | None = None, jvm: bool = True):
    """The rows of ``df`` some definition takes, with ``_matches``, after ``pick_one_per``
    (and, where a pick fell to a runner-up, ``_fg_runner_up``)."""
    from pyspark.sql import functions as F

    from feedgen.generator.compile import MATCHES

    picking = [i for i, d in enumerate(definitions) if d.pick_one_per]
    # the pick's candidates from the pick definitions' own membership, not from every
    # definition's (which the pass computes once more below, for the rows it writes)
    candidates = rest_memberships(df, definitions, picking, as_of, all_segments=all_segments, jvm=jvm) \
        if picking and len(picking) < len(definitions) else None
    df = add_memberships(spark, df, definitions, as_of, all_segments=all_segments, jvm=jvm)
    picked = apply_pick_one_per(df, definitions, key, user_templates_dir=user_templates_dir, jvm=jvm,
                                candidates=candidates)
    return picked.where(F.size(F.col(MATCHES)) > 0)


def apply_pick_one_per(df, definitions: Sequence[Definition], key: str, *, user_templates_dir: str | None = None,
                       jvm: bool = True, candidates=None):
    """Keep, for each definition with ``pick_one_per``, the first entity per pick key among those
    its template renders without error (the first by ``order_by`` when none does).

    Validity is decided by the definition's own renderer (``_with_validity``). A row that won
    only because those before it fail the template lists the definition in ``_fg_runner_up``.
    ``candidates``: the rows of ``df`` with ``_matches`` of (at least) the pick definitions,
    when cheaper to compute than ``df``'s.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from feedgen.generator.compile import MATCHES

    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, d in enumerate(definitions):
        if d.pick_one_per:
            groups[(d.pick_one_per, tuple(d.order_by))].append(i)
    if not groups:
        return df
    tops = {key, *(c.lstrip("-").split(".")[0] for pick, order_by in groups for c in (pick, *order_by))}
    picking = sorted(i for idx in groups.values() for i in idx)
    # only the rows some pick definition matches are candidates: the others are not rendered here
    candidates = (df if candidates is None else candidates).where(
        F.arrays_overlap(F.col(MATCHES), F.array(*[F.lit(i) for i in picking])))
    base = _with_validity(candidates, definitions, picking, sorted(tops),
                          user_templates_dir=user_templates_dir, jvm=jvm)
    # Every group ranked in one shuffle and one pair of windows (a union of one ranking per
    # group ran the candidates' membership and validity once per group): a row of definition
    # _d is ranked by its group's pick key and order columns, and the order columns of the
    # other groups are null in its whole window, so they tie.
    ordered_groups = sorted(groups.items())
    per_group = [pick_columns(pick, order_by, key, prefix=f"_o{g}_") for g, ((pick, order_by), _) in enumerate(ordered_groups)]
    cand = base.select(F.col(key).alias("_k"), *[pk.alias(f"_pk{g}") for g, (pk, _, _) in enumerate(per_group)],
                       *[c for _, ordered, _ in per_group for c in ordered], F.col(VALID),
                       F.explode(F.array_intersect(F.col(MATCHES), F.array(*[F.lit(i) for i in picking]))).alias("_d"))
    in_group = [F.col("_d").isin(*idx) for _, idx in ordered_groups]
    pick_key = F.col("_pk0")
    for g in range(1, len(per_group)):
        pick_key = F.when(in_group[g], F.col(f"_pk{g}")).otherwise(pick_key)
    cand = cand.withColumn("_pk", pick_key)
    orders = [o for _, _, group_orders in per_group for o in group_orders]
    if len(per_group) > 1:
        cand = cand.select("_k", "_pk", "_d", VALID, *[
            F.when(in_group[g], F.col(f"_o{g}_{n}")).alias(f"_o{g}_{n}")
            for g, (_, ordered, _) in enumerate(per_group) for n in range(len(ordered))])
    group = Window.partitionBy("_d", "_pk")
    # first the rows the template renders, each group in order_by order; _rn0 is the rank
    # by order_by alone: a winner with _rn0 > 1 is a runner-up
    ok = F.array_contains(F.col(VALID), F.col("_d"))
    ranked = (cand.withColumn("_rn", F.row_number().over(group.orderBy(ok.desc(), *orders, "_k")))
              .withColumn("_rn0", F.row_number().over(group.orderBy(*orders, "_k"))))
    picks = ranked.where("_rn > 1 OR _rn0 > 1").select("_k", "_d", (F.col("_rn") > 1).alias("_lost"))
    # collect_list leaves the nulls of `when` out
    changed = picks.groupBy("_k").agg(F.collect_list(F.when(F.col("_lost"), F.col("_d"))).alias("_drop"),
                                      F.collect_list(F.when(~F.col("_lost"), F.col("_d"))).alias("_runner"))
    out = df.join(changed, df[key] == changed["_k"], "left")
    out = out.withColumn(MATCHES, F.when(F.col("_drop").isNull() | (F.size("_drop") == 0), F.col(MATCHES))
                         .otherwise(F.array_except(F.col(MATCHES), F.col("_drop"))))
    out = out.withColumn(RUNNER_UP, F.when(F.size("_runner") > 0, F.col("_runner")))
    return out.drop("_k", "_drop", "_runner")


def pick_columns(pick: str, order_by: Sequence[str], key: str, prefix: str = "_o") -> tuple[Any, list, list]:
    """What ``pick_one_per`` ranks by: the group column ``_pk`` (a missing pick key is a group of
    its own: the entity is kept), the ``order_by`` columns to select (``<prefix>0``,
    ``<prefix>1`` ...) and the window's ordering of them (the tie is then broken by the key, ``_k``)."""
    from pyspark.sql import functions as F

    pick_key = F.coalesce(F.col(pick).cast("string"), F.concat(F.lit("\u0000"), F.col(key)))
    ordered = [F.col(o.lstrip("-")).alias(f"{prefix}{n}") for n, o in enumerate(order_by)]
    orders = [(F.col(f"{prefix}{n}").desc_nulls_last() if o.startswith("-") else F.col(f"{prefix}{n}").asc_nulls_last())
              for n, o in enumerate(order_by)]
    return pick_key, ordered, orders


def _with_validity(df, definitions: Sequence[Definition], idx: Sequence[int], keep: Sequence[str], *,
                   user_templates_dir: str | None, jvm: bool):
    """``keep``, ``_matches`` and ``_fg_valid``: which definitions of ``idx`` that a row matches
    render it without error.

    The definition's own renderer decides, so the pick agrees with what the pass writes:
    RenderOffer through its Spark function where the template renders in the JVM, else
    render.py in a ``mapInArrow`` (the row rendered in full; only whether it is left out is kept).
    """
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from feedgen.generator.compile import MATCHES
    from feedgen.generator.jvm import jvm_renderable, render_column
    from feedgen.generator.render import get_renderer, renderer_key

    spark = df.sparkSession
    folder = Path(user_templates_dir) if user_templates_dir else None
    by_renderer: dict[tuple, list[int]] = defaultdict(list)
    for i in idx:
        by_renderer[renderer_key(definitions[i].template, definitions[i].options)].append(i)
    names_ids: list[tuple[str, Any]] = []   # per renderer: its validity column, its definitions as an array
    on_jvm, in_python = [], []
    for n, ids in enumerate(by_renderer.values()):
        d = definitions[ids[0]]
        name = f"_fg_v{n}"
        ids_array = F.array(*[F.lit(i) for i in ids])
        names_ids.append((name, ids_array))
        of_these = F.arrays_overlap(F.col(MATCHES), ids_array)
        if jvm and jvm_renderable(spark, d.template, d.options, df.schema):
            on_jvm.append(F.when(of_these, render_column(d.template, d.options, payload=False).getField("text").isNotNull())
                          .alias(name))
        else:
            in_python.append((name, get_renderer(d.template, d.options, folder), ids))
    inputs = _input_names(df.schema, [r for _, r, _ in in_python]) if in_python else []
    out = df.select(*keep, MATCHES, *on_jvm, *[c for c in inputs if c not in keep])
    if in_python:
        schema = T.StructType([*out.schema.fields, *[T.StructField(n, T.BooleanType()) for n, _, _ in in_python]])
        out = out.mapInArrow(_valid_in_python(in_python, inputs), schema)
    # per renderer (a few), not per definition (a CASE per pick definition ran interpreted)
    empty = F.array().cast("array<int>")
    valid = F.flatten(F.array(*[
        F.when(F.coalesce(F.col(name), F.lit(False)), F.array_intersect(F.col(MATCHES), ids_array))
        .otherwise(empty) for name, ids_array in names_ids]))
    return out.select(*keep, MATCHES, valid.alias(VALID))


def _input_names(schema, renderers: Sequence[Any]) -> list[str]:
    """The top-level columns ``renderers`` read (every column but ours when one is a user template)."""
    if any(r.input_columns is None for r in renderers):
        return [c for c in schema.names if c not in (MATCHES_COLUMN, RUNNER_UP, VALID)]
    wanted = {p.split(".", 1)[0] for r in renderers for p in (*r.input_columns, *r.required_fields)}
    return [c for c in schema.names if c in wanted]


def _valid_in_python(renderers: list[tuple[str, Any, list[int]]], inputs: list[str]) -> Callable:
    """The ``mapInArrow`` function of ``_with_validity``: a boolean column per renderer, true when
    it renders the row, null for the rows that match none of its definitions."""

    def run(batches: Iterator) -> Iterator:
        import pyarrow as pa

        from feedgen.generator.compile import MATCHES

        converters: list | None = None
        for batch in batches:
            picked = batch.select(inputs)
            if converters is None:
                converters = [_converter(f.type) for f in picked.schema]
            rows = _batch_rows(picked, converters)
            matches = batch.column(MATCHES).to_pylist()
            out = []
            for _, renderer, ids in renderers:
                mine = set(ids)
                out.append(pa.array([renderer.render(item).text is not None if mine.intersection(m or ()) else None
                                     for item, m in zip(rows, matches, strict=True)], pa.bool_()))
            yield pa.RecordBatch.from_arrays([*batch.columns, *out],
                                             names=[*batch.schema.names, *[name for name, _, _ in renderers]])

    return run


def _input_columns(schema, targets: Sequence[Target], key: str,
                   user_templates_dir: str | None) -> list:
    from feedgen.generator.render import get_renderer

    folder = Path(user_templates_dir) if user_templates_dir else None
    return render_projection(schema, [get_renderer(t.template, t.options, folder) for t in targets], key)


def render_projection(schema, renderers: Sequence[Any], key: str) -> list:
    """The columns handed to ``renderers``: what they read, structs pruned to the fields they
    read (``category.path`` ships ``category`` as a struct of ``path`` only); every column
    when one of them is a user template."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from feedgen.generator.compile import MATCHES

    wanted: dict[str, dict[str, None] | None] = {key: None}

    def want(path: str) -> None:
        top, _, sub = path.partition(".")
        sub = sub.split(".", 1)[0]
        if not sub:
            wanted[top] = None
        elif top not in wanted:
            wanted[top] = {sub: None}
        elif wanted[top] is not None:
            wanted[top][sub] = None

    if any(r.input_columns is None for r in renderers):
        return [F.col(f"`{c}`") for c in _input_names(schema, renderers)]
    for r in renderers:
        for path in r.input_columns:
            want(path)
        for f in r.required_fields:
            want(f.split(".", 1)[0])
    out = []
    for column in schema.fields:
        if column.name not in wanted or column.name == MATCHES:
            continue
        subs = wanted[column.name]
        col = F.col(f"`{column.name}`")
        struct = column.dataType
        if subs is None or not isinstance(struct, T.StructType) or not set(subs) <= set(struct.fieldNames()):
            out.append(col)
            continue
        pruned = F.struct(*[col.getField(f.name).alias(f.name) for f in struct.fields if f.name in subs])
        out.append(F.when(col.isNull(), F.lit(None)).otherwise(pruned).alias(column.name))
    return out


def generate_entity(spark, aggregate_df, definitions: Sequence[Definition], *, entity: str,
                    root: str | Path, run_id: str, as_of: datetime, all_segments: dict | None = None,
                    user_templates_dir: str | None = None, part_max_raw_bytes: int = PART_MAX_RAW_BYTES,
                    progress: Callable[[str], None] | None = None, jvm: bool = True) -> dict[str, Any]:
    """Generate every definition of one entity kind in one pass; return per-definition stats.

    With ``jvm`` (the default), the outputs that use built-in templates are rendered and
    their parts written in the JVM (generator/jvm.py); the rest in Python, in a second pass
    over the same aggregate that evaluates only the definitions of those outputs. The two
    passes run as one Spark job. Each output's stats say which path rendered it
    (``render_path``) and, for Python, why (``reason``).

    Writes ``runs/<run_id>/feeds|segments/<id>/`` (parts + manifest) and a staging Parquet
    with the snapshot rows at ``runs/<run_id>/_generate/<entity>/``.
    """
    from feedgen.generator.render import get_renderer

    say = progress or (lambda _m: None)
    key = ENTITY_KEYS[entity]
    base = run_dir(root, run_id)
    targets, def_targets = plan_targets(definitions)
    for t in targets:
        shutil.rmtree(base / t.folder, ignore_errors=True)
    staging = base / STAGING / entity
    plan = EntityPlan(entity=entity, key=key, run_root=str(base.resolve()), def_targets=def_targets,
                      targets=targets, user_templates_dir=user_templates_dir,
                      part_max_raw_bytes=part_max_raw_bytes, membership=entity == "customer",
                      definition_ids=[d.id for d in definitions])
    owner = {t: definitions[i] for i, ts in enumerate(def_targets) for t in ts}
    templates_dir = Path(user_templates_dir) if user_templates_dir else None

    def chrome_of(t: Target) -> tuple:
        d = owner[t.index]
        renderer = get_renderer(t.template, t.options, templates_dir)
        ctx = {"definition_id": d.id, "title": (d.description or d.id), "run_id": run_id,
               "as_of": format_ts(as_of), "link": (d.options or {}).get("link", "")}
        return write_chrome(base / t.folder, renderer.fmt, renderer.header(ctx), renderer.footer(ctx))

    t0 = time.monotonic()
    reasons = route_targets(spark, aggregate_df.schema, entity, targets, jvm=jvm)
    on_jvm = {t.index for t in targets if reasons[t.index] is None}
    read = {t.index: "arrow" for t in targets}
    say(f"{entity}: membership of {len(definitions)} definitions, rendering {len(targets)} outputs "
        f"({len(on_jvm)} in the JVM, {len(targets) - len(on_jvm)} in Python)")
    # headers and footers do not depend on the pass: a driver thread writes them while the
    # executors work (two small files per target, most of the driver's work at 1,000 feeds)
    with ThreadPoolExecutor(max_workers=1) as chrome_pool:
        chrome_job = chrome_pool.submit(lambda: {t.index: chrome_of(t) for t in targets})
        if definitions:
            passes = []
            if on_jvm:
                rows_df, how = _jvm_pass(spark, aggregate_df, *_subset(definitions, plan, on_jvm), as_of, all_segments)
                read.update(dict.fromkeys(on_jvm, how))
                passes.append(rows_df)
            if len(on_jvm) < len(targets):
                in_python = {t.index for t in targets} - on_jvm
                passes.append(_python_pass(spark, aggregate_df, *_subset(definitions, plan, in_python), as_of,
                                           all_segments, jvm))
            # one job: the tasks of both passes share the executors
            rows_df = passes[0] if len(passes) == 1 else passes[0].unionByName(passes[1])
            rows_df.write.mode("overwrite").parquet(str(staging))
            rows = _small_rows(staging)
        else:
            rows = []
        chrome = chrome_job.result()
    render_seconds = time.monotonic() - t0

    parts: dict[int, list[dict]] = defaultdict(list)
    stats: dict[int, dict[str, Any]] = defaultdict(lambda: {
        "candidates": 0, "renders": 0, "excluded": Counter(), "warnings": Counter(), "samples": defaultdict(list),
        "nulls": Counter(), "runner_ups": 0})
    for r in rows:
        info = json.loads(r["info"])
        if r["kind"] == "part":
            parts[r["target"]].append(info)
            continue
        s = stats[r["target"]]
        s["candidates"] += info["candidates"]
        s["renders"] += info["renders"]
        s["runner_ups"] += info.get("runner_ups", 0)
        for name in ("excluded", "warnings", "nulls"):
            s[name].update(info[name])
        for reason, keys in info["samples"].items():
            s["samples"][reason] = (s["samples"][reason] + keys)[:SAMPLE_KEYS]
        failed = info.get("failed")
        if failed and (s.get("failed") is None or failed["partition"] < s["failed"]["partition"]):
            s["failed"] = failed

    say(f"{entity}: writing {len(targets)} manifests")
    from feedgen.generator.parts import PartInfo

    def manifest_of(t: Target) -> dict:
        d = owner[t.index]
        renderer = get_renderer(t.template, t.options, templates_dir)
        ordered = sorted(parts.get(t.index, []), key=lambda p: (p["partition"], p["seq"]))
        infos = [PartInfo(p["path"], p["items"], p["bytes"], p["raw_bytes"], p["sha256"]) for p in ordered]
        options = t.options or {}
        head, foot = chrome[t.index]
        return finish_manifest(
            base / t.folder, definition_id=d.id, kind=d.kind, run_id=run_id, as_of=format_ts(as_of),
            template=t.template, fmt=renderer.fmt, head=head, foot=foot, parts=infos,
            max_file_bytes=options.get("max_file_bytes", renderer.max_file_bytes),
            max_file_items=options.get("max_file_items"))

    # one small file per target: the file system's latency is much of the cost, so a few
    # threads write them side by side
    with ThreadPoolExecutor(max_workers=MANIFEST_THREADS) as pool:
        manifests = list(pool.map(manifest_of, targets))
    out: dict[str, Any] = {}
    for t, manifest in zip(targets, manifests, strict=True):
        d = owner[t.index]
        renderer = get_renderer(t.template, t.options, templates_dir)
        s = stats[t.index]
        items = manifest["items"]
        candidates = s["candidates"]
        entry = {
            "template": t.template, "folder": t.folder, "items": items, "candidates": candidates,
            # renders of this target's template in the whole pass, counted by the executors:
            # definitions sharing a template share these renders
            "renders": s["renders"],
            "excluded": dict(s["excluded"]), "warnings": dict(s["warnings"]),
            "excluded_samples": {k: v for k, v in s["samples"].items()},
            "null_rates": {f: round(s["nulls"].get(f, 0) / candidates, 6) if candidates else 0.0
                           for f in renderer.required_fields},
            "files": len(manifest["files"]), "bytes": sum(f["bytes"] for f in manifest["files"]),
            "raw_bytes": sum(f["raw_bytes"] for f in manifest["files"]),
            # which renderer wrote it, how the pass read the aggregate, and why not the JVM
            "render_path": "python" if reasons[t.index] else "jvm", "input": read[t.index],
            "reason": reasons[t.index],
        }
        if d.pick_one_per:
            # picks whose first offer by order_by fails the template, so the next valid one was taken
            entry["pick_runner_ups"] = s["runner_ups"]
        if s.get("failed"):
            # the first item the user template failed on, with the file:line of the error
            entry["template_error"] = {k: v for k, v in s["failed"].items() if k != "partition"}
        if t.primary:
            out[d.id] = {"kind": d.kind, "entity": entity, "events": t.events, "target": t.index, **entry,
                         "destinations": list((d.delivery or {}).get("destinations") or []), "exports": {}}
        else:
            out[d.id]["exports"][t.template] = entry
    for d_id in out:
        out[d_id]["render_seconds"] = round(render_seconds, 3)
    return out


def _small_rows(staging: Path) -> list[dict]:
    """The part and stat rows of a pass's staging Parquet, read on the driver.

    The driver reads the run's folder anyway (manifests, publication); pyarrow reads these
    few thousand rows in milliseconds, where a Spark job to collect them took 0.3 s.
    """
    import pyarrow.dataset as ds

    table = ds.dataset(str(staging), format="parquet").to_table(
        columns=["kind", "target", "info"], filter=ds.field("kind").isin(["part", "stat"]))
    return table.to_pylist()


def snapshot_items(spark, root: str | Path, run_id: str, entity: str, target_index: int):
    """The (key, hash, payload) rows of one target, from the run's staging output."""
    from pyspark.sql import functions as F

    staging = run_dir(root, run_id) / STAGING / entity
    return (spark.read.parquet(str(staging))
            .where((F.col("kind") == "snap") & (F.col("target") == target_index))
            .select("key", "hash", "payload"))


# -- the JVM renderer's path ----------------------------------------------------------------


def route_targets(spark, schema, entity: str, targets: Sequence[Target], *, jvm: bool = True) -> list[str | None]:
    """Per target: None when the JVM renders it (generator/jvm.py), else why Python does."""
    from feedgen.generator.jvm import jvm_unrenderable
    from feedgen.generator.render import renderer_key

    if not jvm:
        return ["the JVM renderer is switched off (generate.jvm_render: false)"] * len(targets)
    # once per renderer, not per target: a thousand feeds share three templates
    why: dict[tuple, str | None] = {}
    out = []
    for t in targets:
        rk = renderer_key(t.template, t.options)
        if rk not in why:
            why[rk] = jvm_unrenderable(spark, t.template, t.options, schema)
        out.append(why[rk])
    return out


def _subset(definitions: Sequence[Definition], plan: EntityPlan, keep: set[int]) -> tuple[list[Definition], EntityPlan]:
    """The definitions with a target in ``keep``, and the plan that routes their rows to those targets only."""
    idx = [i for i, ts in enumerate(plan.def_targets) if keep.intersection(ts)]
    return [definitions[i] for i in idx], replace(
        plan, def_targets=[[t for t in plan.def_targets[i] if t in keep] for i in idx],
        definition_ids=[plan.definition_ids[i] for i in idx])


def _python_pass(spark, aggregate_df, definitions: Sequence[Definition], plan: EntityPlan, as_of: datetime,
                 all_segments: dict | None, jvm: bool):
    """The pass's part, stat and snap (and member) rows, rendered by render.py in a ``mapInArrow``."""
    from pyspark.sql import functions as F

    from feedgen.generator.compile import MATCHES

    df = matched(spark, aggregate_df, definitions, plan.key, as_of, all_segments,
                 user_templates_dir=plan.user_templates_dir, jvm=jvm)
    routed = [plan.targets[t] for t in sorted({t for ts in plan.def_targets for t in ts})]
    df = df.select(*_input_columns(df.schema, routed, plan.key, plan.user_templates_dir), F.col(MATCHES),
                   *([F.col(RUNNER_UP)] if RUNNER_UP in df.columns else []))
    return df.mapInArrow(_arrow_partitions(plan), ROW_SCHEMA)


def _renderer_indices(targets: Sequence[Target]) -> tuple[list[tuple], list[int]]:
    from feedgen.generator.render import renderer_key

    keys: list[tuple] = []
    of_target: list[int] = []
    for t in targets:
        rk = renderer_key(t.template, t.options)
        if rk not in keys:
            keys.append(rk)
        of_target.append(keys.index(rk))
    return keys, of_target


def _jvm_pass(spark, aggregate_df, definitions: Sequence[Definition], plan: EntityPlan, as_of: datetime,
              all_segments: dict | None) -> tuple:
    """The pass's part, stat and snap rows, rendered and written by GeneratePass in the JVM,
    and how GeneratePass read its input (``generate_pass``).

    The same rows as ``_arrow_partitions``: each entity rendered once per renderer that one
    of its targets uses, items appended to a buffer per target, buffers written as gzip
    parts by the task (a part ends after the item that takes it to ``part_max_raw_bytes``
    bytes); no row goes through Python. The definitions of ``split_lookups`` are matched
    there too, by looking the field's value up in a hash table (no join, no array per
    row); the rest arrive as ``_matches``. With ``pick_one_per``, which needs every
    definition's matches in Spark, all arrive as ``_matches``. Targets that no definition
    of ``plan`` routes to (those Python renders) have no renderer here.
    """
    from pyspark.sql import functions as F

    from feedgen.generator.compile import MATCHES
    from feedgen.generator.jvm import generate_pass, pass_columns
    from feedgen.generator.render import get_renderer

    runner_up = []
    if any(d.pick_one_per for d in definitions):
        lookups: list[tuple[str, dict[str, list[int]]]] = []
        df = matched(spark, aggregate_df, definitions, plan.key, as_of, all_segments)
        matches = True
        runner_up = [F.col(RUNNER_UP)] if RUNNER_UP in df.columns else []
    else:
        lookups, rest = split_lookups(definitions, aggregate_df.schema)
        df, matches = aggregate_df, bool(rest)
        if rest:
            df = rest_memberships(df, definitions, rest, as_of, all_segments=all_segments)
            if not lookups:
                df = df.where(F.size(F.col(MATCHES)) > 0)
    routed = sorted({t for ts in plan.def_targets for t in ts})
    keys, of_routed = _renderer_indices([plan.targets[t] for t in routed])
    renderer_of = dict(zip(routed, of_routed, strict=True))
    renderers = [{"template": rk[0], "options": dict(rk[1]),
                  "payload": any(plan.targets[t].events for t in routed if renderer_of[t] == n)}
                 for n, rk in enumerate(keys)]
    targets = [{"folder": t.folder, "events": t.events, "renderer": renderer_of.get(t.index, -1),
                "fmt": get_renderer(t.template, t.options).fmt if t.index in renderer_of else ""}
               for t in plan.targets]
    lookup_columns = [field_column(path).alias(f"_fg_lookup{n}") for n, (path, _) in enumerate(lookups)]
    # the runner-up column goes last and GeneratePass finds it by name
    columns = [F.col(plan.key).cast("string").alias("_key"), *pass_columns(renderers),
               *([F.col(MATCHES).cast("array<int>")] if matches else []), *lookup_columns, *runner_up]
    # only lookups: the inputs straight from the aggregate, for GeneratePass to read from
    # the scan's column batches when the aggregate is a plain Parquet read
    columnar = None if matches else aggregate_df.select(F.col(plan.key), *pass_columns(renderers, prices_as_read=True),
                                                        *lookup_columns)
    return generate_pass(spark, df.select(*columns), {
        "run_root": plan.run_root, "part_max": plan.part_max_raw_bytes, "sample_keys": SAMPLE_KEYS,
        "targets": targets, "def_targets": plan.def_targets, "renderers": renderers, "matches": matches,
        "lookups": [ids for _, ids in lookups], "membership": plan.membership,
        "definition_ids": plan.definition_ids}, columnar=columnar)
