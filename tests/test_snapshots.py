from __future__ import annotations

import json
import random

from feedgen.generator.snapshots import (
    event_id,
    iter_delta_events,
    iter_delta_values,
    read_snapshot_rows,
    snapshot_and_diff,
)
from tests.snapshot_helpers import apply_events, items_frame

DAY1 = "2026-11-01T03:00:00Z"
DAY2 = "2026-11-02T03:00:00Z"


def _diff(spark, root, run_id, items, as_of, base=None, kind="feed", **kw):
    summary = snapshot_and_diff(spark, root, run_id, "google-pl", items_frame(spark, items),
                                as_of=as_of, kind=kind, destinations=["google"],
                                base_run_id=base, **kw)
    events = list(iter_delta_events(root, run_id, "google-pl"))
    return summary, {e["key"]: e for e in events}


def test_first_run_sends_every_item_as_add_with_last_sent_as_of(spark, tmp_path):
    summary, events = _diff(spark, tmp_path, "r1", {"o1": {"price": 10}, "o2": {"price": 20}}, DAY1)
    assert summary["ops"] == {"add": 2}
    assert summary["base_items"] == 0 and summary["items"] == 2
    assert events["o1"]["data"] == {"price": 10}
    assert events["o1"]["destinations"] == ["google"] and events["o1"]["as_of"] == DAY1
    snap = read_snapshot_rows(tmp_path, "r1", "google-pl")
    assert {k: v["last_sent"].isoformat() for k, v in snap.items()} == {
        "o1": "2026-11-01T03:00:00", "o2": "2026-11-01T03:00:00"}


def test_diff_gives_add_remove_update_with_changed_fields_and_keeps_unchanged_silent(spark, tmp_path):
    _diff(spark, tmp_path, "r1", {"o1": {"price": 10, "title": "TV"}, "o2": {"price": 20},
                                  "o3": {"price": 30}}, DAY1)
    summary, events = _diff(spark, tmp_path, "r2", {
        "o1": {"price": 12, "title": "TV", "brand": "LG"},  # price changed, brand appeared
        "o2": {"price": 20},                                 # unchanged
        "o4": {"price": 40},                                 # new
    }, DAY2, base="r1")
    assert summary["ops"] == {"add": 1, "update": 1, "remove": 1}
    assert summary["unchanged"] == 1 and summary["base_items"] == 3 and summary["items"] == 3
    assert events["o1"]["op"] == "update" and events["o1"]["changed"] == ["brand", "price"]
    assert events["o1"]["data"] == {"price": 12, "title": "TV", "brand": "LG"}
    assert events["o3"]["op"] == "remove" and "data" not in events["o3"]
    assert events["o4"]["op"] == "add"
    assert "o2" not in events
    snap = read_snapshot_rows(tmp_path, "r2", "google-pl")
    assert sorted(snap) == ["o1", "o2", "o4"]
    # o2 was not sent again: it keeps the day it was last sent
    assert snap["o2"]["last_sent"].isoformat() == "2026-11-01T03:00:00"
    assert snap["o1"]["last_sent"].isoformat() == "2026-11-02T03:00:00"


def test_unchanged_item_not_sent_for_refresh_after_is_refreshed(spark, tmp_path):
    _diff(spark, tmp_path, "r1", {"o1": {"price": 10}, "o2": {"price": 20}}, "2026-10-01T00:00:00Z")
    _diff(spark, tmp_path, "r2", {"o1": {"price": 10}, "o2": {"price": 21}}, "2026-10-20T00:00:00Z",
          base="r1")
    # 28 days after r1: o1 (last sent Oct 1) is due, o2 (sent Oct 20) is not
    summary, events = _diff(spark, tmp_path, "r3", {"o1": {"price": 10}, "o2": {"price": 21}},
                            "2026-10-29T00:00:01Z", base="r2")
    assert summary["ops"] == {"refresh": 1}
    assert events["o1"]["op"] == "refresh" and events["o1"]["data"] == {"price": 10}
    assert read_snapshot_rows(tmp_path, "r3", "google-pl")["o1"]["last_sent"].isoformat() == "2026-10-29T00:00:01"
    # a definition's shorter refresh_after refreshes o2 too
    summary, _ = _diff(spark, tmp_path, "r4", {"o1": {"price": 10}, "o2": {"price": 21}},
                       "2026-10-29T00:00:01Z", base="r2", refresh_after="7d")
    assert summary["ops"] == {"refresh": 2}


def test_as_of_only_membership_change_gives_join_and_leave(spark, tmp_path):
    # the generator re-evaluates "ordered within_last 30d" at a later as_of: c1 drops out,
    # c3 (whose order now falls in the window of a segment on upcoming birthdays) comes in
    _diff(spark, tmp_path, "r1", {"c1": {"email_sha256": "a"}, "c2": {"email_sha256": "b"}},
          DAY1, kind="segment")
    summary, events = _diff(spark, tmp_path, "r2", {"c2": {"email_sha256": "b"},
                                                    "c3": {"email_sha256": "c"}},
                            DAY2, base="r1", kind="segment")
    assert summary["ops"] == {"join": 1, "leave": 1}
    assert events["c1"]["op"] == "leave" and "data" not in events["c1"]
    assert events["c3"]["op"] == "join" and events["c3"]["data"] == {"email_sha256": "c"}
    assert events["c3"]["event_id"] == event_id("r2", "google-pl", "c3", "join")


def test_rerunning_a_diff_gives_the_same_events_and_ids(spark, tmp_path):
    _diff(spark, tmp_path, "r1", {"o1": {"price": 1}}, DAY1)
    _, first = _diff(spark, tmp_path, "r2", {"o1": {"price": 2}, "o2": {"price": 3}}, DAY2, base="r1")
    _, again = _diff(spark, tmp_path, "r2", {"o1": {"price": 2}, "o2": {"price": 3}}, DAY2, base="r1")
    assert first == again
    assert first["o1"]["event_id"] == event_id("r2", "google-pl", "o1", "update")


def test_replaying_a_runs_events_on_the_previous_snapshot_gives_the_new_snapshot(spark, tmp_path):
    rng = random.Random(5)
    state = {f"o{i}": {"price": rng.randint(1, 100), "title": f"t{i}"} for i in range(60)}
    seen: dict[str, dict] = {}
    base = None
    for n, as_of in enumerate([DAY1, DAY2, "2026-11-03T03:00:00Z"], start=1):
        run_id = f"r{n}"
        _, events = _diff(spark, tmp_path, run_id, state, as_of, base=base)
        seen = apply_events(seen, list(events.values()))
        snap = {k: json.loads(v["payload"])
                for k, v in read_snapshot_rows(tmp_path, run_id, "google-pl").items()}
        assert seen == snap == state
        base = run_id
        # random changes for the next run: removes, price updates, new items
        keys = sorted(state)
        for k in rng.sample(keys, 6):
            del state[k]
        for k in rng.sample(sorted(state), 8):
            state[k] = {**state[k], "price": state[k]["price"] + rng.randint(1, 5)}
        for i in range(5):
            state[f"n{n}-{i}"] = {"price": rng.randint(1, 100), "title": "new"}


def test_event_values_are_the_events_json_on_hostile_payloads(spark, tmp_path):
    """Emit writes each event's JSON from the delta rows without building the event: it is
    byte for byte what json.dumps(event, sort_keys=True) gives, for every op, non-ASCII and
    control characters, DEL, quotes in keys, nested values and floats."""
    hostile = ["żółw 😀", "tab\tnew\nline", "del\x7f", 'quote " back \\', "\u2028", "plain"]
    day1 = {f'o{i}"{s[:2]}': {"title": s, "price": 10.5 + i, "n": i, "nested": {"b": [s, None], "a": 1e-7}}
            for i, s in enumerate(hostile)}
    day2 = {k: {**v, "price": v["price"] + 1} for k, v in list(day1.items())[:3]}
    day2["new\u00e9"] = {"title": "\x00nul", "price": 1e16}
    _diff(spark, tmp_path, "r1", day1, DAY1)
    _diff(spark, tmp_path, "r2", day2, DAY2, base="r1")
    for run_id in ("r1", "r2"):
        events = list(iter_delta_events(tmp_path, run_id, "google-pl"))
        values = list(iter_delta_values(tmp_path, run_id, "google-pl"))
        assert {e["op"] for e in events} >= ({"add"} if run_id == "r1" else {"add", "update", "remove"})
        assert [(e["key"], e["op"], e["event_id"]) for e in events] == [v[:3] for v in values]
        assert [json.dumps(e, separators=(",", ":"), sort_keys=True) for e in events] == [v[3] for v in values]
