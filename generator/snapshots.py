"""Snapshots of what each destination has seen, and the delta against the last published one.

For a definition with event delivery the generator hands over the run's items
(``key``, ``hash``, ``payload``). :func:`snapshot_and_diff` full-outer-joins them with the
snapshot of the run the definition's ``current`` pointer names and writes, in one pass:

- ``runs/<run_id>/snapshots/<definition_id>/`` — snapshot X (key, hash, payload, last_sent);
- ``runs/<run_id>/deltas/<definition_id>/`` — the events (key, op, changed, payload,
  event_id) plus ``_delta.json`` (counts, samples, destinations, base run) that
  ``feedgen emit`` reads without Spark.

:func:`diff_definitions` does the same for every definition of a run at once: one join of
all their items with all their published snapshots, one partitioned write of the snapshots
and one of the events, each definition's folder then renamed into place; its Spark jobs do
not grow with the number of definitions. :func:`snapshot_and_diff` is its batch of one.

Ops: only in X → ``add`` (``join`` for segments); only in Y → ``remove`` (``leave``);
different hash → ``update`` with the changed payload fields; same hash but last sent
``refresh_after`` or longer before ``as_of`` → ``refresh``. ``last_sent`` becomes the run's
``as_of`` for every item sent and carries over for the others.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import shutil
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from feedgen.core.errors import BadInput, FeedgenError
from feedgen.core.runs import crash_point, format_ts, parse_as_of, run_dir

DEFAULT_REFRESH_AFTER = timedelta(days=28)
DELTA_MARKER = "_delta.json"
SAMPLE_SIZE = 5
EVENT_OPS = ("add", "update", "remove", "refresh", "join", "leave")
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_refresh_after(value: Any, where: str = "refresh_after") -> timedelta:
    """``28d``, ``12h``, ``2w`` or a number of days → timedelta."""
    if value is None:
        return DEFAULT_REFRESH_AFTER
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return timedelta(days=value)
    m = _DURATION.match(str(value))
    if not m or int(m.group(1)) == 0:
        raise BadInput(f"{where}: {value!r} is not a positive duration; use e.g. 28d, 12h or 2w")
    return timedelta(seconds=int(m.group(1)) * _UNIT_SECONDS[m.group(2)])


def refresh_window(config: Any, definition_value: Any = None) -> timedelta:
    """The definition's ``refresh_after``, else the config's ``gates.refresh_after``, else 28 days."""
    if definition_value is not None:
        return parse_refresh_after(definition_value)
    return parse_refresh_after(config.get("gates.refresh_after"), "config gates.refresh_after")


def snapshot_dir(root: str | Path, run_id: str, definition_id: str) -> Path:
    return run_dir(root, run_id) / "snapshots" / definition_id


def delta_dir(root: str | Path, run_id: str, definition_id: str) -> Path:
    return run_dir(root, run_id) / "deltas" / definition_id


def event_id(run_id: str, definition_id: str, key: str, op: str) -> str:
    """Deterministic id: the same run re-sends the same event with the same id."""
    return hashlib.sha256(f"{run_id}|{definition_id}|{key}|{op}".encode()).hexdigest()[:32]


def _has_parquet(folder: Path) -> bool:
    return folder.is_dir() and (folder / "_SUCCESS").is_file()


def read_delta_marker(root: str | Path, run_id: str, definition_id: str) -> dict[str, Any] | None:
    path = delta_dir(root, run_id, definition_id) / DELTA_MARKER
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def list_deltas(root: str | Path, run_id: str) -> list[dict[str, Any]]:
    """The ``_delta.json`` markers of a run, in definition order."""
    base = run_dir(root, run_id) / "deltas"
    if not base.is_dir():
        return []
    out = []
    for child in sorted(base.iterdir()):
        marker = child / DELTA_MARKER
        if marker.is_file():
            out.append(json.loads(marker.read_text(encoding="utf-8")))
    return out


_SNAPSHOT_SCHEMA = "key string, hash string, payload string, last_sent timestamp"
_DIFF_STAGING = "_diff"


@dataclass(frozen=True)
class DiffTarget:
    """One definition of a diff: what its events say and the published run it is diffed against.

    ``base_run_id`` is the run the definition's ``current`` pointer names (None for the first
    run: all adds); ``events=False`` keeps the snapshot and the counts for the gates but sends
    nothing.
    """

    definition_id: str
    kind: str = "feed"
    entity: str = "offer"
    destinations: tuple[str, ...] | list[str] = ()
    events: bool = True
    base_run_id: str | None = None
    refresh_after: Any = None


def _add_remove(kind: str) -> tuple[str, str]:
    return ("join", "leave") if kind == "segment" else ("add", "remove")


def _empty_snapshot(spark):
    return spark.createDataFrame([], _SNAPSHOT_SCHEMA)


def _classify(j, *, run_id: str, as_of: datetime, definition_id, add_op, remove_op, refresh_before):
    """``op``, ``changed``, ``last_sent`` and ``event_id`` of X ⟗ Y rows; the per-definition values are Columns."""
    from pyspark.sql import functions as F

    in_x, in_y = F.col("x_hash").isNotNull(), F.col("y_hash").isNotNull()
    op = (
        F.when(in_x & ~in_y, add_op)
        .when(~in_x & in_y, remove_op)
        .when(F.col("x_hash") != F.col("y_hash"), F.lit("update"))
        .when(F.col("y_last_sent") < refresh_before, F.lit("refresh"))
        .otherwise(F.lit("same"))
    )
    # JSON fields as text: Spark keeps a nested value's raw JSON when the target is a string
    fields = "map<string,string>"
    xm, ym = F.from_json("x_payload", fields), F.from_json("y_payload", fields)
    changed = F.when(
        F.col("op") == "update",
        F.filter(
            F.array_sort(F.array_distinct(F.concat(F.map_keys(xm), F.map_keys(ym)))),
            lambda k: ~xm[k].eqNullSafe(ym[k]),
        ),
    )
    as_of_lit = F.lit(as_of).cast("timestamp")
    return (
        j.withColumn("op", op)
        .withColumn("changed", changed)
        .withColumn("last_sent", F.when(F.col("op") == "same", F.col("y_last_sent"))
                    .when(in_x, as_of_lit))
        .withColumn("event_id", F.substring(F.sha2(F.concat_ws(
            "|", F.lit(run_id), definition_id, F.col("key"), F.col("op")), 256), 1, 32))
    )


def _x_columns(x, *by):
    from pyspark.sql import functions as F

    return x.select(*by, F.col("key").cast("string").alias("key"), F.col("hash").alias("x_hash"),
                    F.col("payload").alias("x_payload"))


def _y_columns(y, *by):
    from pyspark.sql import functions as F

    return y.select(*by, F.col("key").alias("key"), F.col("hash").alias("y_hash"),
                    F.col("payload").alias("y_payload"), F.col("last_sent").alias("y_last_sent"))


def _diff_frame(x, y, *, run_id: str, definition_id: str, kind: str, as_of: datetime,
                refresh_before: datetime):
    from pyspark.sql import functions as F

    j = _x_columns(x).join(_y_columns(y), on="key", how="full_outer")
    add_op, remove_op = _add_remove(kind)
    return _classify(j, run_id=run_id, as_of=as_of, definition_id=F.lit(definition_id),
                     add_op=F.lit(add_op), remove_op=F.lit(remove_op), refresh_before=F.lit(refresh_before))


def staged_snapshot_items(spark, staged: Mapping[str | Path, Mapping[int, str]]):
    """The (definition_id, key, hash, payload) rows of many targets, read from the generator's staging.

    ``staged`` maps a staging Parquet folder (``runs/<run_id>/_generate/<entity>``) to
    {target index: definition id}; each folder is read once, whatever the number of targets.
    """
    from pyspark.sql import functions as F

    frames = []
    for folder, targets in staged.items():
        if not targets:
            continue
        ids = spark.createDataFrame(sorted(targets.items()), "target int, definition_id string")
        rows = (spark.read.schema("kind string, target int, key string, hash string, payload string")
                .parquet(str(folder))
                .where((F.col("kind") == "snap") & F.col("target").isin(sorted(targets))))
        frames.append(rows.join(F.broadcast(ids), "target").select("definition_id", "key", "hash", "payload"))
    if not frames:
        return spark.createDataFrame([], "definition_id string, key string, hash string, payload string")
    return functools.reduce(lambda a, b: a.unionByName(b), frames)


def snapshot_and_diff(
    spark,
    root: str | Path,
    run_id: str,
    definition_id: str,
    items,
    *,
    as_of: datetime | str,
    kind: str = "feed",
    entity: str = "offer",
    destinations: list[str] | None = None,
    events: bool = True,
    base_run_id: str | None = None,
    refresh_after: Any = None,
) -> dict[str, Any]:
    """Write snapshot X and the delta events against snapshot Y of ``base_run_id``.

    ``items`` has ``key``, ``hash`` and ``payload`` (JSON text); ``base_run_id`` is the run
    the definition's ``current`` pointer names (None for the first run: all adds). Returns
    the summary also written to ``_delta.json``: counts per op, sample keys per op,
    ``items``, ``base_items``, ``base_run_id``, ``destinations``. ``events=False`` keeps
    the snapshot and the counts for the gates but sends nothing. The batch of one of
    :func:`diff_definitions`.
    """
    from pyspark.sql import functions as F

    _check_items(items, definition_id, {"key", "hash", "payload"})
    target = DiffTarget(definition_id, kind=kind, entity=entity, destinations=list(destinations or []),
                        events=events, base_run_id=base_run_id, refresh_after=refresh_after)
    items = items.select(F.lit(definition_id).alias("definition_id"), "key", "hash", "payload")
    return diff_definitions(spark, root, run_id, items, [target], as_of=as_of)[definition_id]


def _check_items(items, where: str, needed: set[str]) -> None:
    missing = needed - set(items.columns)
    if missing:
        raise FeedgenError(f"definition {where!r}: snapshot input lacks column(s) "
                           f"{', '.join(sorted(missing))}; the generator must give key, hash, payload")


def _base_snapshots(spark, root: Path, run_id: str, targets: Sequence[DiffTarget]):
    """Snapshot Y of every target with a base run, in one read: (definition_id, key, hash, payload, last_sent)."""
    from pyspark.sql import functions as F

    folders = []
    for t in targets:
        if t.base_run_id == run_id:
            raise FeedgenError(f"run {run_id}: definition {t.definition_id!r} is already published by this "
                               "run; start a new run instead of regenerating a published one")
        if not t.base_run_id:
            continue
        y_dir = snapshot_dir(root, t.base_run_id, t.definition_id)
        if not _has_parquet(y_dir):
            raise FeedgenError(
                f"{y_dir}: snapshot of the published run {t.base_run_id} for definition "
                f"{t.definition_id!r} is missing; republish it with `feedgen publish {t.base_run_id}` "
                "or remove its current pointer to start over with all adds")
        folders.append(str(y_dir))
    if not folders:
        return _empty_snapshot(spark).select(F.lit(None).cast("string").alias("definition_id"), "*")
    # one scan of every folder (a union of one scan per definition costs seconds per hundred to
    # plan); a row's definition is its file's folder name, URI-escaped in the file's path
    y = spark.read.schema(_SNAPSHOT_SCHEMA).parquet(*folders)
    # the folder: the path's last but one part (substring_index, not a regular expression
    # anchored at the end, which java.util.regex tries from every position of the path)
    folder = F.substring_index(F.substring_index(F.col("_metadata.file_path"), "/", -2), "/", 1)
    return y.select(F.url_decode(F.replace(folder, F.lit("+"), F.lit("%2B"))).alias("definition_id"),
                    "key", "hash", "payload", "last_sent")


def diff_definitions(spark, root: str | Path, run_id: str, items, targets: Sequence[DiffTarget], *,
                     as_of: datetime | str) -> dict[str, dict[str, Any]]:
    """:func:`snapshot_and_diff` of many definitions at once, in a number of Spark jobs that does not
    grow with theirs; returns {definition id: summary}.

    ``items`` has ``definition_id``, ``key``, ``hash`` and ``payload`` (e.g.
    :func:`staged_snapshot_items`); rows of a definition not in ``targets`` are ignored. Snapshot
    X and the events are each written once, partitioned by definition, into
    ``runs/<run_id>/_diff/`` and then moved (renamed) to each definition's folders. Rerunning
    it after a crash gives the same snapshots, events and event ids.
    """
    from pyspark import StorageLevel
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if not targets:
        return {}
    as_of_dt = parse_as_of(as_of) if isinstance(as_of, str) else as_of
    root = Path(root)
    _check_items(items, ", ".join(t.definition_id for t in targets), {"definition_id", "key", "hash", "payload"})
    by_id = {t.definition_id: t for t in targets}
    if len(by_id) != len(targets):
        raise FeedgenError(f"run {run_id}: a definition is diffed twice in one batch; give each once")
    windows = {t.definition_id: parse_refresh_after(t.refresh_after, f"definition {t.definition_id!r} refresh_after")
               for t in targets}
    y = _base_snapshots(spark, root, run_id, targets)
    params = spark.createDataFrame(
        [(t.definition_id, *_add_remove(t.kind),
          as_of_dt - windows[t.definition_id], bool(t.base_run_id)) for t in targets],
        "definition_id string, _add string, _remove string, _refresh_before timestamp, _sampled boolean")
    x = items.where(F.col("definition_id").isin(sorted(by_id)))
    j = (_x_columns(x, "definition_id").join(_y_columns(y, "definition_id"), on=["definition_id", "key"],
                                             how="full_outer")
         .join(F.broadcast(params), "definition_id"))
    joined = _classify(j, run_id=run_id, as_of=as_of_dt, definition_id=F.col("definition_id"),
                       add_op=F.col("_add"), remove_op=F.col("_remove"),
                       refresh_before=F.col("_refresh_before")).persist(StorageLevel.MEMORY_AND_DISK)
    staging = run_dir(root, run_id) / _DIFF_STAGING
    shutil.rmtree(staging, ignore_errors=True)
    try:
        snapshot = joined.where(F.col("x_hash").isNotNull()).select(
            "definition_id", "key", F.col("x_hash").alias("hash"), F.col("x_payload").alias("payload"), "last_sent")
        delta = joined.where(F.col("op") != "same").select(
            "definition_id", "key", "op", "changed", F.col("x_payload").alias("payload"), "event_id")
        written = {}
        for name, frame in (("snapshots", snapshot), ("deltas", delta)):
            # rebalance: a few files per definition, not one per definition and join partition
            # (AQE packs small definitions into one task and splits a large one)
            (frame.hint("rebalance", "definition_id")
             .write.partitionBy("definition_id").mode("overwrite").parquet(str(staging / name)))
            written[name] = _partition_folders(staging / name)
            if set(by_id) - set(written[name]):
                # a definition without rows gets what Spark writes for an empty frame: one
                # part file with the schema
                frame.drop("definition_id").where(F.lit(False)).write.parquet(str(staging / f"{name}-empty"))
        counts: dict[str, dict[str, int]] = defaultdict(dict)
        for r in joined.groupBy("definition_id", "op").agg(F.count("*").alias("n")).collect():
            counts[r["definition_id"]][r["op"]] = r["n"]
        samples: dict[str, dict[str, list[str]]] = defaultdict(dict)
        if any(t.base_run_id for t in targets):
            # samples serve the gate report, and a first run has no gate: the first keys per op
            first = Window.partitionBy("definition_id", "op").orderBy("key")
            rows = (joined.where(F.col("_sampled") & (F.col("op") != "same"))
                    .select("definition_id", "op", "key", F.row_number().over(first).alias("_n"))
                    .where(F.col("_n") <= SAMPLE_SIZE).collect())
            for r in rows:
                samples[r["definition_id"]].setdefault(r["op"], []).append(r["key"])
    finally:
        joined.unpersist()
    out = {}
    for t in targets:
        def_id = t.definition_id
        for name, dest in (("snapshots", snapshot_dir(root, run_id, def_id)),
                           ("deltas", delta_dir(root, run_id, def_id))):
            _move_into_place(staging / name, written[name].get(def_id), staging / f"{name}-empty", dest)
        summary = _summary(t, run_id=run_id, as_of=as_of_dt, window=windows[def_id], counts=counts[def_id],
                           samples={op: sorted(keys) for op, keys in sorted(samples[def_id].items())})
        marker = delta_dir(root, run_id, def_id) / DELTA_MARKER
        tmp = marker.with_name(f".{DELTA_MARKER}.tmp")
        tmp.write_text(json.dumps(summary, indent=2, sort_keys=True), encoding="utf-8")
        tmp.replace(marker)
        out[def_id] = summary
        crash_point("generate:diff-moved")
    shutil.rmtree(staging, ignore_errors=True)
    return out


def _partition_folders(folder: Path) -> dict[str, Path]:
    """{definition id: folder} of a write partitioned by ``definition_id`` (Spark escapes a value with %XX)."""
    prefix = "definition_id="
    return {unquote(p.name[len(prefix):]): p for p in folder.iterdir()
            if p.is_dir() and p.name.startswith(prefix)}


def _move_into_place(written: Path, part: Path | None, empty: Path, dest: Path) -> None:
    """``part`` (or a copy of the empty write) becomes ``dest``, with the ``_SUCCESS`` of the write."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if part is None:
        shutil.copytree(empty, dest)
        return
    part.rename(dest)
    for name in ("_SUCCESS", "._SUCCESS.crc"):
        if (written / name).is_file():
            shutil.copyfile(written / name, dest / name)


def _summary(t: DiffTarget, *, run_id: str, as_of: datetime, window: timedelta, counts: dict[str, int],
             samples: dict[str, list[str]]) -> dict[str, Any]:
    ops = {op_name: counts[op_name] for op_name in EVENT_OPS if op_name in counts}
    kept = counts.get("update", 0) + counts.get("refresh", 0) + counts.get("same", 0)
    return {
        "definition_id": t.definition_id,
        "kind": t.kind,
        "entity": t.entity,
        "run_id": run_id,
        "as_of": format_ts(as_of),
        "base_run_id": t.base_run_id,
        "destinations": list(t.destinations or []),
        "send_events": bool(t.events),
        "items": kept + counts.get("add", 0) + counts.get("join", 0),
        "base_items": kept + counts.get("remove", 0) + counts.get("leave", 0),
        "unchanged": counts.get("same", 0),
        "ops": ops,
        "events": sum(ops.values()),
        "samples": samples,
        "refresh_after_seconds": int(window.total_seconds()),
    }


def _delta_marker(root: str | Path, run_id: str, definition_id: str) -> dict[str, Any]:
    marker = read_delta_marker(root, run_id, definition_id)
    if marker is None:
        raise FeedgenError(f"{delta_dir(root, run_id, definition_id)}: no {DELTA_MARKER}; "
                           f"rerun `feedgen generate` for run {run_id}")
    return marker


def _delta_batches(root: str | Path, run_id: str, definition_id: str, batch_size: int, columns=None):
    """The record batches of one definition's delta files, in file order."""
    import pyarrow.parquet as pq

    for path in sorted(delta_dir(root, run_id, definition_id).glob("part-*.parquet")):
        yield from pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=columns)


def iter_delta_events(root: str | Path, run_id: str, definition_id: str,
                      batch_size: int = 10_000):
    """Yield the events of one definition as ARCHITECTURE.md values (dicts), read with pyarrow."""
    marker = _delta_marker(root, run_id, definition_id)
    for batch in _delta_batches(root, run_id, definition_id, batch_size):
        for row in batch.to_pylist():
            op = row["op"]
            event = {
                "schema_version": 1,
                "event_id": row["event_id"],
                "run_id": run_id,
                "definition_id": definition_id,
                "destinations": marker["destinations"],
                "entity": marker["entity"],
                "key": row["key"],
                "op": op,
                "as_of": marker["as_of"],
            }
            if op == "update":
                event["changed"] = list(row["changed"] or [])
            if op not in ("remove", "leave"):
                event["data"] = json.loads(row["payload"])
            yield event


def iter_delta_values(root: str | Path, run_id: str, definition_id: str,
                      batch_size: int = 10_000):
    """Yield ``(key, op, event_id, value)`` per event of one definition: ``value`` is the text
    ``json.dumps(event, separators=(",", ":"), sort_keys=True)`` gives for the event
    :func:`iter_delta_events` yields, written without building the event: the constant parts
    once per definition, the payload (already compact JSON with sorted keys) kept as it is
    when it is ASCII, else read and written again (escaped as json.dumps does)."""
    marker = _delta_marker(root, run_id, definition_id)
    dumps = functools.partial(json.dumps, separators=(",", ":"), sort_keys=True)
    head = '{"as_of":' + dumps(marker["as_of"])
    middle = (',"definition_id":' + dumps(definition_id) + ',"destinations":' + dumps(marker["destinations"])
              + ',"entity":' + dumps(marker["entity"]) + ',"event_id":')
    tail = ',"run_id":' + dumps(run_id) + ',"schema_version":1}'
    ops = {op: ',"op":' + dumps(op) for op in EVENT_OPS}
    names = ("key", "op", "changed", "payload", "event_id")
    for batch in _delta_batches(root, run_id, definition_id, batch_size, list(names)):
        columns = [batch.column(name).to_pylist() for name in names]
        for key, op, changed, payload, eid in zip(*columns, strict=True):
            parts = [head]
            if op == "update":
                parts.append(',"changed":' + dumps(list(changed or [])))
            if op not in ("remove", "leave"):
                data = payload if payload.isascii() and "\x7f" not in payload else dumps(json.loads(payload))
                parts.append(',"data":' + data)
            parts += (middle, dumps(eid), ',"key":', dumps(key), ops.get(op) or ',"op":' + dumps(op), tail)
            yield key, op, eid, "".join(parts)


def read_snapshot_rows(root: str | Path, run_id: str, definition_id: str) -> dict[str, dict]:
    """Snapshot as {key: {hash, payload, last_sent}} (pyarrow; for tools and tests)."""
    import pyarrow.parquet as pq

    folder = snapshot_dir(root, run_id, definition_id)
    out: dict[str, dict] = {}
    for path in sorted(folder.glob("part-*.parquet")):
        for row in pq.read_table(path).to_pylist():
            out[row["key"]] = {k: row[k] for k in ("hash", "payload", "last_sent")}
    return out


__all__ = [
    "DEFAULT_REFRESH_AFTER", "DiffTarget", "delta_dir", "diff_definitions", "event_id", "iter_delta_events",
    "iter_delta_values",
    "list_deltas", "parse_refresh_after", "read_delta_marker", "read_snapshot_rows", "refresh_window",
    "snapshot_and_diff", "snapshot_dir", "staged_snapshot_items",
]
