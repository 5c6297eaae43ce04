"""Who or what started a run: run.json's ``started_by`` (and each attempt's), shown by `feedgen runs show`."""

from __future__ import annotations

import getpass
from pathlib import Path

from click.testing import CliRunner

from feedgen.core.runs import new_run_record, parse_as_of, write_run
from feedgen.jobs.cli import main
from feedgen.jobs.pipeline import STAGES
from tests.pipeline_support import DAY1, feedgen, run_json, write_config

DEFINITIONS = """\
feeds:
  - id: all-offers
    template: google_merchant_rss
    where: {field: availability, eq: in_stock}
"""


def _definitions(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "feeds.yaml").write_text(DEFINITIONS, encoding="utf-8")
    return folder


def test_resuming_a_run_keeps_who_started_it_and_records_who_resumed_it(tmp_path):
    root, defs = tmp_path / "root", _definitions(tmp_path / "defs")
    record = new_run_record("20261102T060000Z-sched1", parse_as_of(DAY1), "local[2]", status="emitted")
    record["stages"] = {name: {"status": "done", "seconds": 0.1} for name in STAGES}
    record["started_by"] = "schedule:1h"
    record["attempts"] = [{"started_at": record["created_at"], "started_by": "schedule:1h", "pid": 1}]
    write_run(root, record)

    # a complete run: --resume has nothing left to do (no Spark), but records the attempt
    resumed = feedgen("run", "--root", str(root), "--definitions", str(defs), "--resume", record["run_id"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    saved = run_json(root, record["run_id"])
    me = f"os:{getpass.getuser()}"
    assert saved["started_by"] == "schedule:1h"
    assert [a["started_by"] for a in saved["attempts"]] == ["schedule:1h", me]

    shown = feedgen("runs", "show", record["run_id"], "--root", str(root))
    assert shown.returncode == 0, shown.stderr
    assert f"started by schedule:1h at {record['created_at']}; resumed by {me}" in shown.stdout


def test_a_scheduled_run_is_started_by_its_schedule(spark, tmp_path):
    # no sources and no aggregate yet: the run fails fast, but its run.json says who started it
    root, defs = tmp_path / "root", _definitions(tmp_path / "defs")
    config = write_config(tmp_path, "aggregate:\n  allow_stale_aggregate: true\n")
    result = CliRunner().invoke(main, ["run", "--config", str(config), "--root", str(root), "--definitions",
                                       str(defs), "--every", "1h", "--ticks", "1"])
    assert result.exit_code == 0, result.output
    assert "0 run(s), 0 tick(s) skipped, 1 failed" in result.output
    (run_id,) = [p.name for p in (root / "runs").iterdir()]
    saved = run_json(root, run_id)
    assert saved["status"] == "failed"
    assert saved["started_by"] == "schedule:1h" and saved["attempts"][0]["started_by"] == "schedule:1h"
    shown = CliRunner().invoke(main, ["runs", "show", run_id, "--root", str(root)])
    assert "started by schedule:1h" in shown.output
