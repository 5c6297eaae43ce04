"""Delta events through the broker to a partner stand-in: events/s delivered end to end.

Produces N events (200,000; 20,000 with --small) to a fresh topic on a tansu broker,
then measures in one run:
  raw     a bare consumer reading the topic (no parsing, no delivery),
  connect ``feedgen connect`` (a separate process) delivering batches of 1,000 to the
          stand-in (Meta items_batch shape) and committing after each,
and prints both rates and their ratio. Run: .venv/bin/python benchmarks/connect.py [--small]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from confluent_kafka import Consumer, Producer  # noqa: E402

from tests.partner_standin import PartnerStandin, make_event, write_config  # noqa: E402
from tests.support import TansuBroker  # noqa: E402


def produce_events(bootstrap: str, topic: str, n: int) -> float:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 10000,
                         "enable.idempotence": True})
    headers = [("op", b"update"), ("destinations", b"bench")]
    data = {"title": "Smartphone X 128 GB, black", "description": "A phone. " * 8,
            "price": {"amount": 1299.0, "currency": "PLN"}, "availability": "in_stock",
            "brand": "Acme", "link": "https://shop.example/o", "image_link": "https://img.example/o.jpg"}
    start = time.perf_counter()
    for i in range(n):
        event = make_event(f"offer-{i:07d}", "update", ["bench"], data=data)
        value = json.dumps(event).encode()
        while True:
            try:
                producer.produce(topic, key=event["key"].encode(), value=value,
                                 headers=[*headers, ("event_id", event["event_id"].encode())])
                break
            except BufferError:
                producer.poll(0.05)
        if i % 1000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise RuntimeError("broker did not take every event")
    return time.perf_counter() - start


def raw_consume(bootstrap: str, topic: str, n: int) -> float:
    """Seconds from the first message to the n-th, consuming in chunks of 1,000."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"raw-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "session.timeout.ms": 6000})
    consumer.subscribe([topic])
    got, first = 0, None
    deadline = time.monotonic() + 300
    while got < n and time.monotonic() < deadline:
        for msg in consumer.consume(1000, 0.5):
            if msg.error() is None:
                if first is None:
                    first = time.perf_counter()
                got += 1
    end = time.perf_counter()
    consumer.close()
    if got < n:
        raise RuntimeError(f"raw consumer read {got} of {n}")
    return end - first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="20,000 events instead of 200,000")
    args = parser.parse_args()
    n = 20_000 if args.small else 200_000

    broker = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
    if not bootstrap:
        broker = TansuBroker().start()
        bootstrap = broker.bootstrap
    standin = PartnerStandin(record_bodies=False).start()
    topic = f"bench-deltas-{uuid.uuid4().hex[:8]}"
    try:
        produce_s = produce_events(bootstrap, topic, n)
        print(f"produced {n:,} events in {produce_s:.2f}s ({n / produce_s:,.0f}/s)")

        raw_s = raw_consume(bootstrap, topic, n)
        raw_rate = n / raw_s
        print(f"raw consume: {raw_s:.2f}s  {raw_rate:,.0f} events/s")

        with tempfile.TemporaryDirectory() as tmp:
            conf = {"type": "meta_catalog_batch", "catalog_id": "1", "token_env": "META_TOKEN",
                    "endpoint": standin.url + "/v21.0/{catalog_id}/items_batch",
                    "batch_size": 1000, "linger_ms": 200, "rate_limit_per_s": 0,
                    "group_id": f"bench-{uuid.uuid4().hex[:8]}"}
            config = write_config(Path(tmp), bootstrap, topic, {"bench": conf})
            env = {**os.environ, "META_TOKEN": "bench"}
            env.pop("KAFKA_BOOTSTRAP", None)
            cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-m", "feedgen.jobs.cli", "--log-level", "WARNING", "connect", "bench",
                 "--config", str(config), "--idle-exit", "3"],
                stdout=subprocess.PIPE, text=True, env=env,
            )
            standin.wait_for(n, timeout=600, proc=proc)
            all_in = time.perf_counter()
            out, _ = proc.communicate(timeout=60)
            cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_s = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
        counts = json.loads(out.strip().splitlines()[-1])
        calls = [c for c in standin.calls if c.status == 200]
        span = calls[-1].at - calls[0].at
        # The first call's own items were delivered in the span too: count calls after the first.
        steady_rate = (n - len(calls[0].items)) / span
        wall_rate = n / (all_in - started)
        print(f"connect: {len(calls)} calls of up to 1,000, delivered={counts['delivered']:,} "
              f"dead_lettered={counts['dead_lettered']} retried={counts['retried']}")
        print(f"connect end to end (first call → last call): {span:.2f}s  {steady_rate:,.0f} events/s")
        print(f"connect incl. process start + group join ({all_in - started:.2f}s): {wall_rate:,.0f} events/s")
        # Other work shares this machine's cores: CPU per event is the figure that does not move with load.
        load = os.getloadavg()[0]
        print(f"connector process CPU: {cpu_s:.2f}s = {cpu_s / n * 1e6:.1f} µs/event "
              f"→ {n / cpu_s:,.0f} events per CPU-second (load average now {load:.1f} on {os.cpu_count()} cores)")
        print(f"ratio delivered / raw consume: {steady_rate / raw_rate:.2f}  (target ≥ 20,000 events/s: "
              f"{'met' if steady_rate >= 20_000 else 'NOT met'})")
    finally:
        standin.stop()
        if broker:
            broker.stop()


if __name__ == "__main__":
    main()
