"""Command: ``feedgen serve``, the file server under gunicorn."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import click

from feedgen.jobs.options import config_option, root_option


def run_server(config: Any, *, host: str | None = None, port: int | None = None,
               workers: int | None = None, threads: int | None = None) -> None:
    """Run the file server under gunicorn (gthread workers) until interrupted."""
    from gunicorn.app.base import BaseApplication

    from feedgen.fileserver.auth import TokenTable
    from feedgen.jobs.errors import ConfigError

    server = config.get("server") or {}
    TokenTable(server, config.source_label)  # bad token digests fail here, with exit 2
    host = host or str(server.get("host", "127.0.0.1"))
    port = int(port if port is not None else server.get("port", 8080))
    workers = int(workers or server.get("workers", 2))
    threads = int(threads or server.get("threads", 4))
    if workers < 1 or threads < 1:
        raise ConfigError(f"{config.source_label}: server.workers and server.threads must be at least 1")

    # Set before any worker imports prometheus_client, so every worker writes its counters
    # to this folder and a scrape on any worker sees the sum (prometheus_client multiprocess mode).
    # (prometheus_client picks its value class once, at import.)
    own_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        own_dir = tempfile.mkdtemp(prefix="feedgen-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
    from feedgen.fileserver.app import serving_store_uri

    def child_exit(_server: Any, worker: Any) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)

    def when_ready(_server: Any) -> None:
        click.echo(f"feedgen: serving {serving_store_uri(config)} on http://{host}:{port} "
                   f"({workers} workers x {threads} threads)", err=True)

    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        # keep-alive lets a platform revalidate many feeds over one connection
        "keepalive": 5,
        # a gthread worker heartbeats from its main loop, so long downloads do not time out
        "timeout": 60,
        "graceful_timeout": 30,
        "child_exit": child_exit,
        "when_ready": when_ready,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "proc_name": "feedgen-serve",
    }

    class _Gunicorn(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            # Built in each worker after the fork: no store client is shared between processes.
            from feedgen.fileserver.app import create_app

            return create_app(config)

    try:
        _Gunicorn().run()
    finally:
        if own_dir:
            shutil.rmtree(own_dir, ignore_errors=True)


@click.command("serve")
@config_option
@root_option
@click.option("--host", default=None, help="Address to bind (default: config server.host, 127.0.0.1).")
@click.option("--port", default=None, type=click.IntRange(0, 65535),
              help="Port to bind (default: config server.port, 8080).")
@click.option("--workers", default=None, type=click.IntRange(min=1),
              help="gunicorn worker processes (default: config server.workers).")
@click.option("--threads", default=None, type=click.IntRange(min=1),
              help="Threads per worker (default: config server.threads).")
def serve(config_path: str | None, root: str | None, host: str | None, port: int | None,
          workers: int | None, threads: int | None) -> None:
    """Serve published feeds, exports, runs and metrics over HTTP (gunicorn)."""
    from feedgen.jobs.config import load_config

    config = load_config(config_path, root=root)
    run_server(config, host=host, port=port, workers=workers, threads=threads)


COMMANDS = [serve]
