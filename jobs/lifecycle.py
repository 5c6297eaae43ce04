"""What happens to a run after its gates: release, approve or reject.

The CLI (``feedgen runs approve|reject``) and the HTTP server (``POST /runs/<id>/approve``)
both call :func:`approve_run` and :func:`reject_run`, as does the console's
``POST /api/v1/runs/<id>/approve|reject``; the pipeline calls :func:`release_run` once a run
has passed its gates.

A decision is recorded in run.json (``gate.decision``, ``decided_by``, ``decided_at``,
``reason``) and appended to the registry's audit log (:func:`audit_decision`). run.json is
the record the pipeline trusts: when the registry cannot be opened (a file server on an S3
root with no registry database), the decision still stands and a warning says it was not
audited.
"""

from __future__ import annotations

import logging
import shutil
from contextlib import nullcontext
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from feedgen.console.registry import Actor, Registry, registry_url
from feedgen.core.errors import BadInput, FeedgenError
from feedgen.core.runs import format_ts, read_run, root_lock, run_dir, utcnow
from feedgen.core.serving import read_pointer, serving_store
from feedgen.generator.snapshots import list_deltas
from feedgen.jobs.emit import emit_run
from feedgen.jobs.evidence import keep_evidence
from feedgen.jobs.publish import publish_run, sync_record

log = logging.getLogger(__name__)

_RUN_FOLDERS = ("feeds", "segments", "snapshots", "deltas", "events", "membership")


def release_run(config: Any, run_id: str) -> dict[str, Any]:
    """Publish and emit a run that passed its gates; a held run is left as it is."""
    record = read_run(config.root, run_id)
    if record.get("status") == "held":
        return record
    if record.get("status") not in ("published", "emitted"):
        publish_run(config, run_id)
    return emit_run(config, run_id)


def _check_bases_still_current(config: Any, record: dict[str, Any]) -> None:
    # The events were diffed against the run each pointer named then; if another run was
    # published since, replaying them would corrupt what the partners hold.
    store = serving_store(config)
    for marker in list_deltas(config.root, record["run_id"]):
        pointer = read_pointer(store, marker["definition_id"])
        now = pointer["run_id"] if pointer else None
        if now != marker.get("base_run_id"):
            raise BadInput(
                f"run {record['run_id']}: definition {marker['definition_id']!r} was compared with "
                f"run {marker.get('base_run_id')}, but run {now} has been published since; reject "
                f"this run with `feedgen runs reject {record['run_id']}` and start a new one")


def _check_held(record: dict[str, Any], run_id: str, verb: str) -> None:
    if record.get("status") == "held":
        return
    gate = record.get("gate") or {}
    before = ""
    if gate.get("decision"):
        before = (f": it was already {gate['decision']} by {gate.get('decided_by') or '?'} "
                  f"at {gate.get('decided_at') or '?'}")
    raise BadInput(f"run {run_id} has status {record.get('status')!r}, not 'held'{before}; "
                   f"only a run held by its gates can be {verb}")


def audit_decision(config: Any, action: str, run_id: str, by: str | None, reason: str | None,
                   registry: Any = None) -> bool:
    """Append ``run.<action>`` to the registry's audit log (``registry``, else the one
    ``registry.url`` names). False, with a warning, when the registry cannot take it."""
    url = "the given registry" if registry is not None else registry_url(config)
    try:
        reg = registry or Registry.open(url)
        try:
            reg.record(Actor(by or "unknown", "approver"), action, "run", run_id, {"reason": reason})
        finally:
            if registry is None:
                reg.close()
    except (FeedgenError, SQLAlchemyError, OSError) as err:
        log.warning("run %s: the %s by %s was not audited: the registry %s is unavailable (%s); "
                    "run.json keeps the decision", run_id, action, by, url, err,
                    extra={"run_id": run_id, "audited": False})
        return False
    return True


def approve_run(config: Any, run_id: str, *, by: str | None = None, reason: str | None = None,
                registry: Any = None, lock: bool = True) -> dict[str, Any]:
    """Publish and emit a held run. Raises RunFailed (run left published) if Kafka fails."""
    with root_lock(config.root, f"approve-{run_id}") if lock else nullcontext():
        record = read_run(config.root, run_id)
        _check_held(record, run_id, "approved")
        _check_bases_still_current(config, record)
        gate = record.get("gate") or {}
        gate.update({"decision": "approved", "decided_by": by, "decided_at": format_ts(utcnow()),
                     "reason": reason})
        record["gate"] = gate
        sync_record(config, record)
        audit_decision(config, "approve", run_id, by, reason, registry)
        publish_run(config, run_id, approved=True)
        return emit_run(config, run_id)


def _keep_evidence(config: Any, run_id: str) -> None:
    """The review's evidence into ``review.json`` before the deltas it comes from are deleted."""
    try:
        keep_evidence(config, run_id)
    except Exception as err:  # the evidence is for the record: it must never block a reject
        log.warning("run %s: the review evidence was not kept (%s: %s); the run is rejected without it",
                    run_id, type(err).__name__, err, extra={"run_id": run_id})


def reject_run(config: Any, run_id: str, *, by: str | None = None, reason: str | None = None,
               registry: Any = None, lock: bool = True) -> dict[str, Any]:
    """Mark a held run rejected and discard its files; run.json and the review's evidence
    (``review.json``: breakdowns and samples of what the gates caught) stay for the record."""
    with root_lock(config.root, f"reject-{run_id}") if lock else nullcontext():
        record = read_run(config.root, run_id)
        _check_held(record, run_id, "rejected")
        _keep_evidence(config, run_id)
        for name in _RUN_FOLDERS:
            shutil.rmtree(run_dir(config.root, run_id) / name, ignore_errors=True)
        gate = record.get("gate") or {}
        gate.update({"decision": "rejected", "decided_by": by, "decided_at": format_ts(utcnow()),
                     "reason": reason})
        record["gate"] = gate
        record["status"] = "rejected"
        sync_record(config, record)
        audit_decision(config, "reject", run_id, by, reason, registry)
        return record


__all__ = ["approve_run", "audit_decision", "reject_run", "release_run"]
