"""A held run's evidence: what each breaching definition lost and changed against the
published run (counts by category, seller and brand, the aggregate fields that changed, a few
samples with before and after), read from the run's deltas and aggregates with pyarrow.

The console's review page shows it (``console.rundata.review_view``); rejecting a run
(``jobs.lifecycle.reject_run``) keeps it in ``runs/<run_id>/review.json`` before the deltas
it comes from are deleted.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from feedgen.core.errors import FeedgenError
from feedgen.core.runs import format_ts, read_run, utcnow
from feedgen.generator.snapshots import delta_dir

REVIEW_FILE = "review.json"
KEYS = {"offer": "offer_id", "customer": "customer_id"}
# breakdown name -> field path in the aggregate
BREAKDOWNS = {"offer": {"category": "category.top", "seller": "seller.name", "brand": "brand"},
              "customer": {"city": "city", "country": "country", "segment": "tier"}}
SAMPLES = 5


def _read(root: str, run_id: str) -> dict[str, Any] | None:
    try:
        record = read_run(root, run_id)
    except (FeedgenError, ValueError, OSError):
        return None
    return record if isinstance(record, dict) else None


def read_rows(path: str | None, key: str, keys: list[str]) -> dict[str, dict[str, Any]]:
    """Aggregate rows whose ``key`` is one of ``keys`` (pyarrow, a pushed-down filter)."""
    import pyarrow.dataset as ds

    if not path or not keys or not Path(path).is_dir():
        return {}
    try:
        table = ds.dataset(path, format="parquet").to_table(filter=ds.field(key).isin(keys))
    except (OSError, ValueError, KeyError):
        return {}
    return {row[key]: _plain(row) for row in table.to_pylist()}


def _plain(value: Any) -> Any:
    """Arrow's Python values as the renderer sees them: maps (lists of pairs) become dicts."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        if value and all(isinstance(x, tuple) and len(x) == 2 for x in value):
            return {k: _plain(v) for k, v in value}
        return [_plain(x) for x in value]
    return value


def get_path(row: dict[str, Any] | None, path: str) -> Any:
    node: Any = row
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _leaves(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and k != "attributes":
            out.update(_leaves(v, path + "."))
        else:
            out[path] = v
    return out


def shown(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _delta_rows(root: str, run_id: str, def_id: str, ops: tuple[str, ...]) -> list[dict[str, Any]]:
    import pyarrow.dataset as ds

    folder = delta_dir(root, run_id, def_id)
    if not any(folder.glob("*.parquet")):
        return []
    table = ds.dataset(str(folder), format="parquet").to_table(
        columns=["key", "op", "changed"], filter=ds.field("op").isin(list(ops)))
    return table.to_pylist()


def aggregate_path(root: str, record: dict[str, Any] | None, entity: str) -> str | None:
    if record is None:
        return None
    return ((record.get("aggregates") or {}).get(entity) or {}).get("path")


def evidence(config: Any, record: dict[str, Any], def_id: str, ops: tuple[str, ...],
             samples: int = SAMPLES) -> dict[str, Any]:
    """The items a definition lost (``remove``/``leave``) or changed (``update``) against the
    published run: counts broken down by category, seller and brand, which fields of them
    changed in the aggregate, and a few samples with before and after."""
    root = config.root
    stats = (record.get("definitions") or {}).get(def_id) or {}
    entity = stats.get("entity") or "offer"
    key = KEYS.get(entity, "offer_id")
    delta = stats.get("delta") or {}
    rows = _delta_rows(root, record["run_id"], def_id, ops)
    keys = sorted(r["key"] for r in rows)
    base = _read(root, delta.get("base_run_id")) if delta.get("base_run_id") else None
    before = read_rows(aggregate_path(root, base, entity), key, keys)
    after = read_rows(aggregate_path(root, record, entity), key, keys)
    breakdown: dict[str, list[dict[str, Any]]] = {}
    for name, path in BREAKDOWNS.get(entity, {}).items():
        counts = Counter(shown(get_path(before.get(k) or after.get(k), path)) for k in keys)
        breakdown[name] = [{"value": v if v is not None else "(none)", "count": n}
                           for v, n in counts.most_common(10)]
    fields: Counter = Counter()
    diffs: dict[str, dict[str, tuple[Any, Any]]] = {}
    for k in keys:
        old, new = before.get(k), after.get(k)
        if old is None:
            continue
        if new is None:
            fields["(gone from the source)"] += 1
            continue
        a, b = _leaves(old), _leaves(new)
        changed = {f: (a.get(f), b.get(f)) for f in sorted(set(a) | set(b))
                   if a.get(f) != b.get(f) and f not in ("updated_at",)}
        diffs[k] = changed
        fields.update(changed.keys())
    payload_fields: Counter = Counter()
    for r in rows:
        payload_fields.update(r.get("changed") or [])
    sample_rows = []
    for k in keys[:samples]:
        row = before.get(k) or after.get(k)
        sample_rows.append({
            "key": k, "inspect_url": f"/inspect/{entity}/{k}",
            **{name: shown(get_path(row, path)) for name, path in BREAKDOWNS.get(entity, {}).items()},
            "changes": [{"field": f, "before": shown(o), "after": shown(n)}
                        for f, (o, n) in list((diffs.get(k) or {}).items())[:6]]})
    return {"ops": list(ops), "count": len(keys), "breakdown": breakdown,
            "changed_fields": [{"field": f, "count": n} for f, n in fields.most_common(8)],
            "changed_payload_fields": [{"field": f, "count": n} for f, n in payload_fields.most_common(8)],
            "samples": sample_rows, "compared_with": delta.get("base_run_id")}


def breach_evidence(config: Any, record: dict[str, Any], samples: int = SAMPLES) -> dict[str, dict[str, Any]]:
    """Per breaching definition: ``removed`` (its ``remove``/``leave`` items) and ``updated``
    (its ``update`` items) as :func:`evidence`, each None without a delta or such items."""
    out: dict[str, dict[str, Any]] = {}
    for breach in (record.get("gate") or {}).get("breaches") or []:
        def_id = breach["definition_id"]
        delta = ((record.get("definitions") or {}).get(def_id) or {}).get("delta") or {}
        ops = delta.get("ops") or {}
        removes = int(ops.get("remove", 0)) + int(ops.get("leave", 0))
        out.setdefault(def_id, {
            "removed": evidence(config, record, def_id, ("remove", "leave"), samples) if delta and removes else None,
            "updated": evidence(config, record, def_id, ("update",), samples) if delta and int(ops.get("update", 0)) else None})
    return out


def keep_evidence(config: Any, run_id: str, samples: int = SAMPLES) -> Path:
    """Write a held run's evidence (:func:`breach_evidence`) to ``runs/<run_id>/review.json``:
    rejecting a run deletes its deltas, and an auditor must still see why it was rejected."""
    kept = {"run_id": run_id, "kept_at": format_ts(utcnow()),
            "definitions": breach_evidence(config, read_run(config.root, run_id), samples)}
    path = Path(config.root) / "runs" / run_id / REVIEW_FILE
    tmp = path.with_name(f".{REVIEW_FILE}.tmp")
    tmp.write_text(json.dumps(kept, indent=1, sort_keys=True, default=str), encoding="utf-8")
    tmp.replace(path)
    return path


def kept_evidence(root: str, run_id: str) -> dict[str, Any] | None:
    """The evidence :func:`keep_evidence` kept for a run, or None (none kept, or unreadable)."""
    try:
        kept = json.loads((Path(root) / "runs" / run_id / REVIEW_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return kept if isinstance(kept, dict) and isinstance(kept.get("definitions"), dict) else None


__all__ = ["BREAKDOWNS", "KEYS", "REVIEW_FILE", "SAMPLES", "aggregate_path", "breach_evidence", "evidence",
           "get_path", "keep_evidence", "kept_evidence", "read_rows", "shown"]
