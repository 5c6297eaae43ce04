from __future__ import annotations

import pytest

from feedgen.core.config import load_config
from feedgen.core.errors import BadInput
from feedgen.core.runs import new_run_record, parse_as_of, write_run
from feedgen.generator.gates import check_run, evaluate_definition, thresholds_for

DEFAULT = {"enabled": True, "max_count_change": 0.2, "max_share_removed": 0.1,
           "max_share_changed": 0.3, "allow_empty": False, "max_null_rate": 0.05}


def _delta(base_items, items, **ops):
    return {"base_items": base_items, "items": items, "ops": ops,
            "samples": {op: [f"{op}-{i}" for i in range(min(n, 5))] for op, n in ops.items()}}


def test_first_run_of_a_definition_has_no_gate():
    metrics, breaches = evaluate_definition("d", {"items": 0, "null_rates": {"price": 1.0}},
                                            _delta(0, 0), None, DEFAULT)
    assert breaches == [] and metrics == {}


def test_small_changes_pass():
    _, breaches = evaluate_definition("d", {"items": 100, "null_rates": {"price": 0.01}},
                                      _delta(100, 100, add=5, remove=5, update=20), {"items": 100},
                                      DEFAULT)
    assert breaches == []


def test_half_the_offers_losing_their_price_breaches_null_rate_with_sample_keys():
    stats = {"items": 100, "null_rates": {"price": 0.5},
             "null_samples": {"price": ["o1", "o3"]}}
    _, breaches = evaluate_definition("google-pl", stats, _delta(100, 100, update=50),
                                      {"items": 100}, DEFAULT)
    by_metric = {b["metric"]: b for b in breaches}
    assert by_metric["null_rate.price"] == {"definition_id": "google-pl", "metric": "null_rate.price",
                                            "value": 0.5, "threshold": 0.05,
                                            "sample_keys": ["o1", "o3"]}
    assert by_metric["share_changed"]["value"] == 0.5
    assert by_metric["share_changed"]["sample_keys"] == [f"update-{i}" for i in range(5)]


def test_mass_removal_breaches_count_change_and_share_removed():
    _, breaches = evaluate_definition("d", {"items": 60}, _delta(100, 60, remove=40),
                                      {"items": 100}, DEFAULT)
    assert sorted(b["metric"] for b in breaches) == ["count_change", "share_removed"]
    assert all(b["value"] == 0.4 for b in breaches)


def test_empty_output_after_a_non_empty_one_is_held_unless_allowed():
    _, breaches = evaluate_definition("d", {"items": 0}, _delta(10, 0, remove=10), {"items": 10},
                                      DEFAULT)
    assert [b["metric"] for b in breaches] == ["empty_output"]
    _, breaches = evaluate_definition("d", {"items": 0}, _delta(10, 0, remove=10), {"items": 10},
                                      {**DEFAULT, "allow_empty": True})
    assert breaches == []


def test_definition_overrides_win_over_config_which_wins_over_defaults(tmp_path):
    cfg_file = tmp_path / "feedgen.yaml"
    cfg_file.write_text("gates:\n  max_share_removed: 0.5\n")
    config = load_config(cfg_file, root=str(tmp_path))
    assert thresholds_for(config, "d")["max_share_removed"] == 0.5
    assert thresholds_for(config, "d")["max_count_change"] == 0.2
    assert thresholds_for(config, "d", {"max_share_removed": 0.9})["max_share_removed"] == 0.9
    _, breaches = evaluate_definition("d", {"items": 60}, _delta(100, 60, remove=40),
                                      {"items": 100}, thresholds_for(config, "d", {"enabled": False}))
    assert breaches == []


def test_an_unknown_gate_in_a_definition_is_bad_input_naming_it(tmp_path):
    config = load_config(root=str(tmp_path))
    with pytest.raises(BadInput, match=r"definition 'google-pl' gates.max_removed: unknown gate"):
        thresholds_for(config, "google-pl", {"max_removed": 0.1})
    with pytest.raises(BadInput, match=r"gates.max_count_change: 'lots' is not a share"):
        thresholds_for(config, "google-pl", {"max_count_change": "lots"})


def test_check_run_holds_the_run_and_reports_against_the_last_published_run(tmp_path):
    config = load_config(root=str(tmp_path))
    old = new_run_record("r1", parse_as_of("2026-11-01"), "local", status="published")
    old["definitions"] = {"a": {"kind": "feed", "items": 100}, "b": {"kind": "feed", "items": 10}}
    write_run(tmp_path, old)
    new = new_run_record("r2", parse_as_of("2026-11-02"), "local", status="generating")
    new["definitions"] = {"a": {"kind": "feed", "items": 50}, "b": {"kind": "feed", "items": 10},
                          "c": {"kind": "feed", "items": 3}}
    report = check_run(config, new, bases={"a": "r1", "b": "r1", "c": None},
                       deltas={"a": {**_delta(100, 50, remove=50), "base_run_id": "r1"}})
    assert new["status"] == "held" and new["gate"] is report
    assert {(b["definition_id"], b["metric"]) for b in report["breaches"]} == {
        ("a", "count_change"), ("a", "share_removed")}
    assert report["first_run"] == ["c"]
    assert "count_change" not in report["metrics"]["b"]  # 10 items last time: below min_base_items


def test_small_definitions_are_not_held_for_noise_unless_min_base_items_says_so(tmp_path):
    config = load_config(root=str(tmp_path))
    stats, base = {"items": 5}, {"items": 3}
    _, breaches = evaluate_definition("tiny", stats, None, base, thresholds_for(config, "tiny"))
    assert breaches == []
    strict = thresholds_for(config, "tiny", {"min_base_items": 0})
    _, breaches = evaluate_definition("tiny", stats, None, base, strict)
    assert [b["metric"] for b in breaches] == ["count_change"]


def test_refresh_after_comes_from_the_definition_else_the_config(tmp_path):
    from datetime import timedelta

    from feedgen.generator.snapshots import refresh_window

    cfg_file = tmp_path / "feedgen.yaml"
    cfg_file.write_text("gates:\n  refresh_after: 2w\n")
    config = load_config(cfg_file, root=str(tmp_path), environ={})
    assert refresh_window(config) == timedelta(days=14)
    assert refresh_window(config, timedelta(days=3)) == timedelta(days=3)
    assert refresh_window(load_config(root=str(tmp_path), environ={})) == timedelta(days=28)
    cfg_file.write_text("gates:\n  refresh_after: soon\n")
    # the config schema refuses it at load, before any run starts
    with pytest.raises(BadInput, match="feedgen.yaml: gates.refresh_after: 'soon' is not a positive duration"):
        refresh_window(load_config(cfg_file, root=str(tmp_path), environ={}))
