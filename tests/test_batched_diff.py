"""All event definitions of a run diffed in one batch: per definition exactly what the
one-definition diff gives, in a number of Spark jobs that does not grow with theirs, and
the same snapshots and event ids after a kill in the middle."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap

import pyarrow.parquet as pq

from feedgen.core.runs import run_dir
from feedgen.generator.generate import STAGING
from feedgen.generator.snapshots import (
    DiffTarget,
    delta_dir,
    diff_definitions,
    event_id,
    iter_delta_events,
    read_delta_marker,
    read_snapshot_rows,
    snapshot_and_diff,
    snapshot_dir,
    staged_snapshot_items,
)
from tests.pipeline_support import clean_env
from tests.snapshot_helpers import item_rows, items_frame

OCT1, OCT20, NOV1, NOV2 = ("2026-10-01T03:00:00Z", "2026-10-20T03:00:00Z", "2026-11-01T03:00:00Z",
                           "2026-11-02T03:00:00Z")
RUN = "r9"
ROWS = "kind string, target int, key string, hash string, payload string, info string"


def _offers(n: int, bump: int = 0, start: int = 0) -> dict[str, dict]:
    return {f"o{i:03d}": {"price": 10 + i + (bump if i % 3 == 0 else 0), "title": f"offer {i}"}
            for i in range(start, n)}


# Per definition: (target, kind, items of the run, base run and the items it published then, refresh_after)
CASES = {
    "first-published": (0, "feed", _offers(7), None, None),
    "with-base": (1, "feed", _offers(12, bump=5, start=2), ("b1", NOV1, _offers(10)), None),
    "refreshing": (2, "feed", _offers(6), ("b2", OCT1, _offers(6)), "14d"),
    "audience": (0, "segment", {"c1": {"email_sha256": "a"}, "c3": {"email_sha256": "c"}},
                 ("b1", NOV1, {"c1": {"email_sha256": "a"}, "c2": {"email_sha256": "b"}}), None),
    "unchanged": (3, "feed", _offers(4), ("b2", OCT20, _offers(4)), None),
    "now-empty": (4, "feed", {}, ("b1", NOV1, _offers(3)), None),
}


def _target(def_id: str) -> DiffTarget:
    _, kind, _, base, refresh = CASES[def_id]
    return DiffTarget(def_id, kind=kind, entity="customer" if kind == "segment" else "offer",
                      destinations=["google"], base_run_id=base and base[0], refresh_after=refresh)


def _published_bases(spark, root):
    for def_id, (_, kind, _, base, refresh) in CASES.items():
        if base:
            snapshot_and_diff(spark, root, base[0], def_id, items_frame(spark, base[2]), as_of=base[1], kind=kind,
                              refresh_after=refresh)


def _staging(spark, root, run_id=RUN):
    """The generator's staging rows of both entities, with part and stat rows the diff must skip."""
    by_entity: dict[str, list] = {"offer": [("snap", 9, "o001", "h", "{}", None)], "customer": []}  # 9: no events
    for def_id, (target, _, items, _, _) in CASES.items():
        by_entity[_target(def_id).entity] += [("snap", target, *row, None) for row in item_rows(items)]
        by_entity[_target(def_id).entity].append(("stat", target, None, None, None, "{}"))
    for entity, rows in by_entity.items():
        spark.createDataFrame(rows, ROWS).write.mode("overwrite").parquet(str(run_dir(root, run_id) / STAGING / entity))


def _staged(root, ids, run_id=RUN):
    out: dict = {}
    for def_id in ids:
        out.setdefault(run_dir(root, run_id) / STAGING / _target(def_id).entity, {})[CASES[def_id][0]] = def_id
    return out


def _output(root, run_id, def_id):
    """What a definition's diff left: marker, snapshot rows, events, and the files' columns."""
    columns = {name: sorted({tuple(pq.read_schema(p).names) for p in folder.glob("part-*.parquet")})
               for name, folder in (("snapshot", snapshot_dir(root, run_id, def_id)),
                                    ("delta", delta_dir(root, run_id, def_id)))}
    events = sorted((e["key"], e["op"], e["event_id"], tuple(e.get("changed") or ()), json.dumps(e.get("data")))
                    for e in iter_delta_events(root, run_id, def_id))
    return {"marker": read_delta_marker(root, run_id, def_id), "snapshot": read_snapshot_rows(root, run_id, def_id),
            "events": events, "columns": columns,
            "success": (snapshot_dir(root, run_id, def_id) / "_SUCCESS").is_file()}


def _one_at_a_time(spark, root):
    """The single-definition path on the same inputs: the reference."""
    out = {}
    for def_id, (_, kind, items, _, refresh) in CASES.items():
        t = _target(def_id)
        snapshot_and_diff(spark, root, RUN, def_id, items_frame(spark, items), as_of=NOV2, kind=kind, entity=t.entity,
                          destinations=["google"], base_run_id=t.base_run_id, refresh_after=refresh)
        out[def_id] = _output(root, RUN, def_id)
    return out


def test_a_batch_of_definitions_with_different_bases_gives_each_what_its_own_diff_gives(spark, tmp_path):
    alone, batched = tmp_path / "alone", tmp_path / "batched"
    _published_bases(spark, alone)
    shutil.copytree(alone, batched)
    expected = _one_at_a_time(spark, alone)

    _staging(spark, batched)
    summaries = diff_definitions(spark, batched, RUN, staged_snapshot_items(spark, _staged(batched, CASES)),
                                 [_target(d) for d in CASES], as_of=NOV2)

    for def_id in CASES:
        got = _output(batched, RUN, def_id)
        for part in ("marker", "snapshot", "events", "columns", "success"):
            assert got[part] == expected[def_id][part], f"{def_id}: {part} differs"
        assert summaries[def_id] == got["marker"]
    ops = {d: expected[d]["marker"]["ops"] for d in CASES}
    assert ops == {
        "first-published": {"add": 7},
        "with-base": {"add": 2, "remove": 2, "update": 3},
        # 31 days since Oct 1: due for a 14-day window; Oct 20 is not due for the default 28 days
        "refreshing": {"refresh": 6},
        "audience": {"join": 1, "leave": 1},
        "unchanged": {},
        "now-empty": {"remove": 3},
    }
    assert expected["with-base"]["marker"]["samples"] == {"add": ["o010", "o011"], "remove": ["o000", "o001"],
                                                          "update": ["o003", "o006", "o009"]}
    assert expected["refreshing"]["marker"]["refresh_after_seconds"] == 14 * 86400
    assert expected["unchanged"]["events"] == [] and expected["now-empty"]["snapshot"] == {}
    assert ("c3", "join", event_id(RUN, "audience", "c3", "join"), (), '{"email_sha256": "c"}') \
        in expected["audience"]["events"]
    assert not (run_dir(batched, RUN) / "_diff").exists()


def _diff_jobs(spark, root, n: int, group: str) -> int:
    """Spark jobs of a batched diff of ``n`` definitions, each with a base run and some changes."""
    ids = [f"feed-{i:02d}" for i in range(n)]
    published = spark.createDataFrame([(d, *row) for d in ids for row in item_rows(_offers(6))],
                                      "definition_id string, key string, hash string, payload string")
    diff_definitions(spark, root, "b1", published, [DiffTarget(d) for d in ids], as_of=NOV1)
    rows = [("snap", t, *row, None) for t in range(n) for row in item_rows(_offers(8, bump=1, start=1))]
    spark.createDataFrame(rows, ROWS).write.mode("overwrite").parquet(str(run_dir(root, RUN) / STAGING / "offer"))
    items = staged_snapshot_items(spark, {run_dir(root, RUN) / STAGING / "offer": dict(enumerate(ids))})
    sc = spark.sparkContext
    sc.setJobGroup(group, "batched diff")
    try:
        summaries = diff_definitions(spark, root, RUN, items, [DiffTarget(d, base_run_id="b1") for d in ids],
                                     as_of=NOV2)
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
        sc.setLocalProperty("spark.job.description", None)
    assert len(summaries) == n
    assert all(s["ops"] == {"add": 2, "remove": 1, "update": 1} for s in summaries.values())
    return len(sc.statusTracker().getJobIdsForGroup(group))


def test_the_spark_jobs_of_a_diff_do_not_grow_with_the_number_of_definitions(spark, tmp_path):
    # 30 stays below Spark's parallel listing threshold (32 folders), which adds one job above it
    few = _diff_jobs(spark, tmp_path / "few", 2, "diff-2")
    many = _diff_jobs(spark, tmp_path / "many", 30, "diff-30")
    assert 0 < many <= few, (few, many)


_KILLED_DIFF = """
import ast
import sys
from feedgen.generator.snapshots import DiffTarget, diff_definitions, staged_snapshot_items
from feedgen.jobs.spark import spark_session
root, staged, targets = sys.argv[1], ast.literal_eval(sys.argv[2]), ast.literal_eval(sys.argv[3])
spark = spark_session({"master": "local[1]", "shuffle_partitions": 2, "driver_memory": "1g"})
diff_definitions(spark, root, "r9", staged_snapshot_items(spark, staged),
                 [DiffTarget(**t) for t in targets], as_of="2026-11-02T03:00:00Z")
"""


def test_a_diff_killed_while_moving_folders_into_place_reruns_to_the_same_snapshots_and_event_ids(spark, tmp_path):
    ref, crashed = tmp_path / "ref", tmp_path / "crashed"
    _published_bases(spark, ref)
    _staging(spark, ref)
    shutil.copytree(ref, crashed)
    targets = [_target(d) for d in CASES]
    diff_definitions(spark, ref, RUN, staged_snapshot_items(spark, _staged(ref, CASES)), targets, as_of=NOV2)

    staged = {str(k): v for k, v in _staged(crashed, CASES).items()}
    fields = [{"definition_id": t.definition_id, "kind": t.kind, "entity": t.entity,
               "destinations": list(t.destinations), "base_run_id": t.base_run_id, "refresh_after": t.refresh_after}
              for t in targets]
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(_KILLED_DIFF), str(crashed), repr(staged),
                             repr(fields)], env=clean_env(FEEDGEN_TEST_CRASH_AT="generate:diff-moved:3"),
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    # three definitions in place, the others still in the staging folder
    assert sum(read_delta_marker(crashed, RUN, d) is not None for d in CASES) == 3
    assert (run_dir(crashed, RUN) / "_diff").is_dir()

    diff_definitions(spark, crashed, RUN, staged_snapshot_items(spark, _staged(crashed, CASES)), targets, as_of=NOV2)
    for def_id in CASES:
        assert _output(crashed, RUN, def_id) == _output(ref, RUN, def_id), def_id
    assert not (run_dir(crashed, RUN) / "_diff").exists()
