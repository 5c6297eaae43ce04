"""Small things a user trips over: run ids cut in `runs list`, a lock message whose command fails."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import shlex
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from feedgen.core.paths import EXAMPLES_DIR
from feedgen.core.runs import new_run_id, new_run_record, parse_as_of, root_lock, write_run

FEEDGEN = [sys.executable, "-m", "feedgen.jobs.cli", "--text-logs"]
DEFINITIONS = str(EXAMPLES_DIR / "definitions")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDGEN") and k != "KAFKA_BOOTSTRAP"}
    return {**env, **extra}


def _runs(root: Path, count: int = 3) -> list[str]:
    ids = []
    for i in range(count):
        as_of = parse_as_of(f"2026-12-0{i + 1}T05:00:00Z")
        record = new_run_record(new_run_id(as_of), as_of, "local[*]", status="held")
        record["gate"] = {"status": "held", "breaches": [{"definition_id": "d", "metric": "count_change", "value": 0.5,
                                                       "threshold": 0.2, "sample_keys": ["o1"]}]}
        write_run(root, record)
        ids.append(record["run_id"])
    return ids


def test_runs_list_piped_in_80_columns_prints_whole_ids_tab_separated(tmp_path):
    ids = _runs(tmp_path)
    done = subprocess.run([*FEEDGEN, "runs", "list", "--root", str(tmp_path)], capture_output=True,
                          text=True, env=_env(COLUMNS="80"), timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split("\t") == ["run", "status", "as_of", "definitions", "events", "gate"]
    assert [line.split("\t")[0] for line in lines[1:]] == ids
    assert lines[1].split("\t")[1:] == ["held", "2026-12-01T05:00:00Z", "0", "-", "held (1 breach)"]


def _in_terminal(argv: list[str], columns: int) -> str:
    """What ``argv`` prints to a real terminal (a pty) ``columns`` wide, as `stty cols` sets it."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {k: v for k, v in _env(TERM="xterm").items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen(argv, stdout=follower, stderr=subprocess.PIPE, env=env)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.decode()).replace("\r\n", "\n")


@pytest.mark.parametrize("columns", [24, 40, 80, 120, 200])
def test_runs_list_in_a_terminal_of_any_width_never_cuts_an_id_or_a_status(tmp_path, columns):
    ids = _runs(tmp_path)
    record = json.loads((tmp_path / "runs" / ids[1] / "run.json").read_text())
    record["status"] = "aggregating"  # the longest status
    (tmp_path / "runs" / ids[1] / "run.json").write_text(json.dumps(record))
    text = _in_terminal([*FEEDGEN, "runs", "list", "--root", str(tmp_path)], columns)
    assert "…" not in text and "..." not in text, text
    lines = [line for line in text.splitlines() if any(run_id in line for run_id in ids)]
    assert len(lines) == 3, text
    for i, (run_id, line) in enumerate(zip(ids, lines, strict=True)):
        status = "aggregating" if i == 1 else "held"
        as_of = f"2026-12-0{i + 1}T05:00:00Z"
        table = re.search(rf"│ {run_id} │ {status} +│ {as_of} │", line)
        tabs = line.split("\t")[:3] == [run_id, status, as_of]
        assert table or tabs, (columns, text)
        if columns >= 200:
            assert table, text  # wide enough: the table
        if columns <= 80:
            assert tabs, text  # too narrow for every column whole: the tab-separated lines


def test_the_lock_message_suggests_a_command_that_works(tmp_path):
    root = tmp_path / "root"
    ids = _runs(root, 1)
    for holder, shows in ((ids[0], ids[0]), (f"publish-{ids[0]}", ids[0]), ("20261202T050000Z-abcdef", None)):
        with root_lock(root, holder):
            done = subprocess.run([*FEEDGEN, "run", "--root", str(root), "--definitions", DEFINITIONS],
                                  capture_output=True, text=True, env=_env(), timeout=60, cwd=tmp_path.parent)
        assert done.returncode == 1
        assert f"run {holder} is in progress under this root" in done.stderr
        suggested = re.search(r"watch it with `([^`]+)`", done.stderr).group(1)
        argv = shlex.split(suggested)
        assert argv[0] == "feedgen"
        # run from another directory: the suggestion must not depend on where it was printed
        ran = subprocess.run([*FEEDGEN, *argv[1:]], capture_output=True, text=True, env=_env(),
                             timeout=60, cwd="/")
        assert ran.returncode == 0, (suggested, ran.stderr)
        assert ids[0] in ran.stdout
        assert argv[1:3] == (["runs", "show"] if shows else ["runs", "list"])
