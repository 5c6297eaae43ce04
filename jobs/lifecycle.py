"""What happens to a run after its gates: release, approve or reject.

The CLI (``feedgen runs approve|reject``) and the HTTP server (``POST /runs/<id>/approve``)
both call :func:`approve_run` and :func:`reject_run`; the pipeline calls
:func:`release_run` once a run has passed its gates.
"""

from __future__ import annotations

import shutil
from contextlib import nullcontext
from typing import Any

from feedgen.jobs.emit import emit_run
from feedgen.jobs.errors import BadInput
from feedgen.jobs.publish import publish_run, read_pointer, serving_store, sync_record
from feedgen.jobs.runs import format_ts, read_run, root_lock, run_dir, utcnow

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
    from feedgen.generator.snapshots import list_deltas

    store = serving_store(config)
    for marker in list_deltas(config.root, record["run_id"]):
        pointer = read_pointer(store, marker["definition_id"])
        now = pointer["run_id"] if pointer else None
        if now != marker.get("base_run_id"):
            raise BadInput(
                f"run {record['run_id']}: definition {marker['definition_id']!r} was compared with "
                f"run {marker.get('base_run_id')}, but run {now} has been published since; reject "
                f"this run with `feedgen runs reject {record['run_id']}` and start a new one")


def approve_run(config: Any, run_id: str, *, by: str | None = None, lock: bool = True) -> dict[str, Any]:
    """Publish and emit a held run. Raises RunFailed (run left published) if Kafka fails."""
    with root_lock(config.root, f"approve-{run_id}") if lock else nullcontext():
        record = read_run(config.root, run_id)
        if record.get("status") != "held":
            raise BadInput(f"run {run_id} has status {record.get('status')!r}, not 'held'; "
                           "only a run held by its gates can be approved")
        _check_bases_still_current(config, record)
        gate = record.get("gate") or {}
        gate.update({"decision": "approved", "decided_by": by, "decided_at": format_ts(utcnow())})
        record["gate"] = gate
        sync_record(config, record)
        publish_run(config, run_id, approved=True)
        return emit_run(config, run_id)


def reject_run(config: Any, run_id: str, *, by: str | None = None, lock: bool = True) -> dict[str, Any]:
    """Mark a held run rejected and discard its files (run.json stays for the record)."""
    with root_lock(config.root, f"reject-{run_id}") if lock else nullcontext():
        record = read_run(config.root, run_id)
        if record.get("status") != "held":
            raise BadInput(f"run {run_id} has status {record.get('status')!r}, not 'held'; "
                           "only a run held by its gates can be rejected")
        for name in _RUN_FOLDERS:
            shutil.rmtree(run_dir(config.root, run_id) / name, ignore_errors=True)
        gate = record.get("gate") or {}
        gate.update({"decision": "rejected", "decided_by": by, "decided_at": format_ts(utcnow())})
        record["gate"] = gate
        record["status"] = "rejected"
        sync_record(config, record)
        return record


__all__ = ["approve_run", "reject_run", "release_run"]
