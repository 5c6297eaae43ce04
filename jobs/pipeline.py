"""Run orchestration: aggregate → generate (+ snapshots and diffs) → gate → publish → emit."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from feedgen.jobs.config import Config
from feedgen.jobs.errors import FeedgenError, RunFailed
from feedgen.jobs.runs import new_run_record, parse_as_of, read_run, run_dir, write_run

log = logging.getLogger(__name__)


def load_or_create_record(config: Config, run_id: str, as_of: datetime, master: str) -> dict[str, Any]:
    if (run_dir(config.root, run_id) / "run.json").is_file():
        return read_run(config.root, run_id)
    record = new_run_record(run_id, as_of, master)
    write_run(config.root, record)
    return record


def _aggregate_for(config: Config, record: dict[str, Any], entity: str) -> tuple[str, Path, bool]:
    """This run's aggregate of ``entity``, else the last good one (flagged stale)."""
    from feedgen.aggregator.job import MARKER, aggregate_path, latest_aggregate

    own = aggregate_path(config.root, entity, record["run_id"])
    if (own / MARKER).is_file():
        return record["run_id"], own, False
    latest = latest_aggregate(config.root, entity)
    if latest is None:
        raise RunFailed(
            f"no {entity} aggregate under {Path(config.root) / 'aggregates' / entity}; run "
            f"`feedgen aggregate --root {config.root}` (or `feedgen run`) first")
    return latest[0], latest[1], True


def generate_stage(spark, config: Config, record: dict[str, Any], definitions_dir: str,
                   progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Generate every definition, snapshot and diff those with event delivery, run the gates."""
    from feedgen.generator.definitions import load_definitions
    from feedgen.generator.gates import check_run
    from feedgen.generator.generate import generate_entity, snapshot_items
    from feedgen.generator.snapshots import snapshot_and_diff
    from feedgen.jobs.publish import current_run_id, serving_store

    say = progress or (lambda _m: None)
    root = config.root
    run_id = record["run_id"]
    as_of = parse_as_of(record["as_of"])
    defset = load_definitions(definitions_dir)  # a bad definition stops here, before any output
    definitions = list(defset.definitions)
    all_segments = {d.id: d for d in definitions if d.kind == "segment"}
    record["status"] = "generating"
    record["definitions_dir"] = str(definitions_dir)
    write_run(root, record)
    t0 = time.monotonic()
    stats: dict[str, Any] = {}
    used: dict[str, Any] = {}
    templates_dir = config.get("generate.templates_dir")
    for entity in ("offer", "customer"):
        mine = [d for d in definitions if d.entity == entity]
        if not mine:
            continue
        agg_run, path, stale = _aggregate_for(config, record, entity)
        used[entity] = {"run_id": agg_run, "path": str(path), "stale": stale}
        if stale:
            log.warning("using the last good %s aggregate of run %s", entity, agg_run)
        df = spark.read.parquet(str(path))
        stats.update(generate_entity(
            spark, df, mine, entity=entity, root=root, run_id=run_id, as_of=as_of,
            all_segments=all_segments, user_templates_dir=templates_dir,
            part_max_raw_bytes=int(config.get("generate.part_max_raw_bytes", 64 << 20)), progress=say))
    record["aggregates"] = used
    by_id = {d.id: d for d in definitions}
    store = serving_store(config)
    for def_id, s in sorted(stats.items()):
        if not s.get("events"):
            continue
        say(f"diff {def_id}")
        d = by_id[def_id]
        items = snapshot_items(spark, root, run_id, s["entity"], s["target"])
        s["delta"] = snapshot_and_diff(
            spark, root, run_id, def_id, items, as_of=as_of, kind=d.kind, entity=d.entity,
            destinations=s.get("destinations"), base_run_id=current_run_id(config, def_id, store),
            refresh_after=d.refresh_after or config.get("gates.refresh_after"))
    record["definitions"] = stats
    record["stages"]["generate"] = {"status": "done", "seconds": round(time.monotonic() - t0, 3),
                                    "definitions": len(definitions)}
    record["timings"]["generate"] = record["stages"]["generate"]["seconds"]
    gate = check_run(config, record, definition_gates={d.id: dict(d.gates or {}) for d in definitions})
    record["stages"]["gate"] = {"status": "done", "result": gate["status"]}
    write_run(root, record)
    return record


def run_pipeline(config: Config, *, run_id: str, as_of: datetime, definitions_dir: str,
                 master: str | None = None, progress_stage=None) -> dict[str, Any]:
    """aggregate → generate → gate → publish → emit for one run (the caller holds the lock)."""
    from feedgen.aggregator.job import run_aggregate
    from feedgen.generator.definitions import load_definitions
    from feedgen.jobs.lifecycle import release_run
    from feedgen.jobs.progress import stage
    from feedgen.jobs.spark import spark_session

    progress_stage = progress_stage or stage
    load_definitions(definitions_dir)  # fail on bad definitions before the Spark work
    spark = spark_session(config["spark"], master=master)
    record = load_or_create_record(config, run_id, as_of, spark.sparkContext.master)
    root = config.root
    if record["stages"].get("aggregate", {}).get("status") != "done":
        t0 = time.monotonic()
        record["status"] = "aggregating"
        write_run(root, record)
        try:
            with progress_stage("aggregate") as step:
                agg = run_aggregate(spark, config, run_id, as_of, progress=step)
            record["stages"]["aggregate"] = {"status": "done", "seconds": round(time.monotonic() - t0, 3), **agg}
        except RunFailed as err:
            if not config.get("aggregate.allow_stale_aggregate"):
                record["status"] = "failed"
                record["stages"]["aggregate"] = {"status": "failed", "error": str(err)}
                write_run(root, record)
                raise
            log.warning("aggregate failed (%s); going on with the last good aggregate", err)
            record["stages"]["aggregate"] = {"status": "failed", "error": str(err), "stale_aggregate": True,
                                             "seconds": round(time.monotonic() - t0, 3)}
        record["timings"]["aggregate"] = record["stages"]["aggregate"]["seconds"]
        write_run(root, record)
    if record["stages"].get("generate", {}).get("status") != "done":
        try:
            with progress_stage("generate") as step:
                record = generate_stage(spark, config, record, definitions_dir, progress=step)
        except FeedgenError as err:
            record["status"] = "failed"
            record["stages"]["generate"] = {"status": "failed", "error": str(err)}
            write_run(root, record)
            raise
    if record["status"] == "held":
        return record
    with progress_stage("publish and emit"):
        return release_run(config, run_id)
