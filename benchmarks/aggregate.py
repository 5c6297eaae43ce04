"""Aggregate benchmark: sample-data → aggregate, against a plain Spark read + write of the same sources.

    .venv/bin/python benchmarks/aggregate.py [--offers 1000000] [--customers 200000] [--small]

Prints rows/s of the aggregate and the ratio of its time to the floor: reading every
source and writing it back as Parquet, in the same SparkSession, in the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path


def _jvm_cpu(spark) -> float:
    """CPU seconds (user + system) used so far by the local Spark JVM; 0.0 where /proc is missing."""
    try:
        pid = spark.sparkContext._gateway.proc.pid
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (AttributeError, OSError, ValueError):
        return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--offers", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--small", action="store_true", help="100k offers, 20k customers")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args()
    if args.small:
        args.offers, args.customers = 100_000, 20_000

    from _common import read_write_sources

    from feedgen.aggregator.job import run_aggregate
    from feedgen.aggregator.sample_data import write_sample_data
    from feedgen.core.config import load_config
    from feedgen.jobs.spark import spark_session

    root = Path(tempfile.mkdtemp(prefix="feedgen-bench-agg-"))
    try:
        t0 = time.monotonic()
        summary = write_sample_data(root / "sample", offers=args.offers, customers=args.customers, seed=7)
        sample_s = time.monotonic() - t0
        rows_in = sum(summary["rows"].values())
        config = load_config(root=str(root))
        spark = spark_session(config["spark"])
        # Warm up the JVM and the Python workers once, so neither side pays for it.
        spark.read.parquet(str(root / "sample" / "sellers")).count()

        t0, c0 = time.monotonic(), _jvm_cpu(spark)
        read_write_sources(spark, root / "sample", root / "floor")
        floor_s, floor_cpu = time.monotonic() - t0, _jvm_cpu(spark) - c0

        t0, c0 = time.monotonic(), _jvm_cpu(spark)
        steps: list[tuple[str, float, float]] = [("reading, checking schemas", t0, c0)]
        stats = run_aggregate(spark, config, "20261110T000000Z-bench0", datetime(2026, 11, 10, tzinfo=UTC),
                              progress=lambda message: steps.append((message, time.monotonic(), _jvm_cpu(spark))))
        agg_s, agg_cpu = time.monotonic() - t0, _jvm_cpu(spark) - c0
        ends = [(at, cpu) for _m, at, cpu in steps[1:]] + [(t0 + agg_s, c0 + agg_cpu)]

        t0, c0 = time.monotonic(), _jvm_cpu(spark)
        read_write_sources(spark, root / "sample", root / "floor2")
        floor2_s, floor2_cpu = time.monotonic() - t0, _jvm_cpu(spark) - c0
        floor, floor_cpu = min(floor_s, floor2_s), min(floor_cpu, floor2_cpu)

        print(f"sources: {args.offers:,} offers, {args.customers:,} customers, {rows_in:,} rows in all "
              f"(sample-data took {sample_s:.1f}s)")
        print(f"spark master: {spark.sparkContext.master}, shuffle partitions: {config.get('spark.shuffle_partitions')}")
        print(f"{'stage':<34}{'seconds':>10}{'rows/s':>14}")
        print(f"{'floor: read + write every source':<34}{floor:>10.1f}{rows_in / floor:>14,.0f}   (runs: {floor_s:.1f}s, {floor2_s:.1f}s)")
        print(f"{'aggregate (validate, join, write)':<34}{agg_s:>10.1f}{rows_in / agg_s:>14,.0f}")
        print(f"ratio aggregate / floor: {agg_s / floor:.2f}x")
        if floor_cpu > 0:  # CPU of the Spark JVM: steadier than wall time on a shared machine
            print(f"JVM CPU seconds: floor {floor_cpu:.1f}, aggregate {agg_cpu:.1f}, ratio {agg_cpu / floor_cpu:.2f}x")
        print("aggregate steps (each until the next one starts; wall, JVM CPU):")
        for (message, start, cpu), (end, end_cpu) in zip(steps, ends, strict=True):
            print(f"  {message:<32}{end - start:>8.1f}s{end_cpu - cpu:>8.1f}s")
        print(f"offer aggregate rows: {stats['entities']['offer']['rows']:,}, "
              f"customer aggregate rows: {stats['entities']['customer']['rows']:,}")
        for name, s in stats["sources"].items():
            print(f"  {name:<10} rows {s['rows']:>10,}  quarantined {s['quarantined']:>7,} ({s['share']:.2%})")
        spark.stop()
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"data kept in {root}")


if __name__ == "__main__":
    main()
