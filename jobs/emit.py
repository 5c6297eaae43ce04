"""Emit a published run's delta events: to Kafka, or to the JSON-lines outbox without Kafka.

The events were fixed when the run was generated (``runs/<run_id>/deltas/``), so emitting
again sends the same events with the same ids. A run becomes ``emitted`` only when every
delivery report succeeded; otherwise it stays ``published`` and :class:`RunFailed` says
what to do.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from feedgen.core.errors import BadInput, RunFailed
from feedgen.core.runs import crash_point, format_ts, read_run, run_dir, utcnow
from feedgen.generator.snapshots import iter_delta_events, iter_delta_values, list_deltas
from feedgen.jobs.publish import sync_record

log = logging.getLogger(__name__)


def encode_event(event: dict[str, Any]) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """Kafka key, value and headers of one event (ARCHITECTURE.md "Delta events")."""
    value = json.dumps(event, separators=(",", ":"), sort_keys=True).encode()
    return event["key"].encode(), value, _headers(event["op"], event["destinations"], event["event_id"])


def _headers(op: str, destinations: list[str], event_id: str) -> list[tuple[str, bytes]]:
    return [("op", op.encode()), ("destinations", ",".join(destinations).encode()),
            ("event_id", event_id.encode())]


def run_events(root: str | Path, run_id: str):
    """Every event of a run with event delivery, definition by definition."""
    for marker in list_deltas(root, run_id):
        if marker.get("send_events", True):
            yield from iter_delta_events(root, run_id, marker["definition_id"])


def run_messages(root: str | Path, run_id: str):
    """Every event of a run with event delivery as its Kafka key, value and headers
    (``encode_event``'s, written without building the event dicts)."""
    for marker in list_deltas(root, run_id):
        if not marker.get("send_events", True):
            continue
        for key, op, eid, value in iter_delta_values(root, run_id, marker["definition_id"]):
            yield key.encode(), value.encode(), _headers(op, marker["destinations"], eid)


def _write_outbox(root: str, run_id: str) -> dict[str, Any]:
    folder = run_dir(root, run_id) / "events"
    folder.mkdir(parents=True, exist_ok=True)
    total, written = 0, []
    for marker in list_deltas(root, run_id):
        if not marker.get("send_events", True):
            continue
        def_id = marker["definition_id"]
        target = folder / f"{def_id}.jsonl"
        tmp = folder / f".{def_id}.jsonl.{os.getpid()}.tmp"
        n = 0
        with open(tmp, "w", encoding="utf-8") as fh:
            for _key, _op, _eid, value in iter_delta_values(root, run_id, def_id):
                fh.write(value + "\n")
                n += 1
        os.replace(tmp, target)
        total += n
        written.append(target.name)
        crash_point("emit:outbox-file")  # test hook (FEEDGEN_TEST_CRASH_AT); no-op otherwise
    return {"target": "outbox", "path": str(folder), "files": written, "events": total}


def _produce(config: Any, run_id: str) -> dict[str, Any]:
    from confluent_kafka import KafkaException, Producer

    bootstrap = config.get("kafka.bootstrap")
    topic = config.get("kafka.topic") or "feedgen.deltas"
    timeout_ms = int(config.get("kafka.delivery_timeout_ms") or 60000)
    conf = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 20,
        "message.timeout.ms": timeout_ms,
        **(config.get("kafka.producer") or {}),
    }
    failures: list[str] = []
    delivered = 0

    def on_delivery(err, msg) -> None:
        nonlocal delivered
        if err is not None:
            failures.append(f"{msg.key().decode(errors='replace')}: {err.str()}")
        else:
            delivered += 1

    producer = Producer(conf)
    sent, value_bytes = 0, 0
    started = time.monotonic()
    try:
        for key, value, headers in run_messages(config.root, run_id):
            while True:
                try:
                    producer.produce(topic, key=key, value=value, headers=headers,
                                     on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.5)  # local queue full: let deliveries drain
            producer.poll(0)
            sent += 1
            crash_point("emit:event", producer.flush)  # test hook; no-op otherwise
            value_bytes += len(key) + len(value) + sum(len(k) + len(v) for k, v in headers)
        remaining = producer.flush(timeout_ms / 1000 + 10)
    except KafkaException as err:
        raise RunFailed(f"run {run_id}: Kafka at {bootstrap} refused the events ({err}); the run "
                        f"stays published; fix the broker and run `feedgen emit {run_id}`") from err
    seconds = time.monotonic() - started
    if failures or remaining or delivered != sent:
        undelivered = max(len(failures), sent - delivered)
        first = failures[0] if failures else f"{remaining} still queued after the flush timeout"
        raise RunFailed(
            f"run {run_id}: {undelivered} of {sent} events were not delivered to Kafka at "
            f"{bootstrap} (topic {topic}); first: {first}. The run stays published; when the "
            f"broker is back, run `feedgen emit {run_id}` to send the same events again")
    return {"target": "kafka", "bootstrap": bootstrap, "topic": topic, "events": sent,
            "bytes": value_bytes, "seconds": round(seconds, 3)}


def emit_run(config: Any, run_id: str) -> dict[str, Any]:
    """Send run ``run_id``'s events (again); mark it ``emitted`` once every report succeeded."""
    root = config.root
    record = read_run(root, run_id)
    status = record.get("status")
    if status == "held":
        raise BadInput(f"run {run_id} is held by its gates; approve it with "
                       f"`feedgen runs approve {run_id}` before its events can be sent")
    if status not in ("published", "emitted"):
        raise BadInput(f"run {run_id} has status {status!r}; publish it first with "
                       f"`feedgen publish {run_id}`")
    attempts = int((record.get("emit") or {}).get("attempts", 0)) + 1
    started = time.monotonic()
    try:
        if config.get("kafka.bootstrap"):
            result = _produce(config, run_id)
        else:
            result = _write_outbox(root, run_id)
    except RunFailed as err:
        record["emit"] = {"status": "failed", "attempts": attempts, "error": str(err),
                          "at": format_ts(utcnow())}
        sync_record(config, record)
        raise
    record["emit"] = {"status": "done", "attempts": attempts, "emitted_at": format_ts(utcnow()),
                      **result}
    record["status"] = "emitted"
    record.setdefault("stages", {})["emit"] = {"status": "done",
                                               "seconds": round(time.monotonic() - started, 3),
                                               "events": result["events"]}
    sync_record(config, record)
    log.info("emitted run %s: %d events to %s", run_id, result["events"], result["target"])
    return record


__all__ = ["emit_run", "encode_event", "run_events", "run_messages"]
