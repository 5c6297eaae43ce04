"""The console app on a temp root for the API tests: one user (and token) per role, held runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from feedgen.console.app import create_app
from feedgen.console.registry import ROLES, Registry
from feedgen.core.config import Config, load_config
from feedgen.core.runs import read_run
from tests.fileserver_support import LiveServer
from tests.registry_support import ADMIN
from tests.snapshot_helpers import write_feed_run

API = "/api/v1"


def token_of(role: str) -> str:
    return f"test-token-{role}"


def password_of(role: str) -> str:
    return f"password-{role}"


def bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_of(role)}"}


@dataclass
class Console:
    """A live console: ``url(path)`` under /api/v1, the registry and config it runs on."""

    config: Config
    registry: Registry
    server: LiveServer
    runs: int = field(default=0)

    def url(self, path: str) -> str:
        return self.server.url(API + path)

    def call(self, method: str, path: str, role: str | None = None, **kwargs: Any) -> requests.Response:
        headers = {**(bearer(role) if role else {}), **kwargs.pop("headers", {})}
        return requests.request(method, self.url(path), headers=headers, timeout=30, **kwargs)

    def held_run(self, name: str = "run") -> str:
        """A fresh run held by its gates (one small feed), ready to approve or reject."""
        self.runs += 1
        run_id = f"20260101T{self.runs // 3600:02d}{self.runs // 60 % 60:02d}{self.runs % 60:02d}Z-{name}"
        write_feed_run(Path(self.config.root), run_id, "2026-01-01T03:00:00Z",
                       {"feed-x": {"o1": {"price": 1}, "o2": {"price": 2}}}, status="held")
        return run_id

    def run_record(self, run_id: str) -> dict[str, Any]:
        return read_run(self.config.root, run_id)

    def stop(self) -> None:
        self.server.stop()
        self.registry.close()


def console_config(root: Path, registry_url: str | None = None) -> Config:
    config = load_config(root=str(root), environ={})
    if registry_url:
        config.data["registry"]["url"] = registry_url
    return config


def start_console(root: Path, registry_url: str | None = None) -> Console:
    """The console on a loopback port, with users ``<role>`` (password ``password-<role>``,
    token ``test-token-<role>``) for every role."""
    config = console_config(root, registry_url)
    app = create_app(config)
    registry = app.extensions["feedgen_console"]["registry"]
    for role in ROLES:
        registry.accounts.add_user(ADMIN, role, role, password_of(role))
        registry.accounts.issue_token(ADMIN, role, token_of(role))
    return Console(config, registry, LiveServer(app))
