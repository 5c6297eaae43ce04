"""Alerts: a run held, failed, published, or near a gate's threshold, POSTed to webhooks.

``alerts.webhooks`` in the config lists ``{url, events}``. Each alert is a JSON body that a
Slack-compatible incoming webhook accepts (``text`` plus ``blocks``) with a link to the
run's page in the console (``console.public_url``). Delivery runs in a background thread,
so a run never waits for it and never fails because of it: each try that fails (an error,
a timeout, a status other than 2xx) is retried after ``backoff_seconds``, doubled each
time, ``retries`` times; after the last one the alert is written to
``runs/<run_id>/alerts-dead-letter.jsonl``. Every delivery, good or dead, is appended to the
registry's audit log (``run.alert_delivered`` / ``run.alert_dead_letter``, actor ``feedgen-alerts``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any

from feedgen.console.registry import Actor, Registry, registry_url
from feedgen.core.runs import format_ts, run_dir, utcnow
from feedgen.generator.gates import thresholds_for

log = logging.getLogger(__name__)

EVENTS = ("held", "failed", "published", "near_threshold")
DEFAULT_EVENTS = ("held", "failed")
DEAD_LETTER = "alerts-dead-letter.jsonl"
ACTOR = "feedgen-alerts"
_pending: list[threading.Thread] = []
_lock = threading.Lock()


def run_url(config: Any, run_id: str, event: str = "") -> str:
    """The run's page in the console (its review page for a held run)."""
    base = str(config.get("console.public_url") or
               f"http://{config.get('console.host') or '127.0.0.1'}:{config.get('console.port') or 8090}")
    return f"{base.rstrip('/')}/runs/{run_id}" + ("/review" if event == "held" else "")


def near_threshold(config: Any, record: dict[str, Any],
                   definition_gates: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Gate values of a passed run at ``alerts.near_threshold`` of their threshold or more."""
    ratio = float(config.get("alerts.near_threshold") or 0.8)
    gates = definition_gates or {}
    near = []
    metrics = (record.get("gate") or {}).get("metrics") or {}
    for def_id, values in sorted(metrics.items()):
        limits = thresholds_for(config, def_id, gates.get(def_id))
        for metric, value in sorted((values or {}).items()):
            limit = _limit_of(metric, limits)
            if limit and isinstance(value, int | float) and ratio * limit <= value <= limit:
                near.append({"definition_id": def_id, "metric": metric, "value": value, "threshold": limit})
    return near


def _limit_of(metric: str, limits: dict[str, Any]) -> float | None:
    key = {"count_change": "max_count_change", "share_removed": "max_share_removed",
           "share_changed": "max_share_changed"}.get(metric)
    if metric.startswith("null_rate."):
        key = "max_null_rate"
    value = limits.get(key) if key else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def message(config: Any, record: dict[str, Any], event: str, detail: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    """The JSON body: ``text`` (the fallback every client shows) and Block Kit ``blocks``."""
    run_id = str(record.get("run_id"))
    url = run_url(config, run_id, event)
    gate = record.get("gate") or {}
    lines = []
    if event == "held":
        breaches = gate.get("breaches") or []
        headline = f"Run {run_id} is held: {len(breaches)} gate breach{'es' if len(breaches) != 1 else ''}"
        lines = [f"{b['definition_id']}: {b['metric']} = {_shown(b['value'])} (threshold {_shown(b['threshold'])})"
                 for b in breaches[:10]]
        action = "Review the evidence and approve or reject"
    elif event == "failed":
        failed = [(n, s) for n, s in (record.get("stages") or {}).items()
                  if isinstance(s, dict) and s.get("status") == "failed"]
        headline = f"Run {run_id} failed" + (f" in its {failed[-1][0]} stage" if failed else "")
        lines = [str(s.get("error") or "")[:300] for _n, s in failed[-1:]]
        action = f"Fix the cause and resume with `feedgen run --resume {run_id}`"
    elif event == "published":
        definitions = (record.get("publication") or {}).get("definitions") or []
        headline = f"Run {run_id} is published: {len(definitions)} definition(s) current"
        action = "See the run"
    else:
        items = list(detail)
        headline = f"Run {run_id} passed, but {len(items)} gate value(s) are near their threshold"
        lines = [f"{d['definition_id']}: {d['metric']} = {_shown(d['value'])} (threshold {_shown(d['threshold'])})"
                 for d in items[:10]]
        action = "See the run"
    text = f"{headline}. {action}: {url}"
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{headline}*\n<{url}|{action}>"}}]
    if lines:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(f"• {x}" for x in lines)}})
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": f"feedgen · as_of {record.get('as_of')} · status {record.get('status')}"}]})
    return {"text": text, "blocks": blocks,
            "feedgen": {"event": event, "run_id": run_id, "status": record.get("status"), "url": url}}


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1%}" if value <= 1 else f"{value:g}"
    return str(value)


def notify(config: Any, record: dict[str, Any], event: str,
           detail: Iterable[dict[str, Any]] = ()) -> list[threading.Thread]:
    """Start delivering ``event`` about ``record`` to every webhook that asked for it; never raises.

    Returns the delivery threads (non-daemon: a CLI process finishes them before it exits).
    """
    try:
        hooks = [h for h in (config.get("alerts.webhooks") or [])
                 if event in (h.get("events") or DEFAULT_EVENTS)]
        if not hooks:
            return []
        body = message(config, record, event, detail)
        threads = []
        for hook in hooks:
            thread = threading.Thread(target=_deliver, args=(config, str(record["run_id"]), event, hook["url"], body),
                                      name=f"feedgen-alert-{event}", daemon=False)
            thread.start()
            threads.append(thread)
        with _lock:
            _pending[:] = [t for t in _pending if t.is_alive()] + threads
        return threads
    except Exception as err:  # noqa: BLE001 - an alert must never stop a run
        log.warning("run %s: the %s alert was not sent: %s", record.get("run_id"), event, err,
                    extra={"run_id": record.get("run_id"), "alert": event})
        return []


def wait(timeout: float = 60.0) -> bool:
    """Wait for the deliveries started so far; False if some are still going after ``timeout``."""
    deadline = time.monotonic() + timeout
    with _lock:
        threads = list(_pending)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return not any(t.is_alive() for t in threads)


def _deliver(config: Any, run_id: str, event: str, url: str, body: dict[str, Any]) -> None:
    retries = int(config.get("alerts.retries") if config.get("alerts.retries") is not None else 3)
    pause = float(config.get("alerts.backoff_seconds") if config.get("alerts.backoff_seconds") is not None else 2.0)
    timeout = float(config.get("alerts.timeout_seconds") or 10.0)
    data = json.dumps(body).encode("utf-8")
    errors: list[str] = []
    for attempt in range(1, retries + 2):
        error = _post(url, data, timeout)
        if error is None:
            _audit(config, "delivered", run_id, {"event": event, "url": _safe(url), "attempts": attempt})
            return
        errors.append(error)
        log.warning("run %s: %s alert to %s failed (try %d of %d): %s", run_id, event, _safe(url), attempt,
                    retries + 1, error, extra={"run_id": run_id, "alert": event})
        if attempt <= retries:
            time.sleep(pause)
            pause *= 2
    record = {"at": format_ts(utcnow()), "event": event, "url": _safe(url), "attempts": retries + 1,
              "errors": errors, "body": body}
    try:
        path = run_dir(config.root, run_id) / DEAD_LETTER
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
    except OSError as err:
        log.error("run %s: the %s alert could not be dead-lettered: %s", run_id, event, err,
                  extra={"run_id": run_id, "alert": event})
    _audit(config, "dead_letter", run_id, {"event": event, "url": _safe(url), "attempts": retries + 1,
                                           "error": errors[-1] if errors else None})


def _post(url: str, data: bytes, timeout: float) -> str | None:
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "feedgen-alerts"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - configured http(s) URL
            response.read(65536)
            return None if 200 <= response.status < 300 else f"HTTP {response.status}"
    except urllib.error.HTTPError as err:
        return f"HTTP {err.code}"
    except (OSError, ValueError) as err:
        return f"{type(err).__name__}: {err}"


def _safe(url: str) -> str:
    # an incoming-webhook URL is a secret (its path is the key): keep the host only
    parts = url.split("/")
    return "/".join(parts[:3]) + ("/…" if len(parts) > 3 else "")


_audit_lock = threading.Lock()


def _audit(config: Any, action: str, run_id: str, detail: dict[str, Any]) -> None:
    # one delivery thread at a time opens the registry: SQLite (and its first migration)
    # refuses writers that race each other
    with _audit_lock:
        _audit_one(config, action, run_id, detail)


def _audit_one(config: Any, action: str, run_id: str, detail: dict[str, Any]) -> None:
    try:
        registry = Registry.open(registry_url(config))
        try:
            registry.record(Actor(ACTOR, "admin"), f"alert_{action}", "run", run_id, detail)
        finally:
            registry.close()
    except Exception as err:  # noqa: BLE001 - the audit log is best effort for alerts
        log.warning("run %s: alert delivery not audited: %s", run_id, err, extra={"run_id": run_id})


__all__ = ["DEAD_LETTER", "EVENTS", "message", "near_threshold", "notify", "run_url", "wait"]
