"""The aggregate job: read and validate every source, quarantine bad rows, write both aggregates."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from feedgen.aggregator import customers as cust
from feedgen.aggregator import offers as off
from feedgen.aggregator.schemas import CUSTOMER_SOURCES, OFFER_SOURCES
from feedgen.aggregator.sources import (
    REASON,
    TypedSource,
    check_sources,
    quiet_spark,
    read_source,
    type_source,
    unreadable_source,
)
from feedgen.core.config import Config
from feedgen.core.errors import RunFailed
from feedgen.core.runs import format_ts

log = logging.getLogger(__name__)

MARKER = "_feedgen.json"
ENTITIES = ("offer", "customer")
# the source whose rows are the entities: zero rows there means every definition is empty
PRIMARY_SOURCES = {"offers": "offer", "customers": "customer"}


def aggregate_path(root: str | Path, entity: str, run_id: str) -> Path:
    return Path(root) / "aggregates" / entity / run_id


def quarantine_path(root: str | Path, run_id: str, source: str) -> Path:
    return Path(root) / "aggregates" / "quarantine" / run_id / source


def latest_aggregate(root: str | Path, entity: str) -> tuple[str, Path] | None:
    """The newest complete aggregate of ``entity`` (one with its marker), or None."""
    base = Path(root) / "aggregates" / entity
    if not base.is_dir():
        return None
    for child in sorted(base.iterdir(), reverse=True):
        if (child / MARKER).is_file():
            return child.name, child
    return None


def read_marker(path: str | Path) -> dict[str, Any]:
    return json.loads((Path(path) / MARKER).read_text(encoding="utf-8"))


# Spark's columnar cache compresses each column by default, and MEMORY_AND_DISK also serialises
# it. A split is read back twice (good rows, quarantine) soon after it is built, so both cost
# more CPU than they save: validating and caching 1M offers took ~18 s of CPU that way, ~11 s
# deserialised and uncompressed.
_CACHE_COMPRESSED = "spark.sql.inMemoryColumnarStorage.compressed"


class _Split:
    """A validated source held in memory once, then split into good rows and quarantine."""

    def __init__(self, ts: TypedSource) -> None:
        self.ts = ts
        conf = ts.df.sparkSession.conf
        compressed = conf.get(_CACHE_COMPRESSED)
        conf.set(_CACHE_COMPRESSED, "false")  # read when the cache is built: by the count below
        self.df = ts.df.persist(StorageLevel.MEMORY_AND_DISK_DESER)
        try:
            counts = self.df.groupBy(REASON).count().collect()
        except BaseException:
            self.df.unpersist()
            raise
        finally:
            conf.set(_CACHE_COMPRESSED, compressed)
        self.total = sum(r["count"] for r in counts)
        self.reasons = {r[REASON]: r["count"] for r in counts if r[REASON] is not None}
        self.quarantined = sum(self.reasons.values())

    @property
    def good(self) -> DataFrame:
        return self.df.where(F.col(REASON).isNull())

    def share(self) -> float:
        return self.quarantined / self.total if self.total else 0.0

    def stats(self) -> dict[str, Any]:
        return {"rows": self.total, "quarantined": self.quarantined, "share": round(self.share(), 6),
                "reasons": dict(sorted(self.reasons.items()))}

    def write_quarantine(self, path: Path) -> None:
        if self.quarantined:
            # one file, and no shuffle: the quarantined rows are few, the cached split is scanned once
            bad = self.df.where(F.col(REASON).isNotNull())
            bad.select(*self.ts.quarantine_columns(), F.col(REASON).alias("reason")).coalesce(1) \
                .write.mode("overwrite").parquet(str(path))

    def release(self) -> None:
        self.df.unpersist()


def run_aggregate(spark: SparkSession, config: Config, run_id: str, as_of: datetime,
                  entities: tuple[str, ...] = ENTITIES,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build the aggregates of ``entities`` for one run; return per-source and per-entity stats.

    Raises SourceSchemaError (before writing anything) for a missing or unusable column, and
    RunFailed when a source's quarantined share passes ``aggregate.quarantine_tolerance``.
    """
    say = progress or (lambda _m: None)
    root = config.root
    sources_cfg = config["sources"]
    tolerance = float(config.get("aggregate.quarantine_tolerance", 0.05))
    needed = [s for s in (OFFER_SOURCES if "offer" in entities else ()) + (CUSTOMER_SOURCES if "customer" in entities else ())]

    # Check every path, then read and check every schema: a bad one stops before any output.
    check_sources(config, entities)
    typed: dict[str, TypedSource] = {}
    for name in needed:
        spec = sources_cfg[name]
        typed[name] = type_source(name, spec["path"], read_source(spark, name, spec))

    stats: dict[str, Any] = {"sources": {}, "entities": {}, "as_of": format_ts(as_of), "warnings": []}
    splits: dict[str, _Split] = {}

    def split(name: str, ts: TypedSource) -> _Split:
        say(f"validating {name}")
        try:
            with quiet_spark(spark):  # the first action: where a file with broken data pages fails
                s = _Split(ts)
        except Exception as err:
            worded = _read_error(err, name, sources_cfg)
            if worded is err:
                raise
            raise worded from None
        splits[name] = s
        stats["sources"][name] = s.stats()
        if s.total == 0:
            stats["warnings"].append(_zero_rows_warning(name, ts.path))
            log.warning("%s", stats["warnings"][-1], extra={"run_id": run_id, "source": name})
        return s

    try:
        if "offer" in entities:
            t0 = time.monotonic()
            sellers = split("sellers", off.validate_sellers(typed["sellers"]))
            products = split("products", off.validate_products(typed["products"]))
            campaigns = split("campaigns", off.validate_campaigns(typed["campaigns"]))
            ratings = split("ratings", off.validate_ratings(typed["ratings"]))
            offers = split("offers", off.validate_offers(
                typed["offers"], list(config.get("aggregate.currencies")), sellers.good.select("seller_id")))
            _check_tolerance([sellers, products, campaigns, ratings, offers], tolerance, root, run_id)
            say("writing the offer aggregate")
            active = off.active_campaigns(campaigns.good, as_of)
            agg = off.build_offer_aggregate(offers.good, sellers.good, products.good, ratings.good, active)
            stats["entities"]["offer"] = _write_aggregate(agg, root, "offer", run_id, as_of, {
                "active_campaigns": [c["campaign_id"] for c in active]})
            stats["entities"]["offer"]["seconds"] = round(time.monotonic() - t0, 3)
        if "customer" in entities:
            t0 = time.monotonic()
            customers = split("customers", cust.validate_customers(typed["customers"]))
            good_ids = customers.good.select("customer_id")
            orders = split("orders", cust.validate_orders(typed["orders"], good_ids))
            events = split("events", cust.validate_events(typed["events"], good_ids))
            _check_tolerance([customers, orders, events], tolerance, root, run_id)
            say("writing the customer aggregate")
            agg = cust.build_customer_aggregate(customers.good, orders.good, events.good)
            stats["entities"]["customer"] = _write_aggregate(agg, root, "customer", run_id, as_of, {})
            stats["entities"]["customer"]["seconds"] = round(time.monotonic() - t0, 3)
        say("writing the quarantine")
        for name, s in splits.items():
            s.write_quarantine(quarantine_path(root, run_id, name))
    finally:
        for s in splits.values():
            s.release()
    return stats


# Spark's error classes for a data file it could not read (Spark 3.5+ / 4)
_READ_ERRORS = ("FAILED_READ_FILE", "CANNOT_READ_FILE_FOOTER", "is not a Parquet file", "MALFORMED_RECORD",
                "Not in GZIP format", "incorrect header check", "CANNOT_DECOMPRESS")


def _read_error(err: Exception, name: str, sources_cfg: dict[str, Any]) -> Exception:
    """A source file Spark could not read → SourceSchemaError naming that source; else ``err``."""
    text = str(err)
    if not any(marker in text for marker in _READ_ERRORS):
        return err
    # the failing file is named in the message: the source whose path it is under
    culprit = next((n for n, spec in sources_cfg.items() if str(spec.get("path") or "\0") in text), name)
    spec = sources_cfg.get(culprit) or {}
    return unreadable_source(culprit, str(spec.get("path")), str(spec.get("format") or "parquet"), err)


def _zero_rows_warning(name: str, path: str) -> str:
    text = f"source '{name}' ({path}) has zero rows; check the export"
    entity = PRIMARY_SOURCES.get(name)
    if entity:
        text += (f": every {entity} definition is empty, so the gates hold the run (empty_output) "
                 f"until it is approved or rejected")
    return text


def _check_tolerance(splits: list[_Split], tolerance: float, root: str, run_id: str) -> None:
    for s in splits:
        if s.share() > tolerance:
            for other in splits:
                other.write_quarantine(quarantine_path(root, run_id, other.ts.name))
            top = ", ".join(f"{r}: {n}" for r, n in sorted(s.reasons.items(), key=lambda kv: -kv[1])[:3])
            raise RunFailed(
                f"source '{s.ts.name}' ({s.ts.path}): {s.quarantined} of {s.total} rows quarantined "
                f"({s.share():.1%}), above the tolerance of {tolerance:.1%} ({top}); inspect "
                f"{quarantine_path(root, run_id, s.ts.name)} and fix the source, or raise "
                f"aggregate.quarantine_tolerance"
            )


def _write_aggregate(df: DataFrame, root: str, entity: str, run_id: str, as_of: datetime,
                     extra: dict[str, Any]) -> dict[str, Any]:
    path = aggregate_path(root, entity, run_id)
    (path / MARKER).unlink(missing_ok=True)
    # Parquet's dictionary encoding took half the CPU of writing the offer aggregate (most of its
    # values are unique, or are short strings that zstd packs as well) for files ~15% smaller;
    # an aggregate is written once and read by the same run, so it is written without.
    df.write.mode("overwrite").option("parquet.enable.dictionary", "false").parquet(str(path))
    written = df.sparkSession.read.parquet(str(path))
    rows = written.count()
    marker = {"run_id": run_id, "entity": entity, "as_of": format_ts(as_of), "rows": rows, **extra}
    # The marker is written last: a folder without it is an incomplete aggregate.
    tmp = path / f".{MARKER}.tmp"
    tmp.write_text(json.dumps(marker, indent=2), encoding="utf-8")
    tmp.replace(path / MARKER)
    return {"rows": rows, "path": str(path)}
