"""Publication: copy a run's files to the serving store, switch the current pointers, retention.

The serving store is ``publish.store`` (a directory or ``s3://bucket/prefix``), else the
data root itself. Files go first, manifests after their parts, pointers last: a pointer
is a new object (temp + rename locally, one PUT on S3), so a reader sees the old run or
the new one, never a mix. Retention keeps the last ``publish.retention`` published runs
and deletes older ones, never one a pointer names nor one that stopped being current less
than ``publish.retention_grace`` ago (a download may still be reading it).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from feedgen.core.errors import BadInput, RunFailed
from feedgen.core.runs import (
    crash_point,
    format_ts,
    list_runs,
    read_run,
    run_dir,
    utcnow,
    write_run,
)
from feedgen.core.serving import current_pointers, pointer_key, serving_store
from feedgen.core.store import LocalStore, Store
from feedgen.generator.membership import publish_membership

log = logging.getLogger(__name__)

PUBLISHED = ("published", "emitted")
_KIND_FOLDER = {"feed": "feeds", "segment": "segments"}


def _same_place(store: Store, root: str) -> bool:
    return isinstance(store, LocalStore) and store.root == Path(root).expanduser().resolve()


def manifest_key(run_id: str, kind: str, definition_id: str) -> str:
    folder = _KIND_FOLDER.get(kind)
    if folder is None:
        raise RunFailed(f"run {run_id}: definition {definition_id!r} has kind {kind!r}; "
                        "expected feed or segment in run.json")
    return f"runs/{run_id}/{folder}/{definition_id}/manifest.json"


def _upload_run_files(root: str, store: Store, run_id: str, keys: list[str]) -> int:
    """Upload the definitions' folders; the manifests only after every part."""
    base = Path(root)
    data, manifests = [], []
    for mkey in keys:
        folder = base / Path(mkey).parent
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                key = path.relative_to(base).as_posix()
                # every manifest (a segment's exports have their own) after all the parts
                (manifests if path.name == "manifest.json" else data).append((path, key))
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda pk: store.upload_file(pk[0], pk[1]), data))
        list(pool.map(lambda pk: store.upload_file(pk[0], pk[1]), manifests))
    return len(data) + len(manifests)


def sync_record(config: Any, record: dict[str, Any], store: Store | None = None) -> None:
    """Write run.json locally and, when the serving store is elsewhere, there too."""
    root = config.root
    write_run(root, record)
    store = store or serving_store(config)
    if not _same_place(store, root):
        store.write_bytes(f"runs/{record['run_id']}/run.json",
                          json.dumps(record, indent=2, sort_keys=True, default=str).encode())


def publish_run(config: Any, run_id: str, *, approved: bool = False) -> dict[str, Any]:
    """Copy run ``run_id`` to the serving store and point each of its definitions at it.

    Allowed for a generated run whose gates passed, a held run when ``approved``, and
    again for a published run (idempotent; a pointer already naming a newer run stays).
    """
    root = config.root
    record = read_run(root, run_id)
    status = record.get("status")
    if status == "held" and not approved:
        raise BadInput(f"run {run_id} is held by its gates ({_breach_line(record)}); "
                       f"approve it with `feedgen runs approve {run_id}` or reject it")
    if status not in ("generating", "held", *PUBLISHED):
        raise BadInput(f"run {run_id} has status {status!r}; only a generated, approved or "
                       "published run can be published")
    started = time.monotonic()
    store = serving_store(config)
    definitions = record.get("definitions") or {}
    keys = {}
    for def_id, stats in sorted(definitions.items()):
        mkey = manifest_key(run_id, stats.get("kind", "feed"), def_id)
        if not (Path(root) / mkey).is_file():
            raise RunFailed(f"{Path(root) / mkey}: missing; definition {def_id!r} of run {run_id} "
                            "has no manifest, so nothing was published; rerun the run")
        keys[def_id] = mkey
    uploaded = 0 if _same_place(store, root) else _upload_run_files(root, store, run_id, list(keys.values()))
    published_at = format_ts(utcnow())
    pointers, superseded = [], []
    current = current_pointers(store)
    for def_id, mkey in keys.items():
        existing = current.get(def_id)
        if existing and existing.get("run_id", "") > run_id:
            superseded.append(def_id)  # a newer run is already current: never go back
            continue
        pointer = {"definition_id": def_id, "kind": definitions[def_id].get("kind", "feed"),
                   "run_id": run_id, "manifest": mkey, "published_at": published_at,
                   "as_of": record.get("as_of")}
        store.write_bytes(pointer_key(def_id), json.dumps(pointer, indent=2).encode())
        pointers.append(def_id)
        crash_point("publish:pointer")  # test hook (FEEDGEN_TEST_CRASH_AT); no-op otherwise
    if status not in PUBLISHED:
        record["status"] = "published"
    record["publication"] = {"store": store.uri, "published_at": published_at,
                             "definitions": pointers, "superseded": superseded,
                             "files_uploaded": uploaded}
    record.setdefault("stages", {})["publish"] = {"status": "done",
                                                  "seconds": round(time.monotonic() - started, 3)}
    # The membership index goes with its run, after the feed pointers (its own pointer last).
    membership = publish_membership(config, run_id, store)
    if membership is not None:
        record["publication"]["membership"] = membership.get("run_id")
    sync_record(config, record, store)
    log.info("published run %s to %s: %d pointer(s) switched", run_id, store.uri, len(pointers))
    apply_retention(config, store)
    return record


def _breach_line(record: dict[str, Any]) -> str:
    breaches = (record.get("gate") or {}).get("breaches") or []
    if not breaches:
        return "no breaches recorded"
    b = breaches[0]
    more = f" and {len(breaches) - 1} more" if len(breaches) > 1 else ""
    return f"{b['definition_id']}: {b['metric']} {b['value']} > {b['threshold']}{more}"


def apply_retention(config: Any, store: Store | None = None) -> list[str]:
    """Delete published runs beyond the newest ``publish.retention``, except any a pointer names.

    A run no pointer names is kept ``publish.retention_grace`` longer, counted from the first
    retention pass that found it so (right after the publication that replaced it): a
    download that resolved the old pointer just before the switch is still reading its files.
    """
    keep = int(config.get("publish.retention", 5) or 0)
    if keep < 1:
        raise BadInput(f"{config.source_label}: publish.retention is {keep}; keep at least 1 run")
    grace = retention_grace(config)
    root = config.root
    store = store or serving_store(config)
    published = [r for r in list_runs(root) if r.get("status") in PUBLISHED]
    published.sort(key=lambda r: ((r.get("publication") or {}).get("published_at", ""), r["run_id"]))
    named = {p.get("run_id") for p in current_pointers(store).values()}
    now = datetime.now(UTC)
    deleted, waiting = [], []
    for n, record in enumerate(published):
        run_id = record["run_id"]
        if run_id in named:
            continue
        retired = _retired_at(config, record, store, now)
        if n >= len(published) - keep:
            continue
        if (now - retired).total_seconds() < grace:
            waiting.append(run_id)
            continue
        if not _same_place(store, root):
            store.delete_prefix(f"runs/{run_id}/")
        shutil.rmtree(run_dir(root, run_id), ignore_errors=True)
        deleted.append(run_id)
    if deleted:
        log.info("retention: deleted run(s) %s (keeping the last %d published)", ", ".join(deleted), keep)
    if waiting:
        log.info("retention: run(s) %s kept until publish.retention_grace (%gs) has passed since "
                 "they stopped being current", ", ".join(waiting), grace)
    return deleted


_GRACE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def retention_grace(config: Any) -> float:
    """``publish.retention_grace`` in seconds: a number of seconds or a duration (``30m``, ``1h``, ``2d``)."""
    value = config.get("publish.retention_grace", "1h")
    m = _GRACE.match(str(value)) if isinstance(value, str | int | float) and not isinstance(value, bool) else None
    if m is None:
        raise BadInput(f"{config.source_label}: publish.retention_grace is {value!r}; write a duration "
                       "such as 30m, 1h or 2d (s, m, h, d, w), or 0s to delete superseded runs at once")
    return float(m[1]) * _UNIT_SECONDS[m[2]]


def _retired_at(config: Any, record: dict[str, Any], store: Store, now: datetime) -> datetime:
    """When retention first found no pointer naming the run (recorded in run.json then)."""
    publication = record.setdefault("publication", {})
    try:
        return datetime.fromisoformat(str(publication["retired_at"]))
    except (KeyError, ValueError):
        pass
    publication["retired_at"] = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    sync_record(config, record, store)
    return now


__all__ = ["apply_retention", "publish_run", "retention_grace", "sync_record"]
