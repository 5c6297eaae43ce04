"""Commands: generate, run, demo."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from feedgen.jobs.options import as_of_option, config_option, definitions_option, root_option
from feedgen.jobs.progress import console, stage


def _definitions_dir(config, definitions: str | None) -> str:
    return definitions or str(config.get("definitions"))


def print_run_summary(record: dict[str, Any]) -> None:
    table = Table(title=f"run {record['run_id']}  status: {record['status']}  as_of {record['as_of']}")
    for col in ("definition", "template", "items", "excluded", "files", "MB (gz)", "delta", "gate"):
        table.add_column(col, justify="right" if col in ("items", "excluded", "files", "MB (gz)") else "left")
    breaches = {}
    for b in (record.get("gate") or {}).get("breaches") or []:
        breaches.setdefault(b["definition_id"], []).append(f"{b['metric']}={b['value']}")
    for def_id, s in sorted((record.get("definitions") or {}).items()):
        delta = s.get("delta") or {}
        ops = delta.get("ops") or delta.get("counts") or {}
        table.add_row(
            def_id, s.get("template", ""), f"{s.get('items', 0):,}", f"{sum((s.get('excluded') or {}).values()):,}",
            str(s.get("files", "")), f"{s.get('bytes', 0) / 1e6:.2f}",
            " ".join(f"{k}:{v}" for k, v in ops.items() if v) or "-",
            "[red]" + ", ".join(breaches[def_id]) + "[/red]" if def_id in breaches else "ok")
    console.print(table)
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
    from feedgen.jobs.config import load_config
    from feedgen.jobs.pipeline import generate_stage, load_or_create_record
    from feedgen.jobs.runs import new_run_id, parse_as_of, root_lock
    from feedgen.jobs.spark import spark_session

    config = load_config(config_path, root=root, definitions=definitions)
    run_id = run_id or new_run_id()
    from feedgen.generator.definitions import load_definitions

    load_definitions(_definitions_dir(config, definitions))
    with root_lock(config.root, run_id):
        spark = spark_session(config["spark"], master=master)
        record = load_or_create_record(config, run_id, parse_as_of(as_of), spark.sparkContext.master)
        with stage("generate") as step:
            record = generate_stage(spark, config, record, _definitions_dir(config, definitions), progress=step)
    print_run_summary(record)


@click.command("run")
@config_option
@root_option
@definitions_option
@as_of_option
@click.option("--master", default=None, help="Spark master URL (default: config spark.master, else local[*]).")
def run(config_path, root, definitions, as_of, master) -> None:
    """One run: aggregate → generate → gate → publish → emit."""
    from feedgen.jobs.config import load_config
    from feedgen.jobs.pipeline import run_pipeline
    from feedgen.jobs.runs import new_run_id, parse_as_of, root_lock

    config = load_config(config_path, root=root, definitions=definitions)
    run_id = new_run_id()
    with root_lock(config.root, run_id):
        record = run_pipeline(config, run_id=run_id, as_of=parse_as_of(as_of),
                              definitions_dir=_definitions_dir(config, definitions), master=master)
    print_run_summary(record)
    if record["status"] == "held":
        console.print(f"[yellow]run {run_id} is held by its gates: nothing was published or emitted. "
                      f"Review with `feedgen runs show {run_id}`, then `feedgen runs approve|reject {run_id}`.[/yellow]")


COMMANDS = [generate, run]
