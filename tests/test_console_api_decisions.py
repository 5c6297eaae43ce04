"""Approvals made outside the console, through the file server's ``POST /runs/<id>/approve|reject``
and ``feedgen runs approve|reject``, keep working and are audited in the registry too."""

from __future__ import annotations

import getpass
import logging
import subprocess
import sys
from pathlib import Path

import requests

from feedgen.console.registry import Registry, registry_url
from feedgen.core.config import load_config
from feedgen.core.runs import read_run
from feedgen.fileserver.app import create_app as fileserver_app
from tests.fileserver_support import ADMIN_TOKEN, LiveServer, server_section
from tests.snapshot_helpers import write_feed_run

FEEDGEN = [sys.executable, "-m", "feedgen.jobs.cli", "--text-logs"]
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _config(root: Path, **registry):
    config = load_config(root=str(root), environ={})
    config.data["server"].update(server_section())
    config.data["registry"].update(registry)
    return config


def _held(root: Path, run_id: str) -> str:
    write_feed_run(root, run_id, "2026-01-01T03:00:00Z", {"feed-x": {"o1": {"price": 1}}}, status="held")
    return run_id


def _audit(config, run_id: str):
    registry = Registry.open(registry_url(config))
    try:
        return registry.audit(object_type="run", object_id=run_id)
    finally:
        registry.close()


def test_the_file_servers_approve_and_reject_are_audited_as_the_admin_token(tmp_path):
    config = _config(tmp_path)
    approved, rejected = _held(tmp_path, "20260101T000000Z-aaaaaa"), _held(tmp_path, "20260101T000001Z-bbbbbb")
    live = LiveServer(fileserver_app(config))
    try:
        assert requests.post(live.url(f"/runs/{approved}/approve"), headers=ADMIN).status_code == 200
        assert requests.post(live.url(f"/runs/{rejected}/reject"), headers=ADMIN).status_code == 200
        again = requests.post(live.url(f"/runs/{approved}/approve"), headers=ADMIN)
    finally:
        live.stop()
    assert again.status_code == 409 and "already approved by admin-token" in again.json()["error"]
    for run_id, action, decision in ((approved, "approve", "approved"), (rejected, "reject", "rejected")):
        assert read_run(tmp_path, run_id)["gate"]["decided_by"] == "admin-token"
        [entry] = _audit(config, run_id)
        assert (entry.actor, entry.action, entry.object_id) == ("admin-token", f"run.{action}", run_id)
        assert read_run(tmp_path, run_id)["gate"]["decision"] == decision


def test_an_approval_without_a_registry_still_works_and_the_log_says_it_was_not_audited(tmp_path, caplog):
    # what a file server on an S3 root gets: the default registry URL is not a local file
    config = _config(tmp_path, url="sqlite:///s3://bucket/feedgen.db")
    run_id = _held(tmp_path, "20260101T000000Z-cccccc")
    live = LiveServer(fileserver_app(config))
    try:
        with caplog.at_level(logging.WARNING, logger="feedgen.jobs.lifecycle"):
            r = requests.post(live.url(f"/runs/{run_id}/approve"), headers=ADMIN)
    finally:
        live.stop()
    assert r.status_code == 200 and r.json()["status"] == "emitted"
    assert read_run(tmp_path, run_id)["gate"]["decision"] == "approved"
    [warning] = [rec for rec in caplog.records if rec.name == "feedgen.jobs.lifecycle"]
    message = warning.getMessage()
    assert f"run {run_id}: the approve by admin-token was not audited" in message
    assert "is not a local file" in message and "run.json keeps the decision" in message


def test_feedgen_runs_approve_and_reject_are_audited_as_the_os_user_with_the_reason(tmp_path):
    approved, rejected = _held(tmp_path, "20260101T000000Z-dddddd"), _held(tmp_path, "20260101T000001Z-eeeeee")
    done = subprocess.run([*FEEDGEN, "runs", "approve", approved, "--root", str(tmp_path), "--reason", "sale week"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([*FEEDGEN, "runs", "reject", rejected, "--root", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    config = _config(tmp_path)
    me = f"os:{getpass.getuser()}"
    [entry] = _audit(config, approved)
    assert (entry.actor, entry.action, entry.detail) == (me, "run.approve", {"reason": "sale week"})
    assert read_run(tmp_path, approved)["gate"]["reason"] == "sale week"
    [entry] = _audit(config, rejected)
    assert (entry.actor, entry.action, entry.detail) == (me, "run.reject", {"reason": None})
