"""The whole run on a real definition mix: two consecutive `feedgen run`s, per stage against its floor.

    .venv/bin/python benchmarks/run.py [--root /tmp/bench-run] [--offers 1000000] [--customers 200000]
                                       [--feeds 1000] [--segments 200] [--keep]

Sources: `feedgen sample-data --seed 7` at --offers and --customers, twice: the base data
(``--variant 0``) and the same marketplace a day later (``--variant 1``: 2 % of prices cut,
0.5 % sold out, 0.3 % delisted). With --keep, sample data already under --root for the same
sizes is reused.

Definitions (YAML under <root>/definitions, seeded, checked with `feedgen validate`):
``examples/definitions`` plus --feeds generated feeds and --segments generated segments.
The feeds follow a 20-feed pattern of templates (30 % Google RSS, 25 % generic_csv and
10 % generic_tsv each with its own `fields` list, 10 % Meta XML, 10 % Meta CSV, TikTok,
Ceneo, Heureka); each keeps about 1/F of the catalog by one of three scopes in turn (offer
ids by `ends_with`, a price band by `gte`/`lt`, a slice of sellers by `in`) and adds two
clauses drawn from a weighted pool (price `between`, `not` brand `in`, stock and rating
comparisons, `not` seller status, `contains` on campaign_ids or category.levels in an
`any`, `starts_with`, `not` + `ends_with` on titles, `within_last`, `is_null`); 10 % pick
one offer per product, 30 % of Google and Meta XML feeds have file-size options, 5 % have
event delivery. The segments combine a profile clause (city, e-mail domain by `ends_with`,
loyalty tier, consents, signup window, order totals) with one or two history leaves
(orders/events, count/sum/exists/min/max, within_last/older_than, a `where` on store,
category or event type), some under `any` or `not`; 15 % use `in_segment` (half of those
under `not`), 5 % have event delivery; exports are Customer Match, Meta Custom Audience
or ids.

Then, each a fresh `feedgen` process (``python -m feedgen.jobs.cli``) on a fresh data root
<root>/feedgen, with a config file under --root that points the sources at one variant and
turns the gates off (``gates: {enabled: false}``), so that the second run's changes cannot
hold it and every stage runs; FEEDGEN__* variables other than FEEDGEN__SPARK__* and
KAFKA_BOOTSTRAP are dropped, so events go to the local outbox:
  run 1: `feedgen run` on variant 0 (as of 2026-11-01T06:00Z), every definition new;
  run 2: `feedgen run` on variant 1 (a day later), diffed against run 1;
  generate-only: `feedgen generate` of 10 and of F generated feeds alone (the same generator
      at F=10, so both sets cover the catalog about once), on run 2's aggregate.

Stage seconds come from each run's run.json (``stages.<name>.seconds``). run.json has one
figure for generate; it is split by the timestamps of the progress lines the run logs
(``--json-logs``): offers until the customer pass starts, customers until the membership
index starts, the index until the first diff, the diffs until the stage ended (less the
gate, which run.json times on its own). The parts add up to run.json's generate seconds.

Floors, measured afterwards in this process's own SparkSession (same spark config), the
faster of two runs each:
  aggregate: read every source of variant 0 and write it back as Parquet
      (``_common.read_write_sources``, as benchmarks/aggregate.py does);
  generate, offers / customers: a plain Spark write (``_common.write_rendered_text``, as
      benchmarks/generate.py's (c)) of run 1's rendered feed / audience export lines, read
      back from its part files into Parquet beforehand (untimed).
The ratio is stage / floor. "whole run" is the wall time of the `feedgen run` process
(Spark start-up included); offers/s/core = offers / that / cores. The second run's line
compares its diffs + emit with the first's (target: less), and the generate-only line
gives F feeds / 10 feeds (target ≤ 3×). Targets on the issue's machine: generate ≤ 2.5×
floor, aggregate ≤ 2.5× floor, ≥ 15k offers/s/core, 1000 feeds / 10 feeds ≤ 3×.
Everything stays under --root for inspection (the floors' scratch output is removed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "definitions"
SEED = 7
AS_OF = ("2026-11-01T06:00:00Z", "2026-11-02T06:00:00Z")  # run 1 (variant 0), run 2 (variant 1)
SMALL_SET = 10

MIX = ("google_merchant_rss", "generic_csv", "meta_catalog_xml", "google_merchant_rss", "generic_csv",
       "meta_catalog_csv", "generic_tsv", "google_merchant_rss", "generic_csv", "tiktok_catalog_csv",
       "google_merchant_rss", "generic_csv", "meta_catalog_xml", "google_merchant_rss", "generic_csv",
       "meta_catalog_csv", "ceneo_xml", "google_merchant_rss", "generic_tsv", "heureka_xml")
FIELD_POOL = ("title", "brand", "price.amount", "price.currency", "effective_price.amount",
              "sale_price.amount", "link", "image_link", "stock", "availability", "condition", "gtin",
              "mpn", "category.path", "seller.name", "seller_id", "updated_at", "rating.average",
              "product_id")
TOPS = ("Electronics", "Home & Garden", "Fashion", "Sports", "Toys", "Books", "Beauty", "Automotive")
CAMPAIGNS = ("black-friday", "phones-week", "garden-clearance", "summer-sale", "autumn-sale", "lego-days")
COLORS = ("black", "white", "red", "blue", "green", "silver", "gold")
DESTINATIONS = {"google_merchant_rss": "google_merchant_api", "meta_catalog_xml": "meta_catalog_batch",
                "meta_catalog_csv": "meta_catalog_batch"}
# (weight, clause maker): the second and third clause of a generated feed
FEED_CLAUSES = (
    (4, lambda r: {"field": "price.amount", "between": [r.choice([1, 5, 10]), r.choice([2000, 5000, 20000])]}),
    (3, lambda r: {"not": {"field": "brand", "in": ["NoName", "Generic"]}}),
    (3, lambda r: {"field": "stock", "gt": 0}),
    (2, lambda r: {"field": "availability", "eq": "in_stock"}),
    (2, lambda r: {"field": "seller.rating", "gte": r.choice([3.0, 3.5, 4.0])}),
    (2, lambda r: {"not": {"field": "seller.status", "eq": "suspended"}}),
    (2, lambda r: {"any": [{"field": "campaign_ids", "contains": r.choice(CAMPAIGNS)},
                           {"field": "rating.average", "gte": 3.5}]}),
    (2, lambda r: {"field": "condition", "in": ["new", "refurbished"]}),
    (2, lambda r: {"field": "image_link", "is_null": False}),
    (1, lambda r: {"field": "description", "contains": "fast shipping", "ignore_case": True}),
    (1, lambda r: {"field": "updated_at", "within_last": r.choice(["7d", "14d", "30d"])}),
    (1, lambda r: {"field": "category.path", "starts_with": r.choice(TOPS)}),
    (1, lambda r: {"any": [{"field": "category.levels", "contains": r.choice(TOPS)},
                           {"field": "campaign_ids", "contains": "black-friday"}]}),
    (1, lambda r: {"not": {"field": "title", "ends_with": r.choice(COLORS)}}),
    (1, lambda r: {"field": "gtin", "is_null": False}),
)
CITIES = ("Warszawa", "Kraków", "Poznań", "Wrocław", "Gdańsk", "Łódź")
DOMAINS = ("gmail.com", "wp.pl", "onet.pl", "example.com", "googlemail.com", "interia.pl")
EVENT_TYPES = ("page_view", "search", "add_to_cart", "email_open", "email_click", "app_open")
STORES = tuple(str(s) for s in range(101, 121))
SEGMENT_SCOPES = (
    lambda r: {"field": "city", "eq": r.choice(CITIES)},
    lambda r: {"field": "email", "ends_with": "@" + r.choice(DOMAINS), "ignore_case": True},
    lambda r: {"field": "attributes.loyalty_tier", "eq": r.choice(["bronze", "silver", "gold"])},
    lambda r: {"field": "consents." + r.choice(["ads", "email", "sms"]), "eq": True},
    lambda r: {"field": "signup_at", r.choice(["within_last", "older_than"]): r.choice(["180d", "365d", "730d"])},
    lambda r: {"field": "orders_total", "gte": r.choice([300, 800, 1500])},
    lambda r: {"field": "orders_count", "gte": r.choice([2, 4, 6])},
    lambda r: {"field": "country", "eq": "CZ"},
)
HISTORY_LEAVES = (
    lambda r: {"history": "orders", "within_last": r.choice(["30d", "90d", "180d", "365d"]),
               "count": {"gte": r.choice([1, 2, 3])}},
    lambda r: {"history": "orders", "within_last": r.choice(["90d", "365d"]),
               "sum": {"field": "amount", "gte": r.choice([200, 500, 1000])}},
    lambda r: {"history": "events", "within_last": r.choice(["7d", "30d"]),
               "where": {"field": "type", "in": r.sample(EVENT_TYPES, 2)}, "exists": True},
    lambda r: {"history": "events", "within_last": r.choice(["14d", "30d", "60d"]),
               "where": {"field": "type", "eq": r.choice(EVENT_TYPES)}, "count": {"gte": r.choice([2, 3])}},
    lambda r: {"history": "orders", "where": {"field": "store_id", "eq": r.choice(STORES)}, "count": {"gte": 1}},
    lambda r: {"history": "orders", "where": {"field": "category", "eq": r.choice(TOPS)}, "exists": True},
    lambda r: {"history": "orders", "max": {"field": "ts", "within_last": r.choice(["30d", "60d", "120d"])}},
    lambda r: {"history": "orders", "min": {"field": "ts", "older_than": r.choice(["180d", "300d"])}},
    lambda r: {"history": "orders", "within_last": "30d", "count": {"eq": 0}},
)
EXPORTS = (["ids_csv"], ["google_customer_match"], ["meta_custom_audience"],
           ["google_customer_match", "meta_custom_audience"])
EXAMPLE_SEGMENTS = ("inactive-30d", "high-value", "loyal-gold", "new-customers-90d", "cart-abandoners-30d")


# --- definitions ------------------------------------------------------------------------

def _price_quantile(q: float) -> float:
    """The q-quantile of sample-data's offer prices (exp of N(4.5, 1.2), in 0.99..49,999)."""
    return round(min(max(2.718281828459045 ** (4.5 + 1.2 * statistics.NormalDist().inv_cdf(q)), 0.99), 49_999), 2)


def _scope(i: int, feeds: int, sellers: int) -> list[dict]:
    """Clauses that keep about 1/feeds of the catalog: slice i of feeds, by one of three kinds."""
    kind = i % 3
    if kind == 0:  # offer ids o%08d by their last digits
        digits = len(str(max(feeds - 1, 1)))
        ends = [{"field": "offer_id", "ends_with": f"{j:0{digits}d}"} for j in range(i, 10 ** digits, feeds)]
        return [ends[0] if len(ends) == 1 else {"any": ends}]
    if kind == 1:  # a price band between two quantiles
        band = []
        if i > 0:
            band.append({"field": "price.amount", "gte": _price_quantile(i / feeds)})
        if i < feeds - 1:
            band.append({"field": "price.amount", "lt": _price_quantile((i + 1) / feeds)})
        return band
    picked = list(range(i, sellers, feeds)) or [i % sellers]  # sellers s%05d
    ids = [f"s{s:05d}" for s in picked]
    return [{"field": "seller_id", "eq": ids[0]} if len(ids) == 1 else {"field": "seller_id", "in": ids}]


def generated_feeds(feeds: int, offers: int, seed: int = SEED) -> list[dict]:
    """``feeds`` feed definitions with the template, option and predicate mix described above."""
    r = random.Random(seed * 1_000_003 + feeds)
    sellers = max(5, offers // 100)  # as sample-data makes them
    weights = [w for w, _ in FEED_CLAUSES]
    out = []
    for i in range(feeds):
        template = MIX[i % len(MIX)]
        extra: list[dict] = []
        while len(extra) < 2:
            clause = r.choices(FEED_CLAUSES, weights)[0][1](r)
            if clause not in extra:
                extra.append(clause)
        feed: dict = {"id": f"gen-feed-{i:04d}", "template": template,
                      "where": {"all": _scope(i, feeds, sellers) + extra}}
        if r.random() < 0.1:
            feed["pick_one_per"] = "product_id"
            feed["order_by"] = r.choice([["price.amount"], ["effective_price.amount", "-seller.rating"]])
        if template in ("generic_csv", "generic_tsv"):
            feed["options"] = {"fields": ["offer_id", *r.sample(FIELD_POOL, r.randint(3, 8))]}
        elif template == "google_merchant_rss" and r.random() < 0.3:
            feed["options"] = {"max_file_items": 50_000}
        elif template == "meta_catalog_xml" and r.random() < 0.3:
            feed["options"] = {"max_file_bytes": 100_000_000}
        if r.random() < 0.05:
            feed["delivery"] = {"events": True, "destinations": [DESTINATIONS.get(template, "partner_api")]}
        out.append(feed)
    return out


def generated_segments(segments: int, seed: int = SEED) -> list[dict]:
    """``segments`` segment definitions: a profile clause and history leaves, some in_segment and not."""
    r = random.Random(seed * 1_000_003 + 7 * segments + 1)
    out = []
    plain: list[str] = list(EXAMPLE_SEGMENTS)  # segments without in_segment, to refer to
    for i in range(segments):
        clauses = [r.choice(SEGMENT_SCOPES)(r), r.choice(HISTORY_LEAVES)(r)]
        roll = r.random()
        if roll < 0.2:
            clauses.append({"any": [r.choice(HISTORY_LEAVES)(r), r.choice(HISTORY_LEAVES)(r)]})
        elif roll < 0.35:
            clauses.append({"not": r.choice(HISTORY_LEAVES)(r)})
        elif roll < 0.6:
            clauses.append(r.choice(HISTORY_LEAVES)(r))
        sid = f"gen-segment-{i:03d}"
        if r.random() < 0.15:
            ref = {"in_segment": r.choice(plain)}
            clauses.append({"not": ref} if r.random() < 0.5 else ref)
        else:
            plain.append(sid)
        segment: dict = {"id": sid, "entity": "customer", "where": {"all": clauses}, "exports": r.choice(EXPORTS)}
        if r.random() < 0.05:
            segment["delivery"] = {"events": True, "destinations": ["meta_custom_audience"]}
        out.append(segment)
    return out


def write_definitions(folder: Path, *, examples: bool, feeds: list[dict], segments: list[dict]) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if examples:
        for path in sorted(EXAMPLES.glob("*.yaml")):
            shutil.copy(path, folder / path.name)

    def dump(name: str, key: str, items: list[dict]) -> None:
        if items:
            text = yaml.safe_dump({key: items}, sort_keys=False, allow_unicode=True, width=120)
            (folder / name).write_text("# generated by benchmarks/run.py\n" + text, encoding="utf-8")

    dump("generated-feeds.yaml", "feeds", feeds)
    dump("generated-segments.yaml", "segments", segments)
    return folder


# --- feedgen processes ------------------------------------------------------------------

def _env() -> dict[str, str]:
    # only the Spark settings may come from the caller's environment: the gates are off and
    # the events go to the outbox whatever the shell says
    return {k: v for k, v in os.environ.items()
            if not (k.startswith("FEEDGEN") and not k.startswith("FEEDGEN__SPARK__")) and k != "KAFKA_BOOTSTRAP"}


def feedgen(log: Path, *args: str, ok: tuple[int, ...] = (0,)) -> float:
    """Run ``feedgen ARGS`` (JSON logs into ``log``); its wall seconds. Exits when it fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with log.open("w", encoding="utf-8") as out:
        done = subprocess.run([sys.executable, "-m", "feedgen.jobs.cli", "--json-logs", *args],
                              env=_env(), stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    wall = time.monotonic() - t0
    if done.returncode not in ok:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
        sys.exit(f"feedgen {' '.join(args)} exited {done.returncode}; last lines of {log}:\n" + "\n".join(tail))
    return wall


def sample_data(root: Path, offers: int, customers: int, keep: bool) -> tuple[Path, Path, float]:
    data = root / "data"
    wanted = {"offers": offers, "customers": customers, "seed": SEED}
    params = data / "params.json"
    seconds = 0.0
    fresh = keep and params.is_file() and json.loads(params.read_text()) == wanted and all(
        (data / f"v{v}" / "_sample.json").is_file() for v in (0, 1))
    if not fresh:
        shutil.rmtree(data, ignore_errors=True)
        for variant in (0, 1):
            seconds += feedgen(root / "logs" / f"sample-data-v{variant}.log", "sample-data",
                               "--out", str(data / f"v{variant}"), "--offers", str(offers),
                               "--customers", str(customers), "--seed", str(SEED), "--variant", str(variant))
        params.write_text(json.dumps(wanted))
    return data / "v0", data / "v1", seconds


def write_config(path: Path, sources: Path) -> Path:
    from feedgen.core.config import SOURCE_NAMES

    body = {"sources": {name: {"path": str(sources / name), "format": "parquet"} for name in SOURCE_NAMES},
            "gates": {"enabled": False}}
    path.write_text("# benchmarks/run.py: gates off, so that no run is held\n"
                    + yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path


def new_run(root: Path, before: set[str]) -> dict:
    (run_id,) = {p.name for p in (root / "runs").iterdir() if p.is_dir()} - before
    return json.loads((root / "runs" / run_id / "run.json").read_text(encoding="utf-8"))


def runs_of(root: Path) -> set[str]:
    folder = root / "runs"
    return {p.name for p in folder.iterdir() if p.is_dir()} if folder.is_dir() else set()


def generate_split(record: dict, log: Path) -> dict[str, float]:
    """run.json's generate seconds split into offers, customers, membership index and diffs,
    by the timestamps of the generate stage's progress lines."""
    steps: list[tuple[str, datetime]] = []
    done = None
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("logger") != "feedgen.progress" or entry.get("stage") != "generate":
            continue
        at = datetime.fromisoformat(entry["ts"])
        if "step" in entry:
            steps.append((entry["step"], at))
        elif "seconds" in entry:
            done = at

    def first(prefix: str) -> datetime | None:
        return next((at for step, at in steps if step.startswith(prefix)), None)

    stages = record["stages"]
    total = float(stages["generate"]["seconds"])
    # the progress line that ends the stage comes after the gate, which run.json times apart
    end = done.timestamp() - float((stages.get("gate") or {}).get("seconds") or 0) if done else None
    marks = [first("customer:"), first("membership index"), first("diff ")]
    times = [m.timestamp() if m else None for m in marks]
    out = {}
    for name, i in (("customers", 0), ("membership index", 1), ("diffs", 2)):
        if times[i] is None or end is None:
            out[name] = 0.0
            continue
        nxt = next((t for t in times[i + 1:] if t is not None), end)
        out[name] = max(0.0, nxt - times[i])
    out["offers"] = max(0.0, total - sum(out.values()))
    return out


# --- floors ----------------------------------------------------------------------------

def rendered_lines(spark, run_folder: Path, kind: str, out: Path) -> int:
    """Every line of the run's ``kind`` (feeds, segments) part files into Parquet at ``out``; their bytes."""
    from pyspark.sql import functions as F

    parts = sorted(str(p) for p in (run_folder / kind).rglob("part-*.gz"))
    if not parts:
        return 0
    spark.read.text(parts).write.mode("overwrite").parquet(str(out))
    return int(spark.read.parquet(str(out)).select(F.sum(F.length("value") + 1)).first()[0] or 0)


def fastest(fn, repeat: int = 2) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.monotonic()
        fn()
        best = min(best, time.monotonic() - t0)
    return best


def floors(config_path: Path, sources: Path, run_folder: Path, scratch: Path) -> dict[str, float | int]:
    from _common import read_write_sources, write_rendered_text

    from feedgen.core.config import load_config
    from feedgen.jobs.spark import spark_session

    shutil.rmtree(scratch, ignore_errors=True)
    spark = spark_session(load_config(config_path)["spark"])
    try:
        spark.read.parquet(str(sources / "sellers")).count()  # warm-up: JVM and Python workers
        out: dict[str, float | int] = {}
        runs = iter(range(1_000))
        out["aggregate"] = fastest(lambda: read_write_sources(spark, sources, scratch / f"sources-{next(runs)}"))
        for kind in ("feeds", "segments"):
            texts = scratch / f"texts-{kind}"
            out[f"{kind} bytes"] = rendered_lines(spark, run_folder, kind, texts)
            out[kind] = fastest(lambda texts=texts, kind=kind: write_rendered_text(
                spark, texts, scratch / f"write-{kind}-{next(runs)}")) if out[f"{kind} bytes"] else 0.0
        return out
    finally:
        spark.stop()
        shutil.rmtree(scratch, ignore_errors=True)


# --- report ----------------------------------------------------------------------------

def _paths(record: dict) -> str:
    """Outputs by entity, render path and input, as run.json has them."""
    seen: Counter = Counter()
    for s in (record.get("definitions") or {}).values():
        for out in [s, *(s.get("exports") or {}).values()]:
            seen[(s.get("entity"), out.get("render_path"), out.get("input"))] += 1
    return ", ".join(f"{entity} {path} (input {read}) {n}" for (entity, path, read), n in sorted(seen.items(), key=str))


def _ratio(value: float, floor: float | None) -> str:
    return f"{value / floor:6.2f}" if floor else "     -"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="/tmp/bench-run", help="everything is written under it")
    parser.add_argument("--offers", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--feeds", type=int, default=1000, help="generated feeds (besides the examples)")
    parser.add_argument("--segments", type=int, default=200, help="generated segments (besides the examples)")
    parser.add_argument("--keep", action="store_true", help="reuse the sample data under --root (same sizes)")
    args = parser.parse_args(argv)
    top = Path(args.root).resolve()
    top.mkdir(parents=True, exist_ok=True)
    root = top / "feedgen"
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(top / "logs", ignore_errors=True)
    logs = top / "logs"

    v0, v1, sample_s = sample_data(top, args.offers, args.customers, args.keep)
    configs = (write_config(top / "config-v0.yaml", v0), write_config(top / "config-v1.yaml", v1))
    feeds = generated_feeds(args.feeds, args.offers)
    segments = generated_segments(args.segments)
    defs = top / "definitions"
    everything = write_definitions(defs / "all", examples=True, feeds=feeds, segments=segments)
    small = write_definitions(defs / f"feeds-{SMALL_SET}", examples=False,
                              feeds=generated_feeds(SMALL_SET, args.offers), segments=[])
    large = write_definitions(defs / f"feeds-{args.feeds}", examples=False, feeds=feeds, segments=[])
    for folder in (everything, small, large):
        feedgen(logs / f"validate-{folder.name}.log", "validate", str(folder))
    templates = Counter(f["template"] for f in feeds)
    print(f"sources: {args.offers:,} offers, {args.customers:,} customers (sample-data --seed {SEED}, "
          + (f"written in {sample_s:.0f} s" if sample_s else "reused") + f"); under {top}")
    print(f"definitions: examples + {len(feeds):,} generated feeds ("
          + ", ".join(f"{t} {n}" for t, n in templates.most_common()) + f"), {len(segments)} generated segments; "
          "all valid")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)

    records, walls, splits = [], [], []
    for n, (config, as_of) in enumerate(zip(configs, AS_OF, strict=True), start=1):
        before = runs_of(root)
        log = logs / f"run-{n}.log"
        walls.append(feedgen(log, "run", "--config", str(config), "--root", str(root),
                             "--definitions", str(everything), "--as-of", as_of))
        records.append(new_run(root, before))
        splits.append(generate_split(records[-1], log))
        print(f"run {n}: {records[-1]['run_id']} {records[-1]['status']} in {walls[-1]:.1f} s wall "
              f"(variant {n - 1}, as of {as_of})", flush=True)

    only: dict[int, tuple[float, int]] = {}
    for count, folder in ((SMALL_SET, small), (args.feeds, large)):
        before = runs_of(root)
        feedgen(logs / f"generate-{count}.log", "generate", "--config", str(configs[1]), "--root", str(root),
                "--definitions", str(folder), "--as-of", AS_OF[1])
        record = new_run(root, before)
        only[count] = (float(record["stages"]["generate"]["seconds"]),
                       sum(int(s.get("items") or 0) for s in record["definitions"].values()))
        print(f"generate only, {count} generated feeds: {only[count][0]:.1f} s", flush=True)

    floor = floors(configs[0], v0, root / "runs" / records[0]["run_id"], top / "floor-scratch")

    first, second = records
    stage = [r["stages"] for r in records]
    n_feeds = sum(1 for s in first["definitions"].values() if s.get("entity") == "offer")
    n_segments = len(first["definitions"]) - n_feeds

    def seconds(i: int, name: str) -> float:
        return float((stage[i].get(name) or {}).get("seconds") or 0)

    def events(i: int) -> int:
        return int((stage[i].get("emit") or {}).get("events") or 0)

    gen_floor = (floor["feeds"] + floor["segments"]) or None
    rows = [
        ("aggregate", seconds(0, "aggregate"), floor["aggregate"], "≤ 2.5×", seconds(1, "aggregate")),
        (f"generate, offers ({n_feeds:,} feeds)", splits[0]["offers"], floor["feeds"] or None, "≤ 2.5×",
         splits[1]["offers"]),
        (f"generate, customers ({n_segments} segments)", splits[0]["customers"], floor["segments"] or None,
         "≤ 2.5×", splits[1]["customers"]),
        ("membership index + diffs", splits[0]["membership index"] + splits[0]["diffs"], None, "",
         splits[1]["membership index"] + splits[1]["diffs"]),
        ("  membership index", splits[0]["membership index"], None, "", splits[1]["membership index"]),
        ("  diffs", splits[0]["diffs"], None, "", splits[1]["diffs"]),
        ("gate", seconds(0, "gate"), None, "", seconds(1, "gate")),
        ("publish", seconds(0, "publish"), None, "", seconds(1, "publish")),
        (f"emit ({events(0):,} / {events(1):,} events)", seconds(0, "emit"), None, "", seconds(1, "emit")),
    ]
    print(f"\n{'stage':<42}{'run 1 s':>9}{'floor s':>9}{'ratio':>7}  {'target':<8}{'run 2 s':>9}")
    for name, s1, fl, target, s2 in rows:
        print(f"{name:<42}{s1:>9.1f}{(f'{fl:.1f}' if fl else '-'):>9}{_ratio(s1, fl):>7}  {target:<8}{s2:>9.1f}")
    gen1 = splits[0]["offers"] + splits[0]["customers"]
    print(f"{'generate, offers + customers':<42}{gen1:>9.1f}{(f'{gen_floor:.1f}' if gen_floor else '-'):>9}"
          f"{_ratio(gen1, gen_floor):>7}  {'≤ 2.5×':<8}{splits[1]['offers'] + splits[1]['customers']:>9.1f}")
    stage_sum = [sum(seconds(i, n) for n in ("aggregate", "generate", "gate", "publish", "emit")) for i in (0, 1)]
    print(f"{'whole run (process wall; stages sum)':<42}{walls[0]:>9.1f}{'':>9}{'':>7}  {'':<8}{walls[1]:>9.1f}"
          f"   ({stage_sum[0]:.1f}; {stage_sum[1]:.1f})")
    cores = os.cpu_count() or 1
    print(f"\nrun 1: {args.offers / walls[0] / cores:,.0f} offers/s/core ({args.offers:,} offers, {walls[0]:.1f} s, "
          f"{cores} cores; target ≥ 15,000)")
    raw = Counter()
    for s in first["definitions"].values():
        raw[s.get("entity")] += sum(int(o.get("raw_bytes") or 0) for o in [s, *(s.get("exports") or {}).values()])
    print(f"rendered in run 1: offers {floor['feeds bytes'] / 1e6:,.1f} MB, customers "
          f"{floor['segments bytes'] / 1e6:,.1f} MB: the lines of its parts, which the generate floors write "
          f"(run.json raw_bytes: {raw['offer'] / 1e6:,.1f} MB, {raw['customer'] / 1e6:,.1f} MB)")
    d1, d2 = splits[0]["diffs"] + seconds(0, "emit"), splits[1]["diffs"] + seconds(1, "emit")
    print(f"run 2 (variant 1) diffs + emit: {d2:.1f} s against run 1's {d1:.1f} s: "
          f"{d2 / d1 if d1 else float('nan'):.2f}× (target < 1×); with the membership index "
          f"{d2 + splits[1]['membership index']:.1f} s against {d1 + splits[0]['membership index']:.1f} s")
    (s10, i10), (sf, i_f) = only[SMALL_SET], only[args.feeds]
    print(f"generate only, generated mixed feeds on run 2's aggregate: {SMALL_SET} feeds {s10:.1f} s "
          f"({i10:,} items), {args.feeds:,} feeds {sf:.1f} s ({i_f:,} items): {sf / s10:.2f}× (target ≤ 3×)")
    for n, record in enumerate(records, start=1):
        print(f"run {n} outputs by render path: {_paths(record)}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} ({cores} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
