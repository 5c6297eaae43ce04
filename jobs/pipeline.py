"""Run orchestration: aggregate → generate (+ snapshots and diffs) → gate → publish → emit.

Every stage is idempotent and records its completion and timing in run.json
(``record["stages"][name]``), so a run that was killed continues with
``run_pipeline(..., resume=True)`` from the first stage not done. Readers never see a
partial run: they go through ``current/<id>.json`` pointers to immutable run folders,
and publication switches a pointer only after every file it names is in place.
"""

from __future__ import annotations

import copy
import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from feedgen.aggregator.job import MARKER, aggregate_path, latest_aggregate, run_aggregate
from feedgen.aggregator.sources import check_sources
from feedgen.core.config import Config
from feedgen.core.errors import BadInput, FeedgenError, RunFailed, RunLocked
from feedgen.core.runs import (
    crash_point,
    format_ts,
    new_run_record,
    parse_as_of,
    read_run,
    run_dir,
    utcnow,
    write_run,
)
from feedgen.core.serving import current_run_id, serving_store
from feedgen.generator.gates import check_run
from feedgen.generator.generate import STAGING, generate_entity
from feedgen.generator.membership import build_membership_index
from feedgen.generator.render import TEMPLATE_FAILURES
from feedgen.generator.snapshots import DiffTarget, diff_definitions, staged_snapshot_items
from feedgen.jobs import alerts
from feedgen.jobs.emit import emit_run
from feedgen.jobs.pinning import (
    check_resume_source,
    is_pinned,
    load_pinned,
    pin,
    read_source,
    run_definitions,
)
from feedgen.jobs.progress import stage
from feedgen.jobs.publish import publish_run
from feedgen.jobs.spark import spark_session

log = logging.getLogger(__name__)

STAGES = ("aggregate", "generate", "gate", "publish", "emit")


def stage_done(record: dict[str, Any], name: str) -> bool:
    """True when ``name`` needs no more work (an aggregate that fell back to a stale one counts)."""
    entry = (record.get("stages") or {}).get(name) or {}
    return entry.get("status") == "done" or (name == "aggregate" and bool(entry.get("stale_aggregate")))


def next_stage(record: dict[str, Any]) -> str | None:
    """The first stage of the run not done yet, or None when the run is complete."""
    for name in STAGES:
        if not stage_done(record, name):
            return name
    return None


def absolute_config(config: Config) -> Config:
    """A copy of ``config`` whose local paths are absolute.

    Executors of a cluster resolve a relative path against their own working directory,
    so every path the driver hands out must be absolute (and on a filesystem they share).
    """
    data = copy.deepcopy(config.data)

    def fix(value: Any) -> Any:
        if isinstance(value, str) and value and "://" not in value and not os.path.isabs(value):
            return os.path.abspath(os.path.expanduser(value))
        return value

    data["root"] = fix(data["root"])
    for spec in (data.get("sources") or {}).values():
        spec["path"] = fix(spec["path"])
    for section, key in (("generate", "templates_dir"), ("publish", "store")):
        if (data.get(section) or {}).get(key):
            data[section][key] = fix(data[section][key])
    return Config(data=data, path=config.path, overrides=list(config.overrides))


def load_or_create_record(config: Config, run_id: str, as_of: datetime, master: str) -> dict[str, Any]:
    if (run_dir(config.root, run_id) / "run.json").is_file():
        return read_run(config.root, run_id)
    record = new_run_record(run_id, as_of, master)
    record["started_by"] = os_user()
    write_run(config.root, record)
    return record


def _aggregate_for(config: Config, record: dict[str, Any], entity: str) -> tuple[str, Path, bool]:
    """This run's aggregate of ``entity``, else the last good one (flagged stale)."""
    own = aggregate_path(config.root, entity, record["run_id"])
    if (own / MARKER).is_file():
        return record["run_id"], own, False
    latest = latest_aggregate(config.root, entity)
    if latest is None:
        raise RunFailed(
            f"no {entity} aggregate under {Path(config.root) / 'aggregates' / entity}; run "
            f"`feedgen aggregate --root {config.root}` (or `feedgen run`) first")
    return latest[0], latest[1], True


def generate_stage(spark, config: Config, record: dict[str, Any], definitions_dir: str | None,
                   progress: Callable[[str], None] | None = None, gate: bool = True) -> dict[str, Any]:
    """Generate every definition, snapshot and diff those with event delivery (then gate them).

    The run's pinned definitions are used when it has them; else ``definitions_dir`` (a folder
    or ``registry``) is read and pinned first (``feedgen.jobs.pinning``).
    """
    say = progress or (lambda _m: None)
    root = config.root
    run_id = record["run_id"]
    as_of = parse_as_of(record["as_of"])
    # a bad definition or user template stops here, before any output
    _, defset = run_definitions(config, record, definitions_dir)
    definitions = list(defset.definitions)
    all_segments = {d.id: d for d in definitions if d.kind == "segment"}
    record["status"] = "generating"
    write_run(root, record)
    t0 = time.monotonic()
    started_at = format_ts(utcnow())
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
            log.warning("using the last good %s aggregate, of run %s", entity, agg_run,
                        extra={"run_id": run_id, "entity": entity, "aggregate_run_id": agg_run})
        df = spark.read.parquet(str(path))
        stats.update(generate_entity(
            spark, df, mine, entity=entity, root=root, run_id=run_id, as_of=as_of,
            all_segments=all_segments, user_templates_dir=templates_dir,
            part_max_raw_bytes=int(config.get("generate.part_max_raw_bytes", 64 << 20)), progress=say,
            jvm=bool(config.get("generate.jvm_render", True))))
        if entity == "customer" and any(d.kind == "segment" for d in mine):
            say("membership index")
            record["membership"] = build_membership_index(
                spark, root, run_id, mine, as_of=record["as_of"], customers_df=df)
        crash_point("generate:after-parts")
    record["aggregates"] = used
    _diff_stage(spark, config, run_id, as_of, definitions, stats, say)
    record["definitions"] = stats
    _template_warnings(record, stats)
    seconds = round(time.monotonic() - t0, 3)
    record["stages"]["generate"] = {
        "status": "done", "seconds": seconds, "started_at": started_at, "finished_at": format_ts(utcnow()),
        "definitions": len(definitions), "items": sum(int(s.get("items") or 0) for s in stats.values()),
        "events": sum(int((s.get("delta") or {}).get("events") or 0) for s in stats.values()
                      if (s.get("delta") or {}).get("send_events", True))}
    record["timings"]["generate"] = seconds
    if gate:
        # generate and gate land in one write: a crash in between redoes both
        gate_stage(config, record, definitions)
    write_run(root, record)
    return record


def _diff_stage(spark, config: Config, run_id: str, as_of: datetime, definitions: list[Any],
                stats: dict[str, Any], say: Callable[[str], None]) -> None:
    """Snapshot and diff every definition with event delivery, all in one batch (``stats[id]["delta"]``)."""
    wanted = sorted(def_id for def_id, s in stats.items() if s.get("events"))
    if not wanted:
        return
    say(f"diff {len(wanted)} definitions")
    root = config.root
    by_id = {d.id: d for d in definitions}
    store = serving_store(config)
    staged: dict[Path, dict[int, str]] = {}
    for def_id in wanted:
        staged.setdefault(run_dir(root, run_id) / STAGING / stats[def_id]["entity"], {})[stats[def_id]["target"]] = def_id
    targets = [DiffTarget(def_id, kind=by_id[def_id].kind, entity=by_id[def_id].entity,
                          destinations=list(stats[def_id].get("destinations") or []),
                          base_run_id=current_run_id(config, def_id, store),
                          refresh_after=by_id[def_id].refresh_after or config.get("gates.refresh_after"))
               for def_id in wanted]
    deltas = diff_definitions(spark, root, run_id, staged_snapshot_items(spark, staged), targets, as_of=as_of)
    for def_id, summary in deltas.items():
        stats[def_id]["delta"] = summary
    crash_point("generate:after-diff")


def _template_warnings(record: dict[str, Any], stats: dict[str, Any]) -> None:
    """One warning per output whose user template failed on items: how many, and the first error."""
    warnings = list(record.get("warnings") or [])
    for def_id, s in sorted(stats.items()):
        for name, out in [(None, s), *sorted((s.get("exports") or {}).items())]:
            first = out.get("template_error")
            if not first:
                continue
            failed = sum(int((out.get("excluded") or {}).get(r) or 0) for r in TEMPLATE_FAILURES)
            what = f"{s.get('kind', 'definition')} {def_id!r}" + (f" export {name!r}" if name else "")
            text = (f"{what}: template {out.get('template')!r} failed on {failed} of {out.get('candidates', 0)} "
                    f"items, left out; first ({first.get('reason')}, {s.get('entity', 'entity')} "
                    f"{first.get('key')}): {first.get('file')}:{first.get('line')}: {first.get('message')}")
            if text not in warnings:
                warnings.append(text)
    if warnings:
        record["warnings"] = warnings


def gate_stage(config: Config, record: dict[str, Any], definitions) -> dict[str, Any]:
    """Run the gates over a generated run; ``record["status"]`` becomes ``held`` on a breach."""
    t0 = time.monotonic()
    gate = check_run(config, record, definition_gates={d.id: dict(d.gates or {}) for d in definitions})
    record["stages"]["gate"] = {"status": "done", "result": gate["status"],
                                "breaches": len(gate.get("breaches") or []),
                                "seconds": round(time.monotonic() - t0, 3)}
    record["timings"]["gate"] = record["stages"]["gate"]["seconds"]
    return record


def _stage_log(record: dict[str, Any], name: str) -> None:
    entry = record["stages"].get(name) or {}
    log.info("run %s: %s %s in %.1fs", record["run_id"], name, entry.get("status"),
             float(entry.get("seconds") or 0), extra={
                 "run_id": record["run_id"], "stage": name, "stage_status": entry.get("status"),
                 "seconds": entry.get("seconds"), "items": entry.get("items"),
                 "events": entry.get("events"), "result": entry.get("result")})


def _fail(config: Config, record: dict[str, Any], name: str, err: BaseException, *, t0: float,
          status: str | None = "failed") -> RunFailed | FeedgenError:
    record["stages"][name] = {"status": "failed", "error": str(err), "seconds": round(time.monotonic() - t0, 3),
                              "finished_at": format_ts(utcnow())}
    if status:
        record["status"] = status
    write_run(config.root, record)
    _stage_log(record, name)
    alerts.notify(config, record, "failed")
    if isinstance(err, BadInput):
        return err
    resume = f"fix the cause and continue with `feedgen run --resume {record['run_id']}`"
    if isinstance(err, FeedgenError):
        return RunFailed(f"run {record['run_id']}: {name} failed: {err}\n({resume})")
    return RunFailed(f"run {record['run_id']}: {name} failed: {type(err).__name__}: {err}; {resume}")


def run_pipeline(config: Config, *, run_id: str, as_of: datetime | None = None, definitions_dir: str | None = None,
                 master: str | None = None, progress_stage=None, resume: bool = False,
                 started_by: str | None = None) -> dict[str, Any]:
    """aggregate → generate → gate → publish → emit for one run (the caller holds the lock).

    ``started_by`` says who or what started this attempt (``os:<user>``, ``schedule:<interval>``,
    ``demo``, a console user; default ``os:<user>`` of this process). A new run records it as
    ``started_by``; every attempt (a resume too) records its own in ``attempts``.

    With ``resume=True`` the run must exist: it continues from its first stage not done,
    with the run's own ``as_of`` and the definitions it pinned at its start
    (``runs/<run_id>/definitions.yaml``), whatever was published or edited since.
    ``definitions_dir`` is a folder or ``registry`` (default: config ``definitions``).
    """
    progress_stage = progress_stage or stage
    config = absolute_config(config)
    root = config.root
    exists = (run_dir(root, run_id) / "run.json").is_file()
    if resume and not exists:
        raise BadInput(f"--resume {run_id}: no run.json under {run_dir(root, run_id)}; list the runs "
                       f"with `feedgen runs list --root {root}`")
    if exists and not resume:
        raise BadInput(f"run {run_id} already exists under {Path(root) / 'runs'}; continue it with "
                       f"`feedgen run --resume {run_id}`")
    if exists:
        record = read_run(root, run_id)
        if record.get("status") == "rejected":
            raise BadInput(f"run {run_id} was rejected and its files were discarded; start a new run")
        check_resume_source(config, record, definitions_dir)
        # a run from before pinning resumes with the folder it recorded (and pins it now)
        definitions_dir = definitions_dir or record.get("definitions_dir") or str(config.get("definitions"))
    else:
        if as_of is None:
            raise BadInput("a new run needs an as_of instant")
        definitions_dir = definitions_dir or str(config.get("definitions"))
        record = new_run_record(run_id, as_of, master or config.get("spark.master") or "local[*]")
    started_by = started_by or os_user()
    if not exists:
        record["started_by"] = started_by
    # read once (one query for the registry) and validated: fail before the Spark work
    snapshot = None if is_pinned(record) else read_source(config, definitions_dir)
    definitions = list((snapshot.definitions if snapshot else load_pinned(config, record)[1]).definitions)
    if not stage_done(record, "aggregate") and not config.get("aggregate.allow_stale_aggregate"):
        # a missing or empty source stops here: before Spark starts, before a new run.json
        # (with allow_stale_aggregate the aggregate stage fails and the last good one is used)
        check_sources(config, _entities(definitions))
    if snapshot is not None:
        pin(root, record, snapshot)
    first = next_stage(record)
    record.setdefault("attempts", []).append({
        "started_at": format_ts(utcnow()), "pid": os.getpid(), "host": socket.gethostname(),
        "from_stage": first, "master": master or config.get("spark.master"), "started_by": started_by})
    write_run(root, record)
    if first is None:
        log.info("run %s is complete (status %s); nothing to resume", run_id, record["status"],
                 extra={"run_id": run_id})
        return record
    if exists:
        log.info("resuming run %s from its %s stage", run_id, first, extra={"run_id": run_id, "stage": first})
    run_as_of = parse_as_of(record["as_of"])
    spark = None

    def session():
        # Spark starts only when a Spark stage is left: resuming publish or emit needs none.
        nonlocal spark
        if spark is None:
            spark = spark_session(config["spark"], master=master)
            record["spark_master"] = spark.sparkContext.master
            record["attempts"][-1]["master"] = record["spark_master"]
        return spark

    if not stage_done(record, "aggregate"):
        record = _aggregate(config, record, session, definitions, run_as_of, progress_stage)
        crash_point("aggregate:done")
    if not stage_done(record, "generate"):
        t0 = time.monotonic()
        try:
            with progress_stage("generate") as step:
                record = generate_stage(session(), config, record, definitions_dir, progress=step)
        except Exception as err:
            raise _fail(config, record, "generate", err, t0=t0) from err
        _stage_log(record, "generate")
        _stage_log(record, "gate")
    elif not stage_done(record, "gate"):
        gate_stage(config, record, definitions)
        write_run(root, record)
        _stage_log(record, "gate")
    if record.get("status") == "held":
        alerts.notify(config, record, "held")
        return record
    _alert_near_threshold(config, record, definitions)
    for name, action in (("publish", publish_run), ("emit", emit_run)):
        if stage_done(record, name):
            continue
        t0 = time.monotonic()
        started_at = format_ts(utcnow())
        try:
            with progress_stage(name):
                record = action(config, run_id)
        except Exception as err:
            # status stays as it was (generated / published): resuming retries this stage
            record = read_run(root, run_id)
            raise _fail(config, record, name, err, t0=t0, status=None) from err
        entry = record["stages"].setdefault(name, {"status": "done"})
        entry.update({"started_at": started_at, "finished_at": format_ts(utcnow()),
                      "seconds": entry.get("seconds", round(time.monotonic() - t0, 3))})
        if name == "publish":
            pub = record.get("publication") or {}
            entry["definitions"] = len(pub.get("definitions") or [])
            entry["items"] = sum(int((record["definitions"].get(d) or {}).get("items") or 0)
                                 for d in pub.get("definitions") or [])
        record["timings"][name] = entry["seconds"]
        write_run(root, record)
        _stage_log(record, name)
        if name == "publish":
            crash_point("publish:done")
            alerts.notify(config, record, "published")
    return record


def os_user() -> str:
    """``os:<user>``: who runs this process, as run.json and the audit log name a shell user."""
    import getpass

    try:
        return f"os:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
        return f"os:uid-{os.getuid()}"


def _alert_near_threshold(config: Config, record: dict[str, Any], definitions) -> None:
    if any("near_threshold" in (h.get("events") or ()) for h in config.get("alerts.webhooks") or []):
        near = alerts.near_threshold(config, record, {d.id: dict(d.gates or {}) for d in definitions})
        if near:
            alerts.notify(config, record, "near_threshold", near)


def _entities(definitions) -> tuple[str, ...]:
    """The entity kinds some definition reads (only their aggregates are built)."""
    return tuple(e for e in ("offer", "customer") if any(d.entity == e for d in definitions))


def _aggregate(config: Config, record: dict[str, Any], session, definitions, as_of: datetime,
               progress_stage) -> dict[str, Any]:
    root = config.root
    entities = _entities(definitions)
    t0 = time.monotonic()
    started_at = format_ts(utcnow())
    record["status"] = "aggregating"
    write_run(root, record)
    try:
        with progress_stage("aggregate") as step:
            agg = run_aggregate(session(), config, record["run_id"], as_of, entities=entities, progress=step)
        record["stages"]["aggregate"] = {
            "status": "done", "seconds": round(time.monotonic() - t0, 3), "started_at": started_at,
            "finished_at": format_ts(utcnow()),
            "items": sum(int(e.get("rows") or 0) for e in (agg.get("entities") or {}).values()), **agg}
        if agg.get("warnings"):
            # also at the top of run.json, where `feedgen runs show` and the summary read them
            record["warnings"] = list(record.get("warnings") or []) + list(agg["warnings"])
    except Exception as err:
        if not config.get("aggregate.allow_stale_aggregate"):
            raise _fail(config, record, "aggregate", err, t0=t0) from err
        log.warning("run %s: the aggregate failed (%s); going on with the last good aggregate",
                    record["run_id"], err, extra={"run_id": record["run_id"], "stage": "aggregate"})
        record["stages"]["aggregate"] = {
            "status": "failed", "error": str(err), "stale_aggregate": True, "started_at": started_at,
            "finished_at": format_ts(utcnow()), "seconds": round(time.monotonic() - t0, 3)}
        record["stale_aggregate"] = True
    record["timings"]["aggregate"] = record["stages"]["aggregate"]["seconds"]
    write_run(root, record)
    _stage_log(record, "aggregate")
    return record


def parse_interval(text: str) -> float:
    """``30m``, ``1h``, ``90s``, ``1d`` (or plain seconds) → seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value = text.strip().lower()
    try:
        seconds = float(value[:-1]) * units[value[-1]] if value and value[-1] in units else float(value)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise BadInput(f"--every: {text!r} is not a duration; use e.g. 30m, 1h, 90s or 1d")
    return seconds


def run_every(interval: float, run_once: Callable[[], Any], *, max_ticks: int | None = None,
              clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> dict[str, int]:
    """Call ``run_once`` on a fixed schedule: tick n starts at ``start + n * interval``.

    Intervals are timed from each run's start, not its end. A tick that comes while a run
    is still going is skipped (never queued), and so is one whose run finds another run
    holding the root's lock (``RunLocked``). A failed run is logged; the schedule goes on.
    Returns counts of ``runs``, ``skipped`` and ``failed`` ticks.
    """
    start = clock()
    counts = {"runs": 0, "skipped": 0, "failed": 0}
    tick = 0
    while max_ticks is None or tick < max_ticks:
        due = start + tick * interval
        now = clock()
        if now < due:
            sleep(due - now)
        try:
            run_once()
            counts["runs"] += 1
        except RunLocked as err:
            counts["skipped"] += 1
            log.warning("tick %d skipped: %s", tick, err, extra={"tick": tick, "skipped": "locked"})
        except FeedgenError as err:
            counts["failed"] += 1
            log.error("tick %d: run failed: %s", tick, err, extra={"tick": tick})
        tick += 1
        # every tick that came while this run was going is skipped, not made up
        late = int((clock() - start) // interval) + 1 - tick
        if late > 0:
            if max_ticks is not None:
                late = min(late, max_ticks - tick)
            counts["skipped"] += late
            log.warning("skipped %d tick(s): the run was still in progress", late,
                        extra={"tick": tick, "skipped": late})
            tick += late
    return counts


__all__ = ["STAGES", "absolute_config", "gate_stage", "generate_stage", "next_stage", "os_user", "parse_interval",
           "run_every", "run_pipeline", "stage_done"]
