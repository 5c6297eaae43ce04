"""Command: ``feedgen serve``, the file server under gunicorn."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import click

from feedgen.jobs.options import config_option, root_option


def run_server(config: Any, *, host: str | None = None, port: int | None = None,
               workers: int | None = None, threads: int | None = None) -> None:
    """Run the file server under gunicorn (gthread workers) until interrupted."""
    from feedgen.core.errors import ConfigError
    from feedgen.fileserver.auth import TokenTable

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

    warn_unknown_token_ids(config)  # (after the variable above: it imports the file server)

    def child_exit(_server: Any, worker: Any) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)

    def when_ready(_server: Any) -> None:
        click.echo(f"feedgen: serving {serving_store_uri(config)} on http://{host}:{port} "
                   f"({workers} workers x {threads} threads)", err=True)
        if host not in _LOOPBACK:
            click.echo(f"feedgen: {host} is not a loopback address; clients that send their requests "
                       "slowly can hold every thread: put nginx in front (deploy/nginx.conf, README "
                       "\"Deployment\") and bind feedgen to 127.0.0.1", err=True)

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

    def load() -> Any:
        # Built in each worker after the fork: no store client is shared between processes.
        from feedgen.fileserver.app import create_app

        return create_app(config)

    _raise_open_file_limit()
    try:
        run_gunicorn(options, load)
    finally:
        if own_dir:
            shutil.rmtree(own_dir, ignore_errors=True)


_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def warn_unknown_token_ids(config: Any) -> list[str]:
    """Log (and return) a warning per ``server.tokens`` / ``server.public`` id that neither a
    definition (config ``definitions``, when it can be read here) nor a published pointer has."""
    import logging

    from feedgen.core.config_schema import unknown_definition_ids
    from feedgen.core.store import open_store
    from feedgen.fileserver.app import serving_store_uri
    from feedgen.jobs.pinning import load_source

    server = config.get("server") or {}
    if not server.get("tokens") and not server.get("public"):
        return []
    ids: set[str] = set()
    with contextlib.suppress(Exception):  # the definitions may live on another host
        ids |= {d.id for d in load_source(config, str(config.get("definitions")))}
    with contextlib.suppress(Exception):  # a store that cannot be read now is /healthz's business
        keys = open_store(serving_store_uri(config), config).list("current/")
        ids |= {k[8:-5] for k in keys if k.endswith(".json") and "/" not in k[8:]}
    warnings = [f"{config.source_label}: {line} (among the definitions and the published ones; "
                "requests for it are answered 404)" for line in unknown_definition_ids(server, ids)]
    for text in warnings:
        logging.getLogger("feedgen.serve").warning("%s", text)
    return warnings


def run_gunicorn(options: dict[str, Any], load: Callable[[], Any]) -> None:
    """Serve the WSGI app ``load()`` builds (in each worker, after the fork) under gunicorn
    with ``options`` (gunicorn settings) until interrupted; ``feedgen serve`` and ``console`` use it."""
    from gunicorn.app.base import BaseApplication

    class _Gunicorn(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return load()

    _Gunicorn().run()


def _raise_open_file_limit() -> None:
    # A download holds every part file of its document open from its first byte (so that
    # retention cannot cut it short): let the workers use the hard limit, not the soft one.
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 1 << 16 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        # (if refused, the soft limit stays: fewer downloads at once can hold their files)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def listen_options(section: str, port: int) -> Callable[[Callable], Callable]:
    """``--host --port --workers --threads`` of a gunicorn command, defaults from ``section``."""

    def apply(command: Callable) -> Callable:
        for option in reversed((
            click.option("--host", default=None,
                         help=f"Address to bind (default: config {section}.host, 127.0.0.1)."),
            click.option("--port", default=None, type=click.IntRange(0, 65535),
                         help=f"Port to bind (default: config {section}.port, {port})."),
            click.option("--workers", default=None, type=click.IntRange(min=1),
                         help=f"gunicorn worker processes (default: config {section}.workers)."),
            click.option("--threads", default=None, type=click.IntRange(min=1),
                         help=f"Threads per worker (default: config {section}.threads)."),
        )):
            command = option(command)
        return command

    return apply


@click.command("serve")
@config_option
@root_option
@listen_options("server", 8080)
def serve(config_path: str | None, root: str | None, host: str | None, port: int | None,
          workers: int | None, threads: int | None) -> None:
    """Serve published feeds, exports, runs and metrics over HTTP (gunicorn)."""
    from feedgen.core.config import load_config

    config = load_config(config_path, root=root)
    run_server(config, host=host, port=port, workers=workers, threads=threads)


COMMANDS = [serve]
