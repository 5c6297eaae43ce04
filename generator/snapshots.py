"""Snapshots of what each destination has seen, and the delta against the last published one.

For a definition with event delivery the generator hands over the run's items
(``key``, ``hash``, ``payload``). :func:`snapshot_and_diff` full-outer-joins them with the
snapshot of the run the definition's ``current`` pointer names and writes, in one pass:

- ``runs/<run_id>/snapshots/<definition_id>/`` — snapshot X (key, hash, payload, last_sent);
- ``runs/<run_id>/deltas/<definition_id>/`` — the events (key, op, changed, payload,
  event_id) plus ``_delta.json`` (counts, samples, destinations, base run) that
  ``feedgen emit`` reads without Spark.

Ops: only in X → ``add`` (``join`` for segments); only in Y → ``remove`` (``leave``);
different hash → ``update`` with the changed payload fields; same hash but last sent
``refresh_after`` or longer before ``as_of`` → ``refresh``. ``last_sent`` becomes the run's
``as_of`` for every item sent and carries over for the others.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from feedgen.core.errors import BadInput, FeedgenError
from feedgen.core.runs import format_ts, parse_as_of, run_dir

DEFAULT_REFRESH_AFTER = timedelta(days=28)
DELTA_MARKER = "_delta.json"
SAMPLE_SIZE = 5
EVENT_OPS = ("add", "update", "remove", "refresh", "join", "leave")
_SEGMENT_OPS = {"add": "join", "remove": "leave"}
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


def _empty_snapshot(spark):
    return spark.createDataFrame(
        [], "key string, hash string, payload string, last_sent timestamp"
    )


def _diff_frame(x, y, *, run_id: str, definition_id: str, kind: str, as_of: datetime,
                refresh_before: datetime):
    from pyspark.sql import functions as F

    x = x.select(F.col("key").cast("string").alias("key"), F.col("hash").alias("x_hash"),
                 F.col("payload").alias("x_payload"))
    y = y.select(F.col("key").alias("key"), F.col("hash").alias("y_hash"),
                 F.col("payload").alias("y_payload"), F.col("last_sent").alias("y_last_sent"))
    j = x.join(y, on="key", how="full_outer")
    in_x, in_y = F.col("x_hash").isNotNull(), F.col("y_hash").isNotNull()
    add_op, remove_op = ("join", "leave") if kind == "segment" else ("add", "remove")
    op = (
        F.when(in_x & ~in_y, F.lit(add_op))
        .when(~in_x & in_y, F.lit(remove_op))
        .when(F.col("x_hash") != F.col("y_hash"), F.lit("update"))
        .when(F.col("y_last_sent") < F.lit(refresh_before), F.lit("refresh"))
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
            "|", F.lit(run_id), F.lit(definition_id), F.col("key"), F.col("op")), 256), 1, 32))
    )


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
    the snapshot and the counts for the gates but sends nothing.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    as_of_dt = parse_as_of(as_of) if isinstance(as_of, str) else as_of
    window = parse_refresh_after(refresh_after, f"definition {definition_id!r} refresh_after")
    root = Path(root)
    missing = {"key", "hash", "payload"} - set(items.columns)
    if missing:
        raise FeedgenError(f"definition {definition_id!r}: snapshot input lacks column(s) "
                           f"{', '.join(sorted(missing))}; the generator must give key, hash, payload")
    if base_run_id == run_id:
        raise FeedgenError(f"run {run_id}: definition {definition_id!r} is already published by this "
                           "run; start a new run instead of regenerating a published one")
    y = _empty_snapshot(spark)
    if base_run_id:
        y_dir = snapshot_dir(root, base_run_id, definition_id)
        if not _has_parquet(y_dir):
            raise FeedgenError(
                f"{y_dir}: snapshot of the published run {base_run_id} for definition "
                f"{definition_id!r} is missing; republish it with `feedgen publish {base_run_id}` "
                "or remove its current pointer to start over with all adds")
        y = spark.read.parquet(str(y_dir))
    joined = _diff_frame(items, y, run_id=run_id, definition_id=definition_id, kind=kind,
                         as_of=as_of_dt, refresh_before=as_of_dt - window)
    joined = joined.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        x_dir = snapshot_dir(root, run_id, definition_id)
        (joined.filter(F.col("x_hash").isNotNull())
         .select("key", F.col("x_hash").alias("hash"), F.col("x_payload").alias("payload"),
                 "last_sent")
         .write.mode("overwrite").parquet(str(x_dir)))
        d_dir = delta_dir(root, run_id, definition_id)
        (joined.filter(F.col("op") != "same")
         .select("key", "op", "changed", F.col("x_payload").alias("payload"), "event_id")
         .write.mode("overwrite").parquet(str(d_dir)))
        counts = {r["op"]: r["n"] for r in joined.groupBy("op").agg(F.count("*").alias("n")).collect()}
        samples = {}
        for op_name, n in sorted(counts.items()):
            # samples serve the gate report, and a first run has no gate
            if base_run_id and op_name != "same" and n:
                rows = joined.filter(F.col("op") == op_name).select("key").limit(SAMPLE_SIZE).collect()
                samples[op_name] = sorted(r["key"] for r in rows)
    finally:
        joined.unpersist()
    ops = {op_name: counts[op_name] for op_name in EVENT_OPS if op_name in counts}
    kept = counts.get("update", 0) + counts.get("refresh", 0) + counts.get("same", 0)
    summary = {
        "definition_id": definition_id,
        "kind": kind,
        "entity": entity,
        "run_id": run_id,
        "as_of": format_ts(as_of_dt),
        "base_run_id": base_run_id,
        "destinations": list(destinations or []),
        "send_events": bool(events),
        "items": kept + counts.get("add", 0) + counts.get("join", 0),
        "base_items": kept + counts.get("remove", 0) + counts.get("leave", 0),
        "unchanged": counts.get("same", 0),
        "ops": ops,
        "events": sum(ops.values()),
        "samples": samples,
        "refresh_after_seconds": int(window.total_seconds()),
    }
    marker = d_dir / DELTA_MARKER
    tmp = marker.with_name(f".{DELTA_MARKER}.tmp")
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(marker)
    return summary


def iter_delta_events(root: str | Path, run_id: str, definition_id: str,
                      batch_size: int = 10_000):
    """Yield the events of one definition as ARCHITECTURE.md values (dicts), read with pyarrow."""
    import pyarrow.parquet as pq

    marker = read_delta_marker(root, run_id, definition_id)
    if marker is None:
        raise FeedgenError(f"{delta_dir(root, run_id, definition_id)}: no {DELTA_MARKER}; "
                           f"rerun `feedgen generate` for run {run_id}")
    folder = delta_dir(root, run_id, definition_id)
    files = sorted(folder.glob("part-*.parquet"))
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size):
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
    "DEFAULT_REFRESH_AFTER", "delta_dir", "event_id", "iter_delta_events", "list_deltas",
    "parse_refresh_after", "read_delta_marker", "refresh_window", "read_snapshot_rows", "snapshot_and_diff",
    "snapshot_dir",
]
