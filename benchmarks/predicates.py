"""Membership of 10, 100 and 1,000 realistic feed predicates over 1M offers, in one pass.

    python benchmarks/predicates.py [--offers 1000000] [--feeds 10,100,1000] [--repeat 3]

The offer aggregate is synthesized with Spark (spark.range + expressions over the columns
the predicates use, with the sample data's vocabulary) and cached, so the timings are of
predicate evaluation only. Feeds are drawn at random from the shapes marketers write:
a category, a price band, in stock, a seller rating or a campaign, brands kept or excluded.
Target: 1,000 predicates cost at most 5x 10 predicates.

Spark is run with spark.sql.codegen.hugeMethodLimit=8000 (--huge-method-limit), as Spark's
docs advise on HotSpot: the JVM does not JIT-compile a method over 8,000 bytes of bytecode,
and one whole-stage method evaluating a hundred clauses is larger, so it would run
interpreted (about 3x slower here); past the limit Spark evaluates each column in its own
method instead. --huge-method-limit 65535 (Spark's default) shows the difference.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))  # noqa: E402 - run from a checkout

from feedgen.aggregator.sample_data import BRANDS, CAMPAIGNS, CATEGORIES  # noqa: E402
from feedgen.generator.compile import MATCHES, add_membership, atoms_of, inline_segments, normalize  # noqa: E402
from feedgen.generator.definitions import definitions_from_mapping  # noqa: E402
from feedgen.generator.registry import FEED_TEMPLATES  # noqa: E402

AS_OF = datetime(2026, 11, 22, tzinfo=UTC)
TOPS = sorted({c.split(" > ")[0] for c in CATEGORIES})
MIDS = sorted({" > ".join(c.split(" > ")[:2]) for c in CATEGORIES})


def offers(spark, n: int):
    """A cached offer aggregate of ``n`` rows with the columns the feeds below use."""
    from pyspark.sql import functions as F

    def pick(values: list, salt: int):
        arr = F.array(*[F.lit(v) for v in values])
        return F.element_at(arr, (F.abs(F.hash(F.col("id"), F.lit(salt))) % len(values) + 1).cast("int"))

    def uniform(salt: int):
        return (F.abs(F.hash(F.col("id"), F.lit(salt))) % 1_000_000) / 1_000_000.0

    brand_map = F.create_map(*[x for top in TOPS for x in (F.lit(top), F.array(*[F.lit(b) for b in BRANDS[top]]))])
    campaign_ids = [c[0] for c in CAMPAIGNS]
    base = spark.range(n).select(
        F.col("id"),
        pick(CATEGORIES, 1).alias("cat"),
        F.round(F.exp(F.lit(4.5) + (uniform(2) - 0.5) * 4), 2).alias("amount"),
    )
    df = base.select(
        F.format_string("o%08d", F.col("id")).alias("offer_id"),
        F.format_string("p%07d", (F.col("id") / 3).cast("long")).alias("product_id"),
        F.struct(F.col("cat").alias("path"), F.split(F.col("cat"), " > ").alias("levels"),
                 F.split(F.col("cat"), " > ")[0].alias("top")).alias("category"),
        F.struct(F.col("amount").cast("decimal(18,2)").alias("amount"), F.lit("PLN").alias("currency")).alias("price"),
        F.when(uniform(3) < 0.1, 0).otherwise((uniform(4) * 500).cast("int")).cast("int").alias("stock"),
        pick(["new"] * 17 + ["used"] * 2 + ["refurbished"], 5).alias("condition"),
        F.element_at(F.element_at(brand_map, F.split(F.col("cat"), " > ")[0]),
                     (F.abs(F.hash(F.col("id"), F.lit(6))) % 3 + 1).cast("int")).alias("brand"),
        F.struct(F.round(F.lit(5) - uniform(7) * 2, 2).alias("rating"), pick(["PL", "PL", "CZ", "DE"], 8).alias("country"),
                 F.lit("active").alias("status")).alias("seller"),
        F.when(uniform(9) < 0.3, F.array(pick(campaign_ids, 10))).otherwise(F.array().cast("array<string>"))
        .alias("campaign_ids"),
        F.struct(F.round(F.lit(5) - uniform(11) * 3, 1).alias("average"), (uniform(12) * 200).cast("long").alias("count"))
        .alias("rating"),
    )
    return df.cache()


def feed_definitions(count: int, seed: int = 11) -> dict:
    """``count`` realistic feeds over the five templates."""
    rng = random.Random(seed)
    feeds = []
    for i in range(count):
        where = []
        scope = rng.random()
        if scope < 0.5:
            category = rng.choice(CATEGORIES)
            where.append({"field": "category.path", "eq": category})
        elif scope < 0.8:
            where.append({"field": "category.path", "starts_with": rng.choice(MIDS)})
        else:
            where.append({"field": "category.top", "eq": rng.choice(TOPS)})
        top = (where[0].get("eq") or where[0].get("starts_with")).split(" > ")[0]
        where.append({"field": "price.amount",
                      "between": [rng.choice([0, 5, 10, 20, 50, 100]), rng.choice([200, 500, 1000, 5000, 50000])]})
        if rng.random() < 0.9:
            where.append({"field": "stock", "gt": 0})
        if rng.random() < 0.5:
            where.append({"field": "condition", "eq": "new"})
        brands = BRANDS[top]
        roll = rng.random()
        if roll < 0.4:
            where.append({"not": {"field": "brand", "in": ["NoName", "Generic"]}})
        elif roll < 0.7:
            where.append({"field": "brand", "in": rng.sample(brands, min(len(brands), rng.randint(1, 3)))})
        if rng.random() < 0.6:
            where.append({"any": [
                {"field": "seller.rating", "gte": rng.choice([4.0, 4.5])},
                {"field": "campaign_ids", "contains": rng.choice(CAMPAIGNS)[0]},
            ]})
        if rng.random() < 0.3:
            where.append({"field": "seller.country", "in": rng.sample(["PL", "CZ", "DE"], rng.randint(1, 2))})
        feed = {"id": f"feed-{i:05d}", "template": rng.choice(list(FEED_TEMPLATES)), "where": {"all": where}}
        if feed["template"].startswith("generic_"):
            feed["options"] = {"fields": ["offer_id", "title", "price.amount", "brand"]}
        feeds.append(feed)
    return {"feeds": feeds}


def cpu_seconds(root_pid: int | None) -> float:
    """CPU time of a process and its descendants (the Spark JVM and its Python workers), from /proc.

    Other sessions share this machine's cores, so wall time varies with their load; CPU
    time of our own processes does much less.
    """
    if root_pid is None or not os.path.isdir("/proc"):
        return float("nan")
    parents, ticks = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry)] = int(fields[1])
            ticks[int(entry)] = int(fields[11]) + int(fields[12])
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        total += ticks.get(pid, 0)
        stack.extend(child for child, parent in parents.items() if parent == pid)
    return total / os.sysconf("SC_CLK_TCK")


def run(spark, df, definitions, repeat: int) -> tuple[float, float, int]:
    from pyspark.sql import functions as F

    proc = getattr(spark.sparkContext._gateway, "proc", None)
    pid = proc.pid if proc is not None else None
    times, cpus, total = [], [], 0
    for _ in range(repeat):
        start, cpu = time.perf_counter(), cpu_seconds(pid)
        out = add_membership(df, definitions, AS_OF)
        total = out.select(F.sum(F.size(MATCHES)).alias("n")).collect()[0]["n"]
        times.append(time.perf_counter() - start)
        cpus.append(cpu_seconds(pid) - cpu)
    return statistics.median(times), statistics.median(cpus), int(total)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--offers", type=int, default=1_000_000)
    parser.add_argument("--feeds", default="10,100,1000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--huge-method-limit", type=int, default=8000)
    args = parser.parse_args(argv)
    from feedgen.jobs.spark import spark_session

    spark = spark_session({"master": args.master, "shuffle_partitions": 4, "driver_memory": "6g",
                           "conf": {"spark.sql.codegen.hugeMethodLimit": str(args.huge_method_limit)}})
    df = offers(spark, args.offers)
    rows = df.count()
    sizes = [int(x) for x in args.feeds.split(",")]
    sets = {f: definitions_from_mapping(feed_definitions(f), "benchmark").definitions for f in sizes}
    run(spark, df, sets[sizes[0]], 1)  # warm up the JIT and the cache
    print(f"offers: {rows:,}   spark: {spark.sparkContext.master}   repeat: {args.repeat} (median)   "
          f"hugeMethodLimit: {args.huge_method_limit}")
    print(f"{'feeds':>6} {'clauses':>8} {'distinct':>9} {'wall s':>8} {'ns/offer':>9} {'cpu s':>7} "
          f"{'cpu ns/offer':>13} {'matches/offer':>14}")
    results = {}
    for f in sizes:
        defs = sets[f]
        clauses = sum(len(atoms_of(normalize(inline_segments(d.where, {})))) for d in defs)
        distinct = len({a for d in defs for a in atoms_of(normalize(d.where))})
        seconds, cpu, total = run(spark, df, defs, args.repeat)
        results[f] = (seconds, cpu)
        print(f"{f:>6} {clauses:>8} {distinct:>9} {seconds:>8.2f} {seconds / rows * 1e9:>9.0f} {cpu:>7.2f} "
              f"{cpu / rows * 1e9:>13.0f} {total / rows:>14.2f}")
    if len(sizes) > 1:
        lo, hi = sizes[0], sizes[-1]
        wall, cpu = results[hi][0] / results[lo][0], results[hi][1] / results[lo][1]
        print(f"ratio {hi} vs {lo} feeds: wall {wall:.2f}x, cpu {cpu:.2f}x (target <= 5x): "
              f"{'OK' if max(wall, cpu) <= 5 else 'MISSED'}")
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
