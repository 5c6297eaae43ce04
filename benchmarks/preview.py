"""The console's preview and explain on a warm engine, at 1M offers and 200k customers.

    feedgen sample-data --out /tmp/bench-preview/sample --offers 1000000 --customers 200000
    feedgen run --root /tmp/bench-preview --as-of 2026-11-22T03:05:00Z      # aggregate + one published run
    .venv/bin/python benchmarks/preview.py --root /tmp/bench-preview [--repeat 7]

The engine (console/preview.py) is warmed first: Spark started, both aggregates read and
cached, one untimed preview of each kind (for (b), a pick_one_per feed, that includes the
one render of the aggregate that finds the offers Google's template refuses, which the
engine keeps per aggregate and template). Then, each ``--repeat`` times, in turn:

  (a) count + 20 rendered samples of a new feed, and of a new segment with a history leaf;
      the floor: a bare ``filter(compiled predicate).count()`` of the same feed on the same
      cached aggregate, in the same session;
  (b) the change against what is published, for an edit of a published feed with event
      delivery (google-electronics: a price cap), with the gate forecast;
  (c) explain of one offer id against every published offer definition.

p50/p95 are of the repeats (with 7 repeats p95 is the slowest but one, interpolated).
The cached aggregates' size in memory is read from Spark's storage status.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

FEED = {"id": "bench-new-feed", "template": "google_merchant_rss", "where": {"all": [
    {"field": "category.top", "eq": "Electronics"}, {"field": "price.amount", "between": [50, 2000]},
    {"any": [{"field": "seller.rating", "gte": 4.0}, {"field": "campaign_ids", "contains": "black-friday"}]},
    {"not": {"field": "brand", "in": ["NoName", "Generic"]}}]}}
SEGMENT = {"id": "bench-new-segment", "where": {"all": [
    {"history": "orders", "within_last": "90d", "count": {"gte": 2}},
    {"not": {"history": "orders", "within_last": "30d", "exists": True}}]}, "exports": ["ids_csv"]}
EDITED = "google-electronics"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    k = (len(ordered) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def timed(fn) -> tuple[float, object]:
    t0 = time.monotonic()
    out = fn()
    return time.monotonic() - t0, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/tmp/bench-preview")
    parser.add_argument("--definitions", default=str(Path(__file__).resolve().parents[1] / "examples" / "definitions"))
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)

    from feedgen.console.preview import PreviewEngine
    from feedgen.core.config import load_config
    from feedgen.core.serving import current_run_id
    from feedgen.generator.definitions import load_definitions

    config = load_config(root=args.root)
    published = load_definitions(args.definitions, validate=False)
    engine = PreviewEngine(config, published=lambda: published)
    base_run = current_run_id(config, EDITED)
    if base_run is None:
        print(f"no published run for {EDITED} under {args.root}: run `feedgen run --root {args.root}` first")
        return 2
    edited = dict(next(d for d in _bodies(args.definitions) if d["id"] == EDITED))
    edited["where"] = {"all": [edited["where"], {"field": "price.amount", "lt": 1000}]}

    t_warm, _ = timed(lambda: (engine.aggregate("offer"), engine.aggregate("customer")))
    offers, customers = engine.aggregate("offer"), engine.aggregate("customer")
    print(f"warm-up: Spark + both aggregates read and cached in {t_warm:.1f}s "
          f"(offers {offers.rows:,} rows of run {offers.run_id}, customers {customers.rows:,})")
    print(f"cached: {_cached_mb(engine.spark())}")
    key = offers.df.select("offer_id").orderBy("offer_id").first()[0]
    from feedgen.console.preview import draft_definitions

    (feed_def,) = draft_definitions("feed", FEED)

    def floor():
        return offers.df.where(engine.predicate(feed_def, offers.df, offers.as_of, engine.segments())).count()

    jobs = {
        "a-feed": lambda: engine.preview("feed", FEED, sections=("count", "samples")),
        "a-segment": lambda: engine.preview("segment", SEGMENT, sections=("count", "samples")),
        "floor": floor,
        "b-change": lambda: engine.preview("feed", edited, base=EDITED, sections=("count", "change", "gates")),
        "c-explain": lambda: engine.explain("offer", key),
    }
    for job in jobs.values():  # untimed: compile and JIT every path once
        job()
    times: dict[str, list[float]] = {name: [] for name in jobs}
    last: dict[str, object] = {}
    for _ in range(args.repeat):
        for name, job in jobs.items():
            seconds, last[name] = timed(job)
            times[name].append(seconds)

    print(f"\n{args.repeat} repeats, seconds       p50     p95")
    for name, values in times.items():
        print(f"  {name:<22} {percentile(values, 0.5):7.3f} {percentile(values, 0.95):7.3f}")
    floor_p50 = percentile(times["floor"], 0.5)
    for name in ("a-feed", "a-segment"):
        print(f"  {name} / floor (p50)     {percentile(times[name], 0.5) / floor_p50:7.2f}x")
    change = last["b-change"]["change"]
    print(f"\n(a) feed: {last['a-feed']['count']:,} offers; segment: {last['a-segment']['count']:,} customers")
    print(f"(b) {EDITED} against run {change.get('base_run_id')}: {change.get('ops')} "
          f"({change.get('rendered')}); gates: {last['b-change']['gates']['status']}")
    print(f"(c) offer {key}: {len(last['c-explain']['definitions'])} definitions explained")
    return 0


def _bodies(folder: str) -> list[dict]:
    import yaml

    out = []
    for path in sorted(Path(folder).glob("*.yaml")):
        out.extend((yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("feeds") or [])
    return out


def _cached_mb(spark) -> str:
    infos = spark.sparkContext._jsc.sc().getRDDStorageInfo()
    parts = [f"{' '.join(info.name().split())[:60]}: {info.memSize() / 2**20:,.0f} MB memory, "
             f"{info.diskSize() / 2**20:,.0f} MB disk" for info in infos]
    return "; ".join(parts) or "nothing"


if __name__ == "__main__":
    sys.exit(main())
