"""Commands: runs list|show|approve|reject, publish, emit."""

from __future__ import annotations

import json

import click

from feedgen.jobs.options import config_option, root_option


def _config(config_path: str | None, root: str | None):
    from feedgen.core.config import load_config

    return load_config(config_path, root=root)


@click.group("runs")
def runs() -> None:
    """List runs, show one, approve or reject a run held by its gates."""


@runs.command("list")
@config_option
@root_option
def runs_list(config_path: str | None, root: str | None) -> None:
    """Every run under the root, oldest first, with its status and gate.

    On a terminal wide enough for every cell whole: a table. Otherwise (a narrow terminal,
    a pipe, a file): tab-separated lines with a header. A cell is never cut or wrapped, so
    the id `runs show|approve|reject` take can be copied, and `cut -f1` / `grep held` work.
    """
    import shutil
    import sys

    from feedgen.core.runs import list_runs

    config = _config(config_path, root)
    columns = ("run", "status", "as_of", "definitions", "events", "gate")
    rows = [_list_row(record) for record in list_runs(config.root)]
    widths = [max(len(cell) for cell in column) for column in zip(columns, *rows, strict=True)]
    # a rich table with its box: "│ " before each cell, " │" after it, one more at the end
    table_width = sum(widths) + 3 * len(widths) + 1
    terminal = shutil.get_terminal_size(fallback=(0, 0)).columns
    if not sys.stdout.isatty() or table_width > terminal:
        for row in (columns, *rows):
            click.echo("\t".join(row))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"runs under {config.root}")
    for col, width in zip(columns, widths, strict=True):
        table.add_column(col, no_wrap=True, min_width=width)
    for row in rows:
        table.add_row(*row)
    Console(width=terminal).print(table)


def _list_row(record: dict) -> tuple[str, ...]:
    gate = record.get("gate") or {}
    breaches = gate.get("breaches") or []
    gate_text = gate.get("decision") or gate.get("status") or "-"
    if breaches:
        gate_text += f" ({len(breaches)} breach{'es' if len(breaches) > 1 else ''})"
    emit = record.get("emit") or {}
    return (record["run_id"], record.get("status", "?"), record.get("as_of", "-"),
            str(len(record.get("definitions") or {})), str(emit.get("events", "-")), gate_text)


@runs.command("show")
@click.argument("run_id")
@config_option
@root_option
@click.option("--json", "as_json", is_flag=True, help="Print run.json as it is.")
def runs_show(run_id: str, config_path: str | None, root: str | None, as_json: bool) -> None:
    """One run: status, per-definition stats, the gate report and what was emitted."""
    from feedgen.core.runs import read_run
    from feedgen.jobs.cmd_pipeline import render_notes

    config = _config(config_path, root)
    record = read_run(config.root, run_id)
    if as_json:
        click.echo(json.dumps(record, indent=2, sort_keys=True))
        return
    click.echo(f"run {record['run_id']}  status {record.get('status')}  as_of {record.get('as_of')}")
    if record.get("started_by"):
        resumed = [a.get("started_by") or "?" for a in (record.get("attempts") or [])[1:] if isinstance(a, dict)]
        click.echo(f"  started by {record['started_by']} at {record.get('created_at')}"
                   + (f"; resumed by {', '.join(resumed)}" if resumed else ""))
    for def_id, stats in sorted((record.get("definitions") or {}).items()):
        delta = stats.get("delta") or {}
        ops = ", ".join(f"{k} {v}" for k, v in sorted((delta.get("ops") or {}).items()))
        excluded = ", ".join(f"{k} {v}" for k, v in sorted((stats.get("excluded") or {}).items()))
        click.echo(f"  {def_id}: {stats.get('kind', '?')} {stats.get('items', '?')} items"
                   + (f"; events: {ops}" if ops else "") + (f"; excluded: {excluded}" if excluded else ""))
    for line in render_notes(record):
        click.echo(f"  {line}")
    for warning in record.get("warnings") or []:
        click.echo(f"  warning: {warning}")
    gate = record.get("gate") or {}
    for b in gate.get("breaches") or []:
        samples = ", ".join(b.get("sample_keys") or []) or "-"
        click.echo(f"  held: {b['definition_id']} {b['metric']} = {b['value']} "
                   f"(threshold {b['threshold']}); e.g. {samples}")
    if gate.get("decision"):
        click.echo(f"  gate {gate['decision']} by {gate.get('decided_by') or '?'} at {gate.get('decided_at')}")
    emit = record.get("emit") or {}
    if emit:
        detail = emit.get("error") or f"{emit.get('events')} events to {emit.get('target')}"
        click.echo(f"  emit: {emit.get('status')} (attempt {emit.get('attempts')}): {detail}")


_reason_option = click.option("--reason", default=None, help="Why (kept in run.json and the audit log).")


@runs.command("approve")
@click.argument("run_id")
@_reason_option
@config_option
@root_option
def runs_approve(run_id: str, reason: str | None, config_path: str | None, root: str | None) -> None:
    """Publish and emit a run held by its gates (audited as os:USER)."""
    import getpass

    from feedgen.jobs.lifecycle import approve_run

    record = approve_run(_config(config_path, root), run_id, by=f"os:{getpass.getuser()}", reason=reason)
    click.echo(f"run {run_id} approved: {record['status']}, "
               f"{(record.get('emit') or {}).get('events', 0)} events sent")


@runs.command("reject")
@click.argument("run_id")
@_reason_option
@config_option
@root_option
def runs_reject(run_id: str, reason: str | None, config_path: str | None, root: str | None) -> None:
    """Discard a run held by its gates; the current runs stay published (audited as os:USER)."""
    import getpass

    from feedgen.jobs.lifecycle import reject_run

    reject_run(_config(config_path, root), run_id, by=f"os:{getpass.getuser()}", reason=reason)
    click.echo(f"run {run_id} rejected; its files were discarded")


@click.command("publish")
@click.argument("run_id")
@config_option
@root_option
def publish(run_id: str, config_path: str | None, root: str | None) -> None:
    """Copy a run to the serving store and switch its definitions' current pointers."""
    from feedgen.core.runs import root_lock
    from feedgen.jobs.publish import publish_run

    config = _config(config_path, root)
    with root_lock(config.root, f"publish-{run_id}"):
        record = publish_run(config, run_id)
    pub = record.get("publication") or {}
    click.echo(f"run {run_id} published to {pub.get('store')}: "
               f"{len(pub.get('definitions') or [])} definition(s) current")


@click.command("emit")
@click.argument("run_id")
@config_option
@root_option
def emit(run_id: str, config_path: str | None, root: str | None) -> None:
    """Send a published run's delta events (again, with the same event ids)."""
    from feedgen.core.runs import root_lock
    from feedgen.jobs.emit import emit_run

    config = _config(config_path, root)
    with root_lock(config.root, f"emit-{run_id}"):
        record = emit_run(config, run_id)
    info = record["emit"]
    where = info.get("topic") and f"Kafka topic {info['topic']} at {info['bootstrap']}" or info.get("path")
    click.echo(f"run {run_id} emitted: {info['events']} events to {where}")


COMMANDS = [runs, publish, emit]
