"""kill -9 a `feedgen run` at each stage, resume it: same published files and events as an
uninterrupted run, and a client downloading all along never gets a partial or mixed file."""

from __future__ import annotations

import json
import shutil
import signal
from collections import defaultdict

import pytest

from feedgen.core.config import load_config
from feedgen.core.runs import new_run_id, parse_as_of, root_lock
from feedgen.jobs.pipeline import run_pipeline
from tests.pipeline_support import (
    DAY1,
    DAY2,
    Downloader,
    clean_env,
    event_content,
    feedgen,
    only_new_run,
    outbox_events,
    pointer_runs,
    published_docs,
    run_json,
    write_config,
    write_definitions,
    write_sample,
)
from tests.snapshot_helpers import consume

DEFINITIONS = """\
feeds:
  - id: electronics
    template: google_merchant_rss
    where: {field: category.path, starts_with: "Electronics"}
    delivery: {destinations: [meta_catalog_batch]}
    refresh_after: 1h   # every unchanged item is resent: many events a day later
  - id: cheap
    template: meta_catalog_csv
    where: {field: price.amount, lt: 50}
    delivery: {destinations: [meta_catalog_batch]}
  - id: home
    template: google_merchant_rss
    where: {field: category.top, eq: "Home & Garden"}
"""
FEEDS = ["cheap", "electronics", "home"]
KILLED = -signal.SIGKILL


def _run_in_process(root, config_path, defs, as_of):
    config = load_config(config_path, root=str(root), environ={})
    run_id = new_run_id()
    with root_lock(config.root, run_id):
        return run_pipeline(config, run_id=run_id, as_of=parse_as_of(as_of), definitions_dir=str(defs))


@pytest.fixture(scope="module")
def roots(tmp_path_factory, spark):
    """``base``: run 1 (DAY1) published, sources of DAY2 in place; ``ref``: base + DAY2 uninterrupted."""
    top = tmp_path_factory.mktemp("crash")
    defs = write_definitions(top / "defs", DEFINITIONS)
    config_path = write_config(top)
    base = top / "base"
    write_sample(base, variant=0)
    first = _run_in_process(base, config_path, defs, DAY1)
    assert first["status"] == "emitted"
    write_sample(base, variant=1)
    ref = top / "ref"
    shutil.copytree(base, ref)
    reference = _run_in_process(ref, config_path, defs, DAY2)
    assert reference["status"] == "emitted", reference.get("gate")
    return {"top": top, "defs": defs, "config": config_path, "base": base, "base_run": first["run_id"],
            "ref": ref, "ref_run": reference["run_id"]}


def _resume(root, cfg, run_id, crash_at=None, **env):
    extra = {"FEEDGEN_TEST_CRASH_AT": crash_at} if crash_at else {}
    return feedgen("run", "--config", str(cfg), "--root", str(root), "--resume", run_id,
                   env=clean_env(**extra, **env))


def test_kill_9_at_every_stage_then_resume_equals_an_uninterrupted_run(roots, kafka_bootstrap):
    root = roots["top"] / "crashed"
    shutil.copytree(roots["base"], root)
    cfg, base_run = roots["config"], roots["base_run"]
    topic = f"feedgen.crash.{new_run_id().lower()}"
    kafka = {"FEEDGEN__KAFKA__BOOTSTRAP": kafka_bootstrap, "FEEDGEN__KAFKA__TOPIC": topic}
    client = Downloader(root, FEEDS)
    client.start()
    try:
        # 1. killed right after the aggregate
        done = feedgen("run", "--config", str(cfg), "--root", str(root), "--definitions", str(roots["defs"]),
                       "--as-of", DAY2, env=clean_env(FEEDGEN_TEST_CRASH_AT="aggregate:done"))
        assert done.returncode == KILLED, done.stderr[-3000:]
        run_id = only_new_run(root, {base_run})
        record = run_json(root, run_id)
        assert record["stages"]["aggregate"]["status"] == "done" and "generate" not in record["stages"]
        assert json.loads((root / "run.lock").read_text())["run_id"] == run_id  # left behind by kill -9

        # 2. killed in the middle of generate: the offer parts are written, the diffs are not
        done = _resume(root, cfg, run_id, "generate:after-parts")
        assert done.returncode == KILLED, done.stderr[-3000:]
        assert "generate" not in run_json(root, run_id)["stages"]
        assert (root / "runs" / run_id / "feeds" / "electronics" / "manifest.json").is_file()
        assert set(pointer_runs(root).values()) == {base_run}

        # 3. killed in the middle of publish: one pointer switched, the others not yet
        done = _resume(root, cfg, run_id, "publish:pointer")
        assert done.returncode == KILLED, done.stderr[-3000:]
        assert sorted(pointer_runs(root).values()) == sorted([run_id, base_run, base_run])
        # (a copy of this state is resumed without Kafka below: the outbox case)
        shutil.copytree(root, roots["top"] / "crashed-outbox")

        # 4. killed in the middle of emit, after some events reached the broker
        expected_events = run_json(roots["ref"], roots["ref_run"])["stages"]["emit"]["events"]
        assert expected_events > 20
        done = _resume(root, cfg, run_id, f"emit:event:{expected_events // 2}", **kafka)
        assert done.returncode == KILLED, done.stderr[-3000:]
        record = run_json(root, run_id)
        assert record["status"] == "published" and "emit" not in record["stages"]

        # 5. resumed to the end
        done = _resume(root, cfg, run_id, **kafka)
        assert done.returncode == 0, done.stderr[-3000:]
    finally:
        client.stop()
    record = run_json(root, run_id)
    assert record["status"] == "emitted"
    assert [a["from_stage"] for a in record["attempts"]] == ["aggregate", "generate", "generate", "publish", "emit"]
    assert "run " + run_id in done.stderr and "passed" in done.stderr  # the stage summary table
    assert not (root / "run.lock").exists()

    assert published_docs(root) == published_docs(roots["ref"])
    reference = {event_content(e) for e in outbox_events(roots["ref"], roots["ref_run"])}
    messages = consume(kafka_bootstrap, topic, len(reference) + expected_events // 2)
    events = [json.loads(m.value()) for m in messages]
    assert {event_content(e) for e in events} == reference
    assert len(events) > len(reference)  # the first half went out twice...
    ids = defaultdict(set)
    for e in events:
        ids[(e["definition_id"], e["key"], e["op"])].add(e["event_id"])
        assert e["run_id"] == run_id
    assert all(len(v) == 1 for v in ids.values())  # ...with the same event ids

    assert not client.problems, client.problems[:5]
    assert client.downloads > 0
    for feed in FEEDS:
        assert client.seen[feed] <= {base_run, run_id}

    # the same state, resumed without Kafka: killed while writing the outbox, then resumed
    outbox_root = roots["top"] / "crashed-outbox"
    done = _resume(outbox_root, cfg, run_id, "emit:outbox-file")
    assert done.returncode == KILLED, done.stderr[-3000:]
    assert len(list((outbox_root / "runs" / run_id / "events").glob("*.jsonl"))) == 1
    done = _resume(outbox_root, cfg, run_id)
    assert done.returncode == 0, done.stderr[-3000:]
    assert published_docs(outbox_root) == published_docs(roots["ref"])
    resent = outbox_events(outbox_root, run_id)
    assert sorted(event_content(e) for e in resent) == sorted(event_content(e) for e in
                                                              outbox_events(roots["ref"], roots["ref_run"]))



def test_a_failed_aggregate_goes_on_with_the_last_good_one_only_when_the_config_allows_it(roots, spark):
    from feedgen.core.errors import FeedgenError

    root = roots["top"] / "stale"
    shutil.copytree(roots["ref"], root)
    broken = {"FEEDGEN__SOURCES__OFFERS__PATH": str(root / "no-such-export")}
    before = pointer_runs(root)

    config = load_config(roots["config"], root=str(root), environ=broken)
    with pytest.raises(FeedgenError, match="no-such-export"):
        run_pipeline(config, run_id=new_run_id(), as_of=parse_as_of(DAY2), definitions_dir=str(roots["defs"]))
    # a missing source stops the run before Spark starts and before it has a run.json (exit 2)
    assert {r.name for r in (root / "runs").iterdir()} == {roots["base_run"], roots["ref_run"]}
    assert pointer_runs(root) == before

    config = load_config(roots["config"], root=str(root),
                         environ={**broken, "FEEDGEN__AGGREGATE__ALLOW_STALE_AGGREGATE": "true"})
    record = run_pipeline(config, run_id=new_run_id(), as_of=parse_as_of(DAY2), definitions_dir=str(roots["defs"]))
    assert record["status"] == "emitted"
    assert record["stale_aggregate"] is True
    assert record["stages"]["aggregate"]["status"] == "failed" and record["stages"]["aggregate"]["stale_aggregate"]
    assert record["aggregates"]["offer"] == {**record["aggregates"]["offer"], "run_id": roots["ref_run"],
                                             "stale": True}
    assert set(pointer_runs(root).values()) == {record["run_id"]}
    assert published_docs(root) == published_docs(roots["ref"])
