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
    from feedgen.core.config import load_config

    config = load_config(config_path)
    connector = Connector(settings_from_config(config, name))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: connector.stop())
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, registry=connector.metrics.registry)
    _tune_gc(connector.settings.batch_size)
    counts = connector.run(idle_exit_s=idle_exit)
    click.echo(json.dumps({"connector": name, **counts}))


def _tune_gc(batch_size: int) -> None:
    """Fewer, cheaper garbage collections for a process that only moves events.

    A batch parses ~``batch_size`` JSON events into a few dicts each and drops them once
    delivered; they hold no reference cycles, yet with the default thresholds every 700
    new dicts start a collection that walks them all again, which cost about half the
    CPU per event (benchmarks/connect.py). ``gc.freeze`` also keeps the objects made at
    start-up (modules, clients) out of every later full collection.
    """
    import gc

    gc.collect()
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, 20 * batch_size), max(gen1, 20), gen2)


COMMANDS = [connect]
