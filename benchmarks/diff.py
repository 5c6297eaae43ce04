"""Snapshot diff and delta emit at catalog scale.

Two snapshots of N items (default 1,000,000; ``--small``: 100,000) where 1% changed between
runs (0.4% updated, 0.3% removed, 0.3% added). Measures, in one run:

- diff time: ``snapshot_and_diff`` of run 2 against run 1 (writes snapshot X and the deltas);
- events/s produced into a real Kafka-protocol broker (tansu, started here) with the
  idempotent producer, every delivery report awaited;
- bytes of the delta events vs the bytes of sending the full feed as events.

    .venv/bin/python benchmarks/diff.py [--small] [--items N]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _items(spark, n: int, version: int):
    from pyspark.sql import functions as F

    # ids 0..n-1 in run 1; in run 2 ids < 0.3% n are removed, ids n..n+0.3% are new, and
    # 0.4% of the rest get a new price
    removed, added, updated = int(n * 0.003), int(n * 0.003), int(n * 0.004)
    ids = spark.range(0, n) if version == 1 else spark.range(removed, n + added)
    bump = (F.col("id") >= removed) & (F.col("id") < removed + updated) if version == 2 else F.lit(False)
    fields = F.struct(
        F.concat(F.lit("Offer "), F.col("id").cast("string")).alias("title"),
        (F.col("id") % 1000 + 9.99 + F.when(bump, 1).otherwise(0)).alias("price"),
        F.lit("PLN").alias("currency"),
        F.concat(F.lit("https://shop.example/o/"), F.col("id").cast("string")).alias("link"),
        F.when(F.col("id") % 3 == 0, "in_stock").otherwise("preorder").alias("availability"),
        F.concat(F.lit("Brand "), (F.col("id") % 97).cast("string")).alias("brand"),
    )
    payload = F.to_json(fields)
    return ids.select(F.concat(F.lit("o"), F.col("id").cast("string")).alias("key"),
                      F.sha2(payload, 256).alias("hash"), payload.alias("payload"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="100,000 items instead of 1,000,000")
    parser.add_argument("--items", type=int, default=None)
    args = parser.parse_args()
    n = args.items or (100_000 if args.small else 1_000_000)

    from pyspark.sql import functions as F

    from feedgen.core.config import load_config
    from feedgen.core.runs import new_run_record, parse_as_of, write_run
    from feedgen.generator.snapshots import snapshot_and_diff
    from feedgen.jobs.emit import emit_run, encode_event, run_events
    from feedgen.jobs.spark import spark_session
    from tests.support import TansuBroker

    spark = spark_session({"master": "local[2]", "shuffle_partitions": 8, "driver_memory": "3g"})
    root = Path(tempfile.mkdtemp(prefix="feedgen-bench-diff-"))
    broker = TansuBroker().start()
    try:
        t0 = time.monotonic()
        snapshot_and_diff(spark, root, "r1", "bench", _items(spark, n, 1),
                                  as_of="2026-11-01T03:00:00Z", destinations=["google"])
        t_first = time.monotonic() - t0
        x2 = _items(spark, n, 2)
        t0 = time.monotonic()
        summary = snapshot_and_diff(spark, root, "r2", "bench", x2, as_of="2026-11-02T03:00:00Z",
                                    destinations=["google"], base_run_id="r1")
        t_diff = time.monotonic() - t0

        record = new_run_record("r2", parse_as_of("2026-11-02T03:00:00Z"), "local[2]", status="published")
        write_run(root, record)
        config = load_config(root=str(root), environ={
            "FEEDGEN__KAFKA__BOOTSTRAP": broker.bootstrap, "FEEDGEN__KAFKA__TOPIC": "bench.deltas"})
        t0 = time.monotonic()
        emitted = emit_run(config, "r2")["emit"]
        t_emit = time.monotonic() - t0

        # the full feed as events: every item of run 2 as an add, same envelope
        sample = next(run_events(root, "r2"))
        sample = {**sample, "op": "add", "data": {}}
        sample.pop("changed", None)
        key, value, headers = encode_event(sample)
        # per-event bytes besides the data and the key (which appears as Kafka key and in the value)
        envelope = len(value) - len("{}") - len(key) + sum(len(k) + len(v) for k, v in headers)
        payload_bytes = x2.agg(F.sum(F.length("payload") + 2 * F.length("key"))).first()[0]
        full_bytes = payload_bytes + envelope * summary["items"]
        feed_raw = x2.agg(F.sum(F.length("payload"))).first()[0]
    finally:
        broker.stop()
        spark.stop()
        shutil.rmtree(root, ignore_errors=True)

    events = emitted["events"]
    print(f"items per snapshot        {summary['items']:>12,}   (base {summary['base_items']:,})")
    print(f"ops                       {summary['ops']}")
    print(f"first run (all adds)      {t_first:>12.2f} s")
    print(f"diff time (1% changed)    {t_diff:>12.2f} s   {summary['items'] / t_diff:,.0f} items/s")
    print(f"emit into tansu           {t_emit:>12.2f} s   {events / t_emit:,.0f} events/s "
          f"(produce+flush {emitted['seconds']:.2f} s: {events / emitted['seconds']:,.0f} events/s)")
    print(f"event bytes sent          {emitted['bytes']:>12,}")
    print(f"full feed as events       {full_bytes:>12,}   (payload JSON alone {feed_raw:,})")
    print(f"ratio delta / full        {emitted['bytes'] / full_bytes:>12.4f}   "
          f"({full_bytes / emitted['bytes']:.0f}x fewer bytes)")
    print(f"ratio events / items      {events / summary['items']:>12.4f}")


if __name__ == "__main__":
    main()
