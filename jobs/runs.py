"""Run ids, run.json records and the per-root lock."""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Iterator

from feedgen.jobs.errors import BadInput, RunLocked

STATUSES = ("aggregating", "generating", "held", "published", "emitted", "rejected", "failed")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def parse_as_of(text: str | None) -> datetime:
    """ISO-8601 instant (``2026-11-01T00:00:00Z``, a date, or None for now) → aware UTC."""
    if not text:
        return utcnow()
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as err:
        raise BadInput(
            f"--as-of: {text!r} is not an ISO-8601 instant; use e.g. 2026-11-01T00:00:00Z"
        ) from err
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def format_ts(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_run_id(now: datetime | None = None) -> str:
    """Sortable, unique: ``20261122T030500Z-1a2b3c``."""
    now = now or utcnow()
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def run_dir(root: str | Path, run_id: str) -> Path:
    return Path(root) / "runs" / run_id


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_run(root: str | Path, record: dict[str, Any]) -> None:
    """Write run.json atomically (a reader sees the old record or the new one)."""
    _atomic_write_text(run_dir(root, record["run_id"]) / "run.json", json.dumps(record, indent=2, sort_keys=True, default=str))


def read_run(root: str | Path, run_id: str) -> dict[str, Any]:
    path = run_dir(root, run_id) / "run.json"
    if not path.is_file():
        raise BadInput(f"run {run_id!r} not found under {Path(root) / 'runs'}; list runs with `feedgen runs list`")
    return json.loads(path.read_text(encoding="utf-8"))


def list_runs(root: str | Path) -> list[dict[str, Any]]:
    runs_root = Path(root) / "runs"
    out = []
    if runs_root.is_dir():
        for child in sorted(runs_root.iterdir()):
            f = child / "run.json"
            if f.is_file():
                out.append(json.loads(f.read_text(encoding="utf-8")))
    return out


def new_run_record(run_id: str, as_of: datetime, master: str, status: str = "aggregating") -> dict[str, Any]:
    return {
        "run_id": run_id,
        "as_of": format_ts(as_of),
        "status": status,
        "created_at": format_ts(utcnow()),
        "spark_master": master,
        "stages": {},
        "definitions": {},
        "gate": None,
        "timings": {},
    }


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def root_lock(root: str | Path, run_id: str) -> Iterator[None]:
    """One run at a time per root. A lock left by a dead process on this host is taken over."""
    lock = Path(root) / "run.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    me = {"run_id": run_id, "pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(lock.read_text(encoding="utf-8") or "{}")
            except (OSError, json.JSONDecodeError):
                holder = {}
            same_host = holder.get("host") == me["host"]
            if holder and same_host and not _pid_alive(int(holder.get("pid", 0))):
                # The holder died without releasing: replace its lock by renaming over it.
                stale = lock.with_name(f"run.lock.stale.{os.getpid()}")
                try:
                    os.replace(lock, stale)
                    stale.unlink(missing_ok=True)
                except FileNotFoundError:
                    pass
                continue
            raise RunLocked(
                f"{lock}: run {holder.get('run_id', '?')} (pid {holder.get('pid', '?')} on "
                f"{holder.get('host', '?')}) is in progress under this root; wait for it to finish"
            ) from None
        with os.fdopen(fd, "w") as fh:
            json.dump(me, fh)
        break
    try:
        yield
    finally:
        try:
            current = json.loads(lock.read_text(encoding="utf-8"))
            if current.get("pid") == me["pid"] and current.get("run_id") == run_id:
                lock.unlink()
        except (OSError, json.JSONDecodeError):
            pass
