from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from feedgen.core.config import load_config
from feedgen.core.errors import BadInput, RunFailed
from feedgen.core.runs import read_run
from feedgen.generator.snapshots import event_id, read_snapshot_rows
from feedgen.jobs.cli import main
from feedgen.jobs.emit import emit_run
from feedgen.jobs.lifecycle import release_run
from feedgen.jobs.publish import publish_run
from tests.snapshot_helpers import SMALL_DATA_GATES, apply_events, consume, events_of, generate_run
from tests.support import TansuBroker

DAY1, DAY2 = "2026-11-01T03:00:00Z", "2026-11-02T03:00:00Z"
OFFERS = {f"o{i}": {"price": 10 + i, "title": f"offer {i}"} for i in range(20)}


def _kafka_config(root, bootstrap, topic, timeout_ms=60000):
    return load_config(root=str(root), environ={
        "FEEDGEN__KAFKA__BOOTSTRAP": bootstrap, "FEEDGEN__KAFKA__TOPIC": topic,
        "FEEDGEN__KAFKA__DELIVERY_TIMEOUT_MS": str(timeout_ms)})


def test_without_kafka_events_go_to_the_outbox_and_resending_rewrites_the_same_lines(spark, tmp_path):
    config = load_config(root=str(tmp_path), environ={})
    generate_run(spark, config, "r1", DAY1, {"google-pl": {"o1": {"price": 1}, "o2": {"price": 2}}})
    record = release_run(config, "r1")
    assert record["status"] == "emitted" and record["emit"]["target"] == "outbox"
    outbox = tmp_path / "runs" / "r1" / "events" / "google-pl.jsonl"
    lines = outbox.read_text().splitlines()
    events = {e["key"]: e for e in map(json.loads, lines)}
    assert events["o1"] == {
        "schema_version": 1, "event_id": event_id("r1", "google-pl", "o1", "add"),
        "run_id": "r1", "definition_id": "google-pl", "destinations": ["google"],
        "entity": "offer", "key": "o1", "op": "add", "data": {"price": 1}, "as_of": DAY1}
    emit_run(config, "r1")
    assert outbox.read_text().splitlines() == lines
    assert read_run(tmp_path, "r1")["emit"]["attempts"] == 2


def test_kafka_events_replay_run_n_minus_1_into_run_n(spark, tmp_path, kafka_bootstrap):
    config = _kafka_config(tmp_path, kafka_bootstrap, "replay")
    generate_run(spark, config, "r1", DAY1, {"google-pl": OFFERS})
    release_run(config, "r1")
    first = consume(kafka_bootstrap, "replay", len(OFFERS))
    assert len(first) == len(OFFERS)
    msg = first[0]
    value = json.loads(msg.value())
    assert msg.key().decode() == value["key"]
    assert dict(msg.headers()) == {"op": b"add", "destinations": b"google",
                                   "event_id": value["event_id"].encode()}
    changed = {k: v for k, v in OFFERS.items() if k not in ("o0", "o1")}
    changed["o2"] = {**changed["o2"], "price": 99}
    changed["new"] = {"price": 5, "title": "new"}
    generate_run(spark, config, "r2", DAY2, {"google-pl": changed},
                 gates={"google-pl": {"enabled": False}})
    record = release_run(config, "r2")
    assert record["status"] == "emitted" and record["emit"]["events"] == 4
    run2 = [e for e in events_of(consume(kafka_bootstrap, "replay", len(OFFERS) + 4))
            if e["run_id"] == "r2"]
    assert sorted((e["key"], e["op"]) for e in run2) == [
        ("new", "add"), ("o0", "remove"), ("o1", "remove"), ("o2", "update")]
    assert next(e for e in run2 if e["op"] == "update")["changed"] == ["price"]
    snap1 = {k: json.loads(v["payload"]) for k, v in read_snapshot_rows(tmp_path, "r1", "google-pl").items()}
    snap2 = {k: json.loads(v["payload"]) for k, v in read_snapshot_rows(tmp_path, "r2", "google-pl").items()}
    assert apply_events(snap1, run2) == snap2 == changed


def test_a_held_run_sends_nothing(spark, tmp_path):
    config = load_config(root=str(tmp_path), environ=SMALL_DATA_GATES)
    generate_run(spark, config, "r1", DAY1, {"google-pl": OFFERS})
    release_run(config, "r1")
    generate_run(spark, config, "r2", DAY2, {"google-pl": dict(list(OFFERS.items())[:5])})
    assert release_run(config, "r2")["status"] == "held"
    with pytest.raises(BadInput, match="r2 is held by its gates; approve it"):
        emit_run(config, "r2")
    assert not (tmp_path / "runs" / "r2" / "events").exists()


def test_broker_down_leaves_the_run_published_and_emit_later_sends_the_same_ids(spark, tmp_path):
    broker = TansuBroker().start()
    try:
        cfg_file = tmp_path / "feedgen.yaml"
        cfg_file.write_text(f"kafka:\n  bootstrap: {broker.bootstrap}\n  topic: outage\n"
                            "  delivery_timeout_ms: 3000\n")
        config = load_config(cfg_file, root=str(tmp_path / "var"), environ={})
        generate_run(spark, config, "r1", DAY1, {"google-pl": OFFERS})
        publish_run(config, "r1")
        broker.stop()
        runner = CliRunner()
        args = ["emit", "r1", "--config", str(cfg_file), "--root", str(tmp_path / "var")]
        result = runner.invoke(main, args)
        assert result.exit_code == 1, result.output
        assert "events were not delivered to Kafka" in result.output
        assert "stays published" in result.output and "feedgen emit r1" in result.output
        record = read_run(tmp_path / "var", "r1")
        assert record["status"] == "published" and record["emit"]["status"] == "failed"
        with pytest.raises(RunFailed):
            emit_run(config, "r1")
        broker.start()
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
        assert read_run(tmp_path / "var", "r1")["status"] == "emitted"
        got = events_of(consume(broker.bootstrap, "outage", len(OFFERS)))
        assert sorted(e["event_id"] for e in got) == sorted(
            event_id("r1", "google-pl", k, "add") for k in OFFERS)
    finally:
        broker.stop()


def test_a_definition_without_event_delivery_is_diffed_but_sends_nothing(spark, tmp_path):
    from feedgen.generator.snapshots import snapshot_and_diff
    from tests.snapshot_helpers import items_frame, write_feed_run

    config = load_config(root=str(tmp_path), environ={})
    write_feed_run(tmp_path, "r1", DAY1, {"files-only": {"o1": {"price": 1}}, "google-pl": {"o1": {"price": 1}}})
    for def_id, send in (("files-only", False), ("google-pl", True)):
        summary = snapshot_and_diff(spark, tmp_path, "r1", def_id, items_frame(spark, {"o1": {"price": 1}}),
                                    as_of=DAY1, destinations=["google"] if send else [], events=send)
        assert summary["ops"] == {"add": 1}
    record = release_run(config, "r1")
    assert record["emit"]["events"] == 1 and record["emit"]["files"] == ["google-pl.jsonl"]
