"""Single-pass generation vs one job per feed vs a plain Spark write of the same bytes.

    .venv/bin/python benchmarks/generate.py [--offers N | --small] [--feeds 10,100,1000] [--sample 50]

A synthetic offer aggregate (1M offers by default, 100k with --small; built in Spark and
cached under --work) and F feeds over 3 templates (Google RSS, Meta XML, Meta CSV); feed
i keeps the offers of the sellers s with s % F == i (1,000 sellers), so each feed matches
about 1/F of the catalog and the output stays at about one item per offer in total.
For each F, in one run:
  (a) feedgen's single pass: ``generate_entity`` (membership, render once per template,
      parts written by the tasks, manifests);
  (b) the old design: per feed one Spark job that filters the aggregate, renders the
      matches and writes them (``df.write.text``, gzip); timed on a random sample of
      ``--sample`` feeds and scaled to F (the output says so);
  (c) the floor: a plain Spark write (``df.write.text``, gzip) of the same output bytes,
      already rendered (prepared untimed);
  (c') render + write: one Spark job that renders every offer once and writes the text,
      with no membership, routing or manifests;
  (m) a mixed pass at the largest F: the same feeds, but every --mixed-every-th one is a
      generic_csv feed (fields chosen in options). Since issue #20 the JVM renders generic
      CSV/TSV too (generator/jvm/RenderGeneric.java), so every output takes the JVM path;
      the line says how many outputs each path rendered, and why Python where one did (from
      the stats, as run.json has them). With --mixed-python, the same pass all in Python:
      what a mixed pass cost before either change. (m) prints wall time only: CPU is
      not comparable there, as Python workers started earlier may exit during it and take
      their CPU seconds out of the process tree.
(a), (b) and (c') render with the renderer feedgen picks: the JVM renderer for these three
built-in templates when a JDK was there to compile it (generator/jvm.py), Python with
--python. Times are wall seconds; CPU is the seconds used by this process and its children (the
JVM and the Python workers), printed because the machine may be shared. One untimed
warm-up (a plain write and a single pass) runs first, so that every timed figure is of a
warm JVM; its times are printed, as the cost of a cold first pass. (a), (c) and (c') run
--repeat times (2) and the fastest run is reported: on a shared VM single runs of the
same job vary by ±20 %. All (a) runs come before all (b) runs. Every run writes to a folder of its own and all outputs are
removed at the end, not between runs: on a file system that recycles inodes lazily (ext4
without a journal, as on the VM these figures come from) creating files within seconds of
deleting thousands costs several times as much (from 0.03 ms to as much as 1 ms of kernel time per file created),
which a scheduled run, whose predecessors retention removed long before, does not pay.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

TEMPLATES = ("google_merchant_rss", "meta_catalog_xml", "meta_catalog_csv")
SELLERS = 1000
AS_OF = datetime(2026, 11, 22, 3, 5, tzinfo=UTC)


def tree_cpu() -> dict[int, float]:
    """CPU seconds used so far by this process and each of its descendants, by pid."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    used: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                data = fh.read()
        except OSError:
            continue
        fields = data[data.rindex(")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(name))
        # utime stime cutime cstime: reaped workers count in their parent's cutime
        used[int(name)] = sum(int(x) for x in fields[11:15])
    out, todo = {}, [os.getpid()]
    while todo:
        pid = todo.pop()
        out[pid] = used.get(pid, 0) / tick
        todo.extend(children.get(pid, []))
    return out


def cpu_since(before: dict[int, float]) -> float:
    """CPU seconds the process tree used since ``before``: a process that has exited since
    (a Python worker reaped outside the tree) drops out instead of making the sum negative."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in tree_cpu().items())


def timed(fn, repeat: int = 1) -> tuple[float, float]:
    """(wall, cpu) seconds of ``fn()``: the run with the least wall time of ``repeat`` runs."""
    runs = []
    for _ in range(repeat):
        cpu, wall = tree_cpu(), time.monotonic()
        fn()
        runs.append((time.monotonic() - wall, cpu_since(cpu)))
    return min(runs)


def synth_offers(spark, n: int):
    """n offers of OFFER_AGGREGATE_SCHEMA, made in Spark (no Python per row)."""
    from pyspark.sql import functions as F

    from feedgen.aggregator.schemas import OFFER_AGGREGATE_SCHEMA

    i = F.col("id")
    seller = F.pmod(F.hash(i, F.lit(7)), F.lit(SELLERS))
    price = (F.pmod(F.hash(i, F.lit(3)), F.lit(500_000)) / 100 + 1).cast("decimal(18,2)")
    brand = F.try_element_at(F.array(*[F.lit(b) for b in ("Acme", "Zeta", "Nova", "Orbit")]),
                             (i % 5 + 1).cast("int"))
    top = F.element_at(F.array(*[F.lit(t) for t in ("Electronics", "Home", "Garden", "Toys", "Fashion")]),
                       (i % 5 + 1).cast("int"))

    def money(amount):
        return F.struct(amount.alias("amount"), F.lit("PLN").alias("currency"))

    cols = {
        "offer_id": F.format_string("off-%08d", i),
        "product_id": F.format_string("p-%d", i % 50_000),
        "seller_id": F.format_string("s-%d", seller),
        "title": F.format_string("%s Phone %d 128 GB & case <new>", F.coalesce(brand, F.lit("Generic")), i % 977),
        "description": F.repeat(F.lit("Fast shipping from Poland. Condition: new. "), (i % 4 + 1).cast("int")),
        "category": F.struct(F.concat(top, F.lit(" > Phones > Smartphones")).alias("path"),
                             F.array(top, F.lit("Phones"), F.lit("Smartphones")).alias("levels"),
                             top.alias("top")),
        "price": money(price),
        "sale_price": F.when(i % 7 == 0, money((price * 0.9).cast("decimal(18,2)"))),
        "effective_price": money(price),
        "stock": (i % 21).cast("int"),
        "availability": F.when(i % 10 == 0, "out_of_stock").otherwise("in_stock"),
        "condition": F.lit("new"),
        "brand": brand,
        "gtin": F.when(i % 3 != 0, F.lit("5901234123457")),
        "mpn": F.when(i % 2 == 1, F.format_string("MPN-%d", i)),
        "link": F.format_string("https://shop.example.com/offer/%d?ref=feed&x=1", i),
        "image_link": F.format_string("https://img.example.com/%d.jpg", i),
        "attributes": F.create_map(F.lit("color"), F.lit("black")),
        "updated_at": F.lit("2026-11-01 12:00:00").cast("timestamp"),
        "seller": F.struct(F.format_string("s-%d", seller).alias("seller_id"), F.lit("Seller").alias("name"),
                           F.lit(4.5).alias("rating"), F.lit("PL").alias("country"),
                           F.lit("active").alias("status")),
        "product": F.struct(F.format_string("p-%d", i % 50_000).alias("product_id"),
                            F.lit("Phone").alias("name"), brand.alias("brand"),
                            F.lit("Electronics").alias("category_path"), F.lit(None).cast("string").alias("gtin")),
        "campaigns": F.array(),
        "campaign_ids": F.array(),
        "rating": F.struct(F.lit(4.1).alias("average"), F.lit(12).cast("long").alias("count")),
    }
    parts = max(2, n // 125_000)
    return spark.range(n, numPartitions=parts).select(
        *[cols[f.name].cast(f.dataType).alias(f.name) for f in OFFER_AGGREGATE_SCHEMA.fields])


GENERIC = {"template": "generic_csv", "options": {"fields": ["offer_id", "title", "price.amount", "link"]}}


def feed_definitions(feeds: int, generic_every: int = 0):
    """F feeds over the 3 built-in templates; with ``generic_every`` n, every n-th is a generic_csv feed."""
    from feedgen.generator.definitions import definitions_from_mapping

    mapping = {"feeds": [{
        "id": f"feed-{i:04d}", "template": TEMPLATES[i % len(TEMPLATES)],
        "where": {"field": "seller_id", "in": [f"s-{s}" for s in range(i, SELLERS, feeds)]},
        **(GENERIC if generic_every and i % generic_every == generic_every - 1 else {}),
    } for i in range(feeds)]}
    return list(definitions_from_mapping(mapping))


def _render_texts(template: str):
    """mapInArrow function: aggregate rows → their rendered text (None when excluded)."""

    def run(batches):
        import pyarrow as pa

        from feedgen.generator.generate import _batch_rows, _converter
        from feedgen.generator.render import get_renderer

        renderer = get_renderer(template)
        converters = None
        for batch in batches:
            converters = converters or [_converter(f.type) for f in batch.schema]
            texts = [renderer.render(item).text for item in _batch_rows(batch, converters)]
            yield pa.RecordBatch.from_arrays([pa.array([t for t in texts if t is not None], pa.string())],
                                             names=["value"])

    return run


def _texts(spark, df, template: str, jvm: bool):
    """The rendered texts of ``df``'s offers (excluded ones dropped), by feedgen's renderer."""
    from pyspark.sql import functions as F

    from feedgen.generator.generate import render_projection
    from feedgen.generator.jvm import jvm_renderable, render_column
    from feedgen.generator.render import get_renderer

    if jvm and jvm_renderable(spark, template, {}, df.schema):
        return df.select(render_column(template, payload=False).getField("text").alias("value")).where(F.col("value").isNotNull())
    cols = render_projection(df.schema, [get_renderer(template)], "offer_id")
    return df.select(*cols).mapInArrow(_render_texts(template), "value string")


def old_design_feed(spark, df, definition, out: Path, jvm: bool) -> None:
    """One feed the old way: filter, render, write (its own Spark job), with the same renderer as (a)."""
    from feedgen.generator.compile import compile_predicate

    matched = df.where(compile_predicate(definition.where, df.schema, AS_OF))
    (_texts(spark, matched, definition.template, jvm)
     .write.mode("overwrite").option("compression", "gzip").text(str(out)))


def one_template_per_offer(spark, df, jvm: bool = False):
    """Each offer rendered once, with the template its feed uses (the output of every F)."""
    from pyspark.sql import functions as F

    # feed i uses TEMPLATES[i % 3]; with s % F == i, the template of seller s is (s % F) % 3.
    # For the floor it is enough that each offer is rendered by one of the 3 templates.
    pick = F.pmod(F.hash("offer_id"), F.lit(len(TEMPLATES)))
    parts = [_texts(spark, df.where(pick == n), t, jvm) for n, t in enumerate(TEMPLATES)]
    return parts[0].unionByName(parts[1]).unionByName(parts[2])


def mixed_pass(spark, df, feeds: int, args, out: Path, runs, jvm: bool) -> tuple[float, float | None]:
    """(m): built-in and generic_csv feeds in one pass; prints each path's outputs and Python's
    reasons. Returns its wall seconds, and those of the same pass all in Python (--mixed-python)."""
    from collections import Counter

    from feedgen.generator.generate import generate_entity

    definitions = feed_definitions(feeds, args.mixed_every)
    stats: dict = {}

    def run(jvm: bool = jvm) -> None:
        stats.update(generate_entity(spark, df, definitions, entity="offer", root=out / "root",
                                     run_id=f"bench-mixed-{feeds}-{next(runs)}", as_of=AS_OF, jvm=jvm))

    wall, _ = timed(run, args.repeat)
    paths = Counter((s["render_path"], s["template"], s["input"]) for s in stats.values())
    reasons = Counter(s["reason"] for s in stats.values() if s["reason"])
    items = sum(s["items"] for s in stats.values())
    print(f"F={feeds:5}: (m) {wall:7.1f} s wall, {items:,} items; outputs by render path: "
          + ", ".join(f"{n} {path} ({template}, input {read})" for (path, template, read), n in sorted(paths.items()))
          + "".join(f"\n         python because: {reason} ({n})" for reason, n in reasons.items()), flush=True)
    if not args.mixed_python:
        return wall, None
    python, _ = timed(lambda: run(jvm=False))
    print(f"F={feeds:5}: (m) all in Python: {python:7.1f} s wall", flush=True)
    return wall, python


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--offers", type=int, default=1_000_000)
    parser.add_argument("--small", action="store_true", help="100k offers")
    parser.add_argument("--feeds", default="10,100,1000")
    parser.add_argument("--sample", type=int, default=50, help="feeds timed for (b)")
    parser.add_argument("--work", default="/tmp/feedgen-bench-generate")
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--python", action="store_true", help="render in Python even where the JVM renderer applies")
    parser.add_argument("--repeat", type=int, default=2, help="runs of (a), (c) and (c') each; the fastest is reported")
    parser.add_argument("--mixed-every", type=int, default=10,
                        help="(m): every n-th feed is generic_csv (0: no mixed pass)")
    parser.add_argument("--mixed-python", action="store_true",
                        help="(m) also all in Python (slow: every offer rendered in Python)")
    args = parser.parse_args()
    n = 100_000 if args.small else args.offers
    counts = [int(f) for f in args.feeds.split(",")]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    from _common import write_rendered_text
    from pyspark.sql import functions as F

    from feedgen.generator.generate import generate_entity
    from feedgen.jobs.spark import spark_session

    spark = spark_session({"master": args.master, "shuffle_partitions": 8, "driver_memory": "4g"})
    for leftover in [*work.glob("out-*"), work / "root", work / "old"]:   # of killed runs
        shutil.rmtree(leftover, ignore_errors=True)
    out = work / f"out-{os.getpid()}"
    aggregate = work / f"offers-{n}"
    if not (aggregate / "_SUCCESS").exists():
        print(f"building a {n:,}-offer aggregate at {aggregate} ...", flush=True)
        synth_offers(spark, n).write.mode("overwrite").parquet(str(aggregate))
    df = spark.read.parquet(str(aggregate))
    texts = work / f"texts-{n}"
    if not (texts / "_SUCCESS").exists():
        one_template_per_offer(spark, df).write.mode("overwrite").parquet(str(texts))
    out_bytes = spark.read.parquet(str(texts)).select(F.sum(F.length("value") + 1)).first()[0]
    load = os.getloadavg()[0]
    print(f"{n:,} offers, {SELLERS} sellers, templates {', '.join(TEMPLATES)}; master {spark.sparkContext.master}, "
          f"{os.cpu_count()} cores, load average {load:.1f}; output about {out_bytes / 1e6:.0f} MB raw",
          flush=True)

    def floor() -> None:
        write_rendered_text(spark, texts, work / "floor")

    jvm = not args.python
    # warm-up, untimed in the table: the first Spark job of a process pays for class loading,
    # code generation and JIT compilation (each (b) job and a scheduled `feedgen run --every`
    # process do not), so every timed figure below is of a warm JVM
    warm_floor, _ = timed(floor)
    warm_pass, _ = timed(lambda: generate_entity(spark, df, feed_definitions(min(counts)), entity="offer",
                                                 root=out / "root", run_id="warm-up", as_of=AS_OF, jvm=jvm))
    print(f"warm-up (first in this process, not in the table): (c) {warm_floor:.1f} s, "
          f"(a) at F={min(counts)} {warm_pass:.1f} s", flush=True)
    floor_wall, floor_cpu = timed(floor, args.repeat)
    render_wall, render_cpu = timed(lambda: one_template_per_offer(spark, df, jvm).write.mode("overwrite")
                                    .option("compression", "gzip").text(str(work / "render-floor")), args.repeat)
    print(f"(c)  plain Spark write of the rendered bytes: {floor_wall:7.1f} s wall {floor_cpu:7.1f} s cpu")
    print(f"(c') one render per offer + Spark write:       {render_wall:7.1f} s wall {render_cpu:7.1f} s cpu\n",
          flush=True)

    # every (a) first, then every (b): the per-feed jobs leave thousands of written pages
    # and committed-then-deleted temporary folders behind, which would slow the file
    # creation of the single pass timed right after them
    runs = itertools.count()
    single: dict[int, tuple] = {}
    for feeds in counts:
        definitions = feed_definitions(feeds)
        stats: dict = {}

        def single_pass(definitions=definitions, feeds=feeds, stats=stats) -> None:
            stats.update(generate_entity(spark, df, definitions, entity="offer", root=out / "root",
                                         run_id=f"bench-{feeds}-{next(runs)}", as_of=AS_OF, jvm=jvm))

        a_wall, a_cpu = timed(single_pass, args.repeat)
        items = sum(s["items"] for s in stats.values())
        # executor-counted renders: definitions of one template share them
        renders = sum(max((s["renders"] for s in stats.values() if s["template"] == t), default=0)
                      for t in TEMPLATES)
        single[feeds] = (a_wall, a_cpu, items)
        first = next(iter(stats.values()))
        print(f"F={feeds:5}: (a) {a_wall:7.1f} s wall {a_cpu:7.1f} s cpu, {items:,} items, {renders:,} renders, "
              f"rendered in {first['render_path']} (input read as {first['input']})", flush=True)

    mixed = mixed_pass(spark, df, max(counts), args, out, runs, jvm) if args.mixed_every else None

    rng = random.Random(4)
    rows = []
    for feeds in counts:
        definitions = feed_definitions(feeds)
        sample = definitions if feeds <= args.sample else rng.sample(definitions, args.sample)
        old = out / f"old-{feeds}"

        def old_design(sample=sample, old=old) -> None:
            for d in sample:
                old_design_feed(spark, df, d, old / d.id, jvm)

        b_wall, b_cpu = timed(old_design)
        scale = feeds / len(sample)
        a_wall, a_cpu, items = single[feeds]
        rows.append((feeds, a_wall, a_cpu, b_wall * scale, b_cpu * scale, len(sample), items))
        print(f"F={feeds:5}: (b) {b_wall:7.1f} s for {len(sample)} feeds → {b_wall * scale:8.1f} s scaled to {feeds}",
              flush=True)

    a10 = next((r for r in rows if r[0] == min(counts)), rows[0])
    print(f"\n   F  (a) single s  (b) per-feed s  (b)/(a)  (a)/(a@F={a10[0]})  (a)/(c)  (a)/(c')  "
          "(a) cpu  (b) cpu  (b)/(a) cpu")
    for feeds, a_wall, a_cpu, b_wall, b_cpu, sampled, _items in rows:
        note = "" if sampled == feeds else f"  (b: {sampled} feeds timed, ×{feeds / sampled:g})"
        print(f"{feeds:5} {a_wall:12.1f} {b_wall:15.1f} {b_wall / a_wall:8.1f} {a_wall / a10[1]:13.2f} "
              f"{a_wall / floor_wall:8.2f} {a_wall / render_wall:9.2f} {a_cpu:8.1f} {b_cpu:8.1f} "
              f"{b_cpu / a_cpu:12.1f}{note}")
    if mixed:
        m_wall, m_python = mixed
        a_wall = single[max(counts)][0]
        print(f"\n(m) mixed pass at F={max(counts)}, every {args.mixed_every}th feed generic_csv: {m_wall:.1f} s, "
              f"(m)/(a) {m_wall / a_wall:.2f}, (m)/(c) {m_wall / floor_wall:.2f}"
              + (f", all in Python {m_python:.1f} s = {m_python / m_wall:.1f} × (m)" if m_python else ""))
    print(f"\n(a), (c), (c'): fastest of {args.repeat} runs. (c) = {floor_wall:.1f} s, (c') = {render_wall:.1f} s. Targets: (b)/(a) ≥ 20 at F=1000; "
          f"(a@1000)/(a@10) ≤ 3; (a)/(c) ≤ 2.5.")
    spark.stop()
    shutil.rmtree(out, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
