"""Anomaly gates: hold a run that differs too much from the last published one.

Per definition, against the run its ``current`` pointer names: count change, share of
items removed, share updated, an empty output after a non-empty one, and the null rate
of required fields. Thresholds: ``DEFAULTS["gates"]`` < the config's ``gates`` section <
the definition's own ``gates:`` mapping. The first run of a definition has no gate, except
two: an empty output from an empty input (a source that had zero rows) is held, first run or
not, so empty feeds never go out unseen; and so is an output whose user template failed on
more than ``max_template_error_rate`` of its candidates (default 0: any failure holds).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from feedgen.core.errors import BadInput, FeedgenError
from feedgen.core.runs import read_run
from feedgen.core.serving import current_run_id, serving_store

THRESHOLD_KEYS = ("enabled", "max_count_change", "max_share_removed", "max_share_changed",
                  "allow_empty", "max_null_rate", "min_base_items", "refresh_after",
                  "max_template_error_rate")


def thresholds_for(config: Any, definition_id: str, overrides: dict[str, Any] | None = None,
                   where: str = "") -> dict[str, Any]:
    """The config's ``gates`` section with the definition's ``gates:`` mapping on top (checked)."""
    merged = dict(config.get("gates") or {})
    label = f"{where}: " if where else ""
    for key, value in (overrides or {}).items():
        if key not in THRESHOLD_KEYS:
            raise BadInput(f"{label}definition {definition_id!r} gates.{key}: unknown gate; "
                           f"use one of {', '.join(THRESHOLD_KEYS)}")
        if key.startswith("max_") and value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise BadInput(f"{label}definition {definition_id!r} gates.{key}: {value!r} is not a "
                           "share; use a number like 0.2 (20%)")
        if key == "min_base_items" and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise BadInput(f"{label}definition {definition_id!r} gates.{key}: {value!r} is not a "
                           "count; use a whole number like 50")
        if key in ("enabled", "allow_empty") and not isinstance(value, bool):
            raise BadInput(f"{label}definition {definition_id!r} gates.{key}: use true or false")
        merged[key] = value
    return merged


def _breach(definition_id: str, metric: str, value: float, threshold: Any,
            samples: list[str] | None) -> dict[str, Any]:
    return {"definition_id": definition_id, "metric": metric,
            "value": round(value, 6) if isinstance(value, float) else value,
            "threshold": threshold, "sample_keys": list(samples or [])[:5]}


def evaluate_definition(definition_id: str, stats: dict[str, Any], delta: dict[str, Any] | None,
                        base_stats: dict[str, Any] | None, thresholds: dict[str, Any],
                        empty_input: bool = False) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Metrics and breaches of one definition. ``base_stats`` None (first run) → no gate,
    unless ``empty_input`` (its entity's aggregate has no rows) and the output is empty."""
    if not thresholds.get("enabled", True):
        return {}, []
    items = int(stats.get("items", 0))
    # a user template that fails on items is judged on every run, the first one included
    failing, failed = _template_errors(definition_id, stats, thresholds.get("max_template_error_rate"))
    if base_stats is None:
        if items == 0 and empty_input and not thresholds.get("allow_empty", False):
            return ({"items": 0, "empty_input": True, "empty_output": True, **failing},
                    [_breach(definition_id, "empty_output", 0, "allow_empty: false", None), *failed])
        return failing, failed
    base = int((delta or {}).get("base_items", base_stats.get("items", 0)))
    samples = (delta or {}).get("samples") or {}
    metrics: dict[str, Any] = {"items": items, "base_items": base, **failing}
    if empty_input:
        metrics["empty_input"] = True
    breaches = list(failed)
    if items == 0 and (base > 0 or empty_input):
        metrics["empty_output"] = True
        if not thresholds.get("allow_empty", False):
            breaches.append(_breach(definition_id, "empty_output", 0, "allow_empty: false",
                                    samples.get("remove") or samples.get("leave")))
    # Shares of a handful of items are noise (3 → 5 customers is +67%): the count and share
    # gates judge only definitions that had at least min_base_items last time.
    if base > 0 and base >= int(thresholds.get("min_base_items") or 0):
        change = abs(items - base) / base
        metrics["count_change"] = round(change, 6)
        limit = thresholds.get("max_count_change")
        if limit is not None and change > limit and items > 0:
            grew = items > base
            breaches.append(_breach(definition_id, "count_change", change, limit,
                                    samples.get("add" if grew else "remove")
                                    or samples.get("join" if grew else "leave")))
        if delta is not None:
            ops = delta.get("ops") or {}
            removed = (ops.get("remove", 0) + ops.get("leave", 0)) / base
            changed = ops.get("update", 0) / base
            metrics["share_removed"] = round(removed, 6)
            metrics["share_changed"] = round(changed, 6)
            limit = thresholds.get("max_share_removed")
            if limit is not None and removed > limit and items > 0:
                breaches.append(_breach(definition_id, "share_removed", removed, limit,
                                        samples.get("remove") or samples.get("leave")))
            limit = thresholds.get("max_share_changed")
            if limit is not None and changed > limit:
                breaches.append(_breach(definition_id, "share_changed", changed, limit,
                                        samples.get("update")))
    limit = thresholds.get("max_null_rate")
    null_samples = stats.get("null_samples") or {}
    for field, rate in sorted((stats.get("null_rates") or {}).items()):
        if rate is None:
            continue
        metrics[f"null_rate.{field}"] = rate
        if limit is not None and rate > limit:
            breaches.append(_breach(definition_id, f"null_rate.{field}", float(rate), limit,
                                    null_samples.get(field)))
    return metrics, breaches


def _template_errors(definition_id: str, stats: dict[str, Any],
                     limit: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The share of candidates a user template failed on (per output: the feed, each export)."""
    from feedgen.generator.render import TEMPLATE_FAILURES

    metrics: dict[str, Any] = {}
    breaches: list[dict[str, Any]] = []
    outputs = [("", stats), *((f"exports.{name}.", s) for name, s in sorted((stats.get("exports") or {}).items()))]
    for prefix, s in outputs:
        excluded = s.get("excluded") or {}
        failed = sum(int(excluded.get(reason) or 0) for reason in TEMPLATE_FAILURES)
        candidates = int(s.get("candidates") or 0)
        if not failed or not candidates:
            continue
        rate = failed / candidates
        metric = f"{prefix}template_error_rate"
        metrics[metric] = round(rate, 6)
        if limit is not None and rate > limit:
            first = s.get("template_error") or {}
            keys = [first["key"]] if first.get("key") else [
                k for r in TEMPLATE_FAILURES for k in (s.get("excluded_samples") or {}).get(r, [])]
            breach = _breach(definition_id, metric, rate, limit, keys)
            if first:
                breach["detail"] = f"{first.get('file')}:{first.get('line')}: {first.get('message')}"
            breaches.append(breach)
    return metrics, breaches


def empty_entities(record: dict[str, Any]) -> set[str]:
    """Entity kinds whose aggregate of this run has zero rows (a source was empty)."""
    built = ((record.get("stages") or {}).get("aggregate") or {}).get("entities") or {}
    return {entity for entity, s in built.items() if isinstance(s, dict) and s.get("rows") == 0}


def check_run(config: Any, record: dict[str, Any], *,
              definition_gates: dict[str, dict[str, Any]] | None = None,
              deltas: dict[str, dict[str, Any]] | None = None,
              bases: dict[str, str | None] | None = None) -> dict[str, Any]:
    """Gate every definition of ``record``; set ``record["gate"]`` and ``held`` on a breach.

    ``definition_gates`` maps definition id → its ``gates:`` mapping. ``deltas`` maps id →
    the summary :func:`snapshot_and_diff` returned (default: the run's ``_delta.json``
    markers). ``bases`` maps id → the published run to compare with (default: the
    definition's current pointer). Returns the gate report (also stored in the record).
    """
    from feedgen.generator.snapshots import read_delta_marker

    root = config.root
    run_id = record["run_id"]
    store = serving_store(config) if bases is None else None
    report: dict[str, Any] = {"status": "passed", "breaches": [], "metrics": {}, "first_run": []}
    empty = empty_entities(record)
    base_runs: dict[str, dict[str, Any]] = {}  # run.json of each base run, read once (not once per definition)
    for def_id, stats in sorted((record.get("definitions") or {}).items()):
        thresholds = thresholds_for(config, def_id, (definition_gates or {}).get(def_id))
        delta = (deltas or {}).get(def_id) or read_delta_marker(root, run_id, def_id)
        if bases is not None:
            base_run = bases.get(def_id)
        elif delta is not None:
            base_run = delta.get("base_run_id")
        else:
            base_run = current_run_id(config, def_id, store)
        base_stats = None
        if base_run and base_run != run_id:
            try:
                if base_run not in base_runs:
                    base_runs[base_run] = read_run(root, base_run).get("definitions") or {}
                base_stats = base_runs[base_run].get(def_id, {})
            except FeedgenError:
                raise FeedgenError(
                    f"{Path(root) / 'runs' / base_run}: run.json of the published run {base_run} "
                    f"(current for {def_id!r}) is missing; republish it or remove "
                    f"current/{def_id}.json") from None
        if base_stats is None:
            report["first_run"].append(def_id)
        metrics, breaches = evaluate_definition(def_id, stats, delta, base_stats, thresholds,
                                                empty_input=stats.get("entity") in empty)
        report["metrics"][def_id] = metrics
        report["breaches"].extend(breaches)
    if report["breaches"]:
        report["status"] = "held"
        record["status"] = "held"
    record["gate"] = report
    return report


__all__ = ["THRESHOLD_KEYS", "check_run", "empty_entities", "evaluate_definition", "thresholds_for"]
