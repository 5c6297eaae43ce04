"""Helpers shared by the snapshot, gate, publish and emit tests: items frames and run folders."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from feedgen.core.runs import new_run_record, parse_as_of, write_run

# These tests build definitions of a few items; the default min_base_items (50) would keep
# the count and share gates from judging them.
SMALL_DATA_GATES = {"FEEDGEN__GATES__MIN_BASE_ITEMS": "0"}


def item_rows(items: dict[str, dict]) -> list[tuple[str, str, str]]:
    """{key: destination-visible fields} → (key, hash, payload) rows as the generator gives them."""
    rows = []
    for key, fields in sorted(items.items()):
        payload = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        rows.append((key, hashlib.sha256(payload.encode()).hexdigest(), payload))
    return rows


def items_frame(spark, items: dict[str, dict]):
    return spark.createDataFrame(item_rows(items), "key string, hash string, payload string")


def apply_events(state: dict[str, dict], events: list[dict]) -> dict[str, dict]:
    """What a connector does: add/update/refresh/join put the data, remove/leave delete."""
    out = dict(state)
    for event in events:
        if event["op"] in ("remove", "leave"):
            out.pop(event["key"], None)
        else:
            out[event["key"]] = event["data"]
    return out


def write_feed_run(root: Path, run_id: str, as_of: str, feeds: dict[str, dict[str, dict]],
                   status: str = "generating") -> dict:
    """A minimal generated run: one feed file per definition (via generator.parts) + run.json."""
    from feedgen.generator.parts import write_manifest, write_part

    record = new_run_record(run_id, parse_as_of(as_of), "local[2]", status=status)
    for def_id, items in feeds.items():
        folder = root / "runs" / run_id / "feeds" / def_id
        folder.mkdir(parents=True, exist_ok=True)
        body = "".join(f"{k},{json.dumps(v, sort_keys=True)}\n" for k, v in sorted(items.items()))
        part = write_part(folder, "part-00000.csv.gz", body.encode(), len(items))
        write_manifest(folder, definition_id=def_id, kind="feed", run_id=run_id, as_of=as_of,
                       template="generic_csv", fmt="csv", header="key,data\n", footer="",
                       parts=[part])
        nulls = {"price": (sum(1 for v in items.values() if v.get("price") is None) / len(items))
                 if items else 0.0}
        record["definitions"][def_id] = {"kind": "feed", "entity": "offer",
                                         "template": "generic_csv", "items": len(items),
                                         "excluded": {}, "null_rates": nulls}
    write_run(root, record)
    return record


def generate_run(spark, config, run_id: str, as_of: str, feeds: dict[str, dict[str, dict]],
                 destinations=("google",), gates: dict[str, dict] | None = None) -> dict:
    """What the generator does for a run: files, run.json, snapshot + diff per definition, gates."""
    from feedgen.core.serving import current_run_id
    from feedgen.generator.gates import check_run
    from feedgen.generator.snapshots import snapshot_and_diff

    root = Path(config.root)
    record = write_feed_run(root, run_id, as_of, feeds)
    for def_id, items in feeds.items():
        record["definitions"][def_id]["delta"] = snapshot_and_diff(
            spark, root, run_id, def_id, items_frame(spark, items), as_of=as_of,
            destinations=list(destinations), base_run_id=current_run_id(config, def_id))
    check_run(config, record, definition_gates=gates)
    write_run(root, record)
    return record


def consume(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list:
    """Read ``expected`` messages of ``topic`` from the beginning with a separate consumer."""
    import time

    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{topic}",
                         "enable.auto.commit": False})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        out = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(out) < expected:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise RuntimeError(str(msg.error()))
            out.append(msg)
        # a little longer, to catch anything sent beyond what was expected
        extra_deadline = time.monotonic() + 1.0
        while time.monotonic() < extra_deadline:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                out.append(msg)
        return out
    finally:
        consumer.close()


def events_of(messages) -> list[dict]:
    return [json.loads(m.value()) for m in messages]
