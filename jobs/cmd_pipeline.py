"""Commands: generate, run, demo."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from feedgen.jobs.options import as_of_option, config_option, definitions_option, root_option
from feedgen.jobs.progress import console, stage


def _definitions_dir(config, definitions: str | None) -> str:
    return definitions or str(config.get("definitions"))


def render_notes(record: dict[str, Any]) -> list[str]:
    """How a run's outputs were rendered: JVM or Python and why, and picks that fell to a runner-up."""
    python: dict[str, list[str]] = {}
    jvm = 0
    runner_ups = []
    for def_id, s in sorted((record.get("definitions") or {}).items()):
        for name, out in [(def_id, s), *((f"{def_id}/{e}", x) for e, x in sorted((s.get("exports") or {}).items()))]:
            if out.get("render_path") == "jvm":
                jvm += 1
            elif out.get("render_path") == "python":
                python.setdefault(out.get("reason") or "no reason recorded", []).append(name)
        if s.get("pick_runner_ups"):
            runner_ups.append(f"{def_id} {s['pick_runner_ups']:,}")
    lines = [f"rendered in the JVM: {jvm} output(s)"] if jvm else []
    for reason, names in python.items():
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        lines.append(f"rendered in Python: {len(names)} output(s) ({shown}): {reason}")
    if runner_ups:
        lines.append("pick_one_per took a runner-up where the first by order_by fails the template: "
                     + ", ".join(runner_ups))
    return lines


def print_run_summary(record: dict[str, Any]) -> None:
    table = Table(title=f"run {record['run_id']}  status: {record['status']}  as_of {record['as_of']}")
    for col in ("definition", "template", "render", "items", "excluded", "files", "MB (gz)", "delta", "gate"):
        table.add_column(col, justify="right" if col in ("items", "excluded", "files", "MB (gz)") else "left")
    breaches = {}
    for b in (record.get("gate") or {}).get("breaches") or []:
        breaches.setdefault(b["definition_id"], []).append(f"{b['metric']}={b['value']}")
    for def_id, s in sorted((record.get("definitions") or {}).items()):
        delta = s.get("delta") or {}
        ops = delta.get("ops") or delta.get("counts") or {}
        table.add_row(
            def_id, s.get("template", ""), s.get("render_path", ""), f"{s.get('items', 0):,}",
            f"{sum((s.get('excluded') or {}).values()):,}",
            str(s.get("files", "")), f"{s.get('bytes', 0) / 1e6:.2f}",
            " ".join(f"{k}:{v}" for k, v in ops.items() if v) or "-",
            "[red]" + ", ".join(breaches[def_id]) + "[/red]" if def_id in breaches else "ok")
    console.print(table)
    for line in render_notes(record):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    timings = record.get("timings") or {}
    if timings:
        console.print("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))


@click.command("generate")
@config_option
@root_option
@definitions_option
@as_of_option
@click.option("--run-id", default=None, help="Run to generate (default: a new run on the latest aggregates).")
@click.option("--master", default=None, help="Spark master URL (default: config spark.master).")
def generate(config_path, root, definitions, as_of, run_id, master) -> None:
    """Generate every feed and segment in one pass over the aggregates, with diffs and gates."""
    from feedgen.core.config import load_config
    from feedgen.core.runs import new_run_id, parse_as_of, root_lock
    from feedgen.jobs.pipeline import absolute_config, generate_stage, load_or_create_record
    from feedgen.jobs.spark import spark_session

    config = absolute_config(load_config(config_path, root=root, definitions=definitions))
    run_id = run_id or new_run_id()
    from feedgen.jobs.pinning import load_source

    # bad definitions stop here, before the lock or any output (the run reads its source again, and pins it)
    load_source(config, _definitions_dir(config, definitions))
    with root_lock(config.root, run_id):
        spark = spark_session(config["spark"], master=master)
        record = load_or_create_record(config, run_id, parse_as_of(as_of), spark.sparkContext.master)
        with stage("generate") as step:
            record = generate_stage(spark, config, record, _definitions_dir(config, definitions), progress=step)
    print_run_summary(record)


def print_stage_summary(record: dict[str, Any]) -> None:
    """The run at a glance: one row per stage with its time, items, events and gate result."""
    from feedgen.jobs.pipeline import STAGES

    stages = record.get("stages") or {}
    gate = record.get("gate") or {}
    table = Table(title=f"run {record['run_id']}  status: {record['status']}")
    for col in ("stage", "status", "time", "items", "events", "gate"):
        table.add_column(col, justify="right" if col in ("time", "items", "events") else "left")
    for name in STAGES:
        s = stages.get(name)
        if not s:
            table.add_row(name, "-", "", "", "", "")
            continue
        status = s.get("status", "")
        if s.get("stale_aggregate"):
            status = "[yellow]failed: used the last good aggregate[/yellow]"
        elif status == "failed":
            status = "[red]failed[/red]"
        seconds = s.get("seconds")
        items = s.get("items")
        events = s.get("events")
        result = ""
        if name == "gate":
            result = s.get("result", "")
            if gate.get("breaches"):
                result = f"[red]{result}: {len(gate['breaches'])} breach(es)[/red]"
        table.add_row(name, status, f"{seconds:.1f}s" if isinstance(seconds, (int, float)) else "",
                      f"{items:,}" if isinstance(items, int) else "",
                      f"{events:,}" if isinstance(events, int) else "", result)
    console.print(table)


def _run_once(config, *, run_id: str, as_of, definitions: str | None, master: str | None,
              resume: bool, started_by: str | None = None) -> dict[str, Any]:
    from feedgen.core.runs import root_lock
    from feedgen.jobs.pipeline import run_pipeline

    with root_lock(config.root, run_id):
        return run_pipeline(config, run_id=run_id, as_of=as_of, definitions_dir=definitions,
                            master=master, resume=resume, started_by=started_by)


def _report(record: dict[str, Any]) -> None:
    print_run_summary(record)
    print_stage_summary(record)
    run_id = record["run_id"]
    for warning in record.get("warnings") or []:
        console.print(f"[yellow]warning: {warning}[/yellow]")
    if record["status"] == "held":
        console.print(f"[yellow]run {run_id} is held by its gates: nothing was published or emitted. "
                      f"Review with `feedgen runs show {run_id}`, then `feedgen runs approve|reject {run_id}`.[/yellow]")
    if record.get("stale_aggregate"):
        used = ", ".join(f"{e} of run {a['run_id']}" for e, a in (record.get("aggregates") or {}).items())
        console.print(f"[yellow]the aggregate failed; this run used the last good aggregate ({used})[/yellow]")


@click.command("run")
@config_option
@root_option
@definitions_option
@as_of_option
@click.option("--master", default=None, help="Spark master URL (default: config spark.master, else local[*]).")
@click.option("--resume", "resume_id", default=None, metavar="RUN",
              help="Continue run RUN from its first stage not done (after a crash or a failure).")
@click.option("--every", default=None, metavar="DURATION",
              help="Keep running: a new run every DURATION (30m, 1h), timed from each run's start; "
                   "a tick is skipped while a run is in progress.")
@click.option("--ticks", default=None, type=click.IntRange(min=1), hidden=True,
              help="With --every: stop after this many ticks (tests).")
def run(config_path, root, definitions, as_of, master, resume_id, every, ticks) -> None:
    """One run: aggregate → generate → gate → publish → emit (or --resume one, or --every N)."""
    from feedgen.core.config import load_config
    from feedgen.core.errors import BadInput
    from feedgen.core.runs import new_run_id, parse_as_of
    from feedgen.jobs.pipeline import parse_interval, run_every

    config = load_config(config_path, root=root, definitions=definitions)
    if resume_id and (every or as_of):
        raise BadInput("--resume continues a run with its own as_of; drop --every and --as-of")
    if every:
        if as_of:
            raise BadInput("--every starts each run at the current time; drop --as-of")
        interval = parse_interval(every)

        def tick() -> None:
            _report(_run_once(config, run_id=new_run_id(), as_of=parse_as_of(None), definitions=definitions,
                              master=master, resume=False, started_by=f"schedule:{every}"))

        counts = run_every(interval, tick, max_ticks=ticks)
        console.print(f"--every {every}: {counts['runs']} run(s), {counts['skipped']} tick(s) skipped, "
                      f"{counts['failed']} failed")
        return
    if not resume_id:
        from feedgen.jobs.pinning import load_source

        # bad definitions or templates stop here, before the lock or any run folder is written
        load_source(config, _definitions_dir(config, definitions))
    if resume_id:
        record = _run_once(config, run_id=resume_id, as_of=None, definitions=definitions, master=master, resume=True)
    else:
        record = _run_once(config, run_id=new_run_id(), as_of=parse_as_of(as_of), definitions=definitions,
                           master=master, resume=False)
    _report(record)


COMMANDS = [generate, run]
