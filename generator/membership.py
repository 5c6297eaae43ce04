"""The membership index of a run: customer id → segment ids, one read-only SQLite file.

Layout, all under ``runs/<run_id>/membership/``:

- ``index.sqlite``: table ``members(customer_id TEXT PRIMARY KEY, segs BLOB) WITHOUT ROWID``,
  where ``segs`` packs the customer's segment numbers as little-endian unsigned 16-bit
  integers (32-bit past 65,535 segments; ``meta.seg_width``), ascending; table
  ``segments(seg INTEGER PRIMARY KEY, id, type, store_id, category, params)`` numbered in
  segment-id order; table ``meta(key, value)``. Rows are written in key order, so the
  B-tree is dense and one lookup reads two or three pages. A packed blob per customer keeps
  1M customers x 20 segments near 60 MB instead of 20M (customer, segment) rows.
- ``manifest.json``: ``run_id``, ``as_of``, ``customers``, ``segments``, ``bytes``,
  ``sha256``, ``index`` (the file name), ``format`` (``sqlite-packed-v1``).

Published (after the run's own publication) by :func:`publish_membership`, which uploads
both files and then writes the pointer ``current/_membership.json``. The pointer has a
``definition_id`` (``_membership``, which no definition can have) and ``run_id``, so
retention in ``feedgen.jobs.publish`` never deletes the run it names.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
import time
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from feedgen.core.errors import RunFailed
from feedgen.core.runs import format_ts, read_run, run_dir, utcnow
from feedgen.core.serving import serving_store
from feedgen.core.store import LocalStore

__all__ = [
    "FORMAT", "INDEX_NAME", "MANIFEST_NAME", "POINTER_KEY", "build_membership_index", "decode_segs",
    "encode_segs", "publish_membership", "read_pointer", "segment_attributes", "write_index",
]

FORMAT = "sqlite-packed-v1"
FOLDER = "membership"
INDEX_NAME = "index.sqlite"
MANIFEST_NAME = "manifest.json"
POINTER_KEY = "current/_membership.json"
POINTER_ID = "_membership"
BATCH = 10_000
# The segment attributes a lookup can filter on (besides the segment id itself).
ATTRIBUTES = ("type", "store_id", "category")


def segment_attributes(definition: Any) -> dict[str, Any]:
    """The lookup attributes of one segment definition.

    ``type``: a ``type`` for_each parameter, else the id as written before for_each
    expansion (``store-{store_id}-buyers``), else the id. ``store_id`` and ``category``:
    the for_each parameters of those names, else None. ``params``: every for_each value.
    """
    params = {str(k): v for k, v in dict(getattr(definition, "params", None) or {}).items()}
    options = dict(getattr(definition, "options", None) or {})

    def pick(name: str) -> str | None:
        value = params.get(name, options.get(name))
        return None if value is None else str(value)

    return {
        "id": definition.id,
        "type": pick("type") or getattr(definition, "source_id", "") or definition.id,
        "store_id": pick("store_id"),
        "category": pick("category"),
        "params": params,
    }


def encode_segs(numbers: Sequence[int], width: int = 2) -> bytes:
    """Pack ascending segment numbers (``width`` 2 or 4 bytes each, little-endian)."""
    packed = array("H" if width == 2 else "I", numbers)
    if sys.byteorder == "big":
        packed.byteswap()
    return packed.tobytes()


def decode_segs(blob: bytes, width: int = 2) -> array:
    """The segment numbers packed by :func:`encode_segs`."""
    out = array("H" if width == 2 else "I")
    out.frombytes(blob)
    if sys.byteorder == "big":
        out.byteswap()
    return out


def _schema(db: sqlite3.Connection) -> None:
    db.executescript("""
        PRAGMA page_size = 4096;
        PRAGMA journal_mode = OFF;
        PRAGMA synchronous = OFF;
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
        CREATE TABLE segments (seg INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, type TEXT,
                               store_id TEXT, category TEXT, params TEXT NOT NULL);
        CREATE TABLE members (customer_id TEXT PRIMARY KEY, segs BLOB NOT NULL) WITHOUT ROWID;
    """)


def write_index(folder: str | Path, *, run_id: str, as_of: str, segments: Sequence[Mapping[str, Any]],
                members: Iterable[tuple[str, Iterable[str]]]) -> dict[str, Any]:
    """Write ``index.sqlite`` + ``manifest.json`` into ``folder``; return the manifest.

    ``segments``: attribute mappings as :func:`segment_attributes` returns them.
    ``members``: ``(customer_id, segment ids)``; ids of segments not in ``segments`` are
    left out, a customer with none is kept (known, in no segment). Rows sorted by
    customer id make a compact file; a repeated customer id has its segments merged
    when the repeats are adjacent (sorted input).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ordered = sorted(segments, key=lambda s: s["id"])
    number = {s["id"]: n for n, s in enumerate(ordered)}
    if len(number) != len(ordered):
        raise RunFailed(f"{folder}: two segments share an id; segment ids must be unique")
    width = 2 if len(ordered) <= 0xFFFF else 4
    final = folder / INDEX_NAME
    tmp = folder / f".{INDEX_NAME}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    db = sqlite3.connect(tmp, isolation_level=None)
    customers = 0
    try:
        _schema(db)
        db.execute("BEGIN")
        db.executemany("INSERT INTO segments VALUES (?, ?, ?, ?, ?, ?)", [
            (n, s["id"], s.get("type"), s.get("store_id"), s.get("category"),
             json.dumps(s.get("params") or {}, sort_keys=True, default=str))
            for n, s in enumerate(ordered)])
        batch: list[tuple[str, bytes]] = []
        last_key: str | None = None
        last_segs: set[int] = set()
        for key, seg_ids in members:
            key = str(key)
            nums = {number[s] for s in seg_ids if s in number}
            if key == last_key:
                last_segs |= nums
                continue
            if last_key is not None:
                batch.append((last_key, encode_segs(sorted(last_segs), width)))
                customers += 1
                if len(batch) >= BATCH:
                    db.executemany("INSERT OR REPLACE INTO members VALUES (?, ?)", batch)
                    batch.clear()
            last_key, last_segs = key, nums
        if last_key is not None:
            batch.append((last_key, encode_segs(sorted(last_segs), width)))
            customers += 1
        db.executemany("INSERT OR REPLACE INTO members VALUES (?, ?)", batch)
        # Count again: an unsorted input may have repeated a key (INSERT OR REPLACE kept the last).
        customers = db.execute("SELECT count(*) FROM members").fetchone()[0]
        db.executemany("INSERT INTO meta VALUES (?, ?)", [
            ("format", FORMAT), ("run_id", run_id), ("as_of", as_of), ("seg_width", str(width)),
            ("customers", str(customers)), ("segments", str(len(ordered)))])
        db.execute("COMMIT")
        db.execute("PRAGMA optimize")
    finally:
        db.close()
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    manifest = {
        "schema_version": 1, "format": FORMAT, "run_id": run_id, "as_of": as_of, "index": INDEX_NAME,
        "customers": customers, "segments": len(ordered), "seg_width": width,
        "bytes": final.stat().st_size, "sha256": _sha256_file(final),
    }
    _write_json(folder / MANIFEST_NAME, manifest)
    return manifest


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


def _member_rows(spark, root: str | Path, run_id: str, customers_df=None) -> Iterator[tuple[str, list[str]]]:
    from pyspark.sql import functions as F

    from feedgen.generator.generate import STAGING

    staging = run_dir(root, run_id) / STAGING / "customer"
    if not staging.is_dir():
        raise RunFailed(f"{staging}: no staging output of the customer entity; generate the customer "
                        f"definitions of run {run_id} first (generator.generate.generate_entity)")
    rows = (spark.read.parquet(str(staging)).where(F.col("kind") == "member")
            .select(F.col("key"), F.col("payload")))
    if customers_df is not None:
        # Customers in no segment are known too: every id of the aggregate, members or not.
        ids = customers_df.select(F.col("customer_id").cast("string").alias("key")).distinct()
        rows = ids.join(rows, "key", "left")
    # Sorted on the executors, so the driver streams rows in key order, one partition at a time.
    for row in rows.orderBy("key").toLocalIterator(prefetchPartitions=True):
        if row["key"] is None:
            continue
        yield row["key"], json.loads(row["payload"]) if row["payload"] else []


def build_membership_index(spark, root: str | Path, run_id: str, definitions: Iterable[Any], *,
                           as_of: str | None = None, customers_df=None) -> dict[str, Any]:
    """Build ``runs/<run_id>/membership/`` from the run's customer staging rows; return the manifest.

    Call after ``generate_entity(..., entity="customer")``. ``definitions``: the run's
    definitions (non-segments are ignored). ``customers_df``: the customer aggregate, so
    customers in no segment answer ``known: true`` with an empty list; without it only
    customers in at least one segment are known. The manifest gains ``build_seconds``.
    """
    started = time.monotonic()
    segments = [segment_attributes(d) for d in definitions
                if getattr(d, "kind", None) == "segment" and getattr(d, "entity", "customer") == "customer"]
    if as_of is None:
        as_of = str(read_run(root, run_id).get("as_of") or "")
    manifest = write_index(run_dir(root, run_id) / FOLDER, run_id=run_id, as_of=as_of, segments=segments,
                           members=_member_rows(spark, root, run_id, customers_df))
    manifest["build_seconds"] = round(time.monotonic() - started, 3)
    return manifest


def read_pointer(store: Any) -> dict[str, Any] | None:
    """The ``current/_membership.json`` pointer of a store, or None before the first publication."""
    try:
        return json.loads(store.read_bytes(POINTER_KEY))
    except FileNotFoundError:
        return None


def publish_membership(config: Any, run_id: str, store: Any = None) -> dict[str, Any] | None:
    """Publish run ``run_id``'s membership index and point ``current/_membership.json`` at it.

    Call after ``publish_run`` (``jobs.lifecycle.release_run`` / ``approve_run``). Uploads
    the index, then its manifest, then writes the pointer (one new object), unless the
    pointer already names a newer run. Returns the pointer written (or kept), or None
    when the run has no membership index (no customer segments).
    """
    folder = run_dir(config.root, run_id) / FOLDER
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        return None
    manifest = json.loads(manifest_path.read_text())
    store = store or serving_store(config)
    prefix = f"runs/{run_id}/{FOLDER}"
    same_place = isinstance(store, LocalStore) and store.root == Path(config.root).expanduser().resolve()
    if not same_place:
        store.upload_file(folder / INDEX_NAME, f"{prefix}/{INDEX_NAME}")
        store.upload_file(manifest_path, f"{prefix}/{MANIFEST_NAME}")
    existing = read_pointer(store)
    if existing and str(existing.get("run_id", "")) > run_id:
        return existing  # a newer run is already current: never go back
    pointer = {
        "definition_id": POINTER_ID, "kind": "membership", "run_id": run_id,
        "manifest": f"{prefix}/{MANIFEST_NAME}", "index": f"{prefix}/{INDEX_NAME}",
        "published_at": format_ts(utcnow()), "as_of": manifest.get("as_of"),
        "bytes": manifest["bytes"], "sha256": manifest["sha256"],
    }
    store.write_bytes(POINTER_KEY, json.dumps(pointer, indent=2).encode())
    return pointer
