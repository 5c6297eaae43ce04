"""The data behind the operators' pages and their JSON twins: runs, a run, a held run's
evidence, feed diagnostics. Plain functions of the config (no Flask, no Spark): run.json,
the ``_delta.json`` markers, and the run's Parquet (deltas, aggregates) read with pyarrow.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from feedgen.core.errors import BadInput, FeedgenError
from feedgen.core.runs import holder_alive, lock_holder, read_run
from feedgen.generator.gates import thresholds_for
from feedgen.generator.render import get_renderer
from feedgen.generator.snapshots import list_deltas
from feedgen.jobs.evidence import (
    KEYS,
    SAMPLES,
    aggregate_path,
    breach_evidence,
    get_path,
    kept_evidence,
    read_rows,
    shown,
)
from feedgen.jobs.pinning import is_pinned, load_pinned

STAGES = ("aggregate", "generate", "gate", "publish", "emit")
# a published run is still emitting; these are final
FINAL = {"held", "emitted", "rejected", "failed"}
REFRESH_SECONDS = 5
OPS = ("add", "remove", "update", "refresh", "join", "leave")
_RUN_ID = re.compile(r"[A-Za-z0-9-]{1,80}")
_REASON_FIELD = re.compile(r"^(?:missing_|bad_|invalid_|unknown_)?(.*?)(?:_truncated|_missing|_too_long"
                           r"|_from_stock|_not_below_price)?$")


class NotFoundError(BadInput):
    """No such run or definition (404 on the pages and the API)."""

    status = 404


# -- runs ---------------------------------------------------------------------------------

def run_ids(root: str) -> list[str]:
    """Run ids under the root, newest first (ids start with their UTC start time)."""
    folder = Path(root) / "runs"
    if not folder.is_dir():
        return []
    return sorted((p.name for p in folder.iterdir() if _RUN_ID.fullmatch(p.name) and (p / "run.json").is_file()),
                  reverse=True)


def read(root: str, run_id: str) -> dict[str, Any] | None:
    try:
        record = read_run(root, run_id)
    except (FeedgenError, ValueError, OSError):
        return None
    return record if isinstance(record, dict) else None


def record_of(root: str, run_id: str) -> dict[str, Any]:
    record = read(root, run_id)
    if record is None:
        raise NotFoundError(f"run {run_id!r} not found; list runs at /runs or GET /api/v1/runs")
    return record


def progress(record: dict[str, Any], root: str | None = None) -> dict[str, Any]:
    """Which stage a run is in and how far it got (stages done of five).

    With ``root``, an unfinished run counts as in progress only while a live process holds the
    root's lock for it (as ``feedgen run`` does); otherwise it was ``interrupted`` (killed, or a
    crash) and waits for ``feedgen run --resume``: the pages stop refreshing for it.
    """
    stages = record.get("stages") or {}
    done = [s for s in STAGES if (stages.get(s) or {}).get("status") == "done"]
    current = next((s for s in STAGES if (stages.get(s) or {}).get("status") != "done"), None)
    unfinished = (record.get("status") not in FINAL and current is not None
                  and (stages.get(current) or {}).get("status") != "failed")
    alive = unfinished and (root is None or _running(root, str(record.get("run_id"))))
    return {"in_progress": alive, "interrupted": unfinished and not alive,
            "stage": current if unfinished else None, "stages_done": len(done), "stages": len(STAGES),
            "share": round(len(done) / len(STAGES), 3)}


def _running(root: str, run_id: str) -> bool:
    """A process holds the root's lock for ``run_id`` (one on another host is taken as alive):
    ``feedgen run``, or an approval, ``feedgen publish`` or ``feedgen emit`` finishing it."""
    holder = lock_holder(root)
    owners = {run_id, f"approve-{run_id}", f"publish-{run_id}", f"emit-{run_id}"}
    return bool(holder) and holder.get("run_id") in owners and holder_alive(holder) is not False


def summary(record: dict[str, Any], root: str | None = None) -> dict[str, Any]:
    """One line of the runs page: status, as_of, who started it, timings, totals, pins."""
    gate = record.get("gate") if isinstance(record.get("gate"), dict) else {}
    definitions = record.get("definitions") if isinstance(record.get("definitions"), dict) else {}
    stages = record.get("stages") or {}
    attempts = record.get("attempts") or [{}]
    first = attempts[0] if isinstance(attempts[0], dict) else {}
    pins = (record.get("pinned_definitions") or {})
    return {
        "run_id": str(record.get("run_id")), "status": record.get("status"), "as_of": record.get("as_of"),
        "created_at": record.get("created_at"), "definitions": len(definitions),
        # runs from before ``started_by`` was recorded name their first process instead
        "started_by": record.get("started_by") or first.get("started_by")
        or (f"{first.get('host')} (pid {first.get('pid')})" if first.get("host") else None),
        "resumed_by": [a.get("started_by") or f"{a.get('host')} (pid {a.get('pid')})"
                       for a in attempts[1:] if isinstance(a, dict)],
        "attempts": len(attempts) if record.get("attempts") else 0,
        "timings": {k: v for k, v in (record.get("timings") or {}).items() if isinstance(v, int | float)},
        "items": (stages.get("generate") or {}).get("items"),
        "events": (stages.get("generate") or {}).get("events"),
        "emitted": (record.get("emit") or {}).get("events"),
        "versions": pins.get("versions") or {},
        "definitions_source": pins.get("source") or record.get("definitions_dir"),
        "progress": progress(record, root),
        "gate": {"status": gate.get("status"), "breaches": len(gate.get("breaches") or []),
                 "decision": gate.get("decision"), "decided_by": gate.get("decided_by"),
                 "decided_at": gate.get("decided_at"), "reason": gate.get("reason")},
    }


def runs(root: str, *, status: str | None = None, since: datetime | None = None, until: datetime | None = None,
         limit: int = 50, offset: int = 0, refresh_seconds: int = REFRESH_SECONDS) -> dict[str, Any]:
    """A page of runs, newest first, filtered by status and by start time."""
    out, skipped, more = [], 0, False
    for run_id in run_ids(root):
        record = read(root, run_id)
        if record is None or (status is not None and record.get("status") != status):
            continue
        started = _time(record.get("created_at"))
        if (since and (started is None or started < since)) or (until and (started is None or started >= until)):
            continue
        if skipped < offset:
            skipped += 1
            continue
        if len(out) == limit:
            more = True
            break
        out.append(summary(record, root))
    return {"runs": out, "limit": limit, "offset": offset, "next_offset": offset + limit if more else None,
            "refresh_seconds": refresh_seconds if any(r["progress"]["in_progress"] for r in out) else None}


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        from datetime import UTC

        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except ValueError:
        return None


# -- one run ------------------------------------------------------------------------------

def _definition_gates(config: Any, record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each definition's own ``gates:`` mapping, from the run's pinned definitions."""
    return {d.id: dict(d.gates or {}) for d in _pinned(config, record).values()}


def _pinned(config: Any, record: dict[str, Any]) -> dict[str, Any]:
    if not is_pinned(record):
        return {}
    try:
        return dict(load_pinned(config, record)[1].by_id)
    except (FeedgenError, OSError, ValueError):
        return {}


def _limit(metric: str, limits: dict[str, Any]) -> Any:
    if metric.startswith("null_rate."):
        return limits.get("max_null_rate")
    return {"count_change": limits.get("max_count_change"), "share_removed": limits.get("max_share_removed"),
            "share_changed": limits.get("max_share_changed"),
            "empty_output": "allow_empty: true" if limits.get("allow_empty") else "allow_empty: false"}.get(metric)


def checks(config: Any, record: dict[str, Any], def_id: str, gates: dict[str, Any]) -> list[dict[str, Any]]:
    """Every gate check of a definition: its value against its threshold, and the verdict."""
    report = record.get("gate") or {}
    metrics = (report.get("metrics") or {}).get(def_id) or {}
    breached = {b["metric"] for b in report.get("breaches") or [] if b.get("definition_id") == def_id}
    limits = thresholds_for(config, def_id, gates)
    near = float(config.get("alerts.near_threshold") or 0.8)
    out = []
    for metric, value in sorted(metrics.items()):
        if metric in ("items", "base_items", "empty_input"):
            continue
        threshold = _limit(metric, limits)
        verdict = "breach" if metric in breached else "pass"
        if verdict == "pass" and isinstance(threshold, int | float) and isinstance(value, int | float) \
                and threshold and value >= near * threshold:
            verdict = "near"
        out.append({"metric": metric, "value": value, "threshold": threshold, "status": verdict})
    return out


def definition_rows(config: Any, record: dict[str, Any]) -> list[dict[str, Any]]:
    """Per definition: items, deltas, bytes, exclusions, null rates and gate checks."""
    gates = _definition_gates(config, record)
    rows = []
    for def_id, s in sorted((record.get("definitions") or {}).items()):
        delta = s.get("delta") or {}
        ops = delta.get("ops") or {}
        excluded = dict(s.get("excluded") or {})
        row_checks = checks(config, record, def_id, gates.get(def_id) or {})
        rows.append({
            "definition_id": def_id, "kind": s.get("kind"), "entity": s.get("entity"), "template": s.get("template"),
            "items": s.get("items"), "candidates": s.get("candidates"), "base_items": delta.get("base_items"),
            "ops": {op: int(ops.get(op, 0)) for op in OPS if op in ops},
            "adds": int(ops.get("add", 0)) + int(ops.get("join", 0)),
            "removes": int(ops.get("remove", 0)) + int(ops.get("leave", 0)),
            "updates": int(ops.get("update", 0)), "refreshes": int(ops.get("refresh", 0)),
            "events": delta.get("events"), "destinations": s.get("destinations") or [],
            "bytes": s.get("bytes"), "files": s.get("files"),
            "excluded": excluded, "excluded_total": sum(excluded.values()), "warnings": dict(s.get("warnings") or {}),
            "null_rates": dict(s.get("null_rates") or {}), "checks": row_checks,
            "breached": any(c["status"] == "breach" for c in row_checks),
        })
    return rows


def history(root: str, run_id: str, count: int = 10) -> list[dict[str, Any]]:
    """The run and the ``count - 1`` runs before it, oldest first: items per definition, events, timings."""
    ids = [r for r in run_ids(root) if r <= run_id][:count]
    out = []
    for rid in reversed(ids):
        record = read(root, rid)
        if record is None:
            continue
        defs = record.get("definitions") or {}
        out.append({"run_id": rid, "status": record.get("status"),
                    "items": {d: s.get("items") for d, s in defs.items() if isinstance(s, dict)},
                    "events": (record.get("stages") or {}).get("generate", {}).get("events") or 0,
                    "timings": record.get("timings") or {}})
    return out


def run_view(config: Any, run_id: str, runs_back: int = 10) -> dict[str, Any]:
    """The run page: the summary, per definition counts and checks, history for the charts."""
    record = record_of(config.root, run_id)
    past = history(config.root, run_id, runs_back)
    rows = definition_rows(config, record)
    for row in rows:
        row["trend"] = [{"run_id": h["run_id"], "items": h["items"].get(row["definition_id"])} for h in past]
    run = summary(record, config.root)
    return {"run": run, "definitions": rows, "history": past,
            "warnings": list(record.get("warnings") or []),
            "stages": {k: {"status": v.get("status"), "seconds": v.get("seconds"), "error": v.get("error")}
                       for k, v in (record.get("stages") or {}).items() if isinstance(v, dict)},
            "breaches": (record.get("gate") or {}).get("breaches") or [],
            "refresh_seconds": refresh_seconds(config) if run["progress"]["in_progress"] else None}


def refresh_seconds(config: Any) -> int:
    """How often a page showing a run in progress reloads itself (``console.refresh_seconds``)."""
    try:
        return max(1, int(config.get("console.refresh_seconds") or REFRESH_SECONDS))
    except (TypeError, ValueError):
        return REFRESH_SECONDS


# -- a held run's evidence ------------------------------------------------------------------

def review_view(config: Any, run_id: str, samples: int = SAMPLES) -> dict[str, Any]:
    """The held-run review: per breaching definition the evidence, and what approving would do."""
    record = record_of(config.root, run_id)
    gate = record.get("gate") or {}
    rows = {r["definition_id"]: r for r in definition_rows(config, record)}
    breaching: dict[str, list[dict[str, Any]]] = {}
    for b in gate.get("breaches") or []:
        breaching.setdefault(b["definition_id"], []).append(b)
    found = breach_evidence(config, record, samples) if record.get("status") != "rejected" else {}
    definitions = []
    for def_id, breaches in breaching.items():
        row = rows.get(def_id) or {}
        stats = (record.get("definitions") or {}).get(def_id) or {}
        has_delta = bool(stats.get("delta"))
        entry = {"definition_id": def_id, "kind": row.get("kind"), "breaches": breaches,
                 "previous_items": row.get("base_items"), "held_items": row.get("items"),
                 "ops": row.get("ops") or {}, "excluded": row.get("excluded") or {},
                 "checks": row.get("checks") or [], "has_delta": has_delta,
                 "removed": None, "updated": None, "diagnostics_url": f"/definitions/{def_id}/diagnostics?run={run_id}"}
        entry.update(found.get(def_id) or {})
        definitions.append(entry)
    kept = kept_evidence(config.root, run_id) if record.get("status") == "rejected" else None
    for entry in definitions if kept else ():
        entry.update({k: v for k, v in ((kept["definitions"].get(entry["definition_id"]) or {}).items())
                      if k in ("removed", "updated")})
    return {"run": summary(record), "status": record.get("status"), "definitions": definitions,
            "approve_effect": approve_effect(record),
            "evidence_kept_at": kept["kept_at"] if kept else None,
            "decided": {k: gate.get(k) for k in ("decision", "decided_by", "decided_at", "reason")}
            if gate.get("decision") else None}


def approve_effect(record: dict[str, Any]) -> dict[str, Any]:
    """What approving publishes (each definition's files) and emits (events per destination)."""
    files = []
    for def_id, s in sorted((record.get("definitions") or {}).items()):
        files.append({"definition_id": def_id, "kind": s.get("kind"), "folder": s.get("folder"),
                      "files": s.get("files"), "bytes": s.get("bytes"), "items": s.get("items")})
    per_destination: dict[str, Counter] = {}
    for _def_id, s in sorted((record.get("definitions") or {}).items()):
        delta = s.get("delta") or {}
        if not delta.get("send_events", True) or not delta.get("events"):
            continue
        for destination in delta.get("destinations") or ["(events topic)"]:
            counter = per_destination.setdefault(destination, Counter())
            counter.update(delta.get("ops") or {})
    events = [{"destination": d, "events": sum(c.values()), "ops": dict(sorted(c.items()))}
              for d, c in sorted(per_destination.items())]
    return {"files": files, "events": events, "total_events": sum(e["events"] for e in events),
            "total_files": sum(int(f.get("files") or 0) for f in files)}


# -- diagnostics ------------------------------------------------------------------------------

def reason_field(reason: str) -> str:
    """The field an exclusion or warning reason is about: missing_image_link -> image_link."""
    match = _REASON_FIELD.match(reason)
    name = match.group(1) if match and match.group(1) else reason
    return {"price": "price.amount", "id": "offer_id"}.get(name, name)


def diagnostics_view(config: Any, definition_id: str, run_id: str | None = None,
                     runs_back: int = 10) -> dict[str, Any]:
    """A feed's diagnostics, as a Merchant Center user expects them: items excluded by item
    validation grouped by reason with counts, their trend over runs, samples (the rendered
    item and the offending value), and the warnings that did not exclude the item."""
    root = config.root
    ids = [r for r in run_ids(root) if (read(root, r) or {}).get("definitions", {}).get(definition_id)]
    if not ids:
        raise NotFoundError(f"definition {definition_id!r} is in no run under {root}; it gets diagnostics "
                            "once a run has generated it")
    if run_id is None:
        run_id = ids[0]
    elif run_id not in ids:
        raise NotFoundError(f"run {run_id!r} did not generate definition {definition_id!r}")
    record = record_of(root, run_id)
    stats = record["definitions"][definition_id]
    candidates = int(stats.get("candidates") or 0)
    excluded = dict(stats.get("excluded") or {})
    warnings = dict(stats.get("warnings") or {})
    reasons = [{"reason": r, "field": reason_field(r), "count": n,
                "share": round(n / candidates, 6) if candidates else None}
               for r, n in sorted(excluded.items(), key=lambda x: (-x[1], x[0]))]
    trend = []
    for rid in reversed([r for r in ids if r <= run_id][:runs_back]):
        s = (read(root, rid) or {}).get("definitions", {}).get(definition_id) or {}
        trend.append({"run_id": rid, "items": s.get("items"), "candidates": s.get("candidates"),
                      "excluded": dict(s.get("excluded") or {}), "warnings": dict(s.get("warnings") or {})})
    return {"definition_id": definition_id, "run_id": run_id, "status": record.get("status"),
            "template": stats.get("template"), "candidates": candidates, "items": stats.get("items"),
            "excluded_total": sum(excluded.values()), "reasons": reasons,
            "warnings": [{"reason": r, "field": reason_field(r), "count": n}
                         for r, n in sorted(warnings.items(), key=lambda x: (-x[1], x[0]))],
            "trend": trend, "samples": _excluded_samples(config, record, definition_id, stats),
            "runs": ids[:runs_back]}


def _excluded_samples(config: Any, record: dict[str, Any], def_id: str, stats: dict[str, Any]) -> list[dict[str, Any]]:
    entity = stats.get("entity") or "offer"
    key = KEYS.get(entity, "offer_id")
    wanted = {k: reason for reason, keys in (stats.get("excluded_samples") or {}).items() for k in keys[:SAMPLES]}
    rows = read_rows(aggregate_path(config.root, record, entity), key, sorted(wanted))
    definition = _pinned(config, record).get(def_id)
    renderer = None
    if stats.get("template"):
        try:
            renderer = get_renderer(stats["template"], dict(getattr(definition, "options", None) or {}),
                                    config.get("generate.templates_dir"))
        except (FeedgenError, OSError, ValueError):
            renderer = None
    out = []
    for k, reason in sorted(wanted.items(), key=lambda x: (x[1], x[0])):
        row = rows.get(k)
        field = reason_field(reason)
        result = renderer.render(row) if renderer is not None and row is not None else None
        fields = dict(result.fields) if result is not None else {}
        value = fields.get(field, get_path(row, field)) if row is not None else None
        out.append({"key": k, "reason": reason, "field": field, "value": shown(value),
                    "in_source": row is not None, "inspect_url": f"/inspect/{entity}/{k}",
                    "errors": list(result.errors) if result is not None else [],
                    "warnings": list(result.warnings) if result is not None else [],
                    "rendered": json.dumps({f: shown(v) for f, v in fields.items()}, indent=1, ensure_ascii=False,
                                           default=str) if fields else None})
    return out


def delta_markers(root: str, run_id: str) -> list[dict[str, Any]]:
    return list_deltas(root, run_id)


__all__ = ["approve_effect", "diagnostics_view", "history", "review_view", "run_view", "runs", "summary"]
