"""One run at a time per root: refusal naming the running one, takeover of a dead process's lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from feedgen.core.errors import RunLocked
from feedgen.core.runs import lock_holder, root_lock
from feedgen.jobs.cli import main
from feedgen.jobs.pipeline import run_every

HOLD = """
import sys, time
from pathlib import Path
from feedgen.core.errors import RunLocked
from feedgen.core.runs import root_lock
root, run_id, go, hold = sys.argv[1], sys.argv[2], Path(sys.argv[3]), float(sys.argv[4])
while go.name != "-" and not go.exists():
    time.sleep(0.01)
try:
    with root_lock(root, run_id):
        print("locked", flush=True)
        time.sleep(hold)
except RunLocked as err:
    print("refused", err, flush=True)
"""


def _holder(root: Path, run_id: str, go: str = "-", hold: float = 60.0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HOLD, str(root), run_id, go, str(hold)],
                            stdout=subprocess.PIPE, text=True)


def _killed_holder(root: Path, run_id: str) -> int:
    proc = _holder(root, run_id)
    assert proc.stdout.readline().strip() == "locked"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    return proc.pid


def test_a_second_run_is_refused_with_a_message_naming_the_running_one(tmp_path):
    proc = _holder(tmp_path, "20261122T030500Z-aaaaaa")
    try:
        assert proc.stdout.readline().strip() == "locked"
        # the shipped definitions are valid, so the refusal comes from the lock
        result = CliRunner().invoke(main, ["run", "--root", str(tmp_path)])
        assert result.exit_code == 1
        assert "run 20261122T030500Z-aaaaaa is in progress under this root" in result.output
        assert f"pid {proc.pid}" in result.output
        # the refused run changed nothing: the lock still names the running one
        assert lock_holder(tmp_path)["run_id"] == "20261122T030500Z-aaaaaa"
        assert not (tmp_path / "runs").exists()
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_a_lock_left_by_a_killed_process_is_taken_over_and_released(tmp_path):
    dead = _killed_holder(tmp_path, "20261122T030500Z-dead00")
    assert lock_holder(tmp_path)["pid"] == dead  # kill -9 left the lock behind
    with root_lock(tmp_path, "20261122T040000Z-next00"):
        holder = lock_holder(tmp_path)
        assert (holder["run_id"], holder["pid"]) == ("20261122T040000Z-next00", os.getpid())
        with pytest.raises(RunLocked, match="20261122T040000Z-next00"), \
                root_lock(tmp_path, "20261122T040000Z-third0"):
            pass
    assert lock_holder(tmp_path) is None


def test_processes_racing_to_take_over_a_dead_lock_let_exactly_one_win(tmp_path):
    _killed_holder(tmp_path, "20261122T030500Z-dead00")
    go = tmp_path / "go"
    racers = [_holder(tmp_path, f"racer-{n}", str(go), hold=3.0) for n in range(4)]
    time.sleep(1.0)  # let every racer import and wait at the start line
    go.touch()
    outputs = [p.communicate(timeout=30)[0].strip() for p in racers]
    assert sorted(o.split()[0] for o in outputs) == ["locked", "refused", "refused", "refused"]
    winner = [n for n, o in enumerate(outputs) if o == "locked"][0]
    assert all(f"run racer-{winner} is in progress" in o for o in outputs if o != "locked")


def test_a_lock_on_another_host_is_never_taken_over(tmp_path):
    (tmp_path / "run.lock").write_text(json.dumps(
        {"run_id": "20261122T030500Z-remote", "pid": 1, "host": "some-other-host", "since": time.time()}))
    with pytest.raises(RunLocked, match="another host cannot be checked from here"), root_lock(tmp_path, "mine"):
        pass
    assert lock_holder(tmp_path)["host"] == "some-other-host"


def test_every_skips_each_tick_while_another_run_holds_the_root(tmp_path):
    proc = _holder(tmp_path, "20261122T030500Z-long00")
    try:
        assert proc.stdout.readline().strip() == "locked"
        result = CliRunner().invoke(main, ["run", "--root", str(tmp_path), "--definitions", str(tmp_path),
                                           "--every", "0.2s", "--ticks", "3"])
        assert result.exit_code == 0, result.output
        assert "0 run(s), 3 tick(s) skipped" in result.output
    finally:
        proc.kill()
        proc.wait(timeout=10)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_every_times_intervals_from_each_run_start_and_skips_ticks_during_a_long_run():
    clock = _Clock()
    durations = iter([5.0, 70.0, 5.0, 5.0])  # minutes; the second run overruns two ticks
    starts = []

    def run_once() -> None:
        starts.append(clock.now)
        clock.now += next(durations) * 60

    counts = run_every(30 * 60, run_once, max_ticks=6, clock=clock, sleep=clock.sleep)
    # ticks at 0, 30, 60, 90, 120, 150 min: the run started at 30 ends at 100, so the
    # ticks at 60 and 90 are skipped (not made up); runs start on their ticks, not "end + 30m"
    assert [(s - 100.0) / 60 for s in starts] == [0, 30, 120, 150]
    assert counts == {"runs": 4, "skipped": 2, "failed": 0}
