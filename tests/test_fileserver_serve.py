from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import requests
import yaml

from feedgen.core.config import load_config
from tests.fileserver_support import (
    ADMIN_TOKEN,
    TOKENS,
    expected,
    publish_definition,
    server_section,
    xml_items,
)
from tests.support import free_port, wait_for_port

FEEDGEN = [sys.executable, "-m", "feedgen.jobs.cli"]
BEARER_A = {"Authorization": f"Bearer {TOKENS['feed-a']}"}


def test_feedgen_serve_runs_gunicorn_workers_that_share_metrics(tmp_path):
    root = tmp_path / "root"
    cfg_path = tmp_path / "feedgen.yaml"
    cfg_path.write_text(yaml.safe_dump({"root": str(root), "server": {**server_section(), "workers": 2}}))
    config = load_config(cfg_path, environ={})
    folder = publish_definition(config, "20260101T000000Z-aaaaaa", "feed-a", xml_items("A", 40))
    port = free_port()
    proc = subprocess.Popen([*FEEDGEN, "serve", "--config", str(cfg_path), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_port(port)
        url = f"http://127.0.0.1:{port}"
        for _ in range(6):
            r = requests.get(f"{url}/feeds/feed-a", headers={**BEARER_A, "Accept-Encoding": "identity"})
            assert r.status_code == 200
            assert r.content == expected(folder)
        gz = requests.get(f"{url}/feeds/feed-a.gz", headers={**BEARER_A, "Range": "bytes=10-"})
        assert gz.status_code == 206 and gz.content == expected(folder, compressed=True)[10:]
        # six downloads spread over two workers: every scrape sums them all
        for _ in range(3):
            text = requests.get(f"{url}/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).text
            assert 'feedgen_http_requests_total{method="GET",route="feeds",status="200"} 6.0' in text
            assert 'feedgen_current_age_seconds{definition_id="feed-a",kind="feed"}' in text
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert f"on http://127.0.0.1:{port} (2 workers" in err.decode()


def test_feedgen_serve_refuses_a_plain_token_in_config(tmp_path):
    cfg_path = tmp_path / "feedgen.yaml"
    cfg_path.write_text(yaml.safe_dump({"root": str(tmp_path / "root"),
                                        "server": {"tokens": {"feed-a": "my-secret-token"}}}))
    done = subprocess.run([*FEEDGEN, "serve", "--config", str(cfg_path), "--port", str(free_port())],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"{Path(cfg_path)}: server.tokens.feed-a" in done.stderr
    assert "sha256sum" in done.stderr
