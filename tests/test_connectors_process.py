"""``feedgen connect`` as a process: kill -9 mid-stream and restart; SIGTERM; metrics."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

from tests.partner_standin import PartnerStandin, make_event, produce, write_config
from tests.support import free_port
from tests.test_connectors_delivery import ENDPOINTS, section


@pytest.fixture
def standin():
    server = PartnerStandin().start()
    yield server
    server.stop()


def start_connect(config, name, log_path, *extra):
    env = {**os.environ, "META_TOKEN": "meta-secret"}
    env.pop("KAFKA_BOOTSTRAP", None)  # the config file names the broker
    return subprocess.Popen(
        [sys.executable, "-m", "feedgen.jobs.cli", "--json-logs", "connect", name, "--config", str(config), *extra],
        stdout=subprocess.PIPE, stderr=open(log_path, "ab"), env=env, text=True,
    )


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


def committed_total(bootstrap, group, topic):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        offsets = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
    finally:
        consumer.close()
    return sum(max(0, tp.offset) for tp in offsets)


def test_kill_9_mid_stream_then_restart_delivers_everything_duplicating_at_most_one_batch(
        tmp_path, kafka_bootstrap, standin):
    topic = f"deltas-{uuid.uuid4().hex[:8]}"
    keys = [f"o{i:05d}" for i in range(4000)]
    produce(kafka_bootstrap, topic, [make_event(k, "add", ["meta_catalog_batch"]) for k in keys])
    # 100 events a call, 10 calls a second: the stream takes about 4 s, long enough to kill it midway.
    conf = section("meta_catalog_batch", standin.url + ENDPOINTS["meta_catalog_batch"],
                   batch_size=100, linger_ms=100, rate_limit_per_s=10)
    config = write_config(tmp_path, kafka_bootstrap, topic, {"meta_catalog_batch": conf})
    log = tmp_path / "connect.log"

    first = start_connect(config, "meta_catalog_batch", log)
    wait_until(lambda: standin.accepted_items >= 1000, 60, "the first 1,000 events")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    seen_at_kill = len(standin.accepted_keys())
    assert seen_at_kill < len(keys), "the connector finished before it was killed"

    second = start_connect(config, "meta_catalog_batch", log)
    try:
        wait_until(lambda: set(standin.accepted_keys()) >= set(keys), 90, "every event after the restart")
    finally:
        second.send_signal(signal.SIGTERM)
        out, _ = second.communicate(timeout=30)
    assert second.returncode == 0, log.read_text()

    delivered = standin.accepted_keys()
    duplicates = [k for k, n in collections.Counter(delivered).items() if n > 1]
    assert set(delivered) == set(keys)  # nothing lost
    assert len(duplicates) <= conf["batch_size"]  # only the batch that was not committed
    assert all(n == 2 for n in collections.Counter(delivered).values() if n > 1)
    assert committed_total(kafka_bootstrap, conf["group_id"], topic) == len(keys)


def test_sigterm_finishes_the_batch_in_flight_commits_and_exits_0(tmp_path, kafka_bootstrap, standin):
    topic = f"deltas-{uuid.uuid4().hex[:8]}"
    events = [make_event(f"s{i}", "add", ["meta_catalog_batch"]) for i in range(50)]
    produce(kafka_bootstrap, topic, events)
    standin.fail_next("slow", arg=2.0)  # the first call is in flight for 2 s
    conf = section("meta_catalog_batch", standin.url + ENDPOINTS["meta_catalog_batch"])
    config = write_config(tmp_path, kafka_bootstrap, topic, {"meta_catalog_batch": conf})
    port = free_port()
    proc = start_connect(config, "meta_catalog_batch", tmp_path / "connect.log", "--metrics-port", str(port))
    try:
        wait_until(lambda: standin.received >= 1, 60, "the first partner call")
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, (tmp_path / "connect.log").read_text()
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["delivered"] == 50 and summary["commits"] == 1
    assert sorted(standin.accepted_keys()) == sorted(e["key"] for e in events)
    assert committed_total(kafka_bootstrap, conf["group_id"], topic) == 50
    for name in ("feedgen_connector_delivered_total", "feedgen_connector_retried_total",
                 "feedgen_connector_dead_lettered_total", "feedgen_connector_lag"):
        assert f'{name}{{connector="meta_catalog_batch"}}' in metrics
