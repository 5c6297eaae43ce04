"""Retry policy, rate limit, breaker and config errors (no broker needed)."""

from __future__ import annotations

import random
import time
from email.utils import formatdate

import pytest

from feedgen.connectors.base import (
    CircuitBreaker,
    RateLimiter,
    backoff_delay,
    idempotency_key,
    retry_after_seconds,
    settings_from_config,
)
from feedgen.connectors.google_merchant_api import batch_id
from feedgen.connectors.meta_custom_audience import hashed
from feedgen.core.config import load_config
from feedgen.core.errors import ConfigError


def test_backoff_grows_exponentially_up_to_the_cap_with_jitter_below_it():
    policy = {"initial_s": 1.0, "max_s": 8.0, "multiplier": 2.0, "jitter": 0.5}
    rng = random.Random(7)
    delays = [backoff_delay(n, policy, rng) for n in range(1, 7)]
    caps = [1, 2, 4, 8, 8, 8]
    assert all(cap * 0.5 <= d <= cap for d, cap in zip(delays, caps, strict=True))
    assert len({round(d, 6) for d in delays[3:]}) == 3  # jitter spreads retries of many connectors


def test_retry_after_accepts_seconds_and_http_dates():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    in_ten = formatdate(time.time() + 10, usegmt=True)
    assert 8.0 <= retry_after_seconds(in_ten) <= 10.0


def test_rate_limiter_spaces_calls():
    limiter = RateLimiter(20.0)
    start = time.monotonic()
    for _ in range(40):
        limiter.acquire()
    # 20 in the first second's burst, the next 20 at 20 a second.
    assert time.monotonic() - start >= 0.9


def test_breaker_opens_after_threshold_and_closes_on_success():
    now = [0.0]
    breaker = CircuitBreaker(3, 10.0, clock=lambda: now[0])
    breaker.failure()
    breaker.failure()
    assert breaker.state == "closed" and breaker.wait_s() == 0
    breaker.failure()
    assert breaker.state == "open" and breaker.wait_s() == 10.0
    now[0] = 10.5
    assert breaker.state == "half_open" and breaker.wait_s() == 0
    breaker.success()
    assert breaker.state == "closed"


def test_idempotency_key_and_batch_ids_depend_only_on_event_ids():
    assert idempotency_key(["a", "b"]) == idempotency_key(["a", "b"]) != idempotency_key(["b", "a"])
    taken: set[int] = set()
    assert batch_id("0000000a" + "f" * 24, taken) == 10
    assert batch_id("0000000a" + "e" * 24, taken) == 11  # a collision takes the next free id


def test_audience_hashing_normalises_and_passes_digests_through():
    digest = hashed("Ann@Example.com ", "email")
    assert digest == hashed("ann@example.com", "email") and hashed(digest, "email") == digest
    assert hashed("+48 601-234-567", "phone") == hashed("48601234567", "phone")
    assert hashed(None, "email") == ""


def _config(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, environ={})


def test_config_errors_name_the_file_the_connector_and_the_fix(tmp_path):
    cfg = _config(tmp_path, "kafka: {bootstrap: 'h:1'}\nconnectors:\n  meta_pl: {type: meta_catalog_batch}\n")
    with pytest.raises(ConfigError, match=r"c.yaml: connectors.meta_pl.endpoint: placeholder 'catalog_id' has no value"):
        settings_from_config(cfg, "meta_pl")
    with pytest.raises(ConfigError, match="connectors.other: no such connector"):
        settings_from_config(cfg, "other")
    # an unknown type is refused when the config loads (the config schema), not at connect
    with pytest.raises(ConfigError, match="c.yaml: connectors.x.type: 'carrier_pigeon' is not one of google_merchant_api"):
        _config(tmp_path, "kafka: {bootstrap: 'h:1'}\nconnectors:\n  x: {type: carrier_pigeon, endpoint: 'http://a'}\n")


def test_settings_fill_defaults_per_connector_name(tmp_path):
    cfg = _config(tmp_path, "kafka: {bootstrap: 'h:1'}\nconnectors:\n  meta_catalog_batch: {catalog_id: '99'}\n")
    s = settings_from_config(cfg, "meta_catalog_batch")
    assert s.endpoint == "https://graph.facebook.com/v21.0/99/items_batch"
    assert s.group_id == "feedgen-connect-meta_catalog_batch"
    assert s.dead_letter_topic == "feedgen.deadletter.meta_catalog_batch"
    assert s.topic == "feedgen.deltas" and s.batch_size == 3000 and s.max_retries == 5
