"""``feedgen connect NAME``: run one connector until SIGTERM."""

from __future__ import annotations

import json
import signal

import click

from feedgen.jobs.options import config_option


@click.command("connect")
@click.argument("name")
@config_option
@click.option("--metrics-port", type=int, default=None,
              help="Serve Prometheus metrics (delivered, retried, dead-lettered, lag) on this port.")
@click.option("--idle-exit", type=float, default=None,
              help="Exit 0 after this many seconds with nothing to read (default: run until SIGTERM).")
def connect(name: str, config_path: str | None, metrics_port: int | None, idle_exit: float | None) -> None:
    """Push the delta events whose destinations include NAME to its partner API.

    Settings come from the config's ``connectors.NAME`` section. Offsets are committed
    after the partner accepted a batch; SIGTERM finishes the batch in flight, commits
    and exits 0.
    """
    from feedgen.connectors.base import Connector, settings_from_config
    from feedgen.jobs.config import load_config

    config = load_config(config_path)
    connector = Connector(settings_from_config(config, name))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: connector.stop())
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, registry=connector.metrics.registry)
    counts = connector.run(idle_exit_s=idle_exit)
    click.echo(json.dumps({"connector": name, **counts}))


COMMANDS = [connect]
