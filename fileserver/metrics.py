"""Prometheus metrics of the file server: requests, bytes, latency and the age of each current feed.

Under gunicorn with several workers, ``PROMETHEUS_MULTIPROC_DIR`` is set by ``feedgen serve``
before any worker imports prometheus_client, so every worker writes its counters to files in
that folder and a scrape on any worker sums them all. The ages are computed at scrape time
from the pointers, so they need no cross-process state.

Label values come from fixed sets, whatever clients send: ``route`` is the first path
segment of a known route (else ``other``), ``method`` one of the standard methods (else
``other``), ``status`` a code this server answers (else its class, ``4xx``). The ages
name every published definition, so ``/metrics`` is behind a token (see ``app``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

from feedgen.core.store import Store

__all__ = ["Metrics"]

log = logging.getLogger("feedgen.fileserver.metrics")

_ROUTES = frozenset({"feeds", "segments", "customers", "runs", "healthz", "metrics"})
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
_STATUSES = frozenset({"200", "206", "304", "400", "401", "403", "404", "405", "409", "413", "416",
                       "500", "503"})
_CLASSES = frozenset("12345")
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            30.0, 60.0, 300.0)


def _route(path: str) -> str:
    # A fixed label set: ids never become label values, so a scan cannot blow up cardinality.
    first = path.lstrip("/").split("/", 1)[0]
    return first if first in _ROUTES else "other"


def _method(method: str) -> str:
    return method if method in _METHODS else "other"


def _status(code: str) -> str:
    if code in _STATUSES:
        return code
    return f"{code[0]}xx" if len(code) == 3 and code[0] in _CLASSES else "other"


class _CurrentAge:
    """A collector: seconds since each ``current/<id>.json`` pointer was published."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "feedgen_current_age_seconds", "Seconds since the current run of a definition was published",
            labels=["definition_id", "kind"],
        )
        now = datetime.now(UTC)
        try:
            keys = self.store.list("current/")
        except Exception as err:  # noqa: BLE001 - a store outage must not take the counters down with it
            log.error("metrics: serving store %s is unavailable: %s", self.store.uri, err)
            keys = []
        for key in keys:
            if not key.endswith(".json"):
                continue
            try:
                pointer = json.loads(self.store.read_bytes(key))
                published = datetime.fromisoformat(str(pointer["published_at"]).replace("Z", "+00:00"))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a pointer being replaced or from an older writer: skip this scrape
            if published.tzinfo is None:
                published = published.replace(tzinfo=UTC)
            family.add_metric([str(pointer.get("definition_id", key[8:-5])), str(pointer.get("kind", ""))],
                              (now - published).total_seconds())
        yield family


class Metrics:
    """The app's metrics; ``wrap`` instruments a WSGI app, ``render`` answers a scrape."""

    def __init__(self, store: Store) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.ages = _CurrentAge(store)
        self.requests = Counter("feedgen_http_requests", "HTTP requests answered",
                                ["route", "method", "status"], registry=self.registry)
        self.bytes = Counter("feedgen_http_response_bytes", "Response body bytes sent",
                             ["route"], registry=self.registry)
        self.latency = Histogram("feedgen_http_request_duration_seconds",
                                 "Time from request to the last body byte", ["route"],
                                 buckets=_BUCKETS, registry=self.registry)
        if not self.multiprocess:
            self.registry.register(self.ages)

        self._children: dict[tuple[str, str, str], tuple[Any, Any, Any]] = {}

    def children(self, route: str, method: str, status: str) -> tuple[Any, Any, Any]:
        """The labelled request counter, byte counter and latency histogram (looked up once)."""
        found = self._children.get((route, method, status))
        if found is None:
            found = (self.requests.labels(route, method, status), self.bytes.labels(route),
                     self.latency.labels(route))
            if len(self._children) < 1024:
                self._children[(route, method, status)] = found
        return found

    def render(self) -> tuple[bytes, str]:
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            registry.register(self.ages)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def wrap(self, app: Callable) -> Callable:
        def instrumented(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
            started = time.perf_counter()
            route = _route(environ.get("PATH_INFO", ""))
            status: list[str] = []

            def recording_start_response(code: str, headers: list, exc_info: Any = None) -> Any:
                status[:] = [_status(code.split(" ", 1)[0])]
                return start_response(code, headers, exc_info)

            body = app(environ, recording_start_response)
            return _Counted(body, self, route, _method(environ.get("REQUEST_METHOD", "GET")), status, started)

        return instrumented


class _Counted:
    """Passes the body through, counting bytes; records the request when the server closes it."""

    def __init__(self, body: Iterable[bytes], metrics: Metrics, route: str, method: str,
                 status: list[str], started: float) -> None:
        self.body = body
        self.metrics = metrics
        self.route = route
        self.method = method
        self.status = status
        self.started = started
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        for piece in self.body:
            self.sent += len(piece)
            yield piece

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close:
                close()
        finally:
            requests, sent, latency = self.metrics.children(
                self.route, self.method, self.status[0] if self.status else "500")
            requests.inc()
            sent.inc(self.sent)
            latency.observe(time.perf_counter() - self.started)
