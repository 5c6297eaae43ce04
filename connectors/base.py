"""The connector loop: consume delta events → batch → deliver to a partner → commit.

Delivery is at-least-once. Offsets are committed only after every event of a batch was
either accepted by the partner or written (and flushed) to the dead-letter topic, so a
crash at any point re-delivers the uncommitted batch and loses nothing. What differs per
partner (the event → payload mapping, the request shape, reading per-item rejects) lives
in one module per partner type, ``feedgen.connectors.<type>``, exposing ``PARTNER``.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import orjson
import urllib3

from feedgen.core.config import DEFAULTS
from feedgen.core.errors import ConfigError, FeedgenError

log = logging.getLogger(__name__)

# Every connector gets these unless its config says otherwise.
SETTING_DEFAULTS: dict[str, Any] = {
    "type": None,
    "endpoint": None,
    "token_env": None,
    "batch_size": 1000,
    "linger_ms": 500,
    "rate_limit_per_s": 20.0,  # requests per second; 0 turns the limiter off
    "max_retries": 5,
    "backoff": {"initial_s": 0.5, "max_s": 30.0, "multiplier": 2.0, "jitter": 0.5},
    "max_retry_after_s": 300.0,
    "timeout_s": 30.0,
    "circuit_breaker": {"failure_threshold": 5, "open_s": 30.0},
    "dead_letter_topic": None,  # default: feedgen.deadletter.<name>
    "group_id": None,  # default: feedgen-connect-<name>
    "session_timeout_ms": 6000,  # tansu holds a first join for half of it; also how soon a dead member is replaced
}

_RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}
_FATAL_STATUS = {401, 403}


class MappingError(FeedgenError):
    """An event cannot be turned into a partner payload (it goes to the dead-letter topic)."""


class PartnerAuthError(FeedgenError):
    """The partner refused the credentials: stop without committing, nothing is lost."""


class DeadLetterError(FeedgenError):
    """The dead-letter topic did not take a message: stop without committing."""


@dataclass
class Settings:
    """One connector's resolved settings (config ``connectors.<name>`` over SETTING_DEFAULTS)."""

    name: str
    type: str
    endpoint: str
    topic: str
    bootstrap: str
    group_id: str
    dead_letter_topic: str
    batch_size: int
    linger_ms: int
    rate_limit_per_s: float
    max_retries: int
    backoff: dict[str, float]
    max_retry_after_s: float
    timeout_s: float
    circuit_breaker: dict[str, float]
    session_timeout_ms: int
    raw: dict[str, Any] = field(default_factory=dict)
    label: str = "<config>"

    def require(self, key: str, fix: str) -> Any:
        """A partner-specific key that must be set, or a ConfigError naming it."""
        value = self.raw.get(key)
        if value in (None, ""):
            raise ConfigError(f"{self.label}: connectors.{self.name}.{key}: missing; {fix}")
        return value

    def secret(self, key: str, environ: Mapping[str, str]) -> str:
        """The credential named by ``<key>`` (an env var name), read from the environment."""
        var = self.require(key, f"name the environment variable that holds it, e.g. {key}: META_TOKEN")
        value = environ.get(str(var))
        if not value:
            raise ConfigError(
                f"{self.label}: connectors.{self.name}.{key}: environment variable {var} is not set; "
                f"export {var}=<secret> before running feedgen connect {self.name}"
            )
        return value


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def settings_from_config(config: Any, name: str) -> Settings:
    """Resolve ``connectors.<name>`` of a loaded Config; errors name the key and the fix."""
    label = getattr(config, "source_label", "<config>")
    connectors = config.get("connectors") or {}
    if name not in connectors:
        known = ", ".join(sorted(connectors)) or "none"
        raise ConfigError(
            f"{label}: connectors.{name}: no such connector; configured connectors: {known}. "
            f"Add a 'connectors: {{{name}: {{type: ..., endpoint: ...}}}}' section"
        )
    section = connectors[name] or {}
    ptype = section.get("type") or name
    # A connector named freely (meta_pl) starts from the built-in entry of its type.
    builtin = DEFAULTS["connectors"].get(ptype, {}) if name != ptype else {}
    raw = _merge(_merge(SETTING_DEFAULTS, builtin), section)
    where = f"{label}: connectors.{name}"
    if ptype not in partner_types():
        raise ConfigError(f"{where}.type: unknown connector type {ptype!r}; use one of {', '.join(partner_types())}")
    bootstrap = config.get("kafka.bootstrap")
    if not bootstrap:
        raise ConfigError(f"{label}: kafka.bootstrap: not set; set it in the config or export KAFKA_BOOTSTRAP=host:port")
    endpoint = raw.get("endpoint")
    if not endpoint:
        raise ConfigError(f"{where}.endpoint: missing; give the partner API URL")
    try:
        # Endpoints may hold ids from the same section: .../{catalog_id}/items_batch
        endpoint = str(endpoint).format(**{k: v for k, v in raw.items()
                                               if v is not None and not isinstance(v, dict)})
    except (KeyError, IndexError) as err:
        raise ConfigError(f"{where}.endpoint: placeholder {err} has no value; set connectors.{name}.{str(err).strip(chr(39))}") from err
    for key in ("batch_size", "max_retries"):
        if not isinstance(raw[key], int) or raw[key] < (1 if key == "batch_size" else 0):
            raise ConfigError(f"{where}.{key}: {raw[key]!r} is not a valid count; use a whole number")
    for key in ("linger_ms", "rate_limit_per_s", "timeout_s"):
        if not isinstance(raw[key], int | float) or raw[key] < 0:
            raise ConfigError(f"{where}.{key}: {raw[key]!r} must be a number >= 0")
    return Settings(
        name=name, type=ptype, endpoint=endpoint,
        topic=str(config.get("kafka.topic") or "feedgen.deltas"), bootstrap=str(bootstrap),
        group_id=raw.get("group_id") or f"feedgen-connect-{name}",
        dead_letter_topic=raw.get("dead_letter_topic") or f"feedgen.deadletter.{name}",
        batch_size=int(raw["batch_size"]), linger_ms=int(raw["linger_ms"]),
        rate_limit_per_s=float(raw["rate_limit_per_s"] or 0), max_retries=int(raw["max_retries"]),
        backoff={k: float(v) for k, v in raw["backoff"].items()},
        max_retry_after_s=float(raw["max_retry_after_s"]), timeout_s=float(raw["timeout_s"]),
        circuit_breaker={k: float(v) for k, v in raw["circuit_breaker"].items()},
        session_timeout_ms=int(raw["session_timeout_ms"]), raw=raw, label=label,
    )


# --- what a partner module provides ------------------------------------------------------


@dataclass
class Item:
    """One event on its way to a partner."""

    event: dict[str, Any]
    payload: Any
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]

    @property
    def event_id(self) -> str:
        return str(self.event.get("event_id", ""))


@dataclass
class Request:
    """One HTTP call covering ``items``; base adds Idempotency-Key and sends it."""

    items: list[Item]
    method: str
    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class Partner:
    """A partner API. Subclasses map events and read responses; nothing else."""

    type: ClassVar[str] = ""
    max_items: ClassVar[int] = 1000
    max_bytes: ClassVar[int] = 10 * 1024 * 1024
    ops: ClassVar[frozenset[str]] = frozenset({"add", "update", "remove", "refresh"})

    def __init__(self, settings: Settings, environ: Mapping[str, str]) -> None:
        self.settings = settings

    def map_event(self, event: dict[str, Any]) -> Any:
        """The partner-shaped item for one event; raise MappingError when impossible."""
        raise NotImplementedError

    def requests(self, items: list[Item]) -> list[Request]:
        """The HTTP calls that deliver ``items`` (usually one)."""
        raise NotImplementedError

    def rejected(self, request: Request, status: int, body: bytes) -> dict[int, str]:
        """Items of an accepted (2xx) request that the partner refused: index → reason."""
        return {}


def partner_types() -> list[str]:
    return ["google_merchant_api", "meta_catalog_batch", "meta_custom_audience", "webhook"]


def load_partner(settings: Settings, environ: Mapping[str, str]) -> Partner:
    """The partner module for ``settings.type``: ``feedgen.connectors.<type>.PARTNER``."""
    module = importlib.import_module(f"feedgen.connectors.{settings.type}")
    return module.PARTNER(settings, environ)


def require_data(event: dict[str, Any]) -> dict[str, Any]:
    data = event.get("data")
    if not isinstance(data, dict):
        raise MappingError(f"op {event.get('op')!r} needs 'data' as an object, got {type(data).__name__}")
    return data


def json_bytes(obj: Any) -> bytes:
    """Compact UTF-8 JSON (orjson: request bodies are the connector's hot path)."""
    return orjson.dumps(obj, default=str)


def idempotency_key(event_ids: Iterable[str]) -> str:
    """Same events → same key, so a partner can drop a repeated call after a retry."""
    return hashlib.sha256("\n".join(event_ids).encode("utf-8")).hexdigest()[:32]


# --- retry policy, rate limit, circuit breaker ----------------------------------------------


def backoff_delay(attempt: int, backoff: Mapping[str, float], rng: random.Random) -> float:
    """Exponential delay before retry ``attempt`` (1-based), with a random share removed."""
    base = min(backoff.get("max_s", 30.0),
               backoff.get("initial_s", 0.5) * backoff.get("multiplier", 2.0) ** (attempt - 1))
    jitter = min(max(backoff.get("jitter", 0.5), 0.0), 1.0)
    return base * (1.0 - jitter * rng.random())


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


class RateLimiter:
    """Token bucket: at most ``per_s`` calls a second, bursts of one second's worth."""

    def __init__(self, per_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_s = per_s
        self.clock = clock
        self.tokens = max(per_s, 1.0)
        self.last = clock()

    def acquire(self) -> float:
        if self.per_s <= 0:
            return 0.0
        now = self.clock()
        self.tokens = min(max(self.per_s, 1.0), self.tokens + (now - self.last) * self.per_s)
        self.last = now
        wait = 0.0
        if self.tokens < 1.0:
            wait = (1.0 - self.tokens) / self.per_s
            time.sleep(wait)
            self.tokens = 1.0
            self.last = self.clock()
        self.tokens -= 1.0
        return wait


class CircuitBreaker:
    """Opens after N failed calls in a row; while open no call is made for ``open_s``."""

    def __init__(self, failure_threshold: int, open_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failure_threshold = max(1, int(failure_threshold))
        self.open_s = open_s
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self.opened_count = 0

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "open" if self.clock() - self.opened_at < self.open_s else "half_open"

    def wait_s(self) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.open_s - self.clock())

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None

    def failure(self) -> None:
        self.failures += 1
        # A failed trial call in half-open re-opens at once.
        if self.failures >= self.failure_threshold or self.opened_at is not None:
            if self.opened_at is None:
                self.opened_count += 1
            self.opened_at = self.clock()


# --- metrics -------------------------------------------------------------------------------


class Metrics:
    """Prometheus counters for one connector, in their own registry."""

    def __init__(self, name: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry()
        labels = {"connector": name}
        self._delivered = Counter("feedgen_connector_delivered", "Events the partner accepted",
                                  list(labels), registry=self.registry).labels(**labels)
        self._retried = Counter("feedgen_connector_retried", "Partner calls retried",
                                list(labels), registry=self.registry).labels(**labels)
        self._dead = Counter("feedgen_connector_dead_lettered", "Events sent to the dead-letter topic",
                             list(labels), registry=self.registry).labels(**labels)
        self._skipped = Counter("feedgen_connector_skipped", "Events for other destinations",
                                list(labels), registry=self.registry).labels(**labels)
        self._lag = Gauge("feedgen_connector_lag", "Events behind the end of the topic (assigned partitions)",
                          list(labels), registry=self.registry).labels(**labels)
        self._breaker = Gauge("feedgen_connector_circuit_open", "1 while the circuit breaker is open",
                              list(labels), registry=self.registry).labels(**labels)
        self.counts = {"delivered": 0, "retried": 0, "dead_lettered": 0, "skipped": 0, "lag": 0,
                       "batches": 0, "commits": 0}

    def add(self, what: str, n: int = 1) -> None:
        if n:
            self.counts[what] += n
            getattr(self, {"dead_lettered": "_dead"}.get(what, "_" + what)).inc(n)

    def lag(self, value: int) -> None:
        self.counts["lag"] = value
        self._lag.set(value)

    def breaker(self, is_open: bool) -> None:
        self._breaker.set(1 if is_open else 0)


# --- the loop ------------------------------------------------------------------------------


@dataclass
class _Dead:
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    event: Any
    reason: str
    attempts: int


class Connector:
    """Consume → batch → deliver → dead-letter → commit, until stopped."""

    def __init__(self, settings: Settings, environ: Mapping[str, str] | None = None,
                 partner: Partner | None = None, seed: int | None = None) -> None:
        environ = os.environ if environ is None else environ
        self.settings = settings
        self.partner = partner or load_partner(settings, environ)
        self.metrics = Metrics(settings.name)
        self.rng = random.Random(seed)
        self.limiter = RateLimiter(settings.rate_limit_per_s)
        cb = settings.circuit_breaker
        self.breaker = CircuitBreaker(int(cb.get("failure_threshold", 5)), float(cb.get("open_s", 30.0)))
        self.http = urllib3.PoolManager(
            num_pools=2, maxsize=2, retries=False,
            timeout=urllib3.Timeout(connect=settings.timeout_s, read=settings.timeout_s),
        )
        self.stop_event = threading.Event()
        self.assigned_at: float | None = None
        self.first_event_at: float | None = None
        self.last_commit_at: float | None = None
        self._inflight: Future[None] | None = None
        self._worker: ThreadPoolExecutor
        self._consumer: Any = None
        self._producer: Any = None
        self._dlq_errors: list[str] = []
        self._name_bytes = settings.name.encode("utf-8")

    # The consumer and the dead-letter producer.
    def _open(self) -> None:
        from confluent_kafka import Consumer, Producer

        s = self.settings
        self._consumer = Consumer({
            "bootstrap.servers": s.bootstrap, "group.id": s.group_id,
            "enable.auto.commit": False, "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest", "session.timeout.ms": s.session_timeout_ms,
            "client.id": f"feedgen-connect-{s.name}",
        })
        self._producer = Producer({
            "bootstrap.servers": s.bootstrap, "enable.idempotence": True, "acks": "all",
            "linger.ms": 5, "client.id": f"feedgen-connect-{s.name}-dlq",
        })
        self._consumer.subscribe([s.topic], on_assign=self._on_assign)

    def _on_assign(self, _consumer: Any, partitions: list[Any]) -> None:
        self.assigned_at = time.monotonic()
        log.info("partitions assigned: %d", len(partitions), extra={"connector": self.settings.name})

    def stop(self) -> None:
        """Ask the loop to finish the batch in flight, commit and return."""
        self.stop_event.set()

    def run(self, idle_exit_s: float | None = None) -> dict[str, int]:
        """Run until stop() (or SIGTERM via the CLI), or ``idle_exit_s`` with nothing to read."""
        self._open()
        log.info("connector started", extra={"connector": self.settings.name, "topic": self.settings.topic,
                                             "group_id": self.settings.group_id, "type": self.settings.type})
        try:
            with ThreadPoolExecutor(1, thread_name_prefix=f"deliver-{self.settings.name}") as self._worker:
                self._loop(idle_exit_s)
                self._wait_inflight()
        finally:
            self._close()
        log.info("connector stopped", extra={"connector": self.settings.name, **self.metrics.counts})
        return dict(self.metrics.counts)

    def _loop(self, idle_exit_s: float | None) -> None:
        idle_since: float | None = None
        try:
            while not self.stop_event.is_set():
                if self._inflight is not None and self._inflight.done():
                    self._wait_inflight()  # surfaces a delivery error at once
                messages = self._collect()
                if messages:
                    self._process(messages)
                    idle_since = time.monotonic()
                elif idle_exit_s is not None and self.assigned_at is not None:
                    # Idle counts from the assignment: joining the group is not idleness.
                    idle_since = idle_since or self.assigned_at
                    if time.monotonic() - idle_since >= idle_exit_s:
                        break
        except BaseException:
            # The batch in flight was prepared before the failure: let it finish and commit.
            if self._inflight is not None:
                self._inflight.exception()
            raise

    def _close(self) -> None:
        if self._producer is not None:
            self._producer.flush(30)
        if self._consumer is not None:
            self._consumer.close()
        # Drop the clients so their background threads end with the run, not with the object.
        self._producer = self._consumer = None
        self.http.clear()

    def _collect(self) -> list[Any]:
        from confluent_kafka import KafkaError, KafkaException

        s = self.settings
        batch: list[Any] = []
        deadline: float | None = None
        while len(batch) < s.batch_size and not self.stop_event.is_set():
            timeout = 0.5 if deadline is None else max(0.0, deadline - time.monotonic())
            for msg in self._consumer.consume(s.batch_size - len(batch), timeout):
                err = msg.error()
                if err is None:
                    batch.append(msg)
                elif err.fatal():
                    raise KafkaException(err)
                elif err.code() != KafkaError._PARTITION_EOF:
                    # Transient (topic not created yet, broker restarting): librdkafka retries.
                    log.warning("kafka: %s", err, extra={"connector": s.name})
            if not batch:
                return batch
            if deadline is None:
                deadline = time.monotonic() + s.linger_ms / 1000.0
                if self.first_event_at is None:
                    self.first_event_at = time.time()
            if time.monotonic() >= deadline:
                break
        return batch

    def _process(self, messages: list[Any]) -> None:
        """Prepare this batch while the previous one is delivered, then hand it over."""
        batch = self._prepare_batch(messages)
        self._wait_inflight()
        self._inflight = self._worker.submit(self._finish, *batch)

    def _wait_inflight(self) -> None:
        # One batch in flight at a time, so commits stay in order; its error stops the loop
        # before anything later is committed.
        if self._inflight is not None:
            inflight, self._inflight = self._inflight, None
            inflight.result()

    def _prepare_batch(self, messages: list[Any]) -> tuple[list[Item], list[_Dead], dict[tuple[str, int], int]]:
        items: list[Item] = []
        dead: list[_Dead] = []
        offsets: dict[tuple[str, int], int] = {}
        skipped = 0
        for msg in messages:
            tp = (msg.topic(), msg.partition())
            offsets[tp] = max(offsets.get(tp, -1), msg.offset() + 1)
            item = self._prepare(msg, dead)
            if item is None:
                continue
            if item is False:
                skipped += 1
                continue
            items.append(item)
        self.metrics.add("skipped", skipped)
        return items, dead, offsets

    def _finish(self, items: list[Item], dead: list[_Dead], offsets: dict[tuple[str, int], int]) -> None:
        for chunk in self._chunks(items):
            for request in self.partner.requests(chunk):
                self._deliver(request, dead)
        if dead:
            self._dead_letter(dead)
        self._commit(offsets)
        self.metrics.counts["batches"] += 1

    def _prepare(self, msg: Any, dead: list[_Dead]) -> Item | None | bool:
        """An Item, False for someone else's event, None when it went to the dead letters."""
        headers = list(msg.headers() or [])
        name = self._name_bytes
        for hkey, hval in headers:
            # Cheap skip: the header repeats the destinations, so most foreign events are
            # dropped without parsing JSON.
            if hkey == "destinations" and hval is not None and name not in hval.split(b","):
                return False
        value = msg.value() or b""
        try:
            event = orjson.loads(value)
            if not isinstance(event, dict):
                raise ValueError(f"expected a JSON object, got {type(event).__name__}")
        except ValueError as err:  # orjson.JSONDecodeError is a ValueError
            dead.append(_Dead(msg.key(), value, headers, None, f"poison: unparseable event: {err}", 0))
            return None
        destinations = event.get("destinations")
        if isinstance(destinations, list) and self.settings.name not in destinations:
            return False
        try:
            if not event.get("event_id"):
                raise MappingError("missing 'event_id'")
            op = event.get("op")
            if op not in self.partner.ops:
                raise MappingError(f"op {op!r} is not one this connector delivers ({', '.join(sorted(self.partner.ops))})")
            payload = self.partner.map_event(event)
        except Exception as err:  # any mapping bug must not block the rest of the stream
            dead.append(_Dead(msg.key(), value, headers, event, f"poison: mapping error: {err}", 0))
            return None
        return Item(event, payload, msg.key(), value, headers)

    def _chunks(self, items: list[Item]) -> Iterable[list[Item]]:
        limit = max(1, min(self.settings.batch_size, self.partner.max_items))
        max_bytes = self.partner.max_bytes
        chunk: list[Item] = []
        size = 0
        for item in items:
            # Estimate with the event's own size plus room for the JSON envelope.
            item_size = len(item.value) + 64
            if chunk and (len(chunk) >= limit or size + item_size > max_bytes):
                yield chunk
                chunk, size = [], 0
            chunk.append(item)
            size += item_size
        if chunk:
            yield chunk

    def _deliver(self, request: Request, dead: list[_Dead]) -> None:
        s = self.settings
        headers = {"Content-Type": "application/json", "User-Agent": "feedgen-connect",
                   "Idempotency-Key": idempotency_key(i.event_id for i in request.items), **request.headers}
        attempt = 0
        while True:
            wait = self.breaker.wait_s()
            if wait > 0:
                self.metrics.breaker(True)
                log.warning("circuit open: waiting %.1fs before calling the partner", wait,
                            extra={"connector": s.name})
                time.sleep(wait)
            self.limiter.acquire()
            attempt += 1
            retry_after = None
            try:
                resp = self.http.request(request.method, request.url, body=request.body, headers=headers,
                                         preload_content=True, redirect=False)
            except urllib3.exceptions.TimeoutError as err:
                reason = f"timeout after {s.timeout_s}s: {err}"
            except urllib3.exceptions.HTTPError as err:
                reason = f"connection error: {err}"
            else:
                status = resp.status
                if 200 <= status < 300:
                    self.breaker.success()
                    self.metrics.breaker(False)
                    rejects = self.partner.rejected(request, status, resp.data)
                    for index, why in sorted(rejects.items()):
                        it = request.items[index]
                        dead.append(_Dead(it.key, it.value, it.headers, it.event,
                                          f"rejected by partner: {why}", attempt))
                    self.metrics.add("delivered", len(request.items) - len(rejects))
                    return
                snippet = resp.data[:300].decode("utf-8", "replace")
                if status in _FATAL_STATUS:
                    raise PartnerAuthError(
                        f"connector {s.name}: {request.url} answered HTTP {status} ({snippet}); "
                        f"check the credentials in connectors.{s.name}.token_env"
                    )
                reason = f"HTTP {status}: {snippet}"
                if status not in _RETRYABLE_STATUS:
                    # The partner is up and refused this call as such: retrying cannot help.
                    self.breaker.success()
                    self._dead_all(request, dead, f"rejected by partner: {reason}", attempt)
                    return
                retry_after = retry_after_seconds(resp.headers.get("Retry-After"))
            self.breaker.failure()
            if self.breaker.state != "closed":
                self.metrics.breaker(True)
            if attempt > s.max_retries:
                self._dead_all(request, dead, f"gave up after {attempt} attempts: {reason}", attempt)
                return
            self.metrics.add("retried")
            delay = backoff_delay(attempt, s.backoff, self.rng)
            if retry_after is not None:
                delay = max(delay, min(retry_after, s.max_retry_after_s))
            log.warning("partner call failed (%s); retry %d/%d in %.2fs", reason, attempt, s.max_retries, delay,
                        extra={"connector": s.name, "events": len(request.items)})
            time.sleep(delay)

    def _dead_all(self, request: Request, dead: list[_Dead], reason: str, attempts: int) -> None:
        for it in request.items:
            dead.append(_Dead(it.key, it.value, it.headers, it.event, reason, attempts))

    def _dead_letter(self, dead: list[_Dead]) -> None:
        s = self.settings
        self._dlq_errors.clear()

        def report(err: Any, _msg: Any) -> None:
            if err is not None:
                self._dlq_errors.append(str(err))

        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for d in dead:
            body = {
                "connector": s.name, "reason": d.reason, "attempts": d.attempts, "failed_at": now,
                "event": d.event if d.event is not None else d.value.decode("utf-8", "replace"),
            }
            headers = [*d.headers, ("dlq_reason", d.reason.encode("utf-8")[:1000])]
            while True:
                try:
                    self._producer.produce(s.dead_letter_topic, key=d.key, value=json_bytes(body),
                                           headers=headers, on_delivery=report)
                    break
                except BufferError:
                    self._producer.poll(0.1)
            self._producer.poll(0)
        left = self._producer.flush(60)
        if left or self._dlq_errors:
            # Committing now would lose these events: stop and let a restart retry the batch.
            raise DeadLetterError(
                f"connector {s.name}: dead-letter topic {s.dead_letter_topic} did not take "
                f"{left or len(self._dlq_errors)} message(s): {self._dlq_errors[:1]}; check kafka.bootstrap"
            )
        self.metrics.add("dead_lettered", len(dead))
        for d in dead:
            log.warning("dead-lettered: %s", d.reason, extra={"connector": s.name,
                        "event_id": d.event.get("event_id") if isinstance(d.event, dict) else None})

    def _commit(self, offsets: dict[tuple[str, int], int]) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        tps = [TopicPartition(topic, part, off) for (topic, part), off in offsets.items()]
        try:
            self._consumer.commit(offsets=tps, asynchronous=False)
        except KafkaException as err:
            # After a rebalance the partitions are someone else's: they re-deliver, at least once.
            log.warning("commit failed (%s); the batch may be delivered again", err,
                        extra={"connector": self.settings.name})
            return
        self.metrics.counts["commits"] += 1
        self.last_commit_at = time.time()
        self._update_lag(offsets)

    def _update_lag(self, offsets: dict[tuple[str, int], int]) -> None:
        from confluent_kafka import TopicPartition

        lag = 0
        try:
            for tp in self._consumer.assignment():
                _low, high = self._consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition),
                                                                  timeout=1, cached=True)
                pos = offsets.get((tp.topic, tp.partition))
                if pos is None:
                    [cur] = self._consumer.position([tp])
                    pos = cur.offset
                if high is not None and high >= 0 and pos is not None and pos >= 0:
                    lag += max(0, high - pos)
        except Exception as err:  # lag is a metric: never let it stop delivery
            log.debug("lag unavailable: %s", err)
            return
        self.metrics.lag(lag)
