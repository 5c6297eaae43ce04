"""Run ids, run.json records and the per-root lock."""

from __future__ import annotations

import json
import logging
import os
import secrets
import shlex
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from feedgen.core.errors import BadInput, RunLocked

log = logging.getLogger(__name__)

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


LOCK_NAME = "run.lock"
CRASH_ENV = "FEEDGEN_TEST_CRASH_AT"
_crash_hits: dict[str, int] = {}


def crash_point(name: str, flush: Callable[[], Any] | None = None) -> None:
    """Test hook: ``FEEDGEN_TEST_CRASH_AT=name[:n]`` kills this process (SIGKILL) at the n-th hit.

    ``flush`` runs first (e.g. a Kafka producer's flush), so what was sent before the
    crash really arrived and the resumed run's duplicates can be checked.
    """
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    point, _, nth = spec.rpartition(":")
    if not (nth.isdigit() and point):
        point, nth = spec, "1"
    if point != name:
        return
    _crash_hits[name] = _crash_hits.get(name, 0) + 1
    if _crash_hits[name] == int(nth):
        if flush is not None:
            flush()
        sys.stderr.write(f"feedgen: test crash at {spec} (pid {os.getpid()})\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def _proc_start(pid: int) -> str | None:
    # Field 22 of /proc/<pid>/stat (start time in clock ticks) tells a reused pid apart.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def _pid_alive(pid: int, start: str | None = None) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if start is not None:
        now = _proc_start(pid)
        if now is not None and now != start:
            return False  # the pid was reused by another process
    return True


def lock_holder(root: str | Path) -> dict[str, Any] | None:
    """Who holds the root's lock (``run_id``, ``pid``, ``host``, ``since``), or None."""
    try:
        text = (Path(root) / LOCK_NAME).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        holder = json.loads(text)
    except json.JSONDecodeError:
        holder = None
    return holder if isinstance(holder, dict) else {}


def holder_alive(holder: dict[str, Any]) -> bool | None:
    """True/False for a holder on this host; None when it runs on another host (unknown)."""
    if holder.get("host") != socket.gethostname():
        return None
    return _pid_alive(int(holder.get("pid") or 0), holder.get("start"))


def _create_lock(lock: Path, me: dict[str, Any]) -> bool:
    # Written in full to a private file, then hard-linked into place: link() fails if the
    # lock exists, and a reader never sees a half-written lock (also on NFS).
    tmp = lock.with_name(f".{lock.name}.{os.getpid()}.{secrets.token_hex(4)}")
    tmp.write_text(json.dumps(me), encoding="utf-8")
    try:
        os.link(tmp, lock)
        return True
    except FileExistsError:
        return False
    except OSError:
        # a filesystem without hard links: O_EXCL create (a reader may see it empty briefly)
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            json.dump(me, fh)
        return True
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def _guard(lock: Path) -> Iterator[None]:
    # Serialises takeovers: two processes that both saw the same dead holder must not
    # both remove a lock (the second would remove the first one's fresh lock). flock is
    # released by the kernel when its holder dies, so the guard itself can never go stale.
    import fcntl

    with open(lock.with_name(lock.name + ".guard"), "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _locked_message(lock: Path, holder: dict[str, Any]) -> str:
    since = holder.get("since")
    started = format_ts(datetime.fromtimestamp(since, UTC)) if isinstance(since, (int, float)) else "?"
    where = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, since {started}"
    if holder_alive(holder) is None:
        fix = (f"wait for it to finish; if that process is gone (another host cannot be checked "
               f"from here), delete {lock}")
    else:
        fix = f"wait for it to finish, or watch it with `{_watch_command(lock.parent, holder)}`"
    return f"{lock}: run {holder.get('run_id', '?')} is in progress under this root ({where}); {fix}"


def _watch_command(root: Path, holder: dict[str, Any]) -> str:
    """A command that shows the holder's run from any directory (its run.json may not exist yet)."""
    where = shlex.quote(os.path.abspath(root))
    run_id = str(holder.get("run_id") or "")
    # `feedgen publish|emit RUN` lock as publish-RUN / emit-RUN
    for candidate in (run_id, run_id.partition("-")[2] if run_id.startswith(("publish-", "emit-")) else ""):
        if candidate and (run_dir(root, candidate) / "run.json").is_file():
            return f"feedgen runs show {shlex.quote(candidate)} --root {where}"
    return f"feedgen runs list --root {where}"


@contextmanager
def root_lock(root: str | Path, run_id: str) -> Iterator[None]:
    """One run at a time per root: raise RunLocked naming the running one.

    A lock left by a dead process of this host (killed, crashed) is taken over.
    """
    lock = Path(root) / LOCK_NAME
    lock.parent.mkdir(parents=True, exist_ok=True)
    me = {"run_id": run_id, "pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
          "start": _proc_start(os.getpid()), "token": secrets.token_hex(8)}
    for _attempt in range(50):
        if _create_lock(lock, me):
            break
        holder = lock_holder(lock.parent)
        if holder is None:
            continue  # released in between: try again
        if not holder:
            # unreadable: an O_EXCL writer may be between create and write
            time.sleep(0.1)
            holder = lock_holder(lock.parent)
            if holder is None:
                continue
            if not holder:
                raise RunLocked(f"{lock}: the lock file is unreadable; if no run is in progress "
                                "under this root, delete it") from None
        if holder_alive(holder) is not False:
            raise RunLocked(_locked_message(lock, holder))
        with _guard(lock):
            if lock_holder(lock.parent) == holder:  # still the dead one: nobody took it over yet
                lock.unlink(missing_ok=True)
                log.warning("took over the lock of run %s (pid %s died without releasing it)",
                            holder.get("run_id"), holder.get("pid"),
                            extra={"stale_run_id": holder.get("run_id"), "run_id": run_id})
    else:
        raise RunLocked(f"{lock}: could not take the lock after 50 attempts; another process keeps "
                        "taking it; retry later")
    try:
        yield
    finally:
        current = lock_holder(lock.parent)
        if current and current.get("token") == me["token"]:
            lock.unlink(missing_ok=True)
