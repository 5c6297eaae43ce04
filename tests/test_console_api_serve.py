"""``feedgen console`` runs the API under gunicorn, like ``feedgen serve`` runs the file server."""

from __future__ import annotations

import signal
import stat
import subprocess
import sys

import requests
import yaml

from feedgen.console.registry import Registry, registry_url
from feedgen.core.config import load_config
from tests.registry_support import ADMIN
from tests.support import free_port, wait_for_port

FEEDGEN = [sys.executable, "-m", "feedgen.jobs.cli", "--text-logs"]


def test_feedgen_console_serves_the_api_with_gunicorn_workers_sharing_one_session_key(tmp_path):
    root = tmp_path / "root"
    cfg_path = tmp_path / "feedgen.yaml"
    cfg_path.write_text(yaml.safe_dump({"root": str(root), "console": {"workers": 2, "threads": 2}}))
    registry = Registry.open(registry_url(load_config(cfg_path, environ={})))
    registry.accounts.add_user(ADMIN, "ola", "editor", "ola-password")
    registry.accounts.issue_token(ADMIN, "ola", "ola-token")
    registry.close()
    port = free_port()
    proc = subprocess.Popen([*FEEDGEN, "console", "--config", str(cfg_path), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_port(port)
        url = f"http://127.0.0.1:{port}/api/v1"
        me = requests.get(f"{url}/me", headers={"Authorization": "Bearer ola-token"}, timeout=10)
        assert me.status_code == 200 and me.json()["role"] == "editor"
        browser = requests.Session()
        login = browser.post(f"{url}/login", json={"name": "ola", "password": "ola-password"}, timeout=10)
        assert login.status_code == 200
        # whichever worker answers, the cookie holds: one key, made once
        for _ in range(6):
            assert browser.get(f"{url}/me", timeout=10).json()["name"] == "ola"
        assert requests.get(f"{url}/openapi.json", timeout=10).json()["openapi"].startswith("3.")
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert f"console on http://127.0.0.1:{port}/api/v1" in err.decode()
    secret = root / "console-secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
