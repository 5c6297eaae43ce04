"""Command: ``feedgen console``, the marketers' console (API under /api/v1) under gunicorn."""

from __future__ import annotations

from typing import Any

import click

from feedgen.jobs.cmd_serve import listen_options
from feedgen.jobs.options import config_option, root_option


def run_console(config: Any, *, host: str | None = None, port: int | None = None,
                workers: int | None = None, threads: int | None = None) -> None:
    """Run the console under gunicorn (gthread workers) until interrupted."""
    from feedgen.console.registry import Registry, registry_url
    from feedgen.console.sessions import secret_key
    from feedgen.jobs.cmd_serve import _LOOPBACK, run_gunicorn

    section = config.get("console") or {}
    host = host or str(section.get("host", "127.0.0.1"))
    port = int(port if port is not None else section.get("port", 8090))
    workers = int(workers or section.get("workers", 2))
    threads = int(threads or section.get("threads", 4))
    url = registry_url(config)
    # Before the fork: the schema is migrated and the session key made once, not by each worker.
    Registry.open(url).close()
    secret_key(config)

    def when_ready(_server: Any) -> None:
        click.echo(f"feedgen: console on http://{host}:{port}/api/v1 (registry {_shown(url)}; "
                   f"{workers} workers x {threads} threads)", err=True)
        if host not in _LOOPBACK:
            click.echo(f"feedgen: the console listens on {host}, not a loopback address; it is meant to stay "
                       "inside: put it behind nginx with TLS and set console.secure_cookies: true", err=True)

    def load() -> Any:
        from feedgen.console.app import create_app

        return create_app(config)

    run_gunicorn({
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "keepalive": 5,
        "timeout": 60,
        "graceful_timeout": 30,
        "when_ready": when_ready,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "proc_name": "feedgen-console",
    }, load)


def _shown(url: str) -> str:
    # a PostgreSQL URL may carry a password: never print it
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@click.command("console")
@config_option
@root_option
@listen_options("console", 8090)
def console(config_path: str | None, root: str | None, host: str | None, port: int | None,
            workers: int | None, threads: int | None) -> None:
    """Serve the console's API (definitions, runs, approvals, audit) over HTTP (gunicorn)."""
    from feedgen.core.config import load_config

    config = load_config(config_path, root=root)
    run_console(config, host=host, port=port, workers=workers, threads=threads)


COMMANDS = [console]
