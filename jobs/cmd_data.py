"""Commands: sample-data, aggregate."""

from __future__ import annotations

import time
from typing import Any

import click
from rich.table import Table

from feedgen.jobs.options import as_of_option, config_option, root_option
from feedgen.jobs.progress import console, stage


@click.command("sample-data")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory to write the sources to.")
@click.option("--offers", default=10_000, show_default=True, type=click.IntRange(min=1))
@click.option("--customers", default=2_000, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--variant", default=0, show_default=True, type=click.IntRange(0, 2),
              help="0: base; 1: a day later (price cuts, sold out, delisted); 2: broken export (half lose image_link).")
def sample_data(out: str, offers: int, customers: int, seed: int, variant: int) -> None:
    """Write a deterministic sample marketplace (about 1% dirty rows) as Parquet."""
    with stage(f"sample data → {out}") as step:
        summary = write_sample(out, offers, customers, seed, variant, step)
    print_sample_summary(summary)


def write_sample(out: str, offers: int, customers: int, seed: int, variant: int, step) -> dict[str, Any]:
    from feedgen.aggregator.sample_data import write_sample_data

    return write_sample_data(out, offers=offers, customers=customers, seed=seed, progress=step, variant=variant)


def print_sample_summary(summary: dict[str, Any]) -> None:
    table = Table(title="sample data")
    for col in ("source", "rows", "dirty rows"):
        table.add_column(col, justify="right" if col != "source" else "left")
    for name, rows in summary["rows"].items():
        dirty = summary["dirty"].get(name, {})
        table.add_row(name, f"{rows:,}", ", ".join(f"{k}: {v}" for k, v in dirty.items()) or "-")
    console.print(table)


def aggregate_run(config, run_id: str, as_of, master: str | None = None) -> dict[str, Any]:
    """Run the aggregate stage for ``run_id`` and record it in run.json."""
    from feedgen.aggregator.job import run_aggregate
    from feedgen.aggregator.sources import check_sources
    from feedgen.core.errors import FeedgenError
    from feedgen.core.runs import new_run_record, read_run, run_dir, write_run
    from feedgen.jobs.spark import spark_session

    root = config.root
    check_sources(config, ("offer", "customer"))  # a missing or empty source: before Spark starts
    spark = spark_session(config["spark"], master=master)
    master_used = spark.sparkContext.master
    record = read_run(root, run_id) if (run_dir(root, run_id) / "run.json").is_file() else new_run_record(run_id, as_of, master_used)
    record["status"] = "aggregating"
    write_run(root, record)
    t0 = time.monotonic()
    try:
        with stage("aggregate") as step:
            stats = run_aggregate(spark, config, run_id, as_of, progress=step)
    except Exception as err:  # whatever stopped it, the run is failed, never left at "aggregating"
        record["status"] = "failed"
        error = str(err) if isinstance(err, FeedgenError) else f"{type(err).__name__}: {str(err)[:2000]}"
        record["stages"]["aggregate"] = {"status": "failed", "error": error,
                                         "seconds": round(time.monotonic() - t0, 3)}
        write_run(root, record)
        raise
    record["stages"]["aggregate"] = {"status": "done", "seconds": round(time.monotonic() - t0, 3), **stats}
    record["timings"]["aggregate"] = round(time.monotonic() - t0, 3)
    write_run(root, record)
    return record


def print_aggregate_summary(record: dict[str, Any]) -> None:
    agg = record["stages"]["aggregate"]
    table = Table(title=f"aggregate {record['run_id']} (as_of {record['as_of']})")
    for col in ("source", "rows", "quarantined", "reasons"):
        table.add_column(col, justify="left" if col in ("source", "reasons") else "right")
    for name, s in agg["sources"].items():
        table.add_row(name, f"{s['rows']:,}", f"{s['quarantined']:,} ({s['share']:.2%})",
                      ", ".join(f"{r}: {n}" for r, n in s["reasons"].items()) or "-")
    for entity, e in agg["entities"].items():
        table.add_row(f"[bold]{entity} aggregate[/bold]", f"{e['rows']:,}", "", e["path"])
    console.print(table)


@click.command("aggregate")
@config_option
@root_option
@as_of_option
@click.option("--run-id", default=None, help="Run to record the aggregate in (default: a new run).")
@click.option("--master", default=None, help="Spark master URL (default: config spark.master, else local[*]).")
def aggregate(config_path: str | None, root: str | None, as_of: str | None, run_id: str | None, master: str | None) -> None:
    """Read and validate the sources, quarantine bad rows, write the offer and customer aggregates."""
    from feedgen.core.config import load_config
    from feedgen.core.runs import new_run_id, parse_as_of, root_lock

    config = load_config(config_path, root=root)
    as_of_ts = parse_as_of(as_of)
    run_id = run_id or new_run_id()
    with root_lock(config.root, run_id):
        record = aggregate_run(config, run_id, as_of_ts, master)
    print_aggregate_summary(record)


COMMANDS = [sample_data, aggregate]
