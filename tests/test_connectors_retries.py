"""Partner failures: 500, 429 with Retry-After, hangs, hard rejects, the circuit breaker."""

from __future__ import annotations

import uuid

import pytest

from feedgen.connectors.base import PartnerAuthError
from tests.partner_standin import PartnerStandin, make_event, produce, read_topic, run_connector
from tests.test_connectors_delivery import connector_for, done


@pytest.fixture
def standin():
    server = PartnerStandin().start()
    yield server
    server.stop()


@pytest.fixture
def topic():
    return f"deltas-{uuid.uuid4().hex[:8]}"


def events(n, dest="meta_catalog_batch"):
    return [make_event(f"r{i}", "add", [dest]) for i in range(n)]


def test_a_500_is_retried_with_the_same_idempotency_key_until_accepted(tmp_path, kafka_bootstrap, topic, standin):
    produce(kafka_bootstrap, topic, events(3))
    standin.fail_next("500", times=2)
    connector, _ = connector_for(tmp_path, kafka_bootstrap, topic, standin, "meta_catalog_batch", linger_ms=1000)
    counts = run_connector(connector, done(3))

    assert [c.status for c in standin.calls] == [500, 500, 200]
    assert len({c.headers["Idempotency-Key"] for c in standin.calls}) == 1
    assert counts["retried"] == 2 and counts["delivered"] == 3 and counts["dead_lettered"] == 0
    assert sorted(standin.accepted_keys()) == ["r0", "r1", "r2"]


def test_a_429_waits_at_least_retry_after_before_the_next_call(tmp_path, kafka_bootstrap, topic, standin):
    produce(kafka_bootstrap, topic, events(2))
    standin.fail_next("429", arg=1.5)
    connector, _ = connector_for(tmp_path, kafka_bootstrap, topic, standin, "meta_catalog_batch", linger_ms=1000)
    run_connector(connector, done(2))

    first, second = standin.calls
    assert first.status == 429 and second.status == 200
    # Backoff alone is 0.05 s here: the gap is the partner's Retry-After.
    assert second.at - first.at >= 1.4


def test_a_partner_that_hangs_past_the_timeout_is_retried(tmp_path, kafka_bootstrap, topic, standin):
    produce(kafka_bootstrap, topic, events(2))
    standin.fail_next("hang", arg=3.0)
    connector, _ = connector_for(tmp_path, kafka_bootstrap, topic, standin, "meta_catalog_batch",
                                 timeout_s=0.5, linger_ms=1000)
    counts = run_connector(connector, done(2))

    assert [c.status for c in standin.calls] == [0, 200]  # 0: the hung call
    assert counts["retried"] == 1 and sorted(standin.accepted_keys()) == ["r0", "r1"]


def test_after_the_last_retry_the_batch_goes_to_dead_letters_and_the_stream_moves_on(
        tmp_path, kafka_bootstrap, topic, standin):
    produce(kafka_bootstrap, topic, events(3))
    standin.fail_next("503", times=3)
    connector, settings = connector_for(tmp_path, kafka_bootstrap, topic, standin, "meta_catalog_batch",
                                        max_retries=2, linger_ms=1000)
    counts = run_connector(connector, done(3))

    assert counts["dead_lettered"] == 3 and counts["retried"] == 2
    dead = read_topic(kafka_bootstrap, settings.dead_letter_topic, 3)
    assert sorted(d["event"]["key"] for d in dead) == ["r0", "r1", "r2"]
    assert all(d["attempts"] == 3 and "gave up after 3 attempts: HTTP 503" in d["reason"] for d in dead)
    assert dead[0]["_headers"]["dlq_reason"] == dead[0]["reason"]
    # The batch was committed with its dead letters: new events flow.
    produce(kafka_bootstrap, topic, [make_event("r9", "add", ["meta_catalog_batch"])])
    run_connector(connector_for(tmp_path, kafka_bootstrap, topic, standin, "meta_catalog_batch",
                                group_id=settings.group_id)[0], done(1))
    assert standin.accepted_keys() == ["r9"]


def test_a_400_sends_the_batch_to_dead_letters_without_retrying(tmp_path, kafka_bootstrap, topic, standin):
    produce(kafka_bootstrap, topic, events(2))
    standin.fail_next("400")
    connector, settings = connector_for(tmp_path, kafka_bootstrap, topic, standin, "meta_catalog_batch", linger_ms=1000)
    counts = run_connector(connector, done(2))

    assert len(standin.calls) == 1 and counts["retried"] == 0
    dead = read_topic(kafka_bootstrap, settings.dead_letter_topic, 2)
    assert all(d["reason"].startswith("rejected by partner: HTTP 400") for d in dead)


def test_bad_credentials_stop_the_connector_without_committing(tmp_path, kafka_bootstrap, topic, standin):
    produce(kafka_bootstrap, topic, events(2))
    standin.fail_next("401")
    connector, settings = connector_for(tmp_path, kafka_bootstrap, topic, standin, "meta_catalog_batch", linger_ms=1000)
    with pytest.raises(PartnerAuthError, match="HTTP 401.*token_env"):
        run_connector(connector, done(2))
    # Nothing was committed: the fixed connector delivers both.
    again, _ = connector_for(tmp_path, kafka_bootstrap, topic, standin, "meta_catalog_batch", group_id=settings.group_id)
    run_connector(again, done(2))
    assert sorted(standin.accepted_keys()) == ["r0", "r1"]


def test_the_circuit_breaker_stops_calls_for_open_s_after_consecutive_failures(
        tmp_path, kafka_bootstrap, topic, standin):
    produce(kafka_bootstrap, topic, events(2))
    standin.fail_next("500", times=3)
    connector, _ = connector_for(tmp_path, kafka_bootstrap, topic, standin, "meta_catalog_batch", linger_ms=1000,
                                 max_retries=5, circuit_breaker={"failure_threshold": 2, "open_s": 2.0})
    run_connector(connector, done(2))

    at = [c.at for c in standin.calls]
    assert [c.status for c in standin.calls] == [500, 500, 500, 200]
    assert at[1] - at[0] < 1.0  # closed: a short backoff
    assert at[2] - at[1] >= 1.9  # open after 2 failures: no call for open_s
    assert at[3] - at[2] >= 1.9  # the half-open trial failed: open again
    assert connector.breaker.state == "closed" and connector.breaker.opened_count == 1
